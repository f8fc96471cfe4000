"""Mode ``exact``: the paper's offline Algorithm 1, evaluated as a wavefront.

Windows are k = [k*s, min(k*s + ws, L)), s = ws - os (``model.windows.official_windows``).
Offline, step i of every window runs before step i+1 of any. Only the true dependencies
matter, though:

- frame f moves from step i to i+1 once EVERY window containing f has predicted at step
  i (its noise is the average of their predictions; the scheduler step is per frame);
- window k can predict at step i once ALL its frames are at step i, which needs step
  i-1 of every window sharing a frame with k (k-m .. k+m, m = ceil(ws/s) - 1).

A window is evaluated only once its extent is final: when all ws of its frames have
arrived (a window that complete exists in the official set, uncut, whatever L turns out
to be), or at ``flush``, where L is known and the remaining windows are cut by the
official rule (the last one simply shorter, possibly lying inside its predecessor).
Nothing is evaluated speculatively, so every frame sees exactly the windows, latents and
averages of the offline run, and the model cost per frame is offline's.

Two schedules, same results:

- ``batched`` (default): each newly complete window triggers ONE round that evaluates
  every window able to step, in one batched call. In steady state that is the diagonal
  {K@0, K-(m+1)@1, ..., K-(m+1)(T-1)@T-1}: T independent windows per call. Latency
  about ((m+1)(T-1)+1) windows of frames.
- ``eager``: rounds repeat until nothing can step, which follows the dependency chain
  K@0 -> K-m@1 -> ... (each needs the previous, so one window per call in steady state).
  Latency about (m(T-1)+1) windows of frames.

The scheduler must be per-frame stateless (DDIM, LCM): frames step at different times.
"""

from __future__ import annotations

from typing import Literal

import torch

from model.config import SamplerConfig
from model.denoiser import FrameScheduler, WindowDenoiser
from model.errors import AnchorError
from model.scheduling import DDIMFrameScheduler, LCMFrameScheduler
from streaming.batching import WindowRequest, evaluate_windows
from streaming.clip import ClipState
from streaming.frames import CommittedFrame, ConditionFrame

ExactSchedule = Literal["batched", "eager"]


def check_per_frame_scheduler(scheduler: FrameScheduler) -> None:
    """Refuse schedulers whose step depends on earlier steps.

    Exact streaming steps each frame when its own windows are done, so frames of one
    clip are at different steps at any moment; a scheduler keeping history between
    steps (DPM-Solver multistep, PNDM, ...) would mix the frames' histories. Accepted:
    deterministic DDIM (``DDIMFrameScheduler``), LCM with its per-step noise shared by all
    frames (``LCMFrameScheduler``) or any scheduler that declares
    ``per_frame_stateless = True``.
    """
    if isinstance(scheduler, DDIMFrameScheduler | LCMFrameScheduler) or getattr(
        scheduler, "per_frame_stateless", False
    ):
        return
    inner = getattr(scheduler, "scheduler", scheduler)
    raise AnchorError(
        f"sampler.mode = 'exact' needs a scheduler whose step depends only on the current "
        f"step (DDIM, LCM); {type(inner).__name__} is not known to be: use sampler.mode 'offline'"
    )


