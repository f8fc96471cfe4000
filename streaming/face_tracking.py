"""Face geometry for frames that come without a mesh: condition images, recorded video.

The five FFHQ points come from a face detector (``model.face_detector``) run on each
condition image, are smoothed over time and become the same ``FaceGeometry`` a mesh gives
(aligned crop of the render, inpainting mask from the points). A missed detection keeps
the last smoothed points for up to ``face.hold_frames`` frames; after that the frame has
no geometry and passes the face stage unenhanced. Frames are never shifted or dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray

from model.config import FaceConfig
from model.face_detector import FaceDetector
from model.face_geometry import alignment_matrices, crop_faces, face_region_masks
from streaming.face_stage import FaceGeometry

log = logging.getLogger("anchor.face")

# Five points (eyes, nose, mouth corners) span less of the face than the mesh's 51
# landmarks (brows to lips): their hull is grown more to cover the same region.
POINTS_REGION_GROW = 1.8


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


def points_face_geometry(
    render: torch.Tensor, points: NDArray[np.float32], size: int
) -> FaceGeometry:
    """FaceGeometry of a (3, H, W) [0, 1] render from its (5, 2) FFHQ points (pixels)."""
    matrix = alignment_matrices(points[None].astype(np.float32), size)[0]
    crop = crop_faces(render[None].float(), matrix[None], size)[0]
    crop_points = points @ matrix[:, :2].T + matrix[:, 2]
    region = face_region_masks(
        crop_points[None].astype(np.float32), size, size, grow=POINTS_REGION_GROW
    )[0]
    return FaceGeometry(
        matrix=matrix.astype(np.float32),
        mesh_crop=crop,
        keep_mask=1.0 - torch.from_numpy(region),
        image_size=(int(render.shape[1]), int(render.shape[2])),
    )


def detected_face_geometries(
    renders: torch.Tensor, face: FaceConfig, detector: FaceDetector | None = None
) -> tuple[list[FaceGeometry | None], FaceTrack]:
    """Face geometry of each condition image (N, 3, H, W) [0, 1], in order, one entry per
    frame (None: no face for this frame); the track holds the detection rate, which is
    logged."""
    detector = detector or FaceDetector(face.detector_weights, face.detector_thresholds)
    points, _ = detector.detect(renders)
    track = FaceTrack(smoothing=face.detector_smoothing, hold_frames=face.hold_frames)
    geometries: list[FaceGeometry | None] = []
    for render, found in zip(renders, points, strict=True):
        use = track.update(found)
        geometries.append(None if use is None else points_face_geometry(render, use, face.size))
    log.info(
        "face detection: %d of %d condition images (%.0f%%), %d frames with face geometry",
        track.detected,
        track.frames,
        100.0 * track.detection_rate,
        sum(geometry is not None for geometry in geometries),
    )
    return geometries, track
