"""Speech sources of ``anchor bot``: a WAV file, PCM over a WebSocket, a WebRTC peer.

WebSocket protocol (``ws://HOST:PORT/``, what a TTS/agent pushes): binary messages are
16 kHz PCM16 LE mono samples, queued in order; text messages are JSON controls
``{"type": "clear"}`` (barge-in) and ``{"type": "end"}`` (no more speech; the bot finishes).

WebRTC (``ws://HOST:PORT/`` is the signaling endpoint): the peer sends
``{"type": "offer", "sdp": ...}`` with an audio track, the bot answers
``{"type": "answer", "sdp": ...}`` (candidates gathered, loopback included) and receives
the track like a conference participant; ``clear`` and ``end`` work as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve

from model.audio2motion.audio import SAMPLE_RATE, read_wav

if TYPE_CHECKING:
    from clients.bot import AnchorBot

log = logging.getLogger("anchor.bot")


class WavSource:
    """The whole file is queued at once; the bot speaks it in real time, then finishes."""

    def __init__(self, path: str | Path) -> None:
        self.audio = read_wav(path, SAMPLE_RATE)
        self.finished = asyncio.Event()

    async def run(self, bot: AnchorBot) -> None:
        bot.buffer.push(self.audio)
        self.finished.set()


class _ControlSocket(ABC):
    """Shared WebSocket server plumbing: one port, any number of connections."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.finished = asyncio.Event()
        self.listening = asyncio.Event()

    async def run(self, bot: AnchorBot) -> None:
        async with serve(
            lambda connection: self._serve(connection, bot),
            self.host,
            self.port,
            compression=None,
            max_size=1 << 22,
        ) as server:
            self.port = server.sockets[0].getsockname()[1] if self.port == 0 else self.port
            self.listening.set()
            log.info("bot: listening on ws://%s:%d/", self.host, self.port)
            await asyncio.Future()  # until the bot cancels the source

    def _control(self, bot: AnchorBot, text: str) -> dict[str, Any] | None:
        message = json.loads(text)
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "clear":
            bot.request_clear()
        elif kind == "end":
            self.finished.set()
        else:
            return message if isinstance(message, dict) else None
        return None

    @abstractmethod
    async def _serve(self, connection: ServerConnection, bot: AnchorBot) -> None:
        """Serve one connection with the source's own protocol."""


class WebSocketPcmSource(_ControlSocket):
    """PCM16 speech pushed over a WebSocket (see the module docstring)."""

    async def _serve(self, connection: ServerConnection, bot: AnchorBot) -> None:
        with contextlib.suppress(Exception):
            async for message in connection:
                if isinstance(message, bytes):
                    bot.buffer.push(np.frombuffer(message[: len(message) // 2 * 2], dtype="<i2"))
                else:
                    self._control(bot, message)


class WebRtcSource(_ControlSocket):
    """Answers a peer's offer and speaks what its audio track carries."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.peers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self, bot: AnchorBot) -> None:
        try:
            await super().run(bot)
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for peer in self.peers:
                await peer.close()

    async def _serve(self, connection: ServerConnection, bot: AnchorBot) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from server.webrtc import enable_loopback_candidates

        enable_loopback_candidates()
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(peer)

        @peer.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self._tasks.append(asyncio.create_task(self._receive(track, bot)))

        with contextlib.suppress(Exception):
            async for message in connection:
                if isinstance(message, bytes):
                    continue
                offer = self._control(bot, message)
                if offer is None or offer.get("type") != "offer":
                    continue
                await peer.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
                await peer.setLocalDescription(await peer.createAnswer())
                answer = {"type": "answer", "sdp": peer.localDescription.sdp}
                await connection.send(json.dumps(answer))

    async def _receive(self, track: Any, bot: AnchorBot) -> None:
        import av
        from aiortc.mediastreams import MediaStreamError

        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if self.finished.is_set():
                    return  # the speech ended: the rest of the call is not for the avatar
                frame.pts = None  # resample by content: RTP timestamps may jump
                for converted in resampler.resample(frame):
                    bot.buffer.push(converted.to_ndarray().reshape(-1).astype(np.int16))
