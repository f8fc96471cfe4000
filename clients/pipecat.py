"""``AnchorVideoService``: the Anchor Live avatar as a pipecat video service.

Place it after the TTS:
``Pipeline([..., tts, AnchorVideoService.local(config), transport.output()])``.

Per video frame ``k`` (a tick of the session clock, ``fps`` from the session):
1. the speech of that frame is taken from the queued TTS audio (silence when none is
   queued, so the avatar idles: breathing, blinks, gaze);
2. the audio-to-motion generator (``model.audio2motion``, the built-in one by default)
   turns its 16 kHz copy into one ``MotionFrame``;
3. the motion goes to the Anchor Live session, the speech is kept for frame ``k``;
4. when frame ``k`` comes back it is played out at ``fps`` (a playout buffer of one
   sampler stride absorbs the window bursts) as an ``OutputImageRawFrame`` (RGB), followed
   by frame ``k``'s speech as a ``TTSAudioRawFrame``: the speech is delayed by exactly the
   video's latency, so lips and voice leave the service together.

When the model is slower than ``fps`` the frames it cannot take in time are skipped
(their speech goes out with the next frame): latency stays bounded and the audio whole.
``InterruptionFrame`` drops the queued speech, the not-yet-shown frames and what the
session holds, and the avatar returns to idle; the session stays open. ``EndFrame``
speaks what is queued, flushes the session and closes it; ``CancelFrame`` closes at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from clients.bot import SpeechBuffer
from clients.pipecat_sessions import (
    AvatarSession,
    LocalAvatarSession,
    PcmQueue,
    RemoteAvatarSession,
)
from model.audio2motion.audio import SAMPLE_RATE, frame_boundary, to_pcm16
from model.audio2motion.builtin import BuiltinAudioToMotion
from model.errors import AnchorError
from server.live_rate import RateControl

if TYPE_CHECKING:
    from model.audio2motion.interface import AudioToMotion
    from model.motion.frame import MotionFrame
    from streaming.config import PipelineConfig
    from streaming.pipeline import OutputFrame, PipelineFactory

log = logging.getLogger("anchor.pipecat")

# The metadata key carrying the frame index on the image and audio frames pushed downstream.
SEQ_KEY = "anchor_seq"
# Seconds of frames waiting for the model before live rate control skips some. Skipping
# also slows the filling of sampler windows, so a tight bound costs frame rate and latency:
# with the demo model on a loaded 2-core CPU, 0.25 s gave 4.4 frames/s and 5.4 s from speech
# to its first frame, 1.0 s gave 11.5 frames/s and 3.8 s (the model alone: 12.7 frames/s).
MAX_LAG_S = 1.0
# The session clock resets instead of bursting when it falls this far behind (frames).
FAR_BEHIND_FRAMES = 4


@dataclass
class AvatarStats:
    """Counters of the service (bounded: a bot may run for days), times on
    ``time.monotonic()``.

    first_speech_at / first_speech_seq: the first TTS audio received and the tick it
    started at; interruptions and last_interrupted_at: interruptions handled;
    last_speech_after_interruption: the last speech pushed after one (None when none was);
    skipped: frames live rate control did not render; dropped: idle frames dropped from the
    playout queue to bring latency back down.
    """

    first_speech_at: float | None = None
    first_speech_seq: int | None = None
    interruptions: int = 0
    last_interrupted_at: float | None = None
    last_speech_after_interruption: float | None = None
    skipped: int = 0
    dropped: int = 0


class AnchorVideoService(FrameProcessor):
    """TTS audio in, the avatar's video and the lip-synced speech out (module docstring).

    session: where the motion goes (``local`` / ``remote`` build one); generator: speech
    to motion at 16 kHz in, ``session.fps`` out (None = the built-in generator); max_lag_s:
    how far behind real time the session may fall before frames are skipped.
    """

    def __init__(
        self,
        session: AvatarSession,
        *,
        generator: AudioToMotion | None = None,
        max_lag_s: float = MAX_LAG_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.fps = session.fps
        self.generator = generator or BuiltinAudioToMotion(fps=session.fps)
        if self.generator.sample_rate != SAMPLE_RATE or self.generator.fps != session.fps:
            raise AnchorError(
                f"generator: must take {SAMPLE_RATE} Hz and produce {session.fps} fps "
                f"(the session's), got {self.generator.sample_rate} Hz, {self.generator.fps} fps"
            )
        # Live rate control as the server does it (server.live_rate): the session takes
        # frames in window strides, so a stride of backlog is normal.
        lag_frames = max(1, round(max_lag_s * self.fps))
        self.rate = RateControl(max_backlog=session.jitter_frames + lag_frames)
        self.stats = AvatarStats()
        self._resampler = create_stream_resampler()
        self._speech = SpeechBuffer()  # 16 kHz float32, for the generator
        self._playback: PcmQueue | None = None  # the TTS audio as it came, for the listeners
        self._tick = 0
        self._pending: dict[int, bytes] = {}  # tick -> its speech, until its frame is shown
        self._frames: asyncio.Queue[OutputFrame | BaseException] = asyncio.Queue()
        self._arrived: dict[int, float] = {}  # seq -> when it came back, while queued
        self._shown_from = 0  # frames below this seq were cleared: never shown
        self._ticker: asyncio.Task[None] | None = None
        self._player: asyncio.Task[None] | None = None
        self._opening: asyncio.Task[None] | None = None
        self._started = False
        self._failed = False
        self._closed = False
        self._ending = False
        self._play_origin: float | None = None

    @classmethod
    def local(
        cls, config: PipelineConfig, factory: PipelineFactory | None = None, **kwargs: Any
    ) -> AnchorVideoService:
        """The avatar rendered in this process by the pipeline ``config`` describes."""
        return cls(LocalAvatarSession(config, factory), **kwargs)

    @classmethod
    def remote(
        cls, url: str, token: str | None, fps: float = 30.0, **kwargs: Any
    ) -> AnchorVideoService:
        """The avatar of a server session (``ws://HOST/sessions/ID/motion``, producer token);
        the server's viewers see and hear it, nothing is pushed downstream but the frames
        that came in (the TTS audio is consumed)."""
        return cls(RemoteAvatarSession(url, token, fps), **kwargs)

    @property
    def speaking(self) -> bool:
        """Speech is queued or waiting for its frame to be shown."""
        return self._speech.queued > 0 or bool(self._pending)

    def can_generate_metrics(self) -> bool:
        return True

    # pipecat frames --------------------------------------------------------------------

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self._start()
            await self.push_frame(frame, direction)
        elif isinstance(frame, TTSAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            await self._queue_speech(frame)
        elif isinstance(frame, InterruptionFrame):
            await self._interrupt()
            await self.push_frame(frame, direction)
        elif isinstance(frame, EndFrame):
            await self._finish()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._stop()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _start(self) -> None:
        # Loading a model takes longer than pipecat waits for the StartFrame to go through,
        # so the session opens in the background; speech arriving meanwhile is queued.
        self._opening = self.create_task(self._open(), "anchor-open")

    async def _open(self) -> None:
        try:
            await self.session.start(self._deliver, self._frames.put_nowait)
        except Exception as error:
            self._failed = True
            self._speech.clear()
            await self.push_error(
                f"anchor: cannot start the avatar session: {error}",
                exception=error,
                force_treat_as_permanent=True,
            )
            return
        self._started = True
        self._ticker = self.create_task(self._run_ticker(), "anchor-ticker")
        self._player = self.create_task(self._run_player(), "anchor-player")

    async def _queue_speech(self, frame: TTSAudioRawFrame) -> None:
        if self._failed:
            return  # no session (its start failed and was reported): nobody to speak
        if frame.num_channels != 1:
            pcm = np.frombuffer(frame.audio, dtype="<i2").reshape(-1, frame.num_channels)
            audio = pcm.mean(axis=1).astype("<i2").tobytes()
        else:
            audio = frame.audio
        if self._playback is None or self._playback.sample_rate != frame.sample_rate:
            if self._playback is not None and self._playback.queued:
                await self.push_error(
                    f"anchor: TTSAudioRawFrame.sample_rate changed from "
                    f"{self._playback.sample_rate} to {frame.sample_rate} within an utterance"
                )
                return
            self._playback = PcmQueue(frame.sample_rate)
            await self._resampler.reset()
        speech = await self._resampler.resample(audio, frame.sample_rate, SAMPLE_RATE)
        if self._playback.queued == 0 and self._speech.queued == 0:
            await self.start_ttfb_metrics()
        if self.stats.first_speech_at is None:
            self.stats.first_speech_at = time.monotonic()
            self.stats.first_speech_seq = self._tick
        try:
            self._speech.push(np.frombuffer(speech, dtype="<i2"))
        except AnchorError as error:  # far more speech queued than anyone will wait for
            await self.push_error(f"anchor: TTSAudioRawFrame refused: {error}", error)
            return
        if self.session.renders_here:  # the service plays the speech itself
            self._playback.push(audio)

    def _deliver(self, frame: OutputFrame) -> None:
        if frame.seq >= self._shown_from:
            self._arrived[frame.seq] = time.monotonic()
            self._frames.put_nowait(frame)

    async def _interrupt(self) -> None:
        """Barge-in: everything queued goes; frames already in flight are never shown."""
        self.stats.interruptions += 1
        self.stats.last_interrupted_at = time.monotonic()
        self.stats.last_speech_after_interruption = None
        self._speech.clear()
        if self._playback is not None:
            self._playback.clear()
        await self._resampler.reset()
        self._pending.clear()
        self.generator.interrupt()
        self._shown_from = self._tick
        while not self._frames.empty():
            item = self._frames.get_nowait()
            if isinstance(item, BaseException):
                self._frames.put_nowait(item)
                break
        if self._started:
            await self.session.clear()
        self._play_origin = None
        self._arrived.clear()

    # the session clock ------------------------------------------------------------------

    async def _run_ticker(self) -> None:
        origin, origin_tick = time.monotonic(), self._tick
        while not (self._ending and self._speech.queued == 0):
            deadline = origin + (self._tick - origin_tick) / self.fps
            now = time.monotonic()
            if now - deadline > FAR_BEHIND_FRAMES / self.fps:
                origin, origin_tick = now, self._tick  # never burst to catch up
            else:
                await asyncio.sleep(max(0.0, deadline - now))
            await self._speak_one_tick()
        for motion in self.generator.flush():
            await self._submit(motion)

    async def _speak_one_tick(self) -> None:
        begin = frame_boundary(self._tick, SAMPLE_RATE, self.fps)
        end = frame_boundary(self._tick + 1, SAMPLE_RATE, self.fps)
        speaking = self._speech.queued > 0
        audio = self._speech.take(end - begin)
        if speaking and not self.session.renders_here:
            # A server plays 16 kHz speech (server.audio_sample_rate) in step with the motion.
            self._pending[self._tick] = to_pcm16(audio).tobytes()
        elif speaking and self._playback is not None:
            rate = self._playback.sample_rate
            count = frame_boundary(self._tick + 1, rate, self.fps)
            count -= frame_boundary(self._tick, rate, self.fps)
            self._pending[self._tick] = self._playback.take(count)
        self._tick += 1
        for motion in self.generator.push(audio):
            await self._submit(motion)

    async def _submit(self, motion: MotionFrame) -> None:
        if motion.seq < self._shown_from:
            return  # produced from speech an interruption dropped
        pcm = b""
        if self.session.renders_here:
            if not self.rate.admit(self.session.backlog()):
                self.stats.skipped += 1  # its speech still goes out at its frame's slot
                return
        else:  # the server plays the speech: it travels with the motion
            ticks = sorted(tick for tick in self._pending if tick <= motion.seq)
            pcm = b"".join(self._pending.pop(tick) for tick in ticks)
        try:
            await self.session.submit(motion, pcm, SAMPLE_RATE)
        except Exception as error:
            await self.push_error(f"anchor: the avatar session refused a frame: {error}", error)

    # playout --------------------------------------------------------------------------

    async def _run_player(self) -> None:
        while True:
            item = await self._frames.get()
            if item is _END:
                await self._speak_until(None)
                return
            if isinstance(item, BaseException):
                await self.push_error(
                    f"anchor: the avatar pipeline failed: {item}",
                    force_treat_as_permanent=True,
                )
                return
            waited = time.monotonic() - self._arrived.pop(item.seq, time.monotonic())
            if not self._pending and waited > (self.session.jitter_frames + 2) / self.fps:
                # Idle and queued longer than a burst: drop it so latency comes back down
                # (while speaking, all speech plays, so the video keeps the speech's pace).
                self.stats.dropped += 1
                self._play_origin = None
                continue
            await self._speak_until(item.seq)
            await self._wait_for_slot(item.seq)
            if item.seq >= self._shown_from:
                await self._show(item)
                await self._speak(item.seq)

    async def _speak_until(self, seq: int | None) -> None:
        """The speech of the skipped ticks before ``seq`` (all, when None), each at its slot."""
        for tick in sorted(self._pending):
            if seq is not None and tick >= seq:
                return
            await self._wait_for_slot(tick)
            await self._speak(tick)

    async def _wait_for_slot(self, seq: int) -> None:
        """Until frame ``seq``'s slot: one sampler stride (the playout buffer) after the
        frames' arrival, rescheduled when a frame comes far later or earlier than that."""
        now = time.monotonic()
        buffer_s = self.session.jitter_frames / self.fps
        due = None if self._play_origin is None else self._play_origin + seq / self.fps
        if due is None or now - due > FAR_BEHIND_FRAMES / self.fps or due - now > buffer_s:
            self._play_origin = now + buffer_s - seq / self.fps
            due = now + buffer_s
        await asyncio.sleep(max(0.0, due - now))

    async def _show(self, frame: OutputFrame) -> None:
        height, width = frame.image.shape[:2]
        image = OutputImageRawFrame(
            image=np.ascontiguousarray(frame.image).tobytes(), size=(width, height), format="RGB"
        )
        image.pts = self.get_clock().get_time()
        image.metadata[SEQ_KEY] = frame.seq
        await self.push_frame(image)

    async def _speak(self, tick: int) -> None:
        """Push tick's speech (if it had any) downstream, right after its frame's slot."""
        speech = self._pending.pop(tick, None)
        if speech is None or self._playback is None or tick < self._shown_from:
            return
        audio = TTSAudioRawFrame(speech, self._playback.sample_rate, 1)
        audio.pts = self.get_clock().get_time()
        audio.metadata[SEQ_KEY] = tick
        await self.stop_ttfb_metrics()
        await self.push_frame(audio)
        if self.stats.interruptions:
            self.stats.last_speech_after_interruption = time.monotonic()

    # shutdown -------------------------------------------------------------------------

    async def _finish(self) -> None:
        """EndFrame: speak what is queued, flush the session, show the tail, close."""
        if self._opening is not None:
            await self._opening
        if not self._started:
            return
        self._ending = True
        try:
            if self._ticker is not None:
                await self._ticker
            await self.session.end()
            self._frames.put_nowait(_END)
            if self._player is not None:
                await self._player
        except Exception as error:
            await self.push_error(f"anchor: the avatar session did not end cleanly: {error}", error)
        await self._stop()

    async def _stop(self) -> None:
        for task in (self._opening, self._ticker, self._player):
            if task is not None and not task.done():
                await self.cancel_task(task)
        self._opening = self._ticker = self._player = None
        self._started = False
        if not self._closed:  # close is safe on a session that never opened
            self._closed = True
            await self.session.close()
        self.generator.close()


class _EndMarker(Exception):
    """Put in the frame queue after the session's last frame."""


_END: Any = _EndMarker()
