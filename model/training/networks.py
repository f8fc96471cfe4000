"""The networks a training run starts from: those it trains and the frozen ones.

``--init`` names where the trained networks come from (``initial_networks``, or
``initial_vae`` when the autoencoder is trained):

- ``tiny``: model/presets.py at tiny size (seeded with ``model.tiny_seed``);
- ``demo``: the CPU demo family (``demo_unet``: 3 levels, a few million parameters);
- ``sd15``: the UNet of ``model.sd_path`` and ``ControlNetModel.from_unet`` of it;
- a folder: a checkpoint in the official layout, ``FOLDER/<part>/{unet,controlnet}``
  (``part`` = body or head; the authors' published stage-1 folders load unchanged,
  strictly; a missing or unexpected key is an error naming it).

Frozen networks: the VAE (``--vae FOLDER`` from ``anchor train vae``, else the family's:
tiny preset / ``model.sd_path/vae``) and the CLIP vision encoder (tiny preset for the
tiny and demo families, else ``model.clip_path``; the paper never trains it).

A *bundle* holds these networks: ``body/{unet,controlnet}`` (and ``head/...`` when
trained), ``vae/``, ``clip/`` and ``null_embedding.safetensors``, everything the samplers
need and no other folder. model/training/bundle.py writes it, model/bundle.py reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from transformers import CLIPVisionModel

from model.config import ModelConfig
from model.errors import AnchorError
from model.loading import (
    empty_prompt_embedding,
    load_clip_vision,
    load_controlnet,
    load_text_encoder,
    load_unet,
    load_vae,
    require_folder,
)
from model.presets import (
    TINY_WIDTH,
    controlnet_from_unet,
    tiny_clip_vision,
    tiny_controlnet,
    tiny_unet,
    tiny_vae,
)

FAMILIES = ("tiny", "demo", "sd15")
DEMO_CONDITIONING_CHANNELS = (16, 32, 32, 64)


def demo_unet(in_channels: int = 4) -> UNet2DConditionModel:
    """The CPU demo family's UNet: 3 levels (latent 16 -> 8 -> 4 at 128 px), attention on
    the two coarse levels, cross-attention width = the tiny CLIP's (about 17 ms per frame
    and step for UNet + ControlNet on one CPU core)."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64, 96),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TINY_WIDTH,
        attention_head_dim=16,
        norm_num_groups=16,
    )


def demo_vae() -> AutoencoderKL:
    """The demo family's small autoencoder (image / 8, 4 latent channels), trained by
    ``anchor train vae``."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        # Narrow at full resolution: the decoder's cost per frame is dominated by its two
        # finest levels (about 25 ms per 128 px frame on one CPU core).
        block_out_channels=(8, 16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=1.0,
    )


@dataclass
class PartNetworks:
    """Trained networks of one part (body or head)."""

    unet: UNet2DConditionModel
    controlnet: ControlNetModel


@dataclass
class FrozenNetworks:
    """Frozen networks: VAE, CLIP vision encoder, the null embedding (T, D) float32."""

    vae: AutoencoderKL
    clip: CLIPVisionModel
    null_embedding: torch.Tensor


def _is_family(init: str) -> bool:
    return init in FAMILIES


def initial_networks(init: str, part: str, model: ModelConfig) -> PartNetworks:
    """UNet + ControlNet to train (see the module docstring); ``part`` body or head."""
    face = part == "head"
    if not _is_family(init):
        folder = Path(init)
        field = "--init"
        unet = load_unet(require_folder(folder, field, part, "unet"), field)
        controlnet = load_controlnet(require_folder(folder, field, part, "controlnet"), field)
        return PartNetworks(unet, controlnet)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.tiny_seed)
        if init == "tiny":
            unet = tiny_unet(in_channels=9 if face else 4)
            controlnet = tiny_controlnet(unet, in_channels=4 if face else None)
        elif init == "demo":
            unet = demo_unet(in_channels=9 if face else 4)
            controlnet = controlnet_from_unet(unet, DEMO_CONDITIONING_CHANNELS, 4 if face else None)
        else:
            sd = require_folder(model.sd_path, "model.sd_path")
            field = "model.sd_path" if not face else "model.sd_inpainting_path"
            root = sd if not face else require_folder(model.sd_inpainting_path, field)
            unet = load_unet(require_folder(root, field, "unet"), field)
            controlnet = controlnet_from_unet(unet, (16, 32, 96, 256), 4 if face else None)
    return PartNetworks(unet, controlnet)


def frozen_networks(
    init: str, model: ModelConfig, vae_folder: Path | None, clip_folder: Path | None = None
) -> FrozenNetworks:
    """VAE, CLIP and null embedding for a run (see the module docstring)."""
    family = init if _is_family(init) else ("sd15" if model.sd_path is not None else "tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.tiny_seed)
        if vae_folder is not None:
            vae = load_vae(require_folder(vae_folder, "--vae"), "--vae")
        elif family == "tiny":
            vae = tiny_vae()
        elif family == "demo":
            raise AnchorError("--init demo needs --vae FOLDER (train one with anchor train vae)")
        else:
            sd = require_folder(model.sd_path, "model.sd_path")
            vae = load_vae(require_folder(sd, "model.sd_path", "vae"), "model.sd_path")
        if clip_folder is not None:
            clip = load_clip_vision(require_folder(clip_folder, "--clip"), "--clip")
        elif family in ("tiny", "demo"):
            clip = tiny_clip_vision()
        else:
            field = "model.clip_path"
            clip = load_clip_vision(require_folder(model.clip_path, field), field)
    image_size, patch_size = cast(int, clip.config.image_size), cast(int, clip.config.patch_size)
    tokens = (image_size // patch_size) ** 2 + 1
    if family == "sd15" and model.sd_path is not None:
        encoder, tokenizer = load_text_encoder(model.sd_path, "model.sd_path")
        null = empty_prompt_embedding(encoder, tokenizer, tokens)
    else:
        null = torch.zeros(tokens, int(clip.config.hidden_size))
    for network in (vae, clip):
        network.eval().requires_grad_(False)
    return FrozenNetworks(vae, clip, null)


def initial_vae(init: str, model: ModelConfig) -> AutoencoderKL:
    """The autoencoder ``anchor train vae`` starts from: the tiny preset or the demo
    family (seeded with ``model.tiny_seed``), else ``<init>/vae``."""
    if init not in ("tiny", "demo"):
        return load_vae(Path(init) / "vae", "--init")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model.tiny_seed)
        return tiny_vae() if init == "tiny" else demo_vae()


def check_compatible(frozen: FrozenNetworks, networks: PartNetworks) -> None:
    """Raise AnchorError when the CLIP tokens are not as wide as the UNet's cross-attention."""
    width = frozen.null_embedding.shape[1]
    cross = networks.unet.config["cross_attention_dim"]
    if width != cross:
        raise AnchorError(
            f"CLIP width {width} != UNet cross_attention_dim {cross}: --init and the "
            "frozen networks (--clip, model.clip_path) belong to different families"
        )


def place_frozen(frozen: FrozenNetworks, device: torch.device, dtype: torch.dtype) -> None:
    """Moves the frozen VAE and CLIP to ``device`` in ``dtype`` (in place)."""
    networks: tuple[torch.nn.Module, ...] = (frozen.vae, frozen.clip)
    for network in networks:
        network.to(device=device)
        # diffusers warns on every dtype cast, also a no-op one.
        if next(network.parameters()).dtype != dtype:
            network.to(dtype=dtype)
