"""The viewer connection: ``WS /sessions/{id}/view`` carries WebRTC signaling.

Viewer -> server: ``{"type": "offer", "sdp": ...}`` (recvonly video and optionally audio),
``{"type": "candidate", "candidate": "candidate:...", "sdpMid": ..., "sdpMLineIndex": ...}``
(trickled ICE; an empty candidate ends gathering). Server -> viewer: ``answer`` (the SDP
carries the server's candidates; aiortc gathers before answering), ``status`` once a second
(committed fps, latency, seq on screen), ``ended`` and ``error``.

A viewer the server gives up on is told why before its signaling closes: its last message
is ``{"type": "error", "fatal": true, "reason": ..., "message": ...}`` and the close frame
(1011) carries the same reason. Reasons: ``media_lost``, its WebRTC connection failed or
closed while signaling was still open (the usual cause: the viewer stopped reading its
media socket, so it answered no ICE consent check for about 30 s, RFC 7675, and aioice gave
the connection up; or the viewer closed its peer); ``stalled``, it answered no keepalive
ping within ``server.keepalive_timeout_s``.

Media: MediaRelay proxies of the session's sources, unbuffered, so this viewer joining,
leaving or stalling never touches the producer or the other viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server.config import ServerConfig, ServerSettings
from server.metrics import ServerMetrics
from server.outbox import Outbox
from server.producer import send_loop
from server.protocol import ProtocolError, loads_bounded
from server.session import Session
from server.tasks import cancel_and_wait
from server.webrtc import create_peer

log = logging.getLogger("anchor.viewer")

# Status messages waiting for a slow viewer; when full the newest is dropped (the next
# one supersedes it a second later).
VIEWER_OUTBOX = 32
STATUS_PERIOD_S = 1.0
MAX_SIGNALING_MESSAGES = 200  # offer + trickled candidates of one viewer
# Why a viewer is dropped (the module docstring); the close code of its signaling.
MEDIA_LOST = "media_lost"
STALLED = "stalled"
DROP_CODE = 1011
# How long the drop notice may take to reach the socket before the close frame follows.
NOTICE_S = 2.0


async def _status_loop(session: Session, outbox: Outbox) -> None:
    while True:
        outbox.send(session.status())
        await asyncio.sleep(STATUS_PERIOD_S)


async def _media_lost(peer: RTCPeerConnection) -> tuple[str, bool]:
    """Wait until ``peer``'s connection state is failed or closed; returns that state and
    whether the connection had been up before."""
    lost = asyncio.Event()
    connected = False

    def changed() -> None:
        nonlocal connected
        connected = connected or peer.connectionState == "connected"
        if peer.connectionState in ("failed", "closed"):
            lost.set()

    peer.on("connectionstatechange", changed)
    try:
        await lost.wait()
    finally:
        peer.remove_listener("connectionstatechange", changed)
    return peer.connectionState, connected


async def _unanswered_ping(
    connection: ServerConnection, interval_s: float, timeout_s: float
) -> None:
    """Ping every ``interval_s``; return once a pong has not come back within ``timeout_s``
    (ConnectionClosed once the connection is closed)."""
    while True:
        await asyncio.sleep(interval_s)
        pong = await connection.ping()
        try:
            await asyncio.wait_for(pong, timeout_s)
        except TimeoutError:
            return


async def _drop_reason(
    connection: ServerConnection, peer: RTCPeerConnection, config: ServerConfig
) -> tuple[str, str, str]:
    """Wait until this viewer must be dropped: (reason, message, close reason)."""
    media = asyncio.create_task(_media_lost(peer), name="viewer-media")
    pings = asyncio.create_task(
        _unanswered_ping(connection, config.keepalive_interval_s, config.keepalive_timeout_s),
        name="viewer-keepalive",
    )
    try:
        await asyncio.wait((media, pings), return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(task for task in (media, pings) if not task.done())
    if media.done() and not media.cancelled():
        state, connected = media.result()
        if connected:
            message = (
                f"the WebRTC connection {state}: the viewer answered no ICE consent check for "
                "about 30 s (it stopped reading its media: overloaded or gone) or closed its peer"
            )
        else:
            message = (
                f"the WebRTC connection {state} before it was up: ICE or DTLS found no path "
                "between server and viewer (server.ice_servers: a STUN or TURN server?)"
            )
        return MEDIA_LOST, message, f"{MEDIA_LOST}: WebRTC connection {state}"
    pings.result()  # ConnectionClosed: nothing left to tell
    timeout = config.keepalive_timeout_s
    message = f"no answer to a keepalive ping within {timeout:g} s: the viewer stalled"
    return STALLED, message, f"{STALLED}: no pong within {timeout:g} s"


async def _serve_status(
    connection: ServerConnection,
    peer: RTCPeerConnection,
    session: Session,
    outbox: Outbox,
    config: ServerConfig,
    metrics: ServerMetrics,
) -> None:
    """Send the session's status every second until the viewer must be dropped; then tell
    it why (the last message) and close its signaling with ``DROP_CODE`` and the reason."""
    status = asyncio.create_task(_status_loop(session, outbox), name=f"viewer-status:{session.id}")
    try:
        reason, message, close_reason = await _drop_reason(connection, peer, config)
    except ConnectionClosed:
        return
    finally:
        await cancel_and_wait([status])
    log.warning("session %s: dropping a viewer: %s", session.id, message)
    metrics.dropped_viewers.labels(reason).inc()
    outbox.send({"type": "error", "fatal": True, "reason": reason, "message": message})
    await outbox.drained(NOTICE_S)
    await connection.close(DROP_CODE, close_reason)


async def run_viewer(
    connection: ServerConnection,
    session: Session,
    config: ServerSettings,
    metrics: ServerMetrics,
    first: str | None = None,
) -> None:
    """Negotiate one viewer's peer connection and keep it until either side leaves.

    first: the connection's first message (its offer), already received (server.door)."""
    peer = create_peer(config.server)
    outbox = Outbox(VIEWER_OUTBOX, drop_when_full=True)
    session.viewers.add(outbox)
    metrics.viewers.labels(session.id).set(len(session.viewers))
    sender = asyncio.create_task(send_loop(connection, outbox), name=f"viewer-send:{session.id}")
    # The keepalive of this connection is _serve_status's, which tells the viewer before
    # closing; websockets' own pings go on but never close it.
    connection.ping_timeout = None
    watch = asyncio.create_task(
        _serve_status(connection, peer, session, outbox, config.server, metrics),
        name=f"viewer-watch:{session.id}",
    )
    log.info("session %s: viewer connected (%d viewers)", session.id, len(session.viewers))

    async def answer(raw: str) -> None:
        try:
            reply = await _signal(peer, session, loads_bounded(raw))
        except ProtocolError as err:
            metrics.rejected_messages.labels("signaling").inc()
            outbox.send(err.to_message())
            return
        if reply is not None:
            outbox.send(reply)

    try:
        messages = 0
        if first is not None:
            messages += 1
            await answer(first)
        async for raw in connection:
            messages += 1
            if messages > MAX_SIGNALING_MESSAGES or isinstance(raw, bytes):
                metrics.rejected_messages.labels("signaling").inc()
                await connection.close(1008, "unexpected signaling traffic")
                break
            await answer(raw)
    finally:
        session.viewers.discard(outbox)
        metrics.viewers.labels(session.id).set(len(session.viewers))
        await cancel_and_wait([watch])
        outbox.close()
        try:
            await asyncio.wait_for(sender, timeout=2.0)
        except TimeoutError:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        await peer.close()
        log.info("session %s: viewer left (%d viewers)", session.id, len(session.viewers))


