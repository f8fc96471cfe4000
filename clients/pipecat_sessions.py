"""Where ``clients.pipecat.AnchorVideoService`` sends its motion: an Anchor Live session run
in this process (the local pipeline) or on a server (the producer protocol).

Both sessions take, per video frame, one ``MotionFrame`` and the PCM16 speech that plays
with it. The local session hands the committed frames back to the service; the remote one
sends motion and audio to ``WS /sessions/{id}/motion`` and the server shows them, in step,
to its own viewers (nothing comes back to the pipecat pipeline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from clients.producer import ProducerLink, with_token
from model.errors import AnchorError
from streaming.pipeline import OutputFrame, stream_format

if TYPE_CHECKING:
    from model.motion.frame import MotionFrame
    from streaming.config import PipelineConfig
    from streaming.pipeline import PipelineFactory, SessionPipeline

log = logging.getLogger("anchor.pipecat")

# Frames the local pipeline gets to flush its tail on ``end`` (seconds).
END_LIMIT_S = 60.0


class PcmQueue:
    """Mono PCM16 at one sample rate, queued in order and taken in exact-sized slices."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._data = bytearray()

    @property
    def queued(self) -> int:
        """Samples queued."""
        return len(self._data) // 2

    def push(self, pcm: bytes) -> None:
        self._data.extend(pcm)

    def take(self, count: int) -> bytes:
        """``count`` samples as PCM16 LE bytes: the oldest queued, zero-padded at the end."""
        size = 2 * count
        out = bytes(self._data[:size])
        del self._data[:size]
        return out + bytes(size - len(out))

    def clear(self) -> int:
        """Drop everything queued; returns the samples dropped."""
        dropped = self.queued
        self._data.clear()
        return dropped


class AvatarSession(Protocol):
    """One avatar session as the service drives it (all methods on the event loop).

    fps: the session's frame rate; jitter_frames: the burst size in which frames come back
    (the playout buffer absorbs it); renders_here: whether frames come back at all.
    """

    fps: float
    jitter_frames: int
    renders_here: bool

    async def start(
        self, deliver: Callable[[OutputFrame], None], fail: Callable[[BaseException], None]
    ) -> None:
        """Open the session; ``deliver`` receives each committed frame in order and ``fail``
        the error that ended the session (both called on the event loop)."""
        ...

    async def submit(self, motion: MotionFrame, pcm: bytes, sample_rate: int) -> None:
        """One frame's motion and the PCM16 mono speech starting at its pts (16 kHz; empty
        for a session that renders here: the service plays the speech itself)."""
        ...

    def backlog(self) -> int:
        """Frames submitted that the session has not started working on (the queue that
        grows when it renders fewer frames per second than arrive)."""
        ...

    async def clear(self) -> None:
        """Barge-in: drop everything submitted and not yet shown; the session goes on."""
        ...

    async def end(self) -> None:
        """Flush: every submitted frame comes out, then the run ends."""
        ...

    async def close(self) -> None:
        """Release the session (after ``end``, or at once on cancellation)."""
        ...


class LocalAvatarSession:
    """An in-process session pipeline (``streaming.factory``): the configured model, run on
    this machine's model worker thread; frames come back as ``OutputFrame`` (H, W, 3) uint8.

    factory: a PipelineFactory to share (None = one is built from ``config`` and closed
    with the session).
    """

    renders_here = True

    def __init__(
        self,
        config: PipelineConfig,
        factory: PipelineFactory | None = None,
        session_id: str = "pipecat",
    ) -> None:
        video = stream_format(config)
        self.config = config
        self.fps = video.fps
        self.jitter_frames = video.window_stride
        self.size = (video.width, video.height)
        self.session_id = session_id
        self._factory = factory
        self._owns_factory = factory is None
        self._pipeline: SessionPipeline | None = None
        self._ended = asyncio.Event()

    async def start(
        self, deliver: Callable[[OutputFrame], None], fail: Callable[[BaseException], None]
    ) -> None:
        if self._factory is None:
            from streaming.factory import load_pipeline_factory

            self._factory = await asyncio.to_thread(load_pipeline_factory, self.config)
        loop = asyncio.get_running_loop()
        session = self

        def on_frames(frames: list[OutputFrame]) -> None:
            for frame in frames:
                deliver(frame)

        class Sink:
            """Pipeline threads -> the event loop."""

            def frames(self, frames: list[OutputFrame]) -> None:
                loop.call_soon_threadsafe(on_frames, frames)

            def ended(self) -> None:
                loop.call_soon_threadsafe(session._ended.set)

            def failed(self, error: BaseException) -> None:
                loop.call_soon_threadsafe(fail, error)

        self._pipeline = self._factory.create(self.session_id, None, Sink())

    def _require(self) -> SessionPipeline:
        if self._pipeline is None:
            raise AnchorError("anchor session: not started")
        return self._pipeline

    async def submit(self, motion: MotionFrame, pcm: bytes, sample_rate: int) -> None:
        self._require().submit(motion)

    def backlog(self) -> int:
        return self._require().queue_depths().get("backlog", 0)

    async def clear(self) -> None:
        self._require().clear()

    async def end(self) -> None:
        self._require().end()
        await asyncio.wait_for(self._ended.wait(), END_LIMIT_S)

    async def close(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            await asyncio.to_thread(pipeline.close)
        if self._owns_factory and self._factory is not None:
            factory, self._factory = self._factory, None
            await asyncio.to_thread(factory.close)


class RemoteAvatarSession:
    """A session on an Anchor Live server (``WS /sessions/{id}/motion``, a producer token):
    motion and speech go there, the server renders and plays them to its viewers.

    A frame is sent only while the server grants a credit; without one it is skipped (the
    live stream keeps its pace) and its speech still goes out, so the audio never gaps.
    """

    renders_here = False
    jitter_frames = 0

    def __init__(
        self, url: str, token: str | None, fps: float = 30.0, identity: str = "default"
    ) -> None:
        self.url = with_token(url, token)
        self.fps = fps
        self.identity = identity
        self.skipped = 0
        self.ended: dict[str, Any] | None = None  # the server's summary of the run
        self._link: ProducerLink | None = None

    async def start(
        self, deliver: Callable[[OutputFrame], None], fail: Callable[[BaseException], None]
    ) -> None:
        link = ProducerLink(self.url)
        await link.__aenter__()
        try:
            await link.start(self.identity)
        except BaseException:
            await link.close()
            raise
        self._link = link

    def _require(self) -> ProducerLink:
        if self._link is None:
            raise AnchorError("anchor session: not started")
        return self._link

    async def submit(self, motion: MotionFrame, pcm: bytes, sample_rate: int) -> None:
        link = self._require()
        if pcm:
            samples = np.frombuffer(pcm, dtype="<i2")
            await link.send_audio(motion.pts, sample_rate, samples)
        if link.in_flight < link.credit_limit:
            await link.send_frame(motion)
        else:
            self.skipped += 1

    def backlog(self) -> int:
        return self._link.in_flight if self._link is not None else 0

    async def clear(self) -> None:
        await self._require().clear()

    async def end(self) -> None:
        self.ended = await self._require().end()

    async def close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                await link.close()
