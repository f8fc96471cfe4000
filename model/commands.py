"""``anchor export-onnx``, ``anchor bench model`` and ``anchor bench onnx``.

No torch import at module level (``anchor --help`` stays fast); handlers import lazily.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.config import AppConfig


def register(commands: Any, bench: Any) -> None:
    """Add ``model`` to ``anchor bench``."""
    model_bench = bench.add_parser(
        "model", help="ms per UNet+ControlNet call on a 16-frame window, per attention mode"
    )
    model_bench.add_argument("--json", action="store_true", help="print JSON")
    model_bench.add_argument("--repeats", type=int, default=3, help="timed runs per figure")
    model_bench.add_argument(
        "--latent-sizes",
        type=int,
        nargs="+",
        default=None,
        help="latent sizes (default: 16 32 for tiny, 64 for sd15)",
    )
    model_bench.set_defaults(handler=bench_command)

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

    onnx_bench = bench.add_parser(
        "onnx", help="ms per 16-frame denoiser call: torch vs ONNX Runtime"
    )
    onnx_bench.add_argument("--json", action="store_true", help="print JSON")
    onnx_bench.add_argument("--repeats", type=int, default=5, help="timed runs per figure")
    onnx_bench.add_argument(
        "--latent-sizes",
        type=int,
        nargs="+",
        default=None,
        help="latent sizes (default: 8 16 32 for tiny, else the model's own size)",
    )
    onnx_bench.set_defaults(handler=bench_onnx_command)


def bench_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench model``."""
    from model.bench import bench_model, format_report

    sizes = args.latent_sizes or ([16, 32] if config.model.preset == "tiny" else [64])
    report = bench_model(config.model, tuple(sizes), args.repeats)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


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


def bench_onnx_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench onnx``."""
    from model.onnx_bench import bench_onnx, format_report

    sizes: list[int | None] = args.latent_sizes or (
        [8, 16, 32] if config.model.preset == "tiny" else [None]
    )
    report = bench_onnx(config.model, config.sampler, tuple(sizes), args.repeats)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