def _field(message: dict[str, Any], name: str, kinds: Any, optional: bool = False) -> Any:
    value = message.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        raise ProtocolError(f"{name} must be {names}, got {type(value).__name__}", field=name)
    return value


async def _signal(peer: Any, session: Session, message: Any) -> dict[str, Any] | None:
    """The reply to one signaling message (None: no reply); ProtocolError naming the field."""
    if not isinstance(message, dict):
        raise ProtocolError("a signaling message must be a JSON object", field="message")
    kind = message.get("type")
    if kind == "offer":
        sdp = _field(message, "sdp", (str,))
        if peer.remoteDescription is not None:
            raise ProtocolError("offer: this connection already negotiated", field="type")
        try:
            await peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as err:
            # aiortc's SDP parser raises assorted built-in errors on malformed input.
            raise ProtocolError(f"offer: unusable SDP ({err!r})", field="sdp") from err
        kinds = {transceiver.kind for transceiver in peer.getTransceivers()}
        if not kinds & {"video", "audio"}:
            raise ProtocolError("offer: no video or audio section to answer", field="sdp")
        if "video" in kinds:
            peer.addTrack(session.relay.subscribe(session.video, buffered=False))
        if "audio" in kinds:
            peer.addTrack(session.relay.subscribe(session.audio, buffered=False))
        answer = await peer.createAnswer()
        await peer.setLocalDescription(answer)
        return {"type": "answer", "sdp": peer.localDescription.sdp}
    if kind == "candidate":
        text = _field(message, "candidate", (str,), optional=True)
        if not text:
            return None  # end of candidates: aiortc needs no signal for it
        mid = _field(message, "sdpMid", (str,), optional=True)
        line = _field(message, "sdpMLineIndex", (int,), optional=True)
        try:
            candidate = candidate_from_sdp(text.removeprefix("candidate:"))
        except (ValueError, IndexError, AssertionError) as err:  # aiortc asserts the bit count
            raise ProtocolError(f"unparsable ICE candidate ({err!r})", field="candidate") from err
        candidate.sdpMid, candidate.sdpMLineIndex = mid, line
        if peer.remoteDescription is None:
            raise ProtocolError("candidate: send the offer first", field="type")
        try:
            await peer.addIceCandidate(candidate)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise ProtocolError(f"candidate not applicable ({err!r})", field="candidate") from err
        return None
    raise ProtocolError(f"type must be offer or candidate, got {kind!r}", field="type")
