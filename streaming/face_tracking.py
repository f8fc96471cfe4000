"""Face geometry for frames that come without a mesh: condition images, recorded video.

The five FFHQ points come from a face detector (``model.face_detector``) run on each
condition image, are smoothed over time and become the same ``FaceGeometry`` a mesh gives
(aligned crop of the render, inpainting mask from the points). A missed detection keeps
the last smoothed points for up to ``face.hold_frames`` frames; after that the frame has
no geometry from its condition: the face stage searches the generated frame (as the
authors do) and leaves the frame unenhanced when that fails too. Frames are never shifted
or dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray

from model.config import FaceConfig
from model.face_detector import FaceDetector
from streaming.face_stage import points_face_geometry
from streaming.frames import DeferredFace, FrameFace

log = logging.getLogger("anchor.face")


@dataclass
class FaceTrack:
    """Temporal smoothing and hold of per-frame five-point detections.

    smoothing: weight of the previous smoothed points (exponential moving average, causal
    so it streams); hold_frames: consecutive misses that keep the last points.
    """

    smoothing: float = 0.5
    hold_frames: int = 5
    points: NDArray[np.float32] | None = None
    misses: int = 0
    detected: int = 0
    frames: int = 0
    _history: list[bool] = field(default_factory=list)

    def update(self, found: NDArray[np.float32] | None) -> NDArray[np.float32] | None:
        """(5, 2) points of this frame, or None when missed -> the points to use, or None
        when the frame gets no face geometry."""
        self.frames += 1
        if found is None or not np.isfinite(found).all():
            self.misses += 1
            if self.points is None or self.misses > self.hold_frames:
                return None
            return self.points
        self.detected += 1
        self.misses = 0
        previous = found if self.points is None else self.points
        self.points = (self.smoothing * previous + (1.0 - self.smoothing) * found).astype(
            np.float32
        )
        return self.points

    @property
    def detection_rate(self) -> float:
        """Share of frames where the detector found a face (0 before any frame)."""
        return self.detected / self.frames if self.frames else 0.0


def detected_face_geometries(
    renders: torch.Tensor, face: FaceConfig, detector: FaceDetector | None = None
) -> tuple[list[FrameFace], FaceTrack]:
    """Face geometry of each condition image (N, 3, H, W) [0, 1], in order, one entry per
    frame; a frame without one (a miss past the hold) is a ``DeferredFace``: the face stage
    looks for the face on the generated frame. The track holds the detection rate, which
    is logged."""
    detector = detector or FaceDetector(face.detector_weights, face.detector_thresholds)
    points, _ = detector.detect(renders)
    track = FaceTrack(smoothing=face.detector_smoothing, hold_frames=face.hold_frames)
    geometries: list[FrameFace] = []
    for render, found in zip(renders, points, strict=True):
        use = track.update(found)
        geometries.append(
            DeferredFace(render)
            if use is None
            else points_face_geometry(render, use, face.size, face.align_size)
        )
    log.info(
        "face detection: %d of %d condition images (%.0f%%), %d frames with face geometry "
        "(the others are searched on the generated frame)",
        track.detected,
        track.frames,
        100.0 * track.detection_rate,
        sum(not isinstance(geometry, DeferredFace) for geometry in geometries),
    )
    return geometries, track
