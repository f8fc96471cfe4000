"""Quality and speed of a trained model through the live chain (sampler, decode).

Used by ``anchor bench train``: the demo bundle on held-out synthetic motion, with
SSIM/PSNR against the ground truth that the synthetic anchor provides.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from model.training.bench import psnr, ssim
from model.training.bundle import bundle_meta, load_bundle
from model.training.data import _image
from model.training.dataset import load_dataset, read_png
from streaming.frames import ConditionFrame
from streaming.generate import generate_streaming

if TYPE_CHECKING:
    from server.config import AppConfig


def demo_figures(
    folder: Path, heldout: Path, config: AppConfig, frames: int = 96
) -> dict[str, Any]:
    """Streaming fps and SSIM/PSNR of the demo bundle on held-out synthetic motion.

    The clip goes through the live chain (``streaming.generate.generate_streaming``:
    window sampler in ``low`` mode, condition encoding, VAE decode) with the sampler
    settings of the bundle's ``bundle.json``; fps counts committed, decoded frames.
    """
    meta = bundle_meta(folder)
    sampler = config.sampler.model_copy(
        update={
            "mode": "low",
            "steps": int(meta.get("steps", 2)),
            "guidance_scale": float(meta.get("guidance_scale", 1.0)),
            "controlnet_scale": float(meta.get("controlnet_scale", 1.0)),
            "window_size": int(meta.get("window_size", 8)),
            "overlap": int(meta.get("overlap", 2)),
        }
    )
    model = config.model.model_copy(update={"attention": meta.get("attention", "per-frame")})
    components = load_bundle(folder, model, sampler)
    size = components.image_size
    _, entries = load_dataset(heldout)
    entries = entries[:frames]
    conditions = [
        ConditionFrame(seq=index, pts=index / 30.0,
                       condition=_image(read_png(heldout / entry.condition), size))
        for index, entry in enumerate(entries)
    ]  # fmt: skip
    targets = torch.stack([_image(read_png(heldout / e.frame), size) for e in entries])
    start = time.perf_counter()
    committed = generate_streaming(conditions, components, sampler)
    elapsed = time.perf_counter() - start
    generated = torch.stack([frame.image for frame in committed if frame.image is not None])
    return {
        "bundle": str(folder),
        "heldout": str(heldout),
        "frames": len(entries),
        "size": size,
        "steps": sampler.steps,
        "mode": sampler.mode,
        "window_size": sampler.window_size,
        "overlap": sampler.overlap,
        "attention": model.attention,
        "threads": torch.get_num_threads(),
        "fps": len(entries) / elapsed,
        "ssim": ssim(generated, targets),
        "psnr": psnr(generated, targets),
    }
