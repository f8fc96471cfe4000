"""``anchor train vae --tiny``: distil a diffusers ``AutoencoderTiny`` from an identity's
own VAE on its training frames (model/tiny_vae.py loads the result).

The teacher is the full AutoencoderKL (``--init FOLDER``'s ``vae/``, or ``head/vae`` with
``--faces`` when the bundle has one). Every step encodes a batch of training frames with
the teacher to scaled latents (what the UNet produces) and trains the tiny decoder to
reproduce the teacher's decoding of them (L1 + MSE in pixels); with ``--tiny-encoder``
the tiny encoder learns to map the frames to the teacher's latents (MSE). The folder
written is a ``save_pretrained`` AutoencoderTiny (scaling factor 1: it works on scaled
latents) plus ``anchor_tiny.json``: whether its encoder was trained, the teacher, and the
reconstruction SSIM/PSNR of tiny and full VAE against the frames (model/evaluation/pixels.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

from model.config import ModelConfig
from model.evaluation.pixels import psnr, ssim
from model.loading import load_vae
from model.sgdm import vae_decode, vae_encode
from model.tiny_vae import TINY_META, Autoencoder
from model.training.config import TrainConfig
from model.training.data import TrainingSamples
from model.training.networks import initial_vae
from model.video_io import to_uint8

log = logging.getLogger("anchor.train.tiny")


@dataclass
class TinyRun:
    """What ``anchor train vae --tiny`` was asked for.

    channels: the tiny autoencoder's block widths (TAESD: 64 in each of 4 blocks).
    evaluation_frames: how many distinct training frames the SSIM/PSNR uses.
    """

    data: list[Path]
    out: Path
    init: str = "tiny"
    faces: bool = False
    encoder: bool = False
    image_size: int | None = None
    channels: tuple[int, ...] = (64, 64, 64, 64)
    evaluation_frames: int = 16
    figures: dict[str, Any] = field(default_factory=dict)


def teacher_vae(init: str, faces: bool, model: ModelConfig) -> AutoencoderKL:
    """The full VAE to distil: ``init/head/vae`` for faces when present, else as
    ``anchor train vae`` starts (``initial_vae``)."""
    face_vae = Path(init) / "head" / "vae"
    if faces and face_vae.is_dir():
        return load_vae(face_vae, "--init")
    return initial_vae(init, model)


def tiny_for(teacher: AutoencoderKL, channels: tuple[int, ...]) -> AutoencoderTiny:
    """A fresh AutoencoderTiny with the teacher's latent channels and an 8x scale
    (4 blocks: 3 down/upsamplings), TAESD's layout at the given widths."""
    if len(channels) != 4:
        raise ValueError(f"--tiny-channels needs 4 widths (3 down/upsamplings), got {channels}")
    return AutoencoderTiny(
        encoder_block_out_channels=channels,
        decoder_block_out_channels=channels,
        latent_channels=int(teacher.config["latent_channels"]),
        scaling_factor=1.0,
    )


def _batches(samples: TrainingSamples, batch: int, steps: int) -> Any:
    for step in range(steps):
        items = [samples[step * batch + k]["target"] for k in range(batch)]
        yield step, torch.stack(items)


def reconstruction_figures(
    teacher: AutoencoderKL, tiny: Autoencoder, frames: torch.Tensor, tiny_encodes: bool
) -> dict[str, float]:
    """SSIM/PSNR of the full VAE's and the tiny decoder's reconstructions of ``frames``
    ((N, 3, S, S) float32 [0, 1]) against the frames. Both decode the teacher's latents;
    with ``tiny_encodes`` also the tiny round trip (tiny encoder + tiny decoder)."""
    truth = to_uint8(frames)
    latents = vae_encode(teacher, frames)
    full = to_uint8(vae_decode(teacher, latents))
    small = to_uint8(vae_decode(tiny, latents))
    figures = {
        "full_ssim": ssim(full, truth),
        "full_psnr": psnr(full, truth),
        "tiny_ssim": ssim(small, truth),
        "tiny_psnr": psnr(small, truth),
    }
    if tiny_encodes:
        round_trip = to_uint8(vae_decode(tiny, vae_encode(tiny, frames)))
        figures["tiny_roundtrip_ssim"] = ssim(round_trip, truth)
        figures["tiny_roundtrip_psnr"] = psnr(round_trip, truth)
    return figures


def distil_tiny_vae(run: TinyRun, config: TrainConfig, model: ModelConfig) -> dict[str, Any]:
    """Train and write ``run.out`` (see the module docstring); returns the figures:
    step count, last loss, SSIM/PSNR of tiny and full VAE, the output folder."""
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    samples = TrainingSamples(
        run.data, "vae", run.image_size, config.seed, 0.0, 0.0, faces=run.faces
    )
    teacher = teacher_vae(run.init, run.faces, model)
    tiny = tiny_for(teacher, run.channels)
    networks: tuple[torch.nn.Module, ...] = (teacher, tiny)
    for network in networks:
        network.to(device=device)
    teacher.eval().requires_grad_(False)
    if not run.encoder:
        tiny.encoder.requires_grad_(False)
    trained = [parameter for parameter in tiny.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(
        trained, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_value = float("nan")
    for step, frames in _batches(samples, config.batch_size, config.steps):
        pixels = frames.to(device) * 2.0 - 1.0
        with torch.no_grad():
            latents = teacher.encode(pixels).latent_dist.mode() * teacher.config["scaling_factor"]
            target = teacher.decode(latents / teacher.config["scaling_factor"]).sample
        decoded = tiny.decode(latents).sample  # type: ignore[union-attr]
        loss = F.l1_loss(decoded, target) + F.mse_loss(decoded, target)
        if run.encoder:
            loss = loss + F.mse_loss(tiny.encode(pixels).latents, latents)  # type: ignore[union-attr]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(trained, config.max_grad_norm)
        optimizer.step()
        loss_value = float(loss.detach())
        if (step + 1) % 100 == 0:
            log.info("tiny VAE step %d/%d: loss %.5f", step + 1, config.steps, loss_value)
    tiny.eval().requires_grad_(False)
    count = min(run.evaluation_frames, len(samples.frames))
    frames = torch.stack([samples[position]["target"] for position in range(count)])
    figures = reconstruction_figures(teacher, tiny, frames, run.encoder)
    run.out.mkdir(parents=True, exist_ok=True)
    tiny.save_pretrained(run.out)
    meta = {"encoder_trained": run.encoder, "teacher": run.init, "figures": figures}
    (run.out / TINY_META).write_text(json.dumps(meta, indent=1) + "\n")
    return {"step": config.steps, "loss": loss_value, "final": str(run.out), **figures}
