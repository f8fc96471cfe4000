"""An aiortc viewer over ``WS /sessions/{id}/view``: what the tests and ``anchor bench e2e``
use to receive a session's video like a browser would (real peer, real codec)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake

from clients.live_edge import LiveEdgeTrack
from clients.producer_client import refusal
from model.errors import AnchorError
from server.media import read_seq
from server.tasks import cancel_and_wait
from server.webrtc import enable_loopback_candidates

# Peak (PCM16 units) above which a decoded audio frame counts as sound rather than silence
# plus codec noise.
AUDIBLE_PEAK = 1000


def frame_seq(frame: Any) -> int | None:
    """The seq barcode of a decoded video frame, read on its luma plane when it is yuv420p
    (what aiortc's decoders give): a copy of the planes, no colour conversion. swscale
    releases the GIL, and with many receivers' decoder threads running, the event loop then
    waited milliseconds per frame to get it back (3.5 ms a frame with 32 viewers)."""
    if frame.format.name == "yuv420p":
        return read_seq(frame.to_ndarray()[: frame.height])
    return read_seq(frame.to_ndarray(format="rgb24"))


@dataclass(slots=True)
class ReceivedFrame:
    received_at: float  # time.monotonic()
    pts: int  # 90 kHz
    seq: int | None  # read from the seq barcode, None when the frame is unstamped


@dataclass
class ViewerProbe:
    """Connects, negotiates and records every decoded video frame."""

    url: str
    audio: bool = False
    frames: list[ReceivedFrame] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    audio_frames: int = 0
    # Decoded audio frames carrying sound (peak above AUDIBLE_PEAK), not the silence a live
    # track sends while nothing is due.
    audible_audio_frames: int = 0
    peer: RTCPeerConnection | None = None
    # The received video as read (None before the track arrives); its skipped and stale
    # counts say how many frames the live edge dropped.
    live_edge: LiveEdgeTrack | None = None
    _socket: ClientConnection | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _frame_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self, limit_s: float = 60.0) -> None:
        enable_loopback_candidates()
        self.peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peer.addTransceiver("video", direction="recvonly")
        if self.audio:
            self.peer.addTransceiver("audio", direction="recvonly")
        self.peer.on("track", self._on_track)
        try:
            self._socket = await connect(self.url, compression=None)
        except InvalidHandshake as err:
            raise AnchorError(f"{self.url.split('?')[0]}: {refusal(err)}") from err
        await self.peer.setLocalDescription(await self.peer.createOffer())
        offer = {"type": "offer", "sdp": self.peer.localDescription.sdp}
        await self._socket.send(json.dumps(offer))
        answer = await asyncio.wait_for(self._wait_answer(), limit_s)
        await self.peer.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        self._tasks.append(asyncio.create_task(self._read_messages(), name="viewer-messages"))

    async def _wait_answer(self) -> dict[str, Any]:
        assert self._socket is not None
        async for raw in self._socket:
            message = json.loads(raw)
            if message.get("type") == "answer":
                return message
            self.messages.append(message)
        raise ConnectionError("signaling closed before the answer")

    async def _read_messages(self) -> None:
        assert self._socket is not None
        with contextlib.suppress(Exception):
            async for raw in self._socket:
                self.messages.append(json.loads(raw))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            # Latest frame wins: after a stall this viewer resumes at the live edge.
            self.live_edge = LiveEdgeTrack(track)
            reader = self._read_video(self.live_edge)
        else:
            reader = self._read_audio(track)
        self._tasks.append(asyncio.create_task(reader, name=f"viewer-{track.kind}"))

    async def _read_video(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                seq = frame_seq(frame)
                self.frames.append(ReceivedFrame(time.monotonic(), int(frame.pts), seq))
                self._frame_event.set()

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                self.audio_frames += 1
                if np.abs(frame.to_ndarray()).max() > AUDIBLE_PEAK:
                    self.audible_audio_frames += 1

    async def wait_frames(self, count: int, limit_s: float) -> None:
        """Wait until at least ``count`` frames were decoded."""

        async def enough() -> None:
            while len(self.frames) < count:
                self._frame_event.clear()
                await self._frame_event.wait()

        await asyncio.wait_for(enough(), limit_s)

    async def wait_seq(self, seq: int, limit_s: float) -> None:
        """Wait until a frame stamped with ``seq`` (or later) was decoded."""

        async def seen() -> None:
            while not any(f.seq is not None and f.seq >= seq for f in self.frames):
                self._frame_event.clear()
                await self._frame_event.wait()

        await asyncio.wait_for(seen(), limit_s)

    @property
    def close_code(self) -> int | None:
        """Close code of the signaling socket (None: still open, or never opened)."""
        return self._socket.close_code if self._socket is not None else None

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self.peer is not None:
            await self.peer.close()
        await cancel_and_wait(self._tasks)
        if self.live_edge is not None:
            await self.live_edge.aclose()


@dataclass
class JanusViewerProbe(ViewerProbe):
    """A ViewerProbe that receives a session through a Janus VideoRoom instead of the server.

    ``url`` is the Janus WebSocket API; the feed is the publisher named ``display`` (the
    session id) in ``room``.
    """

    room: int = 1234
    display: str = ""
    pin: str | None = None
    subscriber: Any = None

    async def connect(self, limit_s: float = 60.0) -> None:
        from server.janus import VideoRoomSubscriber

        def peer() -> RTCPeerConnection:
            enable_loopback_candidates()
            return RTCPeerConnection(RTCConfiguration(iceServers=[]))

        self.subscriber = VideoRoomSubscriber(
            self.url, self.room, peer, self._on_track, pin=self.pin
        )
        await self.subscriber.start(display=self.display, limit_s=limit_s)
        self.peer = self.subscriber.peer

    async def close(self) -> None:
        if self.subscriber is not None:
            await self.subscriber.close()
        await super().close()
