"""Tiny autoencoders (diffusers ``AutoencoderTiny``: TAESD, or one distilled with
``anchor train vae --tiny``) in place of a model's AutoencoderKL.

A tiny folder is a plain ``save_pretrained`` folder. Its latents are the UNet's scaled
latents (``scaling_factor`` 1.0, TAESD's convention), so it decodes what the UNet
produces unchanged. A folder distilled without ``--tiny-encoder`` carries
``anchor_tiny.json`` with ``"encoder_trained": false``: its encoder is untrained, and
the full VAE keeps encoding wherever a model encodes images (the face model's masked
crops).
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

from model.loading import load_diffusers_model

Autoencoder = AutoencoderKL | AutoencoderTiny
TINY_META = "anchor_tiny.json"


def load_tiny_vae(folder: Path, field: str) -> AutoencoderTiny:
    """An AutoencoderTiny from a ``save_pretrained`` folder, strictly (model/loading.py)."""
    return load_diffusers_model(AutoencoderTiny, Path(folder), field)


def encoder_trained(folder: Path) -> bool:
    """Whether the tiny folder's encoder may encode (absent metadata: yes, as TAESD's)."""
    meta = Path(folder) / TINY_META
    if not meta.is_file():
        return True
    return bool(json.loads(meta.read_text()).get("encoder_trained", True))


def with_tiny_vae(
    vae: AutoencoderKL, folder: Path | None, field: str
) -> tuple[Autoencoder, Autoencoder]:
    """(decoder, encoder) autoencoders: ``vae`` for both when ``folder`` is None, else the
    tiny one decodes and also encodes when its encoder was trained."""
    if folder is None:
        return vae, vae
    tiny = load_tiny_vae(folder, field)
    return tiny, (tiny if encoder_trained(folder) else vae)
