"""``anchor bench pipecat``: the avatar service in a real pipecat pipeline.

``Pipeline([AnchorVideoService.local(config.pipeline), AvatarProbe()])``, speech pushed as
a TTS pushes it (24 kHz ``TTSAudioRawFrame``s, faster than real time): idle, an utterance,
a second utterance interrupted half-way, idle, ``EndFrame``. Figures (measured at the
probe, i.e. what the next processor, the transport, receives):

- speech_to_first_frame_ms: first TTS audio in -> first video frame of the speech out;
- av_offset_ms {median, p90}: each speech chunk's arrival minus the arrival of the video
  frame of its first tick (a skipped frame's slot extrapolated from the last shown one);
  positive = the audio is late;
- fps / target_fps: video frames per second out / the session's rate;
- interruption_to_silence_ms: InterruptionFrame queued -> the last speech audio out after
  it (or, when none followed, the interruption passing the probe).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bench.audio2motion import speech_like

if TYPE_CHECKING:
    from pipecat.pipeline.worker import PipelineWorker

    from app.config import AppConfig
    from clients.pipecat import AnchorVideoService

SEQ_KEY = "anchor_seq"  # clients.pipecat.SEQ_KEY (bench stays importable without it)
TTS_RATE = 24000


@dataclass(slots=True)
class Shown:
    seq: int
    at: float  # time.monotonic() at the probe
    pts: int  # the frame's pts (pipecat clock, ns)
    image: bytes
    size: tuple[int, int]


@dataclass(slots=True)
class Heard:
    seq: int  # the first tick of the chunk
    at: float
    samples: int
    sample_rate: int


class AvatarProbe(FrameProcessor):
    """Passes every frame on and records the avatar's output (the test and bench sink):
    images and speech going downstream, interruptions, and errors coming upstream."""

    def __init__(self) -> None:
        super().__init__(name="AvatarProbe")
        self.shown: list[Shown] = []
        self.heard: list[Heard] = []
        self.interruptions: list[float] = []
        self.errors: list[ErrorFrame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        now = time.monotonic()
        if isinstance(frame, OutputImageRawFrame):
            seq = int(frame.metadata[SEQ_KEY])
            self.shown.append(Shown(seq, now, frame.pts or 0, frame.image, frame.size))
        elif isinstance(frame, TTSAudioRawFrame) and SEQ_KEY in frame.metadata:
            seq = int(frame.metadata[SEQ_KEY])
            self.heard.append(Heard(seq, now, frame.num_frames, frame.sample_rate))
        elif isinstance(frame, InterruptionFrame):
            self.interruptions.append(now)
        elif isinstance(frame, ErrorFrame):
            self.errors.append(frame)
        await self.push_frame(frame, direction)

    async def wait(self, predicate: Any, limit_s: float) -> None:
        await wait_until(predicate, limit_s)


async def wait_until(predicate: Any, limit_s: float) -> None:
    """Poll ``predicate()`` every 10 ms; TimeoutError after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the expected avatar output did not come")
        await asyncio.sleep(0.01)


def av_offsets_ms(probe: AvatarProbe, fps: float) -> list[float]:
    """Per speech chunk at the probe: its arrival minus its first tick's video slot (ms)."""
    offsets = []
    for chunk in probe.heard:
        before = [shown for shown in probe.shown if shown.seq <= chunk.seq]
        if not before:
            continue
        anchor = before[-1]
        slot = anchor.at + (chunk.seq - anchor.seq) / fps
        offsets.append(1000.0 * (chunk.at - slot))
    return offsets


def video_fps(probe: AvatarProbe) -> float:
    """Frames per second of the video at the probe (pipecat clock, first to last frame)."""
    if len(probe.shown) < 2:
        return 0.0
    span_s = (probe.shown[-1].pts - probe.shown[0].pts) / 1e9
    return (len(probe.shown) - 1) / span_s if span_s > 0 else 0.0


