"""The synthetic anchor: the SMPL-X stand-in dressed as a person, with ground truth.

``synth_dataset`` writes two datasets (model/training/dataset.py layout) under ``out``:
``train/`` and ``heldout/``, whose motions come from disjoint seeds and whose held-out
split includes a motion family the training split never uses (model/training/
synth_motion.py). Each split also holds ``motion.npz`` (the project's motion format:
ground truth for any evaluation) and ``video.mp4`` (the target frames as a video, the
input ``anchor prepare`` expects). Appearance: skin, hair, lips, eyes and brows, a
striped shirt with long sleeves, trousers and shoes, from the stand-in's named parts; a
static background scene (a gradient wall, a picture frame, a lamp and a desk).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model.config import RenderConfig
from model.errors import AnchorError
from model.motion.frame import TALKSHOW_SETTINGS, MotionFrame
from model.motion.readers import write_motion
from model.training.dataset import DatasetHeader, iter_existing
from model.training.rendering import DatasetRenderer, perturb_frames
from model.training.synth_motion import heldout_seed, plan_motion, rest_frames, synth_motion
from model.training.writer import write_window

log = logging.getLogger("anchor.training.synth")

SKIN = (0.87, 0.68, 0.55)
HAIR = (0.22, 0.13, 0.07)
LIPS = (0.72, 0.3, 0.3)
EYES = (0.08, 0.06, 0.05)
SHIRT = (0.85, 0.45, 0.15)
SHIRT_STRIPE = (0.95, 0.92, 0.85)
TROUSERS = (0.12, 0.15, 0.3)
SHOES = (0.05, 0.05, 0.05)
WINDOW = 16


@dataclass(frozen=True, slots=True)
class SynthOptions:
    """What ``anchor synth-dataset`` writes."""

    seconds: float
    heldout_seconds: float
    seed: int = 0
    size: int = 512
    face_size: int = 256
    perturbations: int = 1
    perturbation_std: float = 0.05
    supersample: int = 2


def anchor_colors() -> NDArray[np.float32]:
    """Per-vertex colours ``(V, 3)`` of the stand-in, from its named parts."""
    from model.standin import build_standin

    standin = build_standin()
    vertices = standin.arrays["v_template"]
    parts = standin.part_indices
    colors = np.tile(np.asarray(SHIRT, dtype=np.float32), (len(vertices), 1))

    def paint(names: list[str], color: tuple[float, float, float]) -> None:
        for name in names:
            colors[parts[name]] = color

    everything = list(parts)
    paint([n for n in everything if any(k in n for k in ("palm", "wrist", "index", "middle",
          "ring", "pinky", "thumb"))], SKIN)  # fmt: skip
    paint(["neck", "head", "chin", "nose", "left_ear", "right_ear"], SKIN)
    paint(["lower_lip", "upper_lip"], LIPS)
    paint(["left_eye", "right_eye", "left_brow", "right_brow"], EYES)
    paint([n for n in everything if any(k in n for k in ("thigh", "knee", "shin", "pelvis"))],
          TROUSERS)  # fmt: skip
    paint([n for n in everything if any(k in n for k in ("ankle", "foot", "toes"))], SHOES)
    head = parts["head"]
    top = vertices[head]
    # Hair: the crown and the back of the head, leaving the face (front, below the brows).
    hair = (top[:, 1] > 0.44) | ((top[:, 2] < 0.02) & (top[:, 1] > 0.33))
    hair |= (top[:, 1] > 0.41) & (np.abs(top[:, 0]) > 0.06)
    colors[head[hair]] = HAIR
    shirt = np.concatenate(
        [
            parts[n]
            for n in everything
            if any(
                k in n
                for k in ("abdomen", "belly", "chest", "collar", "upper_arm", "elbow", "forearm")
            )
        ]
    )
    # Horizontal stripes on the torso; they also wrap the sleeves along the arm.
    stripes = np.sin(vertices[shirt, 1] * 90.0 + np.abs(vertices[shirt, 0]) * 40.0) > 0.55
    colors[shirt[stripes]] = SHIRT_STRIPE
    return colors


def background(size: int) -> NDArray[np.float32]:
    """The static scene behind the anchor: ``(size, size, 3)`` float32 in [0, 1]."""
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(coords, coords, indexing="ij")
    image = np.stack([0.55 + 0.25 * y, 0.62 + 0.15 * y - 0.1 * x, 0.7 - 0.2 * y], axis=-1)
    frame = (np.abs(x - 0.18) < 0.12) & (np.abs(y - 0.25) < 0.09)
    image[frame] = (0.35, 0.22, 0.12)
    inner = (np.abs(x - 0.18) < 0.1) & (np.abs(y - 0.25) < 0.07)
    image[inner] = np.stack([0.3 + 0.4 * x, 0.55 + 0.0 * x, 0.3 + 0.6 * y], -1)[inner]
    lamp = (x - 0.85) ** 2 + ((y - 0.2) * 0.7) ** 2 < 0.06**2
    image[lamp] = (0.98, 0.92, 0.6)
    stand = (np.abs(x - 0.85) < 0.008) & (y > 0.22) & (y < 0.75)
    image[stand] = (0.2, 0.2, 0.2)
    desk = y > 0.86
    image[desk] = np.stack([0.45 + 0.1 * x, 0.3 + 0.05 * x, 0.18 + 0.0 * x], -1)[desk]
    return image.clip(0.0, 1.0)


def composite(
    figure: NDArray[np.uint8], coverage: NDArray[np.uint8], scene: NDArray[np.float32]
) -> NDArray[np.uint8]:
    """Figure over the scene: ``(N, H, W, 3)`` uint8 with coverage ``(N, H, W)`` in 0..255."""
    alpha = coverage.astype(np.float32)[..., None] / 255.0
    mixed = figure.astype(np.float32) / 255.0 * alpha + scene[None] * (1.0 - alpha)
    return np.rint(mixed * 255.0).astype(np.uint8)


def _write_split(
    folder: Path,
    frames: list[MotionFrame],
    options: SynthOptions,
    render: RenderConfig,
    colors: NDArray[np.float32],
    extra: dict[str, object],
) -> int:
    header = DatasetHeader(
        size=options.size,
        fps=render.fps,
        face_size=options.face_size,
        frame_count=len(frames),
        source="synthetic",
        motion="motion.npz",
        perturbations=options.perturbations,
        perturbation_std=options.perturbation_std,
        foreground=True,
        extra=extra,
    )
    if (folder / "dataset.json").is_file():
        previous = DatasetHeader.read(folder)
        if (previous.size, previous.frame_count, previous.extra) != (
            header.size,
            header.frame_count,
            header.extra,
        ):
            raise AnchorError(
                f"{folder} holds a synthetic split made with other settings (size "
                f"{previous.size}, {previous.frame_count} frames, {previous.extra}): use "
                "another --out"
            )
    header.write(folder)
    write_motion(folder / "motion.npz", frames, render.fps, TALKSHOW_SETTINGS)
    done = set(iter_existing(folder))
    scene = background(options.size)
    renderer = DatasetRenderer(
        render, TALKSHOW_SETTINGS, options.size, supersample=options.supersample, colors=colors
    )
    written = 0
    try:
        renderer.frame_session(rest_frames())
        for start in range(0, len(frames), WINDOW):
            window = [f for f in frames[start : start + WINDOW] if f.seq not in done]
            if not window:
                continue
            figure, coverage, conditions, landmarks = renderer.render_dressed(window)
            perturbed = [
                renderer.render(perturb_frames(window, options.perturbation_std, options.seed, k))[
                    0
                ]
                for k in range(options.perturbations)
            ]
            write_window(
                folder,
                header,
                [f.seq for f in window],
                composite(figure, coverage, scene),
                conditions,
                perturbed,
                landmarks,
                coverage,
                reference_seed=options.seed,
            )
            written += len(window)
    finally:
        renderer.close()
    _write_video(folder)
    return written


def _write_video(folder: Path) -> None:
    """``video.mp4``: the target frames at the dataset fps (input of ``anchor prepare``)."""
    import torch

    from model.training.dataset import load_dataset, read_png
    from model.video_io import write_mp4

    header, entries = load_dataset(folder)
    frames = np.stack([read_png(folder / entry.frame) for entry in entries])
    write_mp4(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0,
              folder / "video.mp4", header.fps)  # fmt: skip


def synth_dataset(out: Path, options: SynthOptions, render: RenderConfig) -> dict[str, int]:
    """Writes ``out/train`` and ``out/heldout``; resumable. Returns frames written per split."""
    if options.seconds <= 0 or options.heldout_seconds <= 0:
        raise AnchorError("--seconds and --heldout-seconds must be positive")
    if options.size % 8:
        raise AnchorError(f"--size must be a multiple of 8, got {options.size}")
    colors = anchor_colors()
    written = {}
    for split, seconds, seed, heldout in (
        ("train", options.seconds, options.seed, False),
        ("heldout", options.heldout_seconds, heldout_seed(options.seed), True),
    ):
        plan = plan_motion(seconds, seed, heldout=heldout, fps=render.fps)
        frames = synth_motion(plan)
        extra = {"split": split, "motion_seed": seed, "families": list(plan.families),
                 "identity": "synthetic-anchor-v1"}  # fmt: skip
        written[split] = _write_split(out / split, frames, options, render, colors, extra)
        log.info("%s: %d frames (%s)", split, len(frames), ", ".join(plan.families))
    return written
