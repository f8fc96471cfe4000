"""``anchor generate`` and ``anchor bench sampler``: the streaming package's commands.

No torch import at module level (``anchor --help`` stays fast); handlers import lazily.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.errors import AnchorError

if TYPE_CHECKING:
    from app.config import AppConfig

log = logging.getLogger("anchor.generate")

GENERATE_MODES = ("offline", "exact", "low")


def register(commands: Any) -> None:
    """Add ``generate`` to the commands and ``sampler`` to ``anchor bench``."""
    generate = commands.add_parser(
        "generate",
        help="render a video from a motion file or a folder of condition images",
        description=(
            "Generate frames from a motion file (TalkSHOW .npy, EMAGE .npz, SHOW .pkl or the "
            "project's .npz: rendered as mesh conditions, with face enhancement) or a folder of "
            "condition images (mesh renders named %%06d.png, resized to the model resolution "
            "with LANCZOS; face geometry from a face detector run on them). OUT ending in .mp4 "
            "is an H.264 video at render.fps; otherwise a folder of lossless PNG frames (named as "
            "the input frames when the input is a folder, else %%06d.png)."
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


def generate_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor generate``: the whole chain of a live session, on one clip."""
    import torch

    from model.components import build_components
    from model.motion.conditions import render_motion_conditions
    from model.video_io import condition_frame_paths, read_condition_folder, write_frames
    from streaming.frames import ConditionFrame
    from streaming.generate import generate_streaming
    from streaming.stages import condition_frames

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
            align_size=face.align_size,
        )
        face_size = face.size if face.enabled and components.face is not None else None
        conditions = condition_frames(
            windows, components.image_size, face_size, fps, face.align_size
        )
        names = None
    else:
        images = read_condition_folder(args.input, components.image_size, args.frames)
        # PNG output keeps the input's frame names (the authors' %06d.png numbering).
        names = [path.name for path in condition_frame_paths(args.input)[: len(images)]]
        geometries: list[Any] = [None] * len(images)
        if face.enabled and components.face is not None:
            # No mesh: the face geometry comes from a face detector run on the renders.
            from streaming.face_tracking import detected_face_geometries

            # Detected at the stored resolution (a face is too small to find at a small
            # model size); the geometry maps to the model's frames by scaling.
            stored = read_condition_folder(args.input, None, args.frames)
            geometries, _ = detected_face_geometries(stored, face)
        conditions = [
            ConditionFrame(seq=index, pts=index / fps, condition=image, face=geometry)
            for index, (image, geometry) in enumerate(zip(images, geometries, strict=True))
        ]
    if not conditions:
        raise AnchorError(f"{args.input}: no frames to generate")
    log.info("generating %d frames from %s (%s)", len(conditions), args.input, sampler.mode)
    committed = generate_streaming(conditions, components, sampler, face)
    frames = torch.stack([frame.image for frame in committed if frame.image is not None])
    write_frames(frames, args.out, fps, names if names and len(names) == len(frames) else None)
    print(f"wrote {frames.shape[0]} frames to {args.out}")
    return 0
