"""Varied, deterministic SMPL-X motion for the synthetic anchor.

A clip is a sequence of segments; each segment belongs to a motion *family* (talking,
waving with one arm, two-handed gestures, ...) whose joints move as sums of smooth
sinusoids with amplitudes, frequencies and phases drawn from a seeded generator.
Segments cross-fade so the motion never jumps. Like TalkSHOW output, global_orient is
about pi around x (OpenCV camera convention), 30 fps.

Held-out motion (``HELDOUT_FAMILIES`` and seeds from ``heldout_seed``) is never used by
the training split: the evaluation measures poses the model never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from model.motion.frame import DEFAULT_FPS, MotionFrame

# SMPL-X body joints (1..21) used here; body_pose columns are 3 * (joint - 1) + axis.
SPINE3, NECK, LEFT_COLLAR, RIGHT_COLLAR, HEAD = 9, 12, 13, 14, 15
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW = 16, 17, 18, 19
LEFT_WRIST, RIGHT_WRIST = 20, 21
X, Y, Z = 0, 1, 2

# (joint, axis) -> rest value: arms down by the sides, slightly bent elbows.
REST: dict[tuple[int, int], float] = {
    (LEFT_SHOULDER, Z): -1.2,
    (RIGHT_SHOULDER, Z): 1.2,
    (LEFT_ELBOW, Y): -0.3,
    (RIGHT_ELBOW, Y): 0.3,
}

# Each family: (joint, axis) -> (mean offset from rest, amplitude) in radians; "jaw" and
# "smile" are handled by the talk component present in every family.
FAMILIES: dict[str, dict[tuple[int, int], tuple[float, float]]] = {
    "talk": {
        (HEAD, X): (0.0, 0.12),
        (HEAD, Y): (0.0, 0.2),
        (NECK, Z): (0.0, 0.06),
        (SPINE3, Y): (0.0, 0.05),
        (LEFT_SHOULDER, Z): (0.1, 0.1),
        (RIGHT_SHOULDER, Z): (-0.1, 0.1),
    },
    "wave_right": {
        (RIGHT_SHOULDER, Z): (-0.35, 0.1),
        (RIGHT_ELBOW, Z): (-1.8, 0.45),
        (HEAD, Y): (0.0, 0.1),
    },
    "wave_left": {
        (LEFT_SHOULDER, Z): (0.35, 0.1),
        (LEFT_ELBOW, Z): (1.8, 0.45),
        (HEAD, Y): (0.0, 0.1),
    },
    "gesture": {
        (LEFT_SHOULDER, Z): (0.3, 0.25),
        (RIGHT_SHOULDER, Z): (-0.3, 0.25),
        (LEFT_SHOULDER, Y): (0.4, 0.3),
        (RIGHT_SHOULDER, Y): (-0.4, 0.3),
        (LEFT_ELBOW, Y): (-0.9, 0.5),
        (RIGHT_ELBOW, Y): (0.9, 0.5),
        (HEAD, X): (0.0, 0.08),
        (HEAD, Y): (0.0, 0.15),
    },
}
# Never in the training split: one arm forward and across while the head turns.
HELDOUT_FAMILIES: dict[str, dict[tuple[int, int], tuple[float, float]]] = {
    "reach": {
        (RIGHT_SHOULDER, Y): (-0.7, 0.3),
        (RIGHT_SHOULDER, Z): (-0.5, 0.2),
        (RIGHT_ELBOW, Y): (0.6, 0.4),
        (LEFT_SHOULDER, Z): (0.15, 0.1),
        (HEAD, Y): (0.0, 0.25),
        (HEAD, X): (0.0, 0.1),
    },
}
SEGMENT_SECONDS = 4.0
CROSSFADE_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class MotionPlan:
    """Which family each segment uses (recorded in the dataset manifest)."""

    seed: int
    families: tuple[str, ...]
    frames: int
    fps: float


def heldout_seed(seed: int) -> int:
    """The held-out split's seed for a training seed (disjoint from training seeds)."""
    return 1_000_003 + 7919 * seed


def _sinusoids(
    generator: np.random.Generator, time: NDArray[np.float64], count: int = 3
) -> NDArray[np.float64]:
    """A smooth signal in about [-1, 1]: a few random sinusoids of 0.15..1.4 Hz."""
    frequencies = generator.uniform(0.15, 1.4, count)
    phases = generator.uniform(0.0, 2.0 * np.pi, count)
    weights = generator.dirichlet(np.ones(count))
    return (
        weights[:, None] * np.sin(2 * np.pi * frequencies[:, None] * time + phases[:, None])
    ).sum(0)


