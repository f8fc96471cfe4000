"""Helpers building tiny real SGDM components for the model tests (CPU, float32, seeded)."""

from __future__ import annotations

from typing import Any

import torch

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.placement import Components

IMAGE_SIZE = 64  # latents 8x8
FACE_SIZE = 64


def tiny_components(
    steps: int = 3, face: bool = False, guidance_scale: float = 7.5, **model_fields: Any
) -> Components:
    """Fresh tiny components (built in well under a second)."""
    model = ModelConfig(preset="tiny", device="cpu", image_size=IMAGE_SIZE, **model_fields)
    sampler = SamplerConfig(steps=steps, guidance_scale=guidance_scale)
    face_config = FaceConfig(enabled=face, size=FACE_SIZE, steps=steps)
    return build_components(model, sampler, face_config)


def random_images(count: int, size: int = IMAGE_SIZE, seed: int = 1) -> torch.Tensor:
    """(count, 3, size, size) float32 in [0, 1]."""
    return torch.rand((count, 3, size, size), generator=torch.Generator().manual_seed(seed))


def random_latents(windows: int, frames: int, seed: int = 2) -> torch.Tensor:
    """(windows, frames, 4, 8, 8) float32 Gaussian."""
    shape = (windows, frames, 4, IMAGE_SIZE // 8, IMAGE_SIZE // 8)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
