"""``anchor generate`` and ``anchor bench sampler``: the streaming package's commands.

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
    """Add ``generate`` to the commands and ``sampler`` to ``anchor bench``."""
    generate = commands.add_parser(
        "generate",
        help="render a video from a motion file or a folder of condition images",
        description=(
            "Generate frames from a motion file (TalkSHOW .npy, EMAGE .npz, SHOW .pkl or the "
            "project's .npz: rendered as mesh conditions, with face enhancement) or a folder of "
            "condition images (mesh renders named %%06d.png, resized to the model resolution; "
            "no face geometry, so no face enhancement). OUT ending in .mp4 is an H.264 video "
            "at render.fps; otherwise a folder of lossless %%06d.png frames."
        ),
    )
    generate.add_argument("input", type=Path, help="motion file or folder of %%06d.png")
    generate.add_argument("--out", type=Path, required=True, help="OUT.mp4 or a folder")
    generate.add_argument(
        "--mode", choices=GENERATE_MODES, default=None, help="sampler (default: sampler.mode)"
    )
    generate.add_argument("--frames", type=int, default=None, help="use the first N frames")
    generate.add_argument("--seed", type=int, default=None, help="noise seed (sampler.seed)")
    generate.add_argument(
        "--reference", type=Path, default=None, help="appearance image (model.reference_image)"
    )
    generate.add_argument("--steps", type=int, default=None, help="DDIM steps (sampler.steps)")
    generate.set_defaults(handler=generate_command)

    train = bench.add_parser(
        "train",
        help="it/s of a training step (tiny preset, CPU) and the demo model's figures",
    )
    train.add_argument("--steps", type=int, default=5, help="timed training steps")
    _heldout_arguments(train)
    train.set_defaults(handler=bench_train_command)

    quality = bench.add_parser(
        "quality",
        help="the demo model vs ground truth: the paper's Table 1/2 rows on held-out motion",
    )
    quality.add_argument("--frames", type=int, default=96, help="held-out frames per row")
    _heldout_arguments(quality)
    quality.add_argument(
        "--variants", default=None, help="comma-separated rows to run (default: all)"
    )
    quality.add_argument(
        "--steps", type=int, default=None, help="DDIM steps (default: the bundle's own)"
    )
    quality.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    quality.set_defaults(handler=bench_quality_command)

    presets = bench.add_parser(
        "presets",
        help="ms per committed frame, latency and SSIM of each preset (quality, live, cpu-tiny)",
    )
    presets.add_argument("--frames", type=int, default=48, help="held-out frames per preset")
    _heldout_arguments(presets, bundle=False)
    presets.add_argument("--presets", default=None, help="comma-separated (default: all)")
    presets.set_defaults(handler=bench_presets_command)

    parser = bench.add_parser(
        "sampler",
        help="ms per committed frame, overhead and latency of offline, exact and low sampling",
        description=(
            "Runs offline, exact (stream-batched, unbatched, eager) and low sampling on the "
            "same clip with the configured model (tiny preset by default), frames pushed one "
            "at a time, and prints cost, overhead (wall / model time), stream-batch speedup "
            "and latency in frames for each mode."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--frames", type=int, default=64, help="clip length (default 64)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (sampler.steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.set_defaults(handler=bench_command)


def _heldout_arguments(parser: argparse.ArgumentParser, bundle: bool = True) -> None:
    """--json, --heldout (and --demo) of the benches scored on the held-out synthetic clip."""
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--heldout", type=Path, default=None, help="held-out synthetic dataset (ground truth)"
    )
    if bundle:
        parser.add_argument(
            "--demo", type=Path, default=Path("clients/models/demo"), help="model bundle"
        )


def bench_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench sampler``."""
    from streaming.bench import bench_sampler, format_report

    if args.frames < 1:
        raise AnchorError(f"--frames must be >= 1, got {args.frames}")
    sampler = config.sampler
    if args.steps is not None:
        if args.steps < 1:
            raise AnchorError(f"--steps must be >= 1, got {args.steps}")
        sampler = sampler.model_copy(update={"steps": args.steps})
    report = bench_sampler(config.model, sampler, args.frames, args.threads)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def generate_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor generate``: the whole chain of a live session, on one clip."""
    import torch

    from model.components import build_components
    from model.motion.conditions import render_motion_conditions
    from model.video_io import read_condition_folder, write_frames
    from streaming.frames import ConditionFrame
    from streaming.generate import condition_frames, generate_streaming

    update: dict[str, Any] = {}
    if args.mode is not None:
        update["mode"] = args.mode
    if args.seed is not None:
        update["seed"] = args.seed
    if args.steps is not None:
        if args.steps < 1:
            raise AnchorError(f"--steps must be >= 1, got {args.steps}")
        update["steps"] = args.steps
    if args.frames is not None and args.frames < 1:
        raise AnchorError(f"--frames must be >= 1, got {args.frames}")
    sampler = config.sampler.model_copy(update=update)
    model = config.model
    if args.reference is not None:
        model = model.model_copy(update={"reference_image": args.reference})
    from_motion = args.input.is_file()
    face = config.face
    if not from_motion and face.enabled:
        log.info("condition folders carry no face geometry: face enhancement is off")
        face = face.model_copy(update={"enabled": False})
    if model.threads is not None:
        torch.set_num_threads(model.threads)
    components = build_components(model, sampler, face)
    fps = config.render.fps
    if from_motion:
        windows = render_motion_conditions(
            args.input,
            config.render,
            window=sampler.window_size,
            face_size=face.size,
            limit=args.frames,
        )
        face_size = face.size if face.enabled and components.face is not None else None
        conditions = condition_frames(windows, components.image_size, face_size, fps)
    else:
        images = read_condition_folder(args.input, components.image_size, args.frames)
        conditions = [
            ConditionFrame(seq=index, pts=index / fps, condition=image)
            for index, image in enumerate(images)
        ]
    if not conditions:
        raise AnchorError(f"{args.input}: no frames to generate")
    log.info("generating %d frames from %s (%s)", len(conditions), args.input, sampler.mode)
    committed = generate_streaming(conditions, components, sampler, face)
    frames = torch.stack([frame.image for frame in committed if frame.image is not None])
    write_frames(frames, args.out, fps)
    print(f"wrote {frames.shape[0]} frames to {args.out}")
    return 0


def bench_train_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench train``."""
    from model.training.bench import bench_train, format_report
    from streaming.quality import demo_figures

    report = bench_train(args.steps, args.demo, args.heldout, config, demo_figures)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def bench_quality_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench quality``."""
    from streaming.bench_quality import bench_quality, format_report

    if args.frames < 2:
        raise AnchorError(f"--frames must be >= 2, got {args.frames}")
    names = [name.strip() for name in args.variants.split(",")] if args.variants else None
    if args.steps is not None and args.steps < 1:
        raise AnchorError(f"--steps must be >= 1, got {args.steps}")
    report = bench_quality(config, args.demo, args.heldout, args.frames, names, args.steps)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text if args.json else format_report(report))
    return 0


def bench_presets_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench presets`` (loads each preset over --config and --set)."""
    from server.presets import PRESETS
    from streaming.bench_presets import bench_presets, format_report

    names = [name.strip() for name in args.presets.split(",")] if args.presets else None
    unknown = sorted(set(names or []) - set(PRESETS))
    if unknown:
        raise AnchorError(f"--presets: unknown {unknown} (choose from {', '.join(PRESETS)})")
    if args.frames < 2:
        raise AnchorError(f"--frames must be >= 2, got {args.frames}")
    report = bench_presets(args.config, args.overrides, args.heldout, args.frames, names)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
