"""``anchor bench render``: mesh rendering frames/s on 16-frame windows (pose -> vertices ->
image), and the smplx forward's share of it."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from model.config import RenderConfig
from model.motion.frame import MotionFrame
from model.motion.readers import TALKSHOW_SETTINGS

WINDOW = 16


def _frames(generator: np.random.Generator, start: int) -> list[MotionFrame]:
    """A window of random upper-body poses facing the camera, TalkSHOW-style."""
    batch = []
    for seq in range(start, start + WINDOW):
        frame = MotionFrame(seq=seq, pts=seq / 30.0)
        frame.global_orient[:] = (np.pi, 0.0, 0.0)
        frame.body_pose[:] = generator.normal(0.0, 0.15, 63).astype(np.float32)
        frame.jaw_pose[0] = 0.2
        frame.expression = generator.normal(0.0, 0.5, 100).astype(np.float32)
        batch.append(frame)
    return batch


def bench_render(render: RenderConfig, windows: int = 4) -> dict[str, Any]:
    """Median frames/s of ``windows`` timed 16-frame windows after one warm-up window."""
    from model.render import MotionRenderer, configure_gl

    platform = configure_gl(render.backend)
    renderer = MotionRenderer(render, TALKSHOW_SETTINGS)
    generator = np.random.default_rng(0)
    renderer.render(_frames(generator, 0))  # warm-up: context, buffers, session camera
    body_ms, window_s = [], []
    for index in range(windows):
        batch = _frames(generator, (index + 1) * WINDOW)
        start = time.perf_counter()
        renderer.body_model.forward(batch)
        body_ms.append(1000.0 * (time.perf_counter() - start))
        start = time.perf_counter()
        renderer.render(batch)
        window_s.append(time.perf_counter() - start)
    renderer.close()
    median = statistics.median(window_s)
    return {
        "platform": platform,
        "antialias": render.antialias,
        "width": render.width,
        "height": render.height,
        "window": WINDOW,
        "frames_per_second": round(WINDOW / median, 1),
        "window_ms": round(1000.0 * median, 1),
        "smplx_ms_per_window": round(statistics.median(body_ms), 1),
    }


def format_report(result: dict[str, Any]) -> str:
    return (
        f"render {result['width']}x{result['height']} ({result['platform']}, antialias "
        f"{'on' if result['antialias'] else 'off'}): "
        f"{result['frames_per_second']} frames/s, {result['window_ms']} ms per "
        f"{result['window']}-frame window (pose -> vertices -> image); smplx "
        f"{result['smplx_ms_per_window']} ms per window"
    )
