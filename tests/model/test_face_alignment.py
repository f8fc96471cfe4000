"""``face.align_size``: the face aligned at 512 with the FFHQ template, resized to 256, and
pasted back with the same alignment (the authors' crops)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from model.face_geometry import (
    FFHQ_TEMPLATE_512,
    alignment_matrices,
    authors_blend_weights,
    blend_masks,
    crop_faces,
    paste_back,
    paste_back_weighted,
    similarity_transform,
)

FRAME = 400


def _points() -> np.ndarray:
    """(1, 5, 2) FFHQ points of a turned face (its 512 crop spans about 180 px) in a 400 px
    frame."""
    angle = 0.2
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (FFHQ_TEMPLATE_512 - 256.0) * 0.35 @ rotation.T + [190.0, 215.0]
    return points[None].astype(np.float32)


def _smooth_image(seed: int = 0) -> torch.Tensor:
    """(1, 3, FRAME, FRAME) float32 in [0, 1]: low-frequency noise (interpolation-friendly)."""
    coarse = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(FRAME, FRAME), mode="bicubic", align_corners=False).clamp(
        0, 1
    )


def _numpy_warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """(C, H, W) image -> (C, size, size): output pixel p samples ``image`` bilinearly
    (zeros outside) at ``inverse(matrix) p``, pixel indices as coordinates (OpenCV's
    warpAffine convention)."""
    full = np.vstack([matrix.astype(np.float64), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    channels, height, width = image.shape
    x0, y0 = np.floor(source_x).astype(int), np.floor(source_y).astype(int)
    out = np.zeros((channels, size, size))
    for dy in (0, 1):
        for dx in (0, 1):
            x, y = x0 + dx, y0 + dy
            weight = (1 - np.abs(source_x - x)) * (1 - np.abs(source_y - y))
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            values = image[:, y.clip(0, height - 1), x.clip(0, width - 1)]
            out += np.where(inside, weight, 0.0) * values
    return out


def test_crop_aligned_at_512_equals_the_512_alignment_resized_to_256() -> None:
    points = _points()
    image = _smooth_image()
    matrix = alignment_matrices(points, 256, align_size=512)
    crop = crop_faces(image, matrix, 256, align_size=512)
    # The authors: warp to the 512 template, then halve (2 x 2 mean).
    at_512 = similarity_transform(points[0], FFHQ_TEMPLATE_512)
    large = _numpy_warp(image[0].double().numpy(), at_512, 512)
    expected = large.reshape(3, 256, 2, 256, 2).mean(axis=(2, 4))
    assert crop.shape == (1, 3, 256, 256)
    assert np.abs(crop[0].double().numpy() - expected).max() < 1e-4
    # The matrix maps the points where the resize puts the 512 template (pixel centres).
    mapped = points[0] @ matrix[0, :, :2].T + matrix[0, :, 2]
    assert np.abs(mapped - ((FFHQ_TEMPLATE_512 + 0.5) / 2 - 0.5)).max() < 0.05
    # Not the same as aligning at 256 directly: the resize averages, the 256 warp samples.
    direct = crop_faces(image, alignment_matrices(points, 256), 256)
    assert (direct - crop).abs().max() > 1e-3


def test_default_align_size_is_the_direct_alignment() -> None:
    points, image = _points(), _smooth_image(1)
    for align_size in (None, 256):
        matrix = alignment_matrices(points, 256, align_size=align_size)
        assert np.array_equal(matrix, alignment_matrices(points, 256))
        assert torch.equal(crop_faces(image, matrix, 256, align_size), crop_faces(image, matrix))


def _blob(centre: np.ndarray) -> torch.Tensor:
    """(1, 3, FRAME, FRAME): a Gaussian spot of radius ~8 px at ``centre`` (x, y)."""
    ys, xs = torch.meshgrid(torch.arange(float(FRAME)), torch.arange(float(FRAME)), indexing="ij")
    spot = torch.exp(-((xs - float(centre[0])) ** 2 + (ys - float(centre[1])) ** 2) / 64.0)
    return spot.expand(1, 3, FRAME, FRAME).contiguous()


def _centroid(image: torch.Tensor) -> np.ndarray:
    weight = image[0, 0].double()
    ys, xs = torch.meshgrid(
        torch.arange(FRAME, dtype=torch.float64), torch.arange(FRAME, dtype=torch.float64),
        indexing="ij",
    )  # fmt: skip
    total = weight.sum()
    return np.array([(weight * xs).sum() / total, (weight * ys).sum() / total])


def test_paste_back_round_trip_lands_the_face_where_it_was() -> None:
    points = _points()
    nose = points[0, 2]
    image = _blob(nose)
    matrix = alignment_matrices(points, 256, align_size=512)
    crop = crop_faces(image, matrix, 256, align_size=512)
    background = torch.zeros_like(image)
    feathered = paste_back(background, crop, matrix, blend_masks(1, 256), align_size=512)
    weights = authors_blend_weights(matrix, 256, FRAME, FRAME, align_size=512)
    authors = paste_back_weighted(background, crop, matrix, weights, align_size=512)
    for pasted in (feathered, authors):
        assert np.abs(_centroid(pasted) - nose).max() < 0.1
        assert (pasted - image).abs().max() < 0.02
    # Outside the warped crop the frame is untouched, bit for bit.
    frame = _smooth_image(2)
    blended = paste_back(frame, crop, matrix, blend_masks(1, 256), align_size=512)
    far = (slice(None), slice(None), slice(0, 20), slice(0, 20))
    assert torch.equal(blended[far], frame[far])
