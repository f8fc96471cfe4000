"""Mode ``low``: one window of latency, an approximation of Algorithm 1.

When window K = [K*s, K*s + ws) is complete it is denoised through all T steps at once,
every frame starting from its own initial noise. For a frame that earlier windows also
contain (the first os frames of K), the noise used at step i is the average of those
windows' cached step-i predictions and window K's own prediction, the same average
Algorithm 1 takes, except that the earlier predictions were made along the earlier
windows' trajectories. After the last step, every frame no later window contains is
committed, and window K's predictions for its last os frames are cached for window K+1.
The windows are the official set (at ``flush`` the last ones are cut at L), each
evaluated T times, so the model cost per frame is offline's.

The approximation: offline, an overlap frame's latent at step i is one trajectory fed
by both windows at every step, and window K-1 sees window K's influence too. Here
window K-1 never sees window K (its frames are committed before K exists), and the
overlap frames' latents restart from noise in window K, guided towards K-1's
predictions only through the averaged noise. Seams stay continuous because the
committed side of a seam (frame K*s - 1, from window K-1) and the other side (frame
K*s, from window K) both come from trajectories that averaged the same overlap
predictions.

Latency: frame K*s waits for frame K*s + ws - 1, i.e. at most ws - 1 frames plus the
window's compute time.
"""

from __future__ import annotations

import torch

from model.config import SamplerConfig
from model.denoiser import FrameScheduler, WindowDenoiser
from streaming.batching import WindowRequest, evaluate_windows
from streaming.clip import ClipState
from streaming.frames import CommittedFrame, ConditionFrame


class LowLatencyCore:
    """Window-at-a-time denoising with cached overlap predictions; see the module docstring."""

    def __init__(
        self, denoiser: WindowDenoiser, scheduler: FrameScheduler, config: SamplerConfig
    ) -> None:
        self.clip = ClipState(denoiser, scheduler, config)
        self._start_clip(first=True)

    def _start_clip(self, first: bool = False) -> None:
        if not first:
            self.clip.new_clip()
        self._next_window = 0
        # position -> (T, C, h, w) sum of earlier windows' raw predictions per step, and
        # how many windows contributed; only for frames a later window still contains.
        self._cached_sums: dict[int, torch.Tensor] = {}
        self._cached_counts: dict[int, int] = {}

    def push(self, frames: list[ConditionFrame]) -> list[CommittedFrame]:
        clip = self.clip
        clip.receive(frames)
        committed: list[CommittedFrame] = []
        while self._next_window * clip.stride + clip.window_size <= clip.received:
            start = self._next_window * clip.stride
            # A complete window with os > 0 always has a successor (it starts before
            # frames already received); with os = 0 nothing is shared.
            committed.extend(self._denoise_window(start, start + clip.window_size, last=False))
        return committed

    def flush(self) -> list[CommittedFrame]:
        clip = self.clip
        length = clip.received
        committed: list[CommittedFrame] = []
        while self._next_window * clip.stride < length:
            start = self._next_window * clip.stride
            end = min(start + clip.window_size, length)
            last = start + clip.stride >= length
            committed.extend(self._denoise_window(start, end, last=last))
        if clip.commit_next != length:
            raise RuntimeError(f"flush left frames {clip.commit_next}..{length - 1} uncommitted")
        self._start_clip()
        return committed

    def reset(self) -> None:
        self._start_clip()

    def _denoise_window(self, start: int, end: int, last: bool) -> list[CommittedFrame]:
        clip = self.clip
        clip.encode_until(end)
        window_index = self._next_window
        self._next_window += 1
        positions = range(start, end)
        next_start = end if last else start + clip.stride
        latents = torch.stack([clip.latent(p) for p in positions])
        conditions = torch.stack([clip.condition(p) for p in positions])
        shared = [p for p in positions if p in self._cached_sums]
        kept = [p for p in positions if p >= next_start]
        kept_predictions = torch.empty(
            (clip.steps, len(kept), *clip.latent_shape), dtype=latents.dtype, device=latents.device
        )
        for step, timestep in enumerate(clip.timesteps):
            request = WindowRequest(window_index, step, timestep, latents, conditions)
            (noise,) = evaluate_windows(clip.denoiser, [request], 1, clip.stats)
            if kept:
                kept_predictions[step] = noise[kept[0] - start :]
            if shared:
                noise = noise.clone()
                for position in shared:
                    row = position - start
                    count = self._cached_counts[position] + 1
                    noise[row] = (self._cached_sums[position][step] + noise[row]) / count
            latents = clip.scheduler.step_frames(noise, step, latents)
        for row, position in enumerate(kept):
            previous = self._cached_sums.get(position)
            own = kept_predictions[:, row]
            self._cached_sums[position] = own if previous is None else previous + own
            self._cached_counts[position] = self._cached_counts.get(position, 0) + 1
        committed = []
        for position in range(start, next_start):
            self._cached_sums.pop(position, None)
            self._cached_counts.pop(position, None)
            committed.append(clip.commit(position, latents[position - start]))
        return committed
