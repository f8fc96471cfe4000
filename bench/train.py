"""``anchor bench train``: training-step speed and the demo model's figures.

- it/s of one body training step (tiny preset, batch 4, 64 px, CPU, AdamW, clipping);
- when the demo bundle exists: committed frames/s of the streaming sampler (``low``
  mode, the bundle's steps, CFG off) including the condition encoding and the VAE decode,
  and SSIM / PSNR of its output against the held-out synthetic ground truth; with the
  bundle's face model, the same with the face stage on and SSIM / PSNR of the face crops.
  SSIM and PSNR are ``anchor eval``'s (model/evaluation/pixels.py) on uint8 frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.config import ModelConfig
from model.evaluation import pixels
from model.video_io import to_uint8

if TYPE_CHECKING:
    from app.config import AppConfig


def psnr(images: torch.Tensor, targets: torch.Tensor) -> float:
    """``model.evaluation.pixels.psnr`` (dB, peak 255, mean over frames) of (N, 3, H, W)
    float [0, 1] frames, rounded to uint8 by ``to_uint8`` as a written video is."""
    return pixels.psnr(to_uint8(images), to_uint8(targets))


def ssim(images: torch.Tensor, targets: torch.Tensor) -> float:
    """``model.evaluation.pixels.ssim`` (RGB, 11x11 Gaussian window, mean over frames) of
    (N, 3, H, W) float [0, 1] frames, rounded to uint8 by ``to_uint8``."""
    return pixels.ssim(to_uint8(images), to_uint8(targets))


def training_step_speed(steps: int, batch: int = 4) -> dict[str, Any]:
    """Seconds per body training step of the tiny preset on the CPU (median of ``steps``)."""
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    from model.presets import SD15_SCHEDULER_CONFIG, TINY_IMAGE_SIZE
    from model.training.losses import appearance_tokens, diffusion_loss, encode_latents
    from model.training.networks import frozen_networks, initial_networks

    model = ModelConfig()
    networks = initial_networks("tiny", "body", model)
    frozen = frozen_networks("tiny", model, None)
    parameters = [*networks.unet.parameters(), *networks.controlnet.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5, weight_decay=1e-2)
    scheduler = DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    generator = torch.Generator().manual_seed(0)
    size = TINY_IMAGE_SIZE
    images = torch.rand(3, batch, 3, size, size, generator=generator)
    drop = torch.zeros(batch, dtype=torch.bool)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        latents = encode_latents(frozen.vae, images[0])
        tokens = appearance_tokens(frozen.clip, images[2], drop, frozen.null_embedding)
        loss = diffusion_loss(
            networks.unet, networks.controlnet, scheduler, latents, images[1], tokens, generator
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    median = sorted(times[1:])[len(times[1:]) // 2]
    return {"preset": "tiny", "batch": batch, "size": size, "it_per_s": 1.0 / median,
            "threads": torch.get_num_threads()}  # fmt: skip


def bench_train(
    steps: int,
    demo: Path,
    heldout: Path | None,
    config: AppConfig,
    demo_figures: Callable[[Path, Path, AppConfig], dict[str, Any]],
) -> dict[str, Any]:
    """The report printed by ``anchor bench train``.

    demo_figures(bundle, heldout, config): the demo model's figures through the live
    chain (``bench.heldout.demo_figures``), passed in because model/ never imports
    streaming/.
    """
    report: dict[str, Any] = {"train_step": training_step_speed(steps)}
    heldout = heldout or Path(".cache/demo-data/heldout")
    if (demo / "body").is_dir() and (heldout / "manifest.jsonl").is_file():
        report["demo"] = demo_figures(demo, heldout, config)
    else:
        report["demo"] = None
        report["demo_missing"] = (
            f"needs the demo bundle {demo} and a held-out dataset {heldout} "
            "(anchor synth-dataset --out .cache/demo-data --size 128 ...)"
        )
    return report


def format_report(report: dict[str, Any]) -> str:
    step = report["train_step"]
    lines = [
        f"train step (tiny, batch {step['batch']}, {step['size']} px, "
        f"{step['threads']} threads): {step['it_per_s']:.2f} it/s"
    ]
    demo = report.get("demo")
    if demo:
        lines.append(
            f"demo {demo['size']} px, {demo['steps']} steps {demo['mode']}: "
            f"{demo['fps']:.1f} frames/s, SSIM {demo['ssim']:.3f}, PSNR {demo['psnr']:.2f} dB "
            f"on {demo['frames']} held-out frames"
        )
        if demo.get("arm_adherence") is not None:
            lines.append(f"arm adherence {demo['arm_adherence']:.3f} (bench.heldout.arm_adherence)")
        face = demo.get("face_on")
        if face:
            lines.append(
                f"  with the face stage ({face['face_size']} px, {face['face_steps']} steps): "
                f"{face['fps']:.1f} frames/s, SSIM {face['ssim']:.3f}, face crops SSIM "
                f"{face['face_off_face_crop_ssim']:.3f} -> {face['face_crop_ssim']:.3f}, "
                f"PSNR {face['face_off_face_crop_psnr']:.2f} -> {face['face_crop_psnr']:.2f} dB"
            )
    else:
        lines.append(f"demo: {report.get('demo_missing')}")
    return "\n".join(lines)