def _segment(
    family: dict[tuple[int, int], tuple[float, float]],
    generator: np.random.Generator,
    time: NDArray[np.float64],
) -> dict[str, NDArray[np.float64]]:
    """Parameters of one segment: body_pose (T, 63), jaw (T, 3), expression (T, 10)."""
    body = np.zeros((len(time), 63))
    for (joint, axis), value in REST.items():
        body[:, 3 * (joint - 1) + axis] = value
    for (joint, axis), (offset, amplitude) in family.items():
        scale = generator.uniform(0.6, 1.2)
        body[:, 3 * (joint - 1) + axis] += offset + scale * amplitude * _sinusoids(generator, time)
    jaw = np.zeros((len(time), 3))
    syllables = np.clip(_sinusoids(generator, time * 3.0), 0.0, None)  # talking rhythm
    jaw[:, X] = 0.25 * syllables
    expression = np.zeros((len(time), 10))
    expression[:, 1] = 0.5 * (1.0 + _sinusoids(generator, time))  # smile
    expression[:, 2] = 0.4 * _sinusoids(generator, time)  # brows
    return {"body_pose": body, "jaw_pose": jaw, "expression": expression}


def plan_motion(
    seconds: float, seed: int, heldout: bool = False, fps: float = DEFAULT_FPS
) -> MotionPlan:
    """The segment families of a clip: training families, or held-out ones mixed with
    training families under a held-out seed."""
    generator = np.random.default_rng(seed)
    names = list(FAMILIES) + (list(HELDOUT_FAMILIES) if heldout else [])
    segments = max(1, int(np.ceil(seconds / SEGMENT_SECONDS)))
    families = tuple(str(generator.choice(names)) for _ in range(segments))
    if heldout and not any(name in HELDOUT_FAMILIES for name in families):
        families = (next(iter(HELDOUT_FAMILIES)), *families[1:])
    return MotionPlan(seed, families, round(seconds * fps), fps)


def synth_motion(plan: MotionPlan) -> list[MotionFrame]:
    """The frames of a plan (deterministic given the plan)."""
    generator = np.random.default_rng([plan.seed, 1])
    segment_frames = round(SEGMENT_SECONDS * plan.fps)
    fade = round(CROSSFADE_SECONDS * plan.fps)
    tables = {"body_pose": np.zeros((plan.frames, 63)), "jaw_pose": np.zeros((plan.frames, 3)),
              "expression": np.zeros((plan.frames, 10))}  # fmt: skip
    weight = np.zeros(plan.frames)
    for index, name in enumerate(plan.families):
        start = max(0, index * segment_frames - fade)
        stop = min(plan.frames, (index + 1) * segment_frames + fade)
        if start >= stop:
            break
        time = np.arange(start, stop) / plan.fps
        family = FAMILIES.get(name) or HELDOUT_FAMILIES[name]
        values = _segment(family, generator, time)
        # Triangular ramps over the overlaps: a smooth hand-over between segments.
        ramp = np.ones(stop - start)
        ramp_in = np.clip((np.arange(start, stop) - start + 1) / (2 * fade + 1), 0, 1)
        ramp_out = np.clip((stop - np.arange(start, stop)) / (2 * fade + 1), 0, 1)
        if index > 0:
            ramp = np.minimum(ramp, ramp_in)
        if index < len(plan.families) - 1:
            ramp = np.minimum(ramp, ramp_out)
        for key, table in tables.items():
            table[start:stop] += ramp[:, None] * values[key]
        weight[start:stop] += ramp
    weight = np.maximum(weight, 1e-8)[:, None]
    frames = []
    for index in range(plan.frames):
        frames.append(
            MotionFrame(
                seq=index,
                pts=index / plan.fps,
                global_orient=np.array([np.pi, 0.0, 0.0], dtype=np.float32),
                body_pose=(tables["body_pose"][index] / weight[index]).astype(np.float32),
                jaw_pose=(tables["jaw_pose"][index] / weight[index]).astype(np.float32),
                expression=(tables["expression"][index] / weight[index]).astype(np.float32),
            )
        )
    return frames


def rest_frames(count: int = 4) -> list[MotionFrame]:
    """Frames of the rest pose: what the dataset camera is framed on (every split alike)."""
    body = np.zeros(63, dtype=np.float32)
    for (joint, axis), value in REST.items():
        body[3 * (joint - 1) + axis] = value
    orient = np.array([np.pi, 0.0, 0.0], dtype=np.float32)
    return [
        MotionFrame(seq=i, pts=i / DEFAULT_FPS, global_orient=orient, body_pose=body.copy())
        for i in range(count)
    ]