def tts_frames(
    audio: np.ndarray, sample_rate: int = TTS_RATE, chunk_s: float = 0.02
) -> list[Frame]:
    """(N,) float32 16 kHz speech as a TTS pushes it: PCM16 mono ``TTSAudioRawFrame``s at
    ``sample_rate`` (resampled with av), ``chunk_s`` each."""
    import av

    layout = av.AudioFrame.from_ndarray(
        (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
    )
    layout.sample_rate = 16000
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    pcm = b"".join(
        converted.to_ndarray().tobytes()
        for converted in [*resampler.resample(layout), *resampler.resample(None)]
    )
    step = 2 * round(chunk_s * sample_rate)
    return [
        TTSAudioRawFrame(pcm[start : start + step], sample_rate, 1)
        for start in range(0, len(pcm), step)
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def start_pipeline(
    processors: list[Any],
) -> tuple[PipelineWorker, asyncio.Task[None]]:
    """``Pipeline(processors)`` in a PipelineWorker (metrics on, no RTVI, no idle cancel) run
    by a WorkerRunner as a task; (worker, the runner's task), which the caller ends."""
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.workers.runner import WorkerRunner

    worker = PipelineWorker(
        Pipeline(processors),
        params=PipelineParams(enable_metrics=True),
        enable_rtvi=False,
        cancel_on_idle_timeout=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    return worker, asyncio.create_task(runner.run())


async def measure(service: AnchorVideoService, idle_s: float = 1.0) -> dict[str, Any]:
    """Run the scenario of the module docstring through ``service``; the figures."""
    probe = AvatarProbe()
    worker, running = await start_pipeline([service, probe])
    fps = service.fps
    try:
        await probe.wait(lambda: len(probe.shown) >= 1, 300.0)
        await asyncio.sleep(idle_s)
        speech_from = time.monotonic()
        utterance = speech_like(3.0)
        await worker.queue_frames(tts_frames(utterance))
        spoken = len(utterance) / 16000
        first_seq = await _first_speech_seq(service, probe)
        first_frame = next(shown for shown in probe.shown if shown.seq >= first_seq)
        await probe.wait(lambda: bool(probe.heard) and not service.speaking, spoken + 30.0)
        await asyncio.sleep(idle_s)
        heard_before = len(probe.heard)
        await worker.queue_frames(tts_frames(speech_like(4.0, seed=1)))
        await probe.wait(lambda: len(probe.heard) >= heard_before + round(fps), 60.0)
        interrupted_at = time.monotonic()
        await worker.queue_frame(InterruptionFrame())
        await probe.wait(lambda: bool(probe.interruptions), 10.0)
        await asyncio.sleep(idle_s)
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(running, 120.0)
    finally:
        if not running.done():
            await worker.cancel()
            await running
    after = [heard.at for heard in probe.heard if heard.at > interrupted_at]
    silence_at = max(after) if after else probe.interruptions[0]
    offsets = av_offsets_ms(probe, fps)
    return {
        "speech_to_first_frame_ms": round(1000.0 * (first_frame.at - speech_from), 1),
        "av_offset_ms": {
            "median": round(statistics.median(offsets), 1) if offsets else None,
            "p90": round(percentile([abs(v) for v in offsets], 0.9), 1) if offsets else None,
        },
        "fps": round(video_fps(probe), 2),
        "target_fps": fps,
        "interruption_to_silence_ms": round(1000.0 * (silence_at - interrupted_at), 1),
        "frames_shown": len(probe.shown),
        "frames_skipped": service.stats.skipped,
        "speech_chunks": len(probe.heard),
        "errors": [str(error.error) for error in probe.errors],
    }


async def _first_speech_seq(service: AnchorVideoService, probe: AvatarProbe) -> int:
    await probe.wait(lambda: service.stats.first_speech_seq is not None, 30.0)
    first = service.stats.first_speech_seq
    assert first is not None
    await probe.wait(lambda: any(shown.seq >= first for shown in probe.shown), 60.0)
    return first


def run_bench(config: AppConfig) -> dict[str, Any]:
    """The figures with ``config``'s pipeline (no config: the demo model) on this machine."""
    from clients.pipecat import AnchorVideoService

    return asyncio.run(measure(AnchorVideoService.local(config.pipeline)))
