"""Motion -> condition images (+ face geometry), for ``anchor generate`` and ``anchor render``.

Imports torch (through the body model) lazily inside the function, so importing this
module stays cheap; the server never needs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model.config import RenderConfig
from model.motion.clip import MotionClip
from model.motion.frame import BodyModelSettings, MotionFrame
from model.motion.readers import open_motion


@dataclass(slots=True)
class ConditionWindow:
    """Condition images of consecutive frames and their face geometry."""

    seq: NDArray[np.int64]  # (N,)
    images: NDArray[np.uint8]  # (N, H, W, 3) RGB mesh renders
    face_points: NDArray[np.float32]  # (N, 5, 2) FFHQ points in image pixels
    face_matrices: NDArray[np.float32]  # (N, 2, 3) image pixels -> face crop pixels
    landmarks: NDArray[np.float32]  # (N, 51, 2) projected face landmarks


def render_motion_conditions(
    source: str | Path | MotionClip | Iterable[MotionFrame],
    config: RenderConfig,
    settings: BodyModelSettings | None = None,
    window: int = 16,
    face_size: int = 256,
    limit: int | None = None,
    align_size: int | None = None,
) -> Iterator[ConditionWindow]:
    """Renders ``source`` window by window with one renderer and one session camera.

    ``source``: a motion file path (any supported format), an opened ``MotionClip``,
    or frames (then ``settings`` gives the body-model settings; default TalkSHOW's).
    ``limit`` stops after that many frames. Yields windows of up to ``window`` frames.
    ``face_matrices`` map image pixels to ``face_size`` crops, aligned at ``align_size``
    (``face.align_size``; None = at ``face_size``).
    """
    from model.render import MotionRenderer

    if isinstance(source, str | Path):
        source = open_motion(source, fps=config.fps)
    if isinstance(source, MotionClip):
        settings = settings or source.settings
    renderer = MotionRenderer(config, settings or BodyModelSettings())
    try:
        batch: list[MotionFrame] = []
        for count, frame in enumerate(source):
            if limit is not None and count >= limit:
                break
            batch.append(frame)
            if len(batch) == window:
                yield _window(renderer, batch, face_size, align_size)
                batch = []
        if batch:
            yield _window(renderer, batch, face_size, align_size)
    finally:
        renderer.close()


def _window(renderer, batch, face_size, align_size) -> ConditionWindow:  # type: ignore[no-untyped-def]
    from model.face_geometry import alignment_matrices, ffhq_points

    rendered = renderer.render(batch)
    points = ffhq_points(rendered.landmarks)
    return ConditionWindow(
        seq=np.asarray([frame.seq for frame in batch], dtype=np.int64),
        images=rendered.images,
        face_points=points,
        face_matrices=alignment_matrices(points, face_size, align_size),
        landmarks=rendered.landmarks,
    )
