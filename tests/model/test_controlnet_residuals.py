"""``model.controlnet_residuals``: the authors' in-place ControlNet addition, emulated.

References are written here: a stock UNet call whose mid block's input is pre-added by a
wrapper module, and a hand-written UNet forward with 5D GroupNorm (tests/model/
unet_reference.py) for window GroupNorm together with the authors' residuals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from sgdm_helpers import random_images, random_latents, tiny_components
from torch import nn
from unet_reference import unet_5d

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.guided import controlnet_unet_noise
from model.onnx_export import export_onnx
from model.sgdm import SGDMDenoiser

ATOL = 1e-5


class PreAdded(nn.Module):
    """The mid block with ``residual`` added to its input."""

    def __init__(self, block: nn.Module, residual: torch.Tensor) -> None:
        super().__init__()
        self.block, self.residual = block, residual
        # The UNet passes the cross-attention tokens only to a block that says it takes them.
        self.has_cross_attention = block.has_cross_attention

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.block(hidden_states + self.residual, *args, **kwargs)


def _call_inputs(denoiser: SGDMDenoiser, frames: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(3)
    sample = torch.randn((frames, 4, 8, 8), generator=generator)
    timesteps = torch.full((frames,), 501)
    tokens = denoiser.appearance.expand(frames, -1, -1)
    images = random_images(frames)
    return sample, timesteps, tokens, images


def _controlnet(
    denoiser: SGDMDenoiser,
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    tokens: torch.Tensor,
    images: torch.Tensor,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    down, mid = denoiser.controlnet(
        sample, timesteps, encoder_hidden_states=tokens, controlnet_cond=images,
        conditioning_scale=2.0, return_dict=False,
    )  # fmt: skip
    return list(down), mid


@torch.no_grad()
def test_authors_residuals_equal_a_stock_unet_with_the_mid_input_pre_added() -> None:
    denoiser = tiny_components(attention="per-frame").denoiser
    unet = denoiser.unet
    sample, timesteps, tokens, images = _call_inputs(denoiser, 3)
    down, mid = _controlnet(denoiser, sample, timesteps, tokens, images)

    def call(residuals: str) -> torch.Tensor:
        return controlnet_unet_noise(
            unet, denoiser.controlnet, sample, sample, timesteps, tokens, images, 2.0,
            residuals=residuals,  # type: ignore[arg-type]
        )  # fmt: skip

    def stock() -> torch.Tensor:
        return unet(sample, timesteps, encoder_hidden_states=tokens,
                    down_block_additional_residuals=down, mid_block_additional_residual=mid,
                    return_dict=False)[0]  # fmt: skip

    diffusers_noise = stock()
    block = unet.mid_block
    unet.mid_block = PreAdded(block, down[-1])
    try:
        reference = stock()
    finally:
        unet.mid_block = block
    authors = call("authors")
    assert (authors - reference).abs().max() < ATOL
    assert (call("diffusers") - diffusers_noise).abs().max() < ATOL
    # The two modes really differ, and the hook does not outlive the call.
    assert (authors - diffusers_noise).abs().max() > 1e-3
    # The hook is disarmed after the call: a stock call is stock again.
    assert (stock() - diffusers_noise).abs().max() == 0.0


@torch.no_grad()
def test_window_groupnorm_with_authors_residuals_equals_a_hand_written_5d_unet() -> None:
    """The denoiser (all-frame attention, window GroupNorm, authors' residuals) on two
    4-frame windows against the hand-written 5D-GroupNorm UNet fed the same ControlNet
    residuals."""
    denoiser = tiny_components(window_groupnorm=True, controlnet_residuals="authors").denoiser
    assert denoiser.controlnet_residuals == "authors"
    windows, frames = 2, 4
    latents = random_latents(windows, frames)
    timesteps = torch.tensor([401, 801])
    images = random_images(windows * frames)
    conditions = denoiser.encode_conditions(images).reshape(windows, frames, -1, 8, 8)
    tokens = denoiser.appearance.expand(windows, -1, -1)
    noise = denoiser.denoise_windows(latents, timesteps, tokens, conditions)

    sample = latents.flatten(0, 1)
    per_frame_t = timesteps.repeat_interleave(frames)
    per_frame_tokens = tokens.repeat_interleave(frames, dim=0)
    with denoiser.context.frames(frames):
        down, mid = _controlnet(denoiser, sample, per_frame_t, per_frame_tokens, images)
        expected = unet_5d(denoiser.unet, sample, per_frame_t, per_frame_tokens, down, mid,
                           frames, mid_input_residual=True)  # fmt: skip
        without = unet_5d(denoiser.unet, sample, per_frame_t, per_frame_tokens, down, mid,
                          frames, mid_input_residual=False)  # fmt: skip
    assert (noise.flatten(0, 1) - expected).abs().max() < ATOL
    assert (noise.flatten(0, 1) - without).abs().max() > 1e-3


def test_auto_resolves_by_preset() -> None:
    assert ModelConfig(preset="sd15").resolved_controlnet_residuals() == "authors"
    assert ModelConfig(preset="bundle").resolved_controlnet_residuals() == "diffusers"
    assert ModelConfig(preset="tiny").resolved_controlnet_residuals() == "diffusers"
    explicit = ModelConfig(preset="sd15", controlnet_residuals="diffusers")
    assert explicit.resolved_controlnet_residuals() == "diffusers"


def test_onnx_export_carries_authors_residuals(tmp_path: Path) -> None:
    sampler = SamplerConfig(window_size=4, overlap=1, steps=2)
    face = FaceConfig(enabled=False)
    model = ModelConfig(preset="tiny", device="cpu", controlnet_residuals="authors")
    manifest = export_onnx(model, sampler, tmp_path)
    assert manifest["controlnet_residuals"] == "authors"
    torch_side = build_components(model, sampler, face).denoiser
    onnx_model = model.model_copy(update={"backend": "onnxruntime", "onnx_dir": tmp_path})
    onnx_side = build_components(onnx_model, sampler, face).denoiser
    latents = random_latents(1, 4)
    timesteps = torch.tensor([601])
    predictions = []
    for side in (torch_side, onnx_side):
        conditions = side.encode_conditions(random_images(4)).reshape(1, 4, *[-1, 8, 8])
        predictions.append(side.predict(latents, timesteps, conditions))
    assert (predictions[0] - predictions[1]).abs().max() < 1e-3
    stock = ModelConfig(preset="tiny", device="cpu", backend="onnxruntime", onnx_dir=tmp_path)
    with pytest.raises(AnchorError, match=r"model\.controlnet_residuals"):
        build_components(stock, sampler, face)
