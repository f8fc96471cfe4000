"""``anchor`` subcommands of the motion package: standin-smplx, render, bench render.

Torch is imported inside the handlers only (``anchor --help`` stays fast).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from model.errors import AnchorError


def register(commands: Any, bench: Any) -> None:
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

    bench_render = bench.add_parser("render", help="mesh rendering frames/s (16-frame windows)")
    bench_render.add_argument("--json", action="store_true", help="print JSON")
    bench_render.add_argument("--windows", type=int, default=4, help="timed windows")
    bench_render.set_defaults(handler=_bench_render)


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


def _bench_render(args: argparse.Namespace, config: Any) -> int:
    import numpy as np

    from model.motion.frame import MotionFrame
    from model.motion.readers import TALKSHOW_SETTINGS
    from model.render import MotionRenderer, configure_gl

    platform = configure_gl(config.render.backend)
    renderer = MotionRenderer(config.render, TALKSHOW_SETTINGS)
    generator = np.random.default_rng(0)
    window = 16

    def frames(start: int) -> list[MotionFrame]:
        batch = []
        for seq in range(start, start + window):
            frame = MotionFrame(seq=seq, pts=seq / 30.0)
            frame.global_orient[:] = (np.pi, 0.0, 0.0)
            frame.body_pose[:] = generator.normal(0.0, 0.15, 63).astype(np.float32)
            frame.jaw_pose[0] = 0.2
            frame.expression = generator.normal(0.0, 0.5, 100).astype(np.float32)
            batch.append(frame)
        return batch

    renderer.render(frames(0))  # warm-up: context, buffers, session camera
    body_ms, window_s = [], []
    for index in range(args.windows):
        batch = frames((index + 1) * window)
        start = time.perf_counter()
        renderer.body_model.forward(batch)
        body_ms.append(1000.0 * (time.perf_counter() - start))
        start = time.perf_counter()
        renderer.render(batch)
        window_s.append(time.perf_counter() - start)
    renderer.close()
    median = statistics.median(window_s)
    result = {
        "platform": platform,
        "antialias": config.render.antialias,
        "width": config.render.width,
        "height": config.render.height,
        "window": window,
        "frames_per_second": round(window / median, 1),
        "window_ms": round(1000.0 * median, 1),
        "smplx_ms_per_window": round(statistics.median(body_ms), 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"render {result['width']}x{result['height']} ({platform}, antialias "
            f"{'on' if config.render.antialias else 'off'}): "
            f"{result['frames_per_second']} frames/s, {result['window_ms']} ms per "
            f"{window}-frame window (pose -> vertices -> image); smplx "
            f"{result['smplx_ms_per_window']} ms per window"
        )
    return 0
