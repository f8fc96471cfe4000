"""``anchor export-onnx``, ``anchor bench model`` and ``anchor bench onnx``.

No torch import at module level (``anchor --help`` stays fast); handlers import lazily.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.config import AppConfig


def register(commands: Any) -> None:
    """Add ``model`` to ``anchor bench``."""
    export = commands.add_parser(
        "export-onnx",
        help="export the body model to ONNX for model.backend = onnxruntime",
        description=(
            "Write denoiser.onnx (ControlNet + UNet, dynamic windows and frames, the "
            "configured attention mode), vae_decoder.onnx, conditioning.onnx (with "
            "model.cache_conditioning), the appearance tokens and manifest.json to DIR. The "
            "config's model and sampler sections choose preset, size, attention and window "
            "size; run with model.backend = 'onnxruntime' and model.onnx_dir = DIR."
        ),
    )
    export.add_argument("--out", type=Path, required=True, help="output folder DIR")
    export.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor export-onnx``."""
    from model.onnx_export import export_onnx

    manifest = export_onnx(config.model, config.sampler, args.out)
    for graph in manifest["graphs"].values():
        data = f" (+ {graph['external_data']})" if graph["external_data"] else ""
        print(f"{args.out / graph['file']}{data}")
    print(
        f"{args.out / 'manifest.json'}: preset {manifest['preset']}, {manifest['image_size']} px, "
        f"window size {manifest['window_size']}, attention {manifest['attention']}, "
        f"opset {manifest['opset']}"
    )
    return 0
