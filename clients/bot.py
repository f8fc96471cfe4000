"""``anchor bot``: a conferencing participant that speaks with the avatar's face.

Speech arrives from a source (a WAV file, a WebRTC peer's audio track, or PCM pushed over a
WebSocket by a TTS/agent) into a ``SpeechBuffer``. The bot ticks at the session fps: each
tick takes the next frame's worth of 16 kHz audio (silence when the buffer is empty, so
the avatar idles and breathes between utterances), turns it into motion
(``model.audio2motion``) and sends the audio slice and the motion frame with the same pts,
so the server plays them in step. Never more frames in flight than the server's credits.

``clear`` (barge-in): the queued speech is dropped, the generator forgets what it heard,
the server drops its queued audio and motion; the following frames fade to idle within
the generator's ``interrupt_fade_frames`` (3), less than one sampler window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from clients.producer import ProducerLink
from model.audio2motion.audio import SAMPLE_RATE, as_float, frame_boundary, to_pcm16
from model.audio2motion.interface import AudioToMotion
from model.errors import AnchorError
from model.motion.frame import MotionFrame

log = logging.getLogger("anchor.bot")

FAR_BEHIND_FRAMES = 4
# Speech waiting to be spoken (seconds): a TTS may push far ahead of real time; beyond this
# the push is refused rather than buffering without bound.
MAX_QUEUED_SECONDS = 600.0


class SpeechBuffer:
    """16 kHz float32 speech queued by a source, taken frame by frame by the bot."""

    def __init__(self, limit_seconds: float = MAX_QUEUED_SECONDS) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._queued = 0
        self._limit = round(limit_seconds * SAMPLE_RATE)
        self.received = 0  # samples ever pushed
        self.first_speech_at: float | None = None  # time.monotonic() of the first push

    def push(self, samples: np.ndarray) -> None:
        audio = as_float(samples)
        if self._queued + len(audio) > self._limit:
            raise AnchorError(f"bot: more than {MAX_QUEUED_SECONDS:g} s of speech queued")
        if len(audio):
            if self.first_speech_at is None:
                self.first_speech_at = time.monotonic()
            self._chunks.append(audio)
            self._queued += len(audio)
            self.received += len(audio)

    @property
    def queued(self) -> int:
        return self._queued

    def take(self, count: int) -> np.ndarray:
        """(count,) float32: the oldest queued samples, zero-padded when not enough."""
        out = np.zeros(count, dtype=np.float32)
        filled = 0
        while self._chunks and filled < count:
            chunk = self._chunks[0]
            take = min(count - filled, len(chunk))
            out[filled : filled + take] = chunk[:take]
            filled += take
            if take == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[take:]
        self._queued -= filled
        return out

    def clear(self) -> int:
        """Drop everything queued; returns the samples dropped."""
        dropped = self._queued
        self._chunks.clear()
        self._queued = 0
        return dropped


@dataclass(slots=True)
class SentFrame:
    """What the bot sent for one tick (kept for tests and the benchmark)."""

    seq: int
    jaw: float
    speech: bool  # the tick's audio was not all silence
    sent_at: float  # time.monotonic()
    after_clear: int  # clears requested before this frame was produced


@dataclass
class BotStats:
    frames: list[SentFrame] = field(default_factory=list)
    clears: int = 0
    dropped_samples: int = 0
    ended: dict[str, Any] | None = None


class Source(Protocol):
    """Feeds a ``SpeechBuffer``; ``finished`` is set when no more speech will come."""

    finished: asyncio.Event

    async def run(self, bot: AnchorBot) -> None: ...


class AnchorBot:
    """Speech in, motion + audio out to one session (see the module docstring)."""

    def __init__(
        self,
        producer_url: str,
        generator: AudioToMotion,
        fps: float = 30.0,
        identity: str = "default",
        tail_seconds: float = 0.5,
    ) -> None:
        if generator.sample_rate != SAMPLE_RATE:
            raise AnchorError(f"bot: the generator must take {SAMPLE_RATE} Hz audio")
        self.url = producer_url
        self.generator = generator
        self.fps = fps
        self.identity = identity
        self.tail_frames = round(tail_seconds * fps)
        self.buffer = SpeechBuffer()
        self.stats = BotStats()
        self.link: ProducerLink | None = None
        self.on_frame: Callable[[SentFrame], None] | None = None
        self._tick = 0  # audio frames taken from the buffer
        # Audio slices (int16) of ticks whose motion the generator has not produced yet.
        self._audio: deque[tuple[int, np.ndarray]] = deque()
        self._clear_requested = 0
        self._clears_done = 0

    def request_clear(self) -> None:
        """Barge-in from a source (any thread-free caller on the event loop)."""
        self._clear_requested += 1

    async def run(self, source: Source) -> BotStats:
        """Connect, start, speak until the source finished and the speech was spoken."""
        async with ProducerLink(self.url) as link:
            self.link = link
            await link.start(self.identity)
            feeder = asyncio.create_task(source.run(self), name="bot-source")
            try:
                await self._loop(link, source)
            finally:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
            self.stats.ended = await link.end()
        self.generator.close()
        return self.stats

    async def _loop(self, link: ProducerLink, source: Source) -> None:
        origin = time.monotonic()
        origin_tick = 0
        idle_after_finish = 0
        while True:
            if self._clear_requested > self._clears_done:
                await self._clear(link)
            if source.finished.is_set() and self.buffer.queued == 0:
                idle_after_finish += 1
                if idle_after_finish > self.tail_frames:
                    break
            deadline = origin + (self._tick - origin_tick) / self.fps
            now = time.monotonic()
            if now - deadline > FAR_BEHIND_FRAMES / self.fps:
                origin, origin_tick = now, self._tick  # fell behind: never burst to catch up
            else:
                await asyncio.sleep(max(0.0, deadline - now))
            await self._speak_one_tick(link)
        for frame in self.generator.flush():
            await self._send(link, frame)

    async def _speak_one_tick(self, link: ProducerLink) -> None:
        begin = frame_boundary(self._tick, SAMPLE_RATE, self.fps)
        end = frame_boundary(self._tick + 1, SAMPLE_RATE, self.fps)
        audio = self.buffer.take(end - begin)
        self._audio.append((self._tick, to_pcm16(audio)))
        self._tick += 1
        for frame in self.generator.push(audio):
            await self._send(link, frame)

    async def _send(self, link: ProducerLink, frame: MotionFrame) -> None:
        index = frame.seq - getattr(self.generator, "start_seq", 0)
        samples = np.zeros(0, dtype=np.int16)
        while self._audio and self._audio[0][0] <= index:
            _, samples = self._audio.popleft()
        await link.wait_credit()
        if len(samples):
            start = frame_boundary(index, SAMPLE_RATE, self.fps)
            await link.send_audio(start / SAMPLE_RATE, SAMPLE_RATE, samples)
        await link.send_frame(frame)
        sent = SentFrame(
            frame.seq,
            float(frame.jaw_pose[0]),
            bool(np.any(samples)),
            time.monotonic(),
            self._clears_done,
        )
        self.stats.frames.append(sent)
        if self.on_frame is not None:
            self.on_frame(sent)

    async def _clear(self, link: ProducerLink) -> None:
        self._clears_done = self._clear_requested
        self.stats.clears += 1
        self.stats.dropped_samples += self.buffer.clear()
        self.generator.interrupt()
        # Audio of ticks whose motion is not out yet belongs to the dropped speech.
        self._audio = deque((tick, np.zeros_like(pcm)) for tick, pcm in self._audio)
        await link.clear()
        log.info("barge-in: dropped %.2f s of queued speech", self.stats.dropped_samples / 16000)
