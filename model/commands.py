"""``anchor generate`` and ``anchor bench model``.

No torch import at module level (``anchor --help`` stays fast); handlers import lazily.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.errors import AnchorError

if TYPE_CHECKING:
    from server.config import AppConfig

log = logging.getLogger("anchor.generate")

GENERATE_MODES = ("offline", "exact", "low")


def register(commands: Any, bench: Any) -> None:
    """Add ``generate`` to the top-level commands and ``model`` to ``anchor bench``."""
    generate = commands.add_parser(
        "generate",
        help="render a video offline from a folder of condition images",
        description=(
            "Generate frames from condition images (mesh renders named %%06d.png, resized "
            "to the model resolution). OUT ending in .mp4 is an H.264 video at render.fps; "
            "otherwise a folder of lossless %%06d.png frames."
        ),
    )
    generate.add_argument("input", type=Path, help="folder of condition images %%06d.png")
    generate.add_argument("--out", type=Path, required=True, help="OUT.mp4 or a folder")
    generate.add_argument(
        "--mode", choices=GENERATE_MODES, default=None, help="sampler (default: sampler.mode)"
    )
    generate.add_argument("--frames", type=int, default=None, help="use the first N images")
    generate.add_argument("--seed", type=int, default=None, help="noise seed (sampler.seed)")
    generate.add_argument(
        "--reference", type=Path, default=None, help="appearance image (model.reference_image)"
    )
    generate.add_argument("--steps", type=int, default=None, help="DDIM steps (sampler.steps)")
    generate.set_defaults(handler=generate_command)

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


def generate_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor generate``."""
    from model.components import build_components
    from model.offline import generate_frames
    from model.video_io import read_condition_folder, write_frames

    sampler_update: dict[str, Any] = {}
    if args.mode is not None:
        sampler_update["mode"] = args.mode
    if args.steps is not None:
        if args.steps < 1:
            raise AnchorError(f"--steps must be >= 1, got {args.steps}")
        sampler_update["steps"] = args.steps
    sampler = config.sampler.model_copy(update=sampler_update)
    model = config.model
    if args.reference is not None:
        model = model.model_copy(update={"reference_image": args.reference})
    # Face enhancement needs face geometry from motion files; condition folders carry none.
    face = config.face.model_copy(update={"enabled": False})
    components = build_components(model, sampler, face)
    images = read_condition_folder(args.input, components.image_size, args.frames)
    log.info("generating %d frames from %s (%s)", images.shape[0], args.input, sampler.mode)

    def progress(step: int, total: int) -> None:
        log.info("step %d/%d", step, total)

    frames = generate_frames(
        components.denoiser, components.scheduler, images, sampler, args.seed, progress
    )
    write_frames(frames, args.out, config.render.fps)
    print(f"wrote {frames.shape[0]} frames to {args.out}")
    return 0


def bench_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench model``."""
    from model.bench import bench_model, format_report

    sizes = args.latent_sizes or ([16, 32] if config.model.preset == "tiny" else [64])
    report = bench_model(config.model, tuple(sizes), args.repeats)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
