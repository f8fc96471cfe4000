"""LMD, landmark mean distance: how far the generated body is from the driving motion.

The paper computes it on the face, the body and the hands, between landmarks a pose
estimator finds in the generated frames and those of the input mesh, and ignores
outliers for the hands (whose predictions are unreliable); it does not say how. The
rule here, stated in the output:

1. A keypoint counts in a frame when its reference is defined and inside the image
   (``model.evaluation.landmarks``) and the estimator's confidence is at least
   ``eval.pose_min_confidence``.
2. In the groups named by ``eval.lmd_outlier_groups`` (the hands by default, as in the
   paper), a keypoint farther from its reference than ``eval.lmd_outlier_factor`` times
   the extent of its part in that frame (the larger side of the bounding box of the
   part's valid reference points: one hand, the face or the body) is an outlier, i.e. a
   detection failure rather than a rendering error, and is not counted. Parts with
   fewer than two valid reference points in a frame have no extent: no outlier test.
3. LMD of a group = the mean Euclidean distance, in pixels of the evaluated video,
   over every counted keypoint of every frame. The counts of each exclusion are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.evaluation.landmarks import (
    COCO_BODY_KEYPOINTS,
    GROUP_PARTS,
    PARTS,
    WHOLEBODY_KEYPOINTS,
    ReferenceKeypoints,
)


@dataclass(frozen=True, slots=True)
class GroupDistance:
    """LMD of one group (face, body or hands) and what was counted."""

    value: float | None  # mean distance in pixels; None when nothing was counted
    counted: int  # keypoint observations in the mean
    reference: int  # observations with a valid reference (the candidates)
    low_confidence: int  # candidates below eval.pose_min_confidence
    outliers: int  # confident candidates rejected by the outlier rule

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "counted": self.counted,
            "reference": self.reference,
            "low_confidence": self.low_confidence,
            "outliers": self.outliers,
        }


def landmark_mean_distance(
    predicted: np.ndarray,
    scores: np.ndarray,
    reference: ReferenceKeypoints,
    min_confidence: float = 0.3,
    outlier_groups: Sequence[str] = ("hands",),
    outlier_factor: float = 1.0,
) -> dict[str, GroupDistance]:
    """LMD per group from ``(T, K, 2)`` predictions and ``(T, K)`` confidences.

    ``K`` is 133 (COCO-WholeBody: face, body and hands) or 17 (COCO body: body only,
    compared with the reference's first 17 points). ``reference`` must be in the
    predictions' image size (``ReferenceKeypoints.resized``).
    """
    count, keypoints = predicted.shape[:2]
    if keypoints not in (WHOLEBODY_KEYPOINTS, COCO_BODY_KEYPOINTS):
        raise ValueError(f"{keypoints} keypoints: expected 133 or 17")
    if len(reference.points) != count:
        raise ValueError(f"{count} predicted frames, {len(reference.points)} reference frames")
    distances = np.linalg.norm(predicted - reference.points[:, :keypoints], axis=-1)
    valid = reference.valid[:, :keypoints]
    confident = scores >= min_confidence
    results = {}
    for group, parts in GROUP_PARTS.items():
        indices = [index for part in parts for index in PARTS[part] if index < keypoints]
        if not indices:
            continue
        candidates = valid[:, indices]
        kept = candidates & confident[:, indices]
        outliers = np.zeros_like(kept)
        if group in outlier_groups:
            for part in parts:
                part_indices = [index for index in PARTS[part] if index < keypoints]
                columns = [indices.index(index) for index in part_indices]
                extent = _part_extent(reference.points[:, part_indices], valid[:, part_indices])
                far = distances[:, part_indices] > outlier_factor * extent[:, None]
                outliers[:, columns] = kept[:, columns] & far
        counted = kept & ~outliers
        total = int(counted.sum())
        results[group] = GroupDistance(
            value=float(distances[:, indices][counted].mean()) if total else None,
            counted=total,
            reference=int(candidates.sum()),
            low_confidence=int((candidates & ~confident[:, indices]).sum()),
            outliers=int(outliers.sum()),
        )
    return results


def _part_extent(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(T,)`` larger bounding-box side of each frame's valid points; inf with fewer than 2."""
    extents = np.full(len(points), np.inf)
    for frame, (frame_points, frame_valid) in enumerate(zip(points, valid, strict=True)):
        inside = frame_points[frame_valid]
        if len(inside) >= 2:
            extents[frame] = float((inside.max(axis=0) - inside.min(axis=0)).max())
    return extents
