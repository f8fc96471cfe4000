"""Whole-clip entry points of the streaming modes, for ``anchor generate --mode exact|low``.

``model.offline.resolve_sampler`` imports this module for the modes it does not own; the
callable returned here has ``offline_sample``'s signature and feeds the clip through a
``WindowSampler`` (all frames pushed at once, then flushed: the output does not depend on
chunking, so this is what a live session produces for the same frames).
"""

from __future__ import annotations

import torch

from model.config import SamplerConfig, SamplerMode
from model.denoiser import FrameScheduler, WindowDenoiser
from model.errors import AnchorError
from model.offline import LatentSampler
from streaming.frames import ConditionFrame
from streaming.sampler import WindowSampler

_NO_IMAGE = torch.empty(0)


def stream_latents(
    denoiser: WindowDenoiser,
    scheduler: FrameScheduler,
    conditions: torch.Tensor,
    sampler: SamplerConfig,
    seed: int,
) -> torch.Tensor:
    """conditions (L, ...) from ``encode_conditions`` -> final latents (L, C, h, w) float32,
    sampled in ``sampler.mode`` (exact or low) with noise ``seed``."""
    config = sampler.model_copy(update={"seed": seed})
    window_sampler = WindowSampler(denoiser, scheduler, config)
    frames = [
        ConditionFrame(seq=index, pts=0.0, condition=_NO_IMAGE, features=conditions[index])
        for index in range(conditions.shape[0])
    ]
    committed = window_sampler.push(frames) + window_sampler.flush()
    if not committed:
        return torch.empty(
            (0, denoiser.latent_channels, denoiser.latent_height, denoiser.latent_width)
        )
    return torch.stack([frame.latent for frame in committed]).float().cpu()


def sample_latents(mode: SamplerMode) -> LatentSampler:
    """The latent sampler for ``mode`` (``exact`` or ``low``)."""
    if mode not in ("exact", "low"):
        raise AnchorError(f"sampler.mode {mode!r} is not a streaming mode (exact, low)")

    def sample(
        denoiser: WindowDenoiser,
        scheduler: FrameScheduler,
        conditions: torch.Tensor,
        sampler: SamplerConfig,
        seed: int,
    ) -> torch.Tensor:
        return stream_latents(
            denoiser, scheduler, conditions, sampler.model_copy(update={"mode": mode}), seed
        )

    return sample
