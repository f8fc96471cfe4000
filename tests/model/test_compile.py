"""``model.compile``: the UNet and ControlNet through torch.compile give the same frames.

The real compiler backend (inductor) takes minutes on this CPU, so the test traces with
torch.compile's ``eager`` backend: the same graph capture (dynamo, dynamic shapes,
guards on the attention grouping), without code generation.
"""

from __future__ import annotations

import pytest
import torch

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.sgdm import SGDMDenoiser
from streaming.frames import ConditionFrame
from streaming.generate import generate_streaming


def clip(count: int) -> list[ConditionFrame]:
    generator = torch.Generator().manual_seed(3)
    return [
        ConditionFrame(seq=i, pts=i / 30.0, condition=torch.rand(3, 64, 64, generator=generator))
        for i in range(count)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("residuals", ["diffusers", "authors"])
def test_compiled_networks_give_the_same_frames(residuals: str) -> None:
    """Also with the authors' residuals, whose mid-block hook the graph capture sees."""
    sampler = SamplerConfig(steps=1, window_size=4, overlap=1, mode="low", guidance_scale=2.0)
    face = FaceConfig(enabled=False)
    model = ModelConfig(preset="tiny", device="cpu", controlnet_residuals=residuals)
    plain = build_components(model, sampler, face)
    compiled_model = model.model_copy(update={"compile": "on", "compile_backend": "eager"})
    compiled = build_components(compiled_model, sampler, face)
    assert isinstance(compiled.denoiser, SGDMDenoiser)
    assert isinstance(compiled.denoiser.unet, torch._dynamo.eval_frame.OptimizedModule)
    expected = generate_streaming(clip(4), plain, sampler)
    actual = generate_streaming(clip(4), compiled, sampler)
    assert len(actual) == len(expected) == 4
    for ours, theirs in zip(actual, expected, strict=True):
        assert ours.image is not None and theirs.image is not None
        assert torch.allclose(ours.image, theirs.image, atol=1e-4)


def test_auto_compiles_only_on_cuda() -> None:
    sampler = SamplerConfig(steps=1, window_size=4, overlap=1)
    model = ModelConfig(preset="tiny", device="cpu", compile="auto")
    components = build_components(model, sampler, FaceConfig(enabled=False))
    assert isinstance(components.denoiser, SGDMDenoiser)
    assert not isinstance(components.denoiser.unet, torch._dynamo.eval_frame.OptimizedModule)
