"""Mode ``offline`` behind the streaming interface: the reference the other modes match.

Buffers the whole clip and runs ``model.offline.offline_sample`` (Algorithm 1) at
``flush``; ``push`` never returns frames. Its latency is the clip length.
"""

from __future__ import annotations

import time

import torch

from model.config import SamplerConfig
from model.denoiser import FrameScheduler, WindowDenoiser
from model.offline import offline_sample
from streaming.batching import SamplerStats
from streaming.clip import ClipState
from streaming.frames import CommittedFrame, ConditionFrame


class TimedDenoiser:
    """Delegates to a denoiser and records its ``predict`` calls in ``stats``."""

    def __init__(self, denoiser: WindowDenoiser, stats: SamplerStats) -> None:
        self.inner = denoiser
        self.stats = stats
        self.latent_channels = denoiser.latent_channels
        self.latent_height = denoiser.latent_height
        self.latent_width = denoiser.latent_width

    def encode_conditions(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.encode_conditions(images)

    def predict(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor
    ) -> torch.Tensor:
        started = time.perf_counter()
        noise = self.inner.predict(latents, timesteps, conditions)
        self.stats.model_seconds += time.perf_counter() - started
        self.stats.predict_calls += 1
        self.stats.window_evaluations += latents.shape[0]
        self.stats.frame_evaluations += latents.shape[0] * latents.shape[1]
        self.stats.batch_sizes.append(latents.shape[0])
        return noise

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.inner.decode(latents)


class OfflineCore:
    """Collects the clip; ``flush`` runs Algorithm 1 over all of it."""

    def __init__(
        self, denoiser: WindowDenoiser, scheduler: FrameScheduler, config: SamplerConfig
    ) -> None:
        self.clip = ClipState(denoiser, scheduler, config)
        self._timed = TimedDenoiser(denoiser, self.clip.stats)

    def push(self, frames: list[ConditionFrame]) -> list[CommittedFrame]:
        self.clip.receive(frames)
        return []

    def flush(self) -> list[CommittedFrame]:
        clip = self.clip
        length = clip.received
        committed: list[CommittedFrame] = []
        if length:
            clip.encode_until(length)
            conditions = torch.stack([clip.condition(p) for p in range(length)])
            latents = offline_sample(
                self._timed, clip.scheduler, conditions, clip.config, clip.config.seed
            )
            committed = [clip.commit(p, latents[p]) for p in range(length)]
        clip.new_clip()
        return committed

    def reset(self) -> None:
        self.clip.new_clip()
