"""A Janus client over the WebSocket API, and the VideoRoom publisher and subscriber.

Janus (janus.conf.meetecho.com) speaks JSON over a WebSocket with subprotocol
``janus-protocol``. A ``JanusConnection`` owns one socket and one Janus session: it matches
replies to requests by ``transaction``, sends a ``keepalive`` well inside Janus's
``session_timeout``, and routes unsolicited events (``webrtcup``, ``hangup``, ``media``,
``slowlink``, ``detached``) to the handle they name. Requests that fail raise
``JanusError`` naming the request and Janus's code and reason; a socket that closes fails
every request in flight and every later one.

``VideoRoomPublisher`` publishes a session's video and audio tracks into a room (created if
missing when allowed) with one aiortc ``RTCPeerConnection``, so Janus forwards one encoded
stream to any number of subscribers. ``VideoRoomSubscriber`` is the receiving side (tests,
``anchor bench fanout``). aiortc gathers all its candidates before it answers or offers,
so no trickle is needed; Janus puts its own candidates into its SDP (half-trickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from model.errors import AnchorError
from server.tasks import cancel_and_wait

log = logging.getLogger("anchor.janus")

SUBPROTOCOL = "janus-protocol"
VIDEOROOM = "janus.plugin.videoroom"
# Janus ends a session after session_timeout (default 60 s) without a request.
KEEPALIVE_S = 25.0
REQUEST_TIMEOUT_S = 15.0
# Unsolicited events kept per handle for a reader; the oldest go first (a handle's owner
# needs the latest state, not the full history).
EVENT_BACKLOG = 64


class JanusError(AnchorError):
    """Janus refused a request, answered with something unexpected, or went away."""


def _transaction() -> str:
    return secrets.token_hex(8)


class JanusHandle:
    """A plugin handle: ``message`` sends a request to the plugin, ``events`` gets the rest."""

    def __init__(self, connection: JanusConnection, handle_id: int, plugin: str) -> None:
        self.connection = connection
        self.id = handle_id
        self.plugin = plugin
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENT_BACKLOG)
        self.hangup: str | None = None  # the reason, once Janus hung up this handle's peer
        self.webrtc_up = asyncio.Event()

    def _deliver(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind == "webrtcup":
            self.webrtc_up.set()
        elif kind in ("hangup", "detached"):
            self.hangup = str(event.get("reason", kind))
        if self.events.full():
            self.events.get_nowait()
        self.events.put_nowait(event)

    async def message(
        self, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Send ``body`` to the plugin; returns (plugin data, jsep or None).

        Raises JanusError when Janus or the plugin reports an error.
        """
        request: dict[str, Any] = {"janus": "message", "handle_id": self.id, "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        reply = await self.connection.request(request, final=("success", "event"))
        plugindata = reply.get("plugindata", {}).get("data", {})
        if "error" in plugindata or "error_code" in plugindata:
            raise JanusError(
                f"janus {self.plugin} {body.get('request')!r}: error "
                f"{plugindata.get('error_code')}: {plugindata.get('error')}"
            )
        return plugindata, reply.get("jsep")

    async def detach(self) -> None:
        await self.connection.request({"janus": "detach", "handle_id": self.id})
        self.connection.handles.pop(self.id, None)


class JanusConnection:
    """One WebSocket to Janus carrying one Janus session. Use ``async with``."""

    def __init__(
        self,
        url: str,
        api_secret: str | None = None,
        keepalive_s: float = KEEPALIVE_S,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.api_secret = api_secret or None
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_s
        self.session_id: int | None = None
        self.handles: dict[int, JanusHandle] = {}
        self.closed_reason: str | None = None
        self._socket: ClientConnection | None = None
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], tuple[str, ...]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.lost = asyncio.Event()  # set when the socket closed or a keepalive failed

    async def __aenter__(self) -> JanusConnection:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, create the Janus session, start the reader and the keepalive."""
        try:
            self._socket = await asyncio.wait_for(
                connect(self.url, subprotocols=[SUBPROTOCOL], compression=None),  # type: ignore[list-item]
                self.timeout_s,
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as err:
            raise JanusError(
                f"janus: cannot connect to {self.url}: {err or type(err).__name__}"
            ) from err
        self._tasks.append(asyncio.create_task(self._read(), name="janus-reader"))
        try:
            reply = await self.request({"janus": "create"}, session=False)
            self.session_id = int(reply["data"]["id"])
        except BaseException:
            await self.close()
            raise
        self._tasks.append(asyncio.create_task(self._keepalive(), name="janus-keepalive"))
        log.info("janus %s: session %d", self.url, self.session_id)

    async def attach(self, plugin: str) -> JanusHandle:
        reply = await self.request({"janus": "attach", "plugin": plugin})
        handle = JanusHandle(self, int(reply["data"]["id"]), plugin)
        self.handles[handle.id] = handle
        return handle

    async def request(
        self,
        message: dict[str, Any],
        final: tuple[str, ...] = ("success",),
        session: bool = True,
    ) -> dict[str, Any]:
        """Send ``message`` and wait for the reply whose ``janus`` is one of ``final``
        (``ack`` only acknowledges plugin messages, whose answer comes later as ``event``)."""
        if self.closed_reason is not None or self._socket is None:
            raise JanusError(f"janus {self.url}: connection closed ({self.closed_reason})")
        transaction = _transaction()
        request = dict(message, transaction=transaction)
        if session:
            request["session_id"] = self.session_id
        if self.api_secret is not None:
            request["apisecret"] = self.api_secret
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = (future, final)
        try:
            await self._socket.send(json.dumps(request))
            reply = await asyncio.wait_for(future, self.timeout_s)
        except ConnectionClosed as err:
            raise JanusError(f"janus {self.url}: connection closed ({err})") from err
        except TimeoutError as err:
            raise JanusError(
                f"janus {self.url}: no answer to {message['janus']!r} in {self.timeout_s:.0f} s"
            ) from err
        finally:
            self._pending.pop(transaction, None)
        if reply.get("janus") == "error":
            error = reply.get("error", {})
            raise JanusError(
                f"janus {message['janus']!r}: error {error.get('code')}: {error.get('reason')}"
            )
        return reply

    async def _read(self) -> None:
        assert self._socket is not None
        reason = "closed by Janus"
        try:
            async for raw in self._socket:
                self._dispatch(json.loads(raw))
        except ConnectionClosed as err:
            reason = f"closed: {err}"
        except (ValueError, TypeError) as err:
            reason = f"unreadable message: {err}"
        finally:
            self.closed_reason = self.closed_reason or reason
            self.lost.set()
            for future, _ in self._pending.values():
                if not future.done():
                    future.set_exception(
                        JanusError(f"janus {self.url}: connection {self.closed_reason}")
                    )

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("janus")
        pending = self._pending.get(str(message.get("transaction")))
        if pending is not None:
            future, final = pending
            if not future.done() and (kind in final or kind == "error"):
                future.set_result(message)
            return
        if kind == "timeout":
            self.closed_reason = "session timed out in Janus"
            self.lost.set()
            return
        handle = self.handles.get(int(message.get("sender", 0)))
        if handle is not None:
            handle._deliver(message)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive_s)
            try:
                await self.request({"janus": "keepalive"}, final=("ack",))
            except JanusError as err:
                log.error("%s", err)
                self.lost.set()
                return

    async def close(self) -> None:
        """Destroy the Janus session (its handles and peers go with it) and the socket."""
        if self.session_id is not None and self.closed_reason is None:
            with contextlib.suppress(JanusError):
                await self.request({"janus": "destroy"})
        self.closed_reason = self.closed_reason or "closed by us"
        if self._socket is not None:
            await self._socket.close()
        await cancel_and_wait(self._tasks)
        self._tasks.clear()


async def ensure_room(
    handle: JanusHandle, room: int, secret: str | None, create: bool, publishers: int
) -> None:
    """Make sure VideoRoom ``room`` exists, creating it (not permanent) when ``create``."""
    data, _ = await handle.message({"request": "exists", "room": room})
    if data.get("exists"):
        return
    if not create:
        raise JanusError(f"janus videoroom: room {room} does not exist and creating it is off")
    body: dict[str, Any] = {
        "request": "create",
        "room": room,
        "permanent": False,
        "publishers": publishers,
        "audiocodec": "opus",
        "videocodec": "vp8,h264",
    }
    if secret:
        body["secret"] = secret
    await handle.message(body)
    log.info("janus videoroom: created room %d", room)


async def find_publisher(handle: JanusHandle, room: int, display: str) -> int | None:
    """The feed id of the publisher named ``display`` in ``room``, or None."""
    data, _ = await handle.message({"request": "listparticipants", "room": room})
    for participant in data.get("participants", []):
        if participant.get("display") == display and participant.get("publisher"):
            return int(participant["id"])
    return None


class VideoRoomPublisher:
    """Publishes ``tracks`` into a VideoRoom as participant ``display``.

    ``start`` connects, joins, negotiates and waits until Janus reports the media up
    (``webrtcup``); ``lost`` is set when the Janus session or the peer went away;
    ``close`` leaves and tears everything down.
    """

    def __init__(
        self,
        url: str,
        room: int,
        display: str,
        tracks: list[MediaStreamTrack],
        peer_factory: Callable[[], RTCPeerConnection],
        room_secret: str | None = None,
        pin: str | None = None,
        create_room: bool = True,
        api_secret: str | None = None,
    ) -> None:
        self.connection = JanusConnection(url, api_secret=api_secret)
        self.room = room
        self.display = display
        self.tracks = tracks
        self.peer_factory = peer_factory
        self.room_secret = room_secret
        self.pin = pin
        self.create_room = create_room
        self.feed_id: int | None = None
        self.peer: RTCPeerConnection | None = None
        self.handle: JanusHandle | None = None

    async def start(self, limit_s: float = 30.0) -> int:
        """Publish; returns the feed id. Raises JanusError with the step that failed."""
        await self.connection.open()
        handle = self.handle = await self.connection.attach(VIDEOROOM)
        await ensure_room(handle, self.room, self.room_secret, self.create_room, publishers=64)
        join: dict[str, Any] = {
            "request": "join",
            "ptype": "publisher",
            "room": self.room,
            "display": self.display,
        }
        if self.pin:
            join["pin"] = self.pin
        joined, _ = await handle.message(join)
        self.feed_id = int(joined["id"])
        self.peer = self.peer_factory()
        for track in self.tracks:
            self.peer.addTransceiver(track, direction="sendonly")
        await self.peer.setLocalDescription(await self.peer.createOffer())
        offer = {"type": "offer", "sdp": self.peer.localDescription.sdp}
        _, answer = await handle.message({"request": "publish", "display": self.display}, offer)
        if answer is None:
            raise JanusError("janus videoroom 'publish': no SDP answer")
        await self.peer.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        try:
            await asyncio.wait_for(handle.webrtc_up.wait(), limit_s)
        except TimeoutError as err:
            raise JanusError(
                f"janus videoroom: media to {self.connection.url} not up in {limit_s:.0f} s "
                f"(ICE/DTLS failed: {handle.hangup or 'no webrtcup'})"
            ) from err
        log.info("janus room %d: %s publishing as feed %d", self.room, self.display, self.feed_id)
        return self.feed_id

    async def wait_lost(self) -> str:
        """Wait until publishing stops on its own; returns why."""
        assert self.handle is not None
        handle = self.handle
        while handle.hangup is None and not self.connection.lost.is_set():
            getter = asyncio.ensure_future(handle.events.get())
            lost = asyncio.ensure_future(self.connection.lost.wait())
            try:
                await asyncio.wait({getter, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (getter, lost):
                    waiter.cancel()
        return handle.hangup or f"Janus connection {self.connection.closed_reason or 'lost'}"

    async def close(self) -> None:
        if self.handle is not None and self.connection.closed_reason is None:
            with contextlib.suppress(JanusError):
                await self.handle.message({"request": "leave"})
        await self.connection.close()
        if self.peer is not None:
            await self.peer.close()


class VideoRoomSubscriber:
    """Receives feed ``feed_id`` (or the publisher named ``display``) of a VideoRoom.

    ``on_track`` is called with each remote track once the peer negotiates.
    """

    def __init__(
        self,
        url: str,
        room: int,
        peer_factory: Callable[[], RTCPeerConnection],
        on_track: Callable[[MediaStreamTrack], None],
        pin: str | None = None,
    ) -> None:
        self.connection = JanusConnection(url)
        self.room = room
        self.peer_factory = peer_factory
        self.on_track = on_track
        self.pin = pin
        self.peer: RTCPeerConnection | None = None

    async def start(
        self, feed_id: int | None = None, display: str | None = None, limit_s: float = 30.0
    ) -> int:
        """Subscribe; returns the feed id. Waits up to ``limit_s`` for the publisher."""
        await self.connection.open()
        handle = await self.connection.attach(VIDEOROOM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while feed_id is None:
            if display is None:
                raise ValueError("VideoRoomSubscriber.start needs feed_id or display")
            feed_id = await find_publisher(handle, self.room, display)
            if feed_id is None:
                if loop.time() > deadline:
                    raise JanusError(f"janus room {self.room}: no publisher {display!r}")
                await asyncio.sleep(0.2)
        join: dict[str, Any] = {
            "request": "join",
            "ptype": "subscriber",
            "room": self.room,
            "streams": [{"feed": feed_id}],
        }
        if self.pin:
            join["pin"] = self.pin
        _, offer = await handle.message(join)
        if offer is None:
            raise JanusError(f"janus room {self.room}: no SDP offer for feed {feed_id}")
        self.peer = self.peer_factory()
        self.peer.on("track", self.on_track)
        await self.peer.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        await self.peer.setLocalDescription(await self.peer.createAnswer())
        answer = {"type": "answer", "sdp": self.peer.localDescription.sdp}
        await handle.message({"request": "start", "room": self.room}, answer)
        return feed_id

    async def close(self) -> None:
        await self.connection.close()
        if self.peer is not None:
            await self.peer.close()
