"""Tiny presets: the real diffusers/transformers classes at tiny sizes, seeded.

Everything here is built from code in well under a second on a CPU, for tests, the CPU
demo and benchmarks. The architecture mirrors SD1.5 (latent = image / 8, 4 latent
channels, cross-attention width = CLIP vision width) at a fraction of the width.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModel

# The paper's scheduler: SD1.5's scheduler config, read as DDIM (used for the tiny preset;
# the sd15 preset reads the same file from sd_path/scheduler).
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}

TINY_IMAGE_SIZE = 64  # pixels; latents 8x8
SD15_IMAGE_SIZE = 512
TINY_WIDTH = 32  # cross-attention width = tiny CLIP vision hidden size
_CONDITIONING_CHANNELS = (8, 16, 16, 32)  # 3 stride-2 convs: image / 8 like SD's (16, 32, 96, 256)


def tiny_unet(in_channels: int = 4) -> UNet2DConditionModel:
    """A 2-level UNet2DConditionModel (about 0.8 M parameters), attention at full latent
    resolution like SD1.5; in_channels 9 for the inpainting (face) UNet."""
    return UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 8,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_WIDTH,
        # diffusers reads this as the number of heads: 2 heads of 16/32 channels (many
        # 4-channel heads make CPU attention several times slower for nothing).
        attention_head_dim=2,
        norm_num_groups=16,
    )


def tiny_controlnet(unet: UNet2DConditionModel, in_channels: int | None = None) -> ControlNetModel:
    """The tiny preset's ControlNet: ``controlnet_from_unet`` with its conditioning widths."""
    return controlnet_from_unet(unet, _CONDITIONING_CHANNELS, in_channels)


def controlnet_from_unet(
    unet: UNet2DConditionModel, conditioning: tuple[int, ...], in_channels: int | None = None
) -> ControlNetModel:
    """``ControlNetModel.from_unet`` (weights copied from the UNet, zero output convs).

    conditioning: the conditioning-image embedding's channel widths. in_channels overrides
    the UNet's (the face ControlNet sees only the 4-channel noisy latent while its
    inpainting UNet takes 9 channels); the time embedding, down and mid blocks are then
    copied by hand, as from_unet would.
    """
    if in_channels is None or in_channels == unet.config["in_channels"]:
        return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=conditioning)
    config = dict(unet.config)
    controlnet = ControlNetModel(
        in_channels=in_channels,
        down_block_types=config["down_block_types"],
        block_out_channels=config["block_out_channels"],
        layers_per_block=config["layers_per_block"],
        cross_attention_dim=config["cross_attention_dim"],
        attention_head_dim=config["attention_head_dim"],
        norm_num_groups=config["norm_num_groups"],
        conditioning_embedding_out_channels=conditioning,
    )
    for name in ("time_embedding", "down_blocks", "mid_block"):
        getattr(controlnet, name).load_state_dict(getattr(unet, name).state_dict())
    return controlnet


def tiny_vae() -> AutoencoderKL:
    """A 4-level AutoencoderKL: image / 8 latents with 4 channels, SD1.5's scaling factor."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=TINY_IMAGE_SIZE,
        scaling_factor=0.18215,
    )


def tiny_clip_vision() -> CLIPVisionModel:
    """A 2-layer CLIP ViT at 32x32, patch 8: 17 tokens x 32 (ViT-B/32 gives 50 x 768)."""
    config = CLIPVisionConfig(
        hidden_size=TINY_WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    )
    return CLIPVisionModel(config)


def default_reference_image(size: int) -> torch.Tensor:
    """A deterministic figure (head, torso) on a gradient: (3, size, size) float32 in [0, 1]."""
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    image = torch.stack([0.25 + 0.5 * y, 0.35 + 0.2 * x, 0.6 - 0.3 * y])
    head = ((x - 0.5) / 0.12) ** 2 + ((y - 0.28) / 0.15) ** 2 <= 1.0
    torso = ((x - 0.5) / 0.25) ** 2 + ((y - 0.8) / 0.35) ** 2 <= 1.0
    skin = torch.tensor([0.93, 0.76, 0.62]).view(3, 1, 1)
    suit = torch.tensor([0.15, 0.2, 0.35]).view(3, 1, 1)
    image = torch.where(head, skin, image)
    image = torch.where(torso & ~head, suit, image)
    stripes = 0.05 * torch.sin(2 * math.pi * 6 * x)
    return (image + stripes).clamp(0.0, 1.0)
