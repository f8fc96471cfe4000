"""Write a trained bundle: what ``anchor train`` leaves in ``OUT/final`` (and checkpoints).

The layout is the one model/bundle.py reads: ``<part>/{unet,controlnet}`` (``part`` body
or head, the official checkpoint layout), ``vae/``, ``clip/`` and
``null_embedding.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

from model.bundle import NULL_EMBEDDING
from model.training.networks import FrozenNetworks, PartNetworks


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
