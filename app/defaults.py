"""The embedded defaults: the committed demo bundle (clients/models/demo, trained on the
synthetic anchor with the project's own commands; see README, "Training") with the settings
it was trained and measured with. ``app.config`` applies them when no source chooses a
model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMO_MODEL = Path(__file__).resolve().parents[1] / "clients" / "models" / "demo"
# Live rate control of the demo: frames are skipped, not queued, beyond this lag (seconds).
DEMO_MAX_LAG_S = 0.25
# The demo streams with the paper's temporal denoising (Algorithm 1, equal to offline): at
# its one body step the wavefront's latency is ws - 1 frames, the same as mode low's.
DEMO_MODE = "exact"


def bundle_json(folder: Path) -> dict[str, Any]:
    """A bundle's ``bundle.json`` (empty when absent), read without loading torch (the
    config layer reads it; model.bundle.bundle_meta is the model layer's reader)."""
    path = folder / "bundle.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def demo_model_settings(folder: Path = DEMO_MODEL) -> dict[str, dict[str, Any]]:
    """The config fields (section -> field -> value) that run the trained bundle ``folder``
    with the sampler and face settings it was trained and measured with (its
    ``bundle.json``); face enhancement is on when the bundle carries a face model."""
    meta = bundle_json(folder)
    if not meta:
        raise FileNotFoundError(f"demo model not found: {folder / 'bundle.json'}")
    size = int(meta["image_size"])
    settings: dict[str, dict[str, Any]] = {
        "model": {
            "preset": "bundle",
            "checkpoint_path": folder,
            "attention": meta.get("attention", "per-frame"),
        },
        "sampler": {
            "steps": int(meta["steps"]),
            "guidance_scale": float(meta["guidance_scale"]),
            "controlnet_scale": float(meta["controlnet_scale"]),
            "window_size": int(meta["window_size"]),
            "overlap": int(meta["overlap"]),
            # "lcm" for a consistency-distilled student (anchor distill).
            "scheduler": meta.get("scheduler", "ddim"),
            "lcm_strength": float(meta.get("lcm_strength", 1.0)),
        },
        "render": {"width": size, "height": size},
        "face": {"enabled": False},
    }
    face = meta.get("face")
    if face is not None and (folder / "head" / "unet").is_dir():
        settings["face"] = {
            "enabled": True,
            "size": int(face["size"]),
            "steps": int(face["steps"]),
            "guidance_scale": float(face["guidance_scale"]),
            "controlnet_scale": float(face["controlnet_scale"]),
            "scheduler": face.get("scheduler", "ddim"),
            "lcm_strength": float(face.get("lcm_strength", 1.0)),
        }
    return settings


def demo_defaults(folder: Path = DEMO_MODEL) -> dict[str, dict[str, Any]]:
    """The embedded default configuration (section -> field -> value): the trained demo
    bundle with its own settings, one torch thread, exact streaming (``DEMO_MODE``) and
    live rate control (what ``configs/demo.toml`` spells out)."""
    settings = demo_model_settings(folder)
    settings["model"]["threads"] = 1
    settings["sampler"]["mode"] = DEMO_MODE
    settings["server"] = {"max_lag_s": DEMO_MAX_LAG_S}
    return settings
