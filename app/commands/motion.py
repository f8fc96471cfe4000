"""``anchor`` subcommands of the motion package: standin-smplx, render, bench render.

Torch is imported inside the handlers only (``anchor --help`` stays fast).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from model.errors import AnchorError


def register(commands: Any) -> None:
    """Adds this package's subcommands to the ``anchor`` parser."""
    standin = commands.add_parser(
        "standin-smplx", help="write a synthetic SMPL-X model (stand-in for the licensed file)"
    )
    standin.add_argument("--out", type=Path, required=True, help="model folder to create")
    standin.add_argument("--gender", default="neutral", choices=("neutral", "male", "female"))
    standin.set_defaults(handler=_standin)

    render = commands.add_parser("render", help="render a motion file to mesh images")
    render.add_argument("motion", type=Path, help="TalkSHOW .npy, EMAGE .npz, SHOW .pkl, .npz")
    render.add_argument("--out", type=Path, required=True, help=".mp4 file or folder of PNGs")
    render.add_argument("--frames", type=int, default=None, help="render at most N frames")
    render.set_defaults(handler=_render)


def _standin(args: argparse.Namespace, config: Any) -> int:
    from model.standin import write_standin

    folder = write_standin(args.out, args.gender)
    print(f"wrote {folder / 'smplx' / f'SMPLX_{args.gender.upper()}.npz'}")
    return 0


def _render(args: argparse.Namespace, config: Any) -> int:
    from model.motion.conditions import render_motion_conditions

    out: Path = args.out
    if out.suffix.lower() == ".mp4":
        import av

        out.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(out), mode="w")
        stream = container.add_stream("libx264", rate=round(config.render.fps))
        stream.width, stream.height = config.render.width, config.render.height
        stream.pix_fmt = "yuv420p"
        count = 0
        for window in render_motion_conditions(args.motion, config.render, limit=args.frames):
            for image in window.images:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                container.mux(stream.encode(frame))
                count += 1
        container.mux(stream.encode(None))
        container.close()
    elif out.suffix:
        raise AnchorError(f"--out: {out} must be a .mp4 file or a folder")
    else:
        from PIL import Image

        out.mkdir(parents=True, exist_ok=True)
        count = 0
        for window in render_motion_conditions(args.motion, config.render, limit=args.frames):
            for seq, image in zip(window.seq, window.images, strict=True):
                Image.fromarray(image).save(out / f"{int(seq):06d}.png")
                count += 1
    print(f"rendered {count} frames to {out}")
    return 0
