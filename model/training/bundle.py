"""Run a trained bundle (``OUT/final`` of ``anchor train``, or clients/models/demo).

A bundle folder holds ``body/{unet,controlnet}``, ``vae/``, ``clip/``,
``null_embedding.safetensors`` and, for a shipped model, ``bundle.json`` (image size,
suggested sampler settings) and ``reference.png`` (the appearance image). Everything is
loaded strictly (model/loading.py). ``load_bundle`` returns the same ``Components`` as
``model.components.build_components``, so every sampler runs it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model.components import Components, resolve_placement
from model.config import ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.loading import load_clip_vision, load_controlnet, load_unet, load_vae, require_folder
from model.training.networks import load_null_embedding

BUNDLE_META = "bundle.json"
REFERENCE = "reference.png"


def bundle_meta(folder: Path) -> dict[str, Any]:
    """``bundle.json`` (empty when absent)."""
    path = folder / BUNDLE_META
    return json.loads(path.read_text()) if path.is_file() else {}


def load_bundle(
    folder: Path, model: ModelConfig, sampler: SamplerConfig, reference: Path | None = None
) -> Components:
    """The body model of a bundle as ``Components`` (no face enhancer).

    reference: appearance image; default ``model.reference_image``, else the bundle's
    ``reference.png``. Image size: ``model.image_size``, else ``bundle.json``'s, else the
    VAE's ``sample_size``.
    """
    import torch

    from model.scheduling import DDIMFrameScheduler
    from model.sgdm import SGDMDenoiser, encode_appearance
    from model.video_io import read_image

    field = "bundle"
    unet = load_unet(require_folder(folder, field, "body", "unet"), field)
    controlnet = load_controlnet(require_folder(folder, field, "body", "controlnet"), field)
    vae = load_vae(require_folder(folder, field, "vae"), field)
    clip = load_clip_vision(require_folder(folder, field, "clip"), field)
    null = load_null_embedding(folder)
    device, dtype = resolve_placement(model)
    networks: tuple[torch.nn.Module, ...] = (unet, controlnet, vae, clip)
    for network in networks:
        network.eval().requires_grad_(False).to(device=device)
        if next(network.parameters()).dtype != dtype:
            network.to(dtype=dtype)
    meta = bundle_meta(folder)
    size = model.image_size or int(meta.get("image_size") or vae.config["sample_size"])
    image_path = reference or model.reference_image or folder / REFERENCE
    if not Path(image_path).is_file():
        raise AnchorError(f"bundle {folder}: no reference image (set model.reference_image)")
    appearance = encode_appearance(clip, read_image(Path(image_path), size))
    denoiser = SGDMDenoiser(
        unet,
        controlnet,
        vae,
        appearance,
        null,
        image_size=size,
        guidance_scale=sampler.guidance_scale,
        controlnet_scale=sampler.controlnet_scale,
        attention=model.attention,
        window_groupnorm=model.window_groupnorm,
        cache_conditioning=model.cache_conditioning,
    )
    scheduler = DDIMFrameScheduler.sd15(sampler.steps)
    return Components(denoiser, scheduler, None, appearance, device, dtype)