class ExactCore:
    """Wavefront evaluation of Algorithm 1; see the module docstring."""

    def __init__(
        self,
        denoiser: WindowDenoiser,
        scheduler: FrameScheduler,
        config: SamplerConfig,
        schedule: ExactSchedule = "batched",
    ) -> None:
        check_per_frame_scheduler(scheduler)
        if schedule not in ("batched", "eager"):
            raise AnchorError(f"exact schedule must be 'batched' or 'eager', got {schedule!r}")
        self.clip = ClipState(denoiser, scheduler, config)
        self.schedule = schedule
        self._start_clip(first=True)

    def _start_clip(self, first: bool = False) -> None:
        if not first:
            self.clip.new_clip()
        # window index -> (start, end) of windows whose extent is final and that still
        # have steps to take; window index -> steps taken so far.
        self._windows: dict[int, tuple[int, int]] = {}
        self._window_steps: dict[int, int] = {}
        self._next_window = 0

    def push(self, frames: list[ConditionFrame]) -> list[CommittedFrame]:
        clip = self.clip
        clip.receive(frames)
        committed: list[CommittedFrame] = []
        while self._next_window * clip.stride + clip.window_size <= clip.received:
            start = self._next_window * clip.stride
            self._open_window(start, start + clip.window_size)
            if self.schedule == "batched":
                committed.extend(self._round())
        if self.schedule == "eager":
            committed.extend(self._drain())
        return committed

    def flush(self) -> list[CommittedFrame]:
        clip = self.clip
        length = clip.received
        while self._next_window * clip.stride < length:
            start = self._next_window * clip.stride
            self._open_window(start, min(start + clip.window_size, length))
        committed = self._drain()
        if clip.commit_next != length:
            raise RuntimeError(f"flush left frames {clip.commit_next}..{length - 1} uncommitted")
        self._start_clip()
        return committed

    def reset(self) -> None:
        self._start_clip()

    def _open_window(self, start: int, end: int) -> None:
        self.clip.encode_until(end)
        self._windows[self._next_window] = (start, end)
        self._window_steps[self._next_window] = 0
        self._next_window += 1

    def _drain(self) -> list[CommittedFrame]:
        committed: list[CommittedFrame] = []
        while True:
            before = self.clip.stats.window_evaluations
            committed.extend(self._round())
            if self.clip.stats.window_evaluations == before:
                return committed

    def _due(self) -> list[int]:
        frames = self.clip.frames
        due = []
        for index in sorted(self._windows):
            start, end = self._windows[index]
            step = self._window_steps[index]
            if all(frames[p].step == step for p in range(start, end)):
                due.append(index)
        return due

    def _round(self) -> list[CommittedFrame]:
        """Evaluate every window able to step now (one batched event), then step frames."""
        clip = self.clip
        due = self._due()
        if not due:
            return []
        requests = []
        for index in due:
            start, end = self._windows[index]
            step = self._window_steps[index]
            requests.append(
                WindowRequest(
                    window_index=index,
                    step_index=step,
                    timestep=clip.timesteps[step],
                    latents=torch.stack([clip.latent(p) for p in range(start, end)]),
                    conditions=torch.stack([clip.condition(p) for p in range(start, end)]),
                )
            )
        predictions = evaluate_windows(clip.denoiser, requests, clip.config.max_batch, clip.stats)
        touched: set[int] = set()
        for index, noise in zip(due, predictions, strict=True):
            start, end = self._windows[index]
            for position in range(start, end):
                clip.frames[position].contributions[index] = noise[position - start]
                touched.add(position)
            self._window_steps[index] += 1
            if self._window_steps[index] == clip.steps:
                del self._windows[index]
                del self._window_steps[index]
        self._step_frames(sorted(touched))
        return self._commit_ready()

    def _step_frames(self, positions: list[int]) -> None:
        """Scheduler step for every frame whose windows have all predicted at its step."""
        clip = self.clip
        ready_by_step: dict[int, list[int]] = {}
        for position in positions:
            pending = clip.frames[position]
            if len(pending.contributions) == len(clip.windows_containing(position)):
                ready_by_step.setdefault(pending.step, []).append(position)
        for step, ready in ready_by_step.items():
            noise = torch.stack([_average(clip, p) for p in ready])
            latents = torch.stack([clip.latent(p) for p in ready])
            stepped = clip.scheduler.step_frames(noise, step, latents)
            for row, position in enumerate(ready):
                pending = clip.frames[position]
                pending.latent = stepped[row]
                pending.step += 1
                pending.contributions = {}

    def _commit_ready(self) -> list[CommittedFrame]:
        clip = self.clip
        committed = []
        while clip.commit_next in clip.frames and clip.frames[clip.commit_next].step == (
            clip.steps
        ):
            position = clip.commit_next
            committed.append(clip.commit(position, clip.latent(position)))
        return committed


def _average(clip: ClipState, position: int) -> torch.Tensor:
    """Mean of the frame's window predictions, summed in window order as offline does."""
    contributions = clip.frames[position].contributions
    total = torch.zeros_like(next(iter(contributions.values())))
    for index in sorted(contributions):
        total = total + contributions[index]
    return total / len(contributions)
