"""``anchor bench presets``: cost, latency and quality of each speed preset on this machine.

Each preset (``app.presets``: quality, live, cpu-tiny) is loaded over the user's config
file and ``--set`` fields, so the weights stay the configured ones: on a GPU machine with
SD1.5 and the authors' checkpoints configured, the same command prints the GPU figures.
When no weights are configured (the tiny random preset), the committed demo bundle is the
weights, so every preset runs a trained model on the held-out synthetic clip and its
quality (SSIM/PSNR against the ground truth) means something.

Per preset: ms per committed frame of the live chain (sampler, decode, face stage) with
frames pushed as fast as the model takes them; latency as the frames a frame may wait in
the sampler (``streaming.sampler.latency_frames``), in seconds at the motion's fps, plus
the measured compute of one window stride; SSIM/PSNR of the output and of the face crops.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from app.config import AppConfig, load_config
from app.defaults import DEMO_MODEL, demo_model_settings
from app.presets import PRESETS
from bench.heldout import load_heldout, run_clip
from bench.quality import face_crop_scores, heldout_folder
from model.components import build_components
from model.evaluation.pixels import psnr, ssim
from model.video_io import to_uint8
from streaming.sampler import latency_frames


def weights_overrides(base: AppConfig) -> list[str]:
    """``--set`` fields that make the demo bundle the weights when none are configured (the
    embedded default), spelled out so that no preset inherits the demo's sampler settings."""
    if base.model.preset != "bundle" or base.model.checkpoint_path != DEMO_MODEL:
        return []
    settings = demo_model_settings(DEMO_MODEL)
    return [
        "model.preset=bundle",
        f"model.checkpoint_path={DEMO_MODEL}",
        f"face.size={settings['face'].get('size', base.face.size)}",
        f"render.width={settings['render']['width']}",
        f"render.height={settings['render']['height']}",
    ]


def bench_presets(
    config_path: Path | None,
    overrides: list[str],
    heldout: Path | None,
    frames: int,
    names: list[str] | None = None,
) -> dict[str, Any]:
    """Every preset (or those in ``names``) on ``frames`` held-out frames; a report."""
    folder = heldout_folder(heldout)
    base = load_config(config_path, overrides)
    weights = weights_overrides(base)
    rows = []
    for name in names or list(PRESETS):
        config = load_config(config_path, [*weights, *overrides], preset=name)
        rows.append(_measure(name, config, folder, frames))
    return {
        "heldout": str(folder),
        "frames": frames,
        "weights": "demo bundle (no weights configured)" if weights else "configured",
        "rows": rows,
    }


def _measure(name: str, config: AppConfig, folder: Path, frames: int) -> dict[str, Any]:
    sampler, model = config.sampler, config.model
    previous_threads = torch.get_num_threads()
    if model.threads is not None:
        torch.set_num_threads(model.threads)
    try:
        components = build_components(model, sampler, config.face)
        face = config.face if config.face.enabled and components.face is not None else None
        size = components.image_size
        clip = load_heldout(folder, size, face.size if face is not None else None, frames)
        started = time.perf_counter()
        images, _ = run_clip(clip.conditions, components, sampler, face)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    count = len(clip.conditions)
    ms_per_frame = 1000.0 * seconds / count
    hold = latency_frames(sampler)
    stride = sampler.window_size - sampler.overlap
    pred, truth = to_uint8(images), to_uint8(clip.targets)
    row: dict[str, Any] = {
        "preset": name,
        "mode": sampler.mode,
        "steps": sampler.steps,
        "guidance_scale": sampler.guidance_scale,
        "attention": model.attention,
        "window_size": sampler.window_size,
        "overlap": sampler.overlap,
        "size": size,
        "face": face is not None,
        "face_steps": face.steps if face is not None else None,
        "device": str(components.device),
        "threads": model.threads or previous_threads,
        "ms_per_frame": round(ms_per_frame, 1),
        "frames_per_s": round(1000.0 / ms_per_frame, 2),
        "latency_frames": hold if hold is not None else count - 1,
        "latency_s": round(
            (hold if hold is not None else count - 1) / config.render.fps
            + stride * ms_per_frame / 1000.0,
            2,
        ),
        "ssim": ssim(pred, truth),
        "psnr": psnr(pred, truth),
    }
    if face is not None:
        row["face_ssim"] = face_crop_scores(images, clip, face.size)["face_ssim"]
    return row


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['frames']} held-out frames, weights: {report['weights']}",
        "preset    | mode  | steps | cfg | attention | ws/os | px  | face | ms/frame | fps   "
        "| latency (frames, s) | SSIM  | face SSIM",
    ]
    for row in report["rows"]:
        face = f"{row['face_steps']} st" if row["face"] else "off"
        face_ssim = f"{row['face_ssim']:.3f}" if "face_ssim" in row else "-"
        lines.append(
            f"{row['preset']:<9} | {row['mode']:<5} | {row['steps']:>5} | "
            f"{row['guidance_scale']:>3g} | {row['attention']:<9} | "
            f"{row['window_size']}/{row['overlap']:<3} | {row['size']:>3} | {face:<4} | "
            f"{row['ms_per_frame']:>8.1f} | {row['frames_per_s']:>5.2f} | "
            f"{row['latency_frames']:>6}, {row['latency_s']:>6.2f} s    | "
            f"{row['ssim']:.3f} | {face_ssim}"
        )
    return "\n".join(lines)
