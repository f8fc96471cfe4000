"""model.preset = "bundle": the committed demo model loads through build_components."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError

DEMO = Path(__file__).resolve().parents[2] / "clients" / "models" / "demo"


def test_demo_bundle_loads_and_denoises_a_window() -> None:
    model = ModelConfig(preset="bundle", checkpoint_path=DEMO, device="cpu", attention="per-frame")
    sampler = SamplerConfig(steps=2, guidance_scale=1.0, controlnet_scale=1.0)
    components = build_components(model, sampler, FaceConfig(enabled=False))
    assert components.image_size == 128
    denoiser = components.denoiser
    conditions = denoiser.encode_conditions(torch.zeros(2, 3, 128, 128))
    shape = (1, 2, denoiser.latent_channels, denoiser.latent_height, denoiser.latent_width)
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    noise = denoiser.predict(latents, torch.tensor([500]), conditions[None])
    assert noise.shape == (1, 2, 4, 16, 16) and torch.isfinite(noise).all()


def test_bundle_preset_names_what_is_missing(tmp_path: Path) -> None:
    sampler = SamplerConfig()
    with pytest.raises(AnchorError, match=r"model\.checkpoint_path is not set"):
        build_components(ModelConfig(preset="bundle"), sampler, FaceConfig(enabled=False))
    with pytest.raises(AnchorError, match=r"no face model.*face\.enabled = false"):
        build_components(
            ModelConfig(preset="bundle", checkpoint_path=tmp_path), sampler, FaceConfig()
        )
    with pytest.raises(AnchorError, match="body"):
        build_components(
            ModelConfig(preset="bundle", checkpoint_path=tmp_path),
            sampler,
            FaceConfig(enabled=False),
        )


def test_demo_bundle_attaches_its_face_model() -> None:
    model = ModelConfig(preset="bundle", checkpoint_path=DEMO, device="cpu", attention="per-frame")
    sampler = SamplerConfig(steps=2, guidance_scale=1.0, controlnet_scale=1.0)
    face = FaceConfig(enabled=True, size=64, steps=2, guidance_scale=1.0)
    components = build_components(model, sampler, face)
    assert components.face is not None and components.face.size == 64
    crops = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    enhanced = components.face.enhance(crops, crops, torch.ones(1, 1, 64, 64))
    assert enhanced.shape == (1, 3, 64, 64) and torch.isfinite(enhanced).all()
