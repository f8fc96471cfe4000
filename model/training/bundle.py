"""Write a trained bundle: what ``anchor train`` leaves in ``OUT/final`` (and checkpoints).

The layout is the one model/bundle.py reads: ``<part>/{unet,controlnet}`` (``part`` body
or head, the official checkpoint layout), ``vae/``, ``clip/``,
``null_embedding.safetensors``, ``reference.png`` (``head/reference.png`` for the face
model) and ``bundle.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from model.bundle import BUNDLE_META, NULL_EMBEDDING, REFERENCE
from model.training.networks import FrozenNetworks, PartNetworks
from model.video_io import to_uint8


def save_part(networks: PartNetworks, folder: Path, part: str) -> None:
    """``folder/<part>/{unet,controlnet}`` (the official checkpoint layout)."""
    networks.unet.save_pretrained(folder / part / "unet")
    networks.controlnet.save_pretrained(folder / part / "controlnet")


def save_bundle(folder: Path, frozen: FrozenNetworks) -> None:
    """Completes a checkpoint folder into a self-contained bundle: vae/, clip/, null."""
    from safetensors.torch import save_file

    frozen.vae.save_pretrained(folder / "vae")
    frozen.clip.save_pretrained(folder / "clip")
    save_file({"null_embedding": frozen.null_embedding.contiguous()}, str(folder / NULL_EMBEDDING))


def write_reference(folder: Path, image: torch.Tensor) -> None:
    """``folder/reference.png``, the default appearance: a (3, H, W) float [0, 1] image
    rounded to uint8 (``folder`` is the bundle, or its ``head/`` for the face model)."""
    Image.fromarray(to_uint8(image[None])[0]).save(folder / REFERENCE)


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """``folder/bundle.json``: image size and the sampler settings the model was trained for."""
    (folder / BUNDLE_META).write_text(json.dumps(meta, indent=2) + "\n")
