"""The sans-I/O window sampler: condition frames in, committed frames out.

A synchronous state machine with no threads, no clocks and no asyncio: the model worker
thread feeds it with ``push`` and ``flush`` and sends on whatever comes back.

- ``push(frames)`` takes condition frames (seq strictly increasing) and returns the
  frames that became final, in order, possibly none;
- ``flush()`` ends the clip: its length is now known, the last windows are cut by the
  official rule, everything left is denoised and returned; the next push starts a new
  clip (positions from 0, next epoch);
- ``reset()`` drops every frame in flight and starts a new epoch.

Every pushed frame comes out exactly once, in order, with its seq and pts; the output
does not depend on how the input was chunked. Modes (``SamplerConfig.mode``):
``exact`` (equals offline Algorithm 1, see ``streaming.exact``), ``low`` (one window of
latency, see ``streaming.low``) and ``offline`` (buffers the clip, runs Algorithm 1 at
flush: the reference the other two are measured against).
"""

from __future__ import annotations

from typing import Protocol

from model.config import SamplerConfig
from model.denoiser import FrameScheduler, WindowDenoiser
from streaming.batching import SamplerStats
from streaming.clip import ClipState
from streaming.exact import ExactCore, ExactSchedule
from streaming.frames import CommittedFrame, ConditionFrame
from streaming.low import LowLatencyCore
from streaming.offline import OfflineCore


class SamplerCore(Protocol):
    clip: ClipState

    def push(self, frames: list[ConditionFrame]) -> list[CommittedFrame]: ...

    def flush(self) -> list[CommittedFrame]: ...

    def reset(self) -> None: ...


class WindowSampler:
    """Streaming temporal denoising over sliding windows (ws, os from ``config``).

    denoiser: predicts guided noise for batches of windows (CFG inside).
    scheduler: per-frame scheduler built with ``config.steps`` timesteps.
    exact_schedule: ``batched`` (T windows per model call, more latency) or ``eager``
    (lowest latency, one window per call); results are identical.
    """

    def __init__(
        self,
        denoiser: WindowDenoiser,
        scheduler: FrameScheduler,
        config: SamplerConfig,
        exact_schedule: ExactSchedule = "batched",
    ) -> None:
        self.config = config
        self._core: SamplerCore
        if config.mode == "exact":
            self._core = ExactCore(denoiser, scheduler, config, exact_schedule)
        elif config.mode == "low":
            self._core = LowLatencyCore(denoiser, scheduler, config)
        else:
            self._core = OfflineCore(denoiser, scheduler, config)
        self.exact_schedule = exact_schedule

    @property
    def latency_frames(self) -> int | None:
        """See ``latency_frames``."""
        return latency_frames(self.config, self.exact_schedule)

    @property
    def epoch(self) -> int:
        """The clip being received; committed frames carry the epoch they belong to."""
        return self._core.clip.epoch

    @property
    def stats(self) -> SamplerStats:
        """Model calls and time spent in the model since construction."""
        return self._core.clip.stats

    @property
    def pending(self) -> int:
        """Frames received but not committed yet."""
        clip = self._core.clip
        return clip.received - clip.commit_next

    def push(self, frames: list[ConditionFrame]) -> list[CommittedFrame]:
        """Feed condition frames; returns the frames that became final (maybe none)."""
        return self._core.push(list(frames))

    def flush(self) -> list[CommittedFrame]:
        """End the clip and return every frame still in flight."""
        return self._core.flush()

    def reset(self) -> None:
        """Discard every frame in flight; the next push starts a new epoch at position 0."""
        self._core.reset()


def latency_frames(config: SamplerConfig, exact_schedule: ExactSchedule = "batched") -> int | None:
    """How many frames after frame f arrived it can still be waiting to commit (model time
    not counted); None for ``offline`` (the whole clip).

    With s = ws - os, m = ceil(ws / s) - 1 and T steps: window k takes step i when window
    k + m*i (``eager``) or k + (m+1)*i (``batched``) completes, so the first frame of a
    window waits for (m*(T-1)) or ((m+1)*(T-1)) strides plus ws - 1 frames; ``low``
    commits a window's frames as soon as it is complete: ws - 1 frames.
    """
    stride = config.window_size - config.overlap
    if config.mode == "low":
        return config.window_size - 1
    if config.mode == "exact":
        neighbours = -(-config.window_size // stride) - 1
        lag = neighbours if exact_schedule == "eager" else neighbours + 1
        return lag * (config.steps - 1) * stride + config.window_size - 1
    return None
