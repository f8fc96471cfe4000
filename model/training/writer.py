"""Writes frames of a dataset: images, conditions, face crops and masks, manifest lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from model.face_geometry import (
    POINTS_REGION_GROW,
    alignment_matrices,
    crop_faces,
    face_region_masks,
    ffhq_points,
)
from model.training.dataset import (
    DatasetHeader,
    ManifestEntry,
    append_manifest,
    entry_paths,
    reference_candidates,
    write_png,
)
from model.video_io import to_uint8


def _to_tensor(images: NDArray[np.uint8]) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def face_samples(
    frames: NDArray[np.uint8],
    conditions: NDArray[np.uint8],
    landmarks: NDArray[np.float32],
    face_size: int,
    detected: NDArray[np.float32] | None = None,
    align_size: int | None = None,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8], NDArray[np.float32]]:
    """FFHQ-aligned crops of frames and mesh renders, inpainting masks, matrices.

    frames, conditions: ``(N, H, W, 3)`` uint8; landmarks ``(N, 51, 2)`` image pixels;
    detected: ``(N, 5, 2)`` FFHQ points from a face detector, NaN where none: a row with
    points is aligned on them (its mask the grown hull of the five points), the others on
    the mesh; align_size: the alignment size (``face.align_size``; None = ``face_size``).
    Returns crops ``(N, S, S, 3)`` twice, masks ``(N, S, S)`` uint8 (255 = keep, 0 = the
    face region the Face SGDM regenerates) and ``(N, 2, 3)`` image -> crop matrices.
    """
    points = ffhq_points(landmarks)
    use_detected = np.zeros(len(points), dtype=bool)
    if detected is not None:
        use_detected = np.asarray(np.isfinite(detected).all(axis=(1, 2)), dtype=bool)
        points = np.where(use_detected[:, None, None], detected, points).astype(np.float32)
    matrices = alignment_matrices(points, face_size, align_size)
    faces = to_uint8(crop_faces(_to_tensor(frames), matrices, face_size, align_size))
    face_conditions = to_uint8(crop_faces(_to_tensor(conditions), matrices, face_size, align_size))
    region = np.empty((len(points), 1, face_size, face_size), dtype=np.float32)
    for row, matrix in enumerate(matrices):
        marks = points[row] if use_detected[row] else landmarks[row]
        crop_points = marks @ matrix[:, :2].T + matrix[:, 2]
        grow = POINTS_REGION_GROW if use_detected[row] else 1.25
        region[row] = face_region_masks(
            crop_points[None].astype(np.float32), face_size, face_size, grow=grow
        )[0]
    masks = ((1.0 - region[:, 0]) * 255.0).astype(np.uint8)
    return faces, face_conditions, masks, matrices


def write_window(
    folder: Path,
    header: DatasetHeader,
    indices: Sequence[int],
    frames: NDArray[np.uint8],
    conditions: NDArray[np.uint8],
    perturbed: Sequence[NDArray[np.uint8]],
    landmarks: NDArray[np.float32],
    foreground: NDArray[np.uint8] | None = None,
    reference_seed: int = 0,
    detected: NDArray[np.float32] | None = None,
    align_size: int | None = None,
) -> None:
    """Writes consecutive frames ``indices`` and appends their manifest lines (last, so
    an interrupted run only ever leaves complete frames in the manifest); ``detected``
    and ``align_size`` as in ``face_samples``."""
    faces, face_conditions, masks, matrices = face_samples(
        frames, conditions, landmarks, header.face_size, detected, align_size
    )
    for row, index in enumerate(indices):
        paths = entry_paths(index, len(perturbed), foreground is not None)
        write_png(folder / paths["frame"], frames[row])
        write_png(folder / paths["condition"], conditions[row])
        for variant, images in zip(paths["perturbed"], perturbed, strict=True):
            write_png(folder / variant, images[row])
        write_png(folder / paths["face"], faces[row])
        write_png(folder / paths["face_condition"], face_conditions[row])
        write_png(folder / paths["face_mask"], masks[row])
        if foreground is not None:
            write_png(folder / paths["foreground"], foreground[row])
        append_manifest(
            folder,
            ManifestEntry(
                index=index,
                face_matrix=matrices[row].tolist(),
                references=reference_candidates(index, header.frame_count, reference_seed),
                **paths,
            ),
        )
