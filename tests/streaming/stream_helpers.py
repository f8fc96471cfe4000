"""Helpers for the streaming tests: tiny real components, condition clips, sampler runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.offline import offline_sample
from model.placement import Components
from model.sgdm import SGDMDenoiser
from streaming.frames import CommittedFrame, ConditionFrame
from streaming.sampler import WindowSampler

# 16x16 images -> 2x2 latents: the real tiny networks at the smallest size they accept,
# so the dozens of whole-clip runs below stay fast on two cores.
IMAGE_SIZE = 16
STEPS = 3


def tiny_components(steps: int = STEPS, **sampler_fields: Any) -> Components:
    """Real tiny SGDM components (CFG 7.5, all-frame attention), CPU float32, seeded."""
    model = ModelConfig(preset="tiny", device="cpu", image_size=IMAGE_SIZE)
    sampler = SamplerConfig(steps=steps, **sampler_fields)
    return build_components(model, sampler, FaceConfig(enabled=False))


def sampler_config(mode: str, **fields: Any) -> SamplerConfig:
    """Sampler settings for the tests: STEPS steps, per-frame noise unless told otherwise."""
    values: dict[str, Any] = {"steps": STEPS, "same_frame_noise": False, "seed": 7}
    values.update(fields)
    return SamplerConfig(mode=mode, **values)


def condition_images(length: int, seed: int = 1) -> torch.Tensor:
    """(L, 3, S, S) float32 uniform in [0, 1], seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((length, 3, IMAGE_SIZE, IMAGE_SIZE), generator=generator)


def condition_frames(images: torch.Tensor, first_seq: int = 0) -> list[ConditionFrame]:
    """One ConditionFrame per image; seq from first_seq, pts at 30 fps."""
    return [
        ConditionFrame(seq=first_seq + index, pts=(first_seq + index) / 30.0, condition=image)
        for index, image in enumerate(images)
    ]


def run_stream(
    sampler: WindowSampler, frames: Sequence[ConditionFrame], chunks: Sequence[int] | None = None
) -> list[CommittedFrame]:
    """Push frames in chunks of the given sizes (default one at a time), then flush."""
    sizes = list(chunks) if chunks is not None else [1] * len(frames)
    committed: list[CommittedFrame] = []
    start = 0
    for size in sizes:
        committed += sampler.push(list(frames[start : start + size]))
        start += size
    committed += sampler.push(list(frames[start:]))
    committed += sampler.flush()
    return committed


def latents_of(frames: Sequence[CommittedFrame]) -> torch.Tensor:
    """(N, C, h, w) latents of committed frames."""
    return torch.stack([frame.latent for frame in frames])


def offline_latents(
    components: Components, images: torch.Tensor, config: SamplerConfig
) -> torch.Tensor:
    """Algorithm 1 (model.offline.offline_sample) on the same images, noise and settings."""
    scheduler = components.scheduler.with_steps(config.steps)
    conditions = components.denoiser.encode_conditions(images)
    return offline_sample(components.denoiser, scheduler, conditions, config, config.seed)


def window_sensitive_components(image_size: int = 32) -> Components:
    """Tiny components whose output visibly depends on the conditions and on the window.

    The tiny preset's fresh ControlNet conditioning embedding barely reacts to its image
    (predictions move by ~1e-4 between unrelated conditions), and per-frame GroupNorm
    lets a frame ignore its window. Here the embedding gets seeded weights of std 0.3
    (like a trained one, it now tracks the condition) and GroupNorm statistics are shared
    per window (the official inflated UNet), so cutting a clip into unrelated windows
    leaves visible seams that overlap averaging has to remove.
    """
    model = ModelConfig(preset="tiny", device="cpu", image_size=image_size, window_groupnorm=True)
    components = build_components(model, SamplerConfig(steps=STEPS), FaceConfig(enabled=False))
    generator = torch.Generator().manual_seed(3)
    assert isinstance(components.denoiser, SGDMDenoiser)
    with torch.no_grad():
        for parameter in components.denoiser.controlnet.controlnet_cond_embedding.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return components


def drifting_blob(length: int, image_size: int) -> torch.Tensor:
    """(L, 3, S, S) float32 in [0, 1]: a soft blob moving slowly left to right."""
    coords = torch.linspace(0.0, 1.0, image_size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    frames = []
    for index in range(length):
        blob = torch.exp(-((x - 0.3 - 0.4 * index / length) ** 2 + (y - 0.5) ** 2) / 0.03)
        frames.append(torch.stack([blob, 0.5 * blob, 1.0 - blob]))
    return torch.stack(frames)
