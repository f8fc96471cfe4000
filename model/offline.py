"""Offline generation: the paper's Algorithm 1 (batch-overlapped temporal denoising).

Per DDIM step, every official window ``[j, min(j + ws, L))`` predicts guided noise; the
predictions are summed into a full-length buffer with a per-frame count, averaged, and ONE
scheduler step runs over the whole sequence. Guidance is applied per window before the
average; CFG is linear and every frame's cond and uncond halves have the same count, so
this equals the official order (average each half, then guide) up to float rounding.

Windows of equal length are batched into one ``predict`` call, at most
``sampler.max_batch`` windows per call; the short last window goes separately.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from model.config import SamplerConfig
from model.denoiser import FrameScheduler, WindowDenoiser
from model.noise import frame_noise
from model.windows import official_windows

log = logging.getLogger("anchor.model.offline")

ProgressCallback = Callable[[int, int], None]  # (step_index + 1, total steps)


def window_batches(windows: list[tuple[int, int]], max_batch: int) -> list[list[tuple[int, int]]]:
    """Groups of equally long windows, in order, each at most ``max_batch`` long."""
    batches: list[list[tuple[int, int]]] = []
    for window in windows:
        length = window[1] - window[0]
        last = batches[-1] if batches else None
        if last and len(last) < max_batch and last[0][1] - last[0][0] == length:
            last.append(window)
        else:
            batches.append([window])
    return batches


def initial_latents(
    denoiser: WindowDenoiser,
    length: int,
    sampler: SamplerConfig,
    seed: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(L, C, h, w) float32 initial noise on the CPU from model/noise.frame_noise;
    ``device``: where the model runs (``sampler.noise_device`` may draw there)."""
    shape = (denoiser.latent_channels, denoiser.latent_height, denoiser.latent_width)
    noise = frame_noise(
        seed,
        range(length),
        shape,
        sampler.same_frame_noise,
        device=device,
        noise_device=sampler.noise_device,
    )
    return noise.cpu()


@torch.no_grad()
def offline_sample(
    denoiser: WindowDenoiser,
    scheduler: FrameScheduler,
    conditions: torch.Tensor,
    sampler: SamplerConfig,
    seed: int,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """Algorithm 1 over L frames: conditions (L, ...) -> final latents (L, C, h, w) float32."""
    length = conditions.shape[0]
    latents = initial_latents(denoiser, length, sampler, seed, conditions.device)
    windows = official_windows(length, sampler.window_size, sampler.overlap)
    batches = window_batches(windows, sampler.max_batch)
    count = torch.zeros(length, 1, 1, 1)
    for start, end in windows:
        count[start:end] += 1
    total = len(scheduler.timesteps)
    for step_index, timestep in enumerate(scheduler.timesteps.tolist()):
        noise_sum = torch.zeros_like(latents)
        for batch in batches:
            window_latents = torch.stack([latents[s:e] for s, e in batch])
            window_conditions = torch.stack([conditions[s:e] for s, e in batch])
            timesteps = torch.full((len(batch),), int(timestep), dtype=torch.int64)
            noise = denoiser.predict(window_latents, timesteps, window_conditions).float().cpu()
            for (start, end), window_noise in zip(batch, noise, strict=True):
                noise_sum[start:end] += window_noise
        latents = scheduler.step_frames(noise_sum / count, step_index, latents).float().cpu()
        if progress is not None:
            progress(step_index + 1, total)
    return latents


def generate_frames(
    denoiser: WindowDenoiser,
    scheduler: FrameScheduler,
    condition_images: torch.Tensor,
    sampler: SamplerConfig,
    seed: int | None = None,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """Condition images (N, 3, H, W) float32 [0, 1] -> frames (N, 3, H, W) float32 [0, 1],
    sampled with Algorithm 1 (``sampler.mode`` chooses among the streaming samplers of
    ``streaming.generate`` and is not read here); seed defaults to ``sampler.seed``.
    """
    conditions = denoiser.encode_conditions(condition_images)
    run_seed = sampler.seed if seed is None else seed
    latents = offline_sample(denoiser, scheduler, conditions, sampler, run_seed, progress)
    log.info("sampled %d frames (offline, %d steps)", latents.shape[0], len(scheduler.timesteps))
    return denoiser.decode(latents)
