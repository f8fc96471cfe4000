"""The demo loop: procedural motion (no file, no licence) for ``anchor demo``, the benches
and the tests. A figure facing the camera waves its arms, nods and talks;
``DEMO_CLIP_FRAMES`` frames at 30 fps that loop seamlessly."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from model.motion.frame import MotionFrame

DEMO_CLIP_FRAMES = 90


def _axis_angle(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> list[float]:
    return [x, y, z]


def demo_frame(index: int, fps: float = 30.0, seq: int | None = None) -> MotionFrame:
    """Frame ``index`` of the looping demo clip (period DEMO_CLIP_FRAMES)."""
    phase = 2.0 * math.pi * (index % DEMO_CLIP_FRAMES) / DEMO_CLIP_FRAMES
    body = np.zeros(63, dtype=np.float32)

    # body_pose joint j (1-based SMPL-X joint index) occupies [3(j-1), 3j).
    def joint(number: int, values: list[float]) -> None:
        body[3 * (number - 1) : 3 * number] = values

    joint(15, _axis_angle(x=0.15 * math.sin(2 * phase)))  # head nods
    joint(16, _axis_angle(z=-1.1 + 0.35 * math.sin(phase)))  # left shoulder
    joint(17, _axis_angle(z=1.1 - 0.35 * math.sin(phase + math.pi)))  # right shoulder
    joint(18, _axis_angle(y=-0.6 - 0.4 * math.sin(phase)))  # left elbow
    joint(19, _axis_angle(y=0.6 + 0.4 * math.sin(phase + math.pi)))  # right elbow
    jaw = np.asarray(_axis_angle(x=0.12 + 0.12 * math.sin(6 * phase)), dtype=np.float32)
    return MotionFrame(
        seq=index if seq is None else seq,
        pts=index / fps,
        global_orient=np.asarray(_axis_angle(x=math.pi), dtype=np.float32),
        body_pose=body,
        jaw_pose=jaw,
        expression=np.zeros(10, dtype=np.float32),
    )


def demo_frames(
    start: int = 0, count: int | None = None, fps: float = 30.0
) -> Iterator[MotionFrame]:
    """Frames start, start+1, ... of the endless demo loop (``count`` of them, or forever)."""
    index = start
    while count is None or index < start + count:
        yield demo_frame(index, fps)
        index += 1
