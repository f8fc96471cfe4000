"""The viewer connection: ``WS /sessions/{id}/view`` carries WebRTC signaling.

Viewer -> server: ``{"type": "offer", "sdp": ...}`` (recvonly video and optionally audio),
``{"type": "candidate", "candidate": "candidate:...", "sdpMid": ..., "sdpMLineIndex": ...}``
(trickled ICE; an empty candidate ends gathering). Server -> viewer: ``answer`` (the SDP
carries the server's candidates; aiortc gathers before answering), ``status`` once a second
(committed fps, latency, seq on screen), ``ended`` and ``error``.

Media: MediaRelay proxies of the session's sources, unbuffered, so this viewer joining,
leaving or stalling never touches the producer or the other viewers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from websockets.asyncio.server import ServerConnection

from server.config import ServerSettings
from server.metrics import ServerMetrics
from server.outbox import Outbox
from server.producer import send_loop
from server.protocol import ProtocolError, loads_bounded
from server.session import Session
from server.webrtc import create_peer

log = logging.getLogger("anchor.viewer")

# Status messages waiting for a slow viewer; when full the newest is dropped (the next
# one supersedes it a second later).
VIEWER_OUTBOX = 32
STATUS_PERIOD_S = 1.0
MAX_SIGNALING_MESSAGES = 200  # offer + trickled candidates of one viewer


async def _status_loop(session: Session, outbox: Outbox) -> None:
    while True:
        outbox.send(session.status())
        await asyncio.sleep(STATUS_PERIOD_S)


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
    status = asyncio.create_task(_status_loop(session, outbox), name=f"viewer-status:{session.id}")
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
        status.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await status
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
