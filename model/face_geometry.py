"""Face geometry from the mesh: FFHQ points, alignment, aligned crops, paste-back.

No face detector: the five FFHQ points (eye centres, nose tip, mouth corners) come
from the SMPL-X face landmarks projected with the render camera. Pipeline used by
the face stage::

    points = ffhq_points(window.landmarks)             # (N, 5, 2) image pixels
    matrices = alignment_matrices(points, size)         # (N, 2, 3) image -> crop
    crops = crop_faces(images, matrices, size)          # (N, 3, S, S)
    masks = blend_masks(len(crops), size)               # (N, 1, S, S), 0 at the border
    frames = paste_back(images, enhanced, matrices, masks)

Images are ``(N, 3, H, W)`` float32 torch tensors; pixels where the warped blend
mask is zero are returned unchanged (bit for bit).

``align_size`` (``face.align_size``): the authors align the face at 512 with the FFHQ
template, then resize the crop to the face size. Given, the matrices still map image
pixels to ``size`` crop pixels (the alignment at ``align_size`` composed with the resize,
pixel centres kept), crops are sampled at ``align_size`` and area-resized to ``size``,
and the paste-back upsamples the crop to ``align_size`` and warps it back with that
same alignment. None (or ``size``) aligns directly at ``size``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from model.smplx_layout import (
    LANDMARK_LEFT_EYE,
    LANDMARK_MOUTH_LEFT,
    LANDMARK_MOUTH_RIGHT,
    LANDMARK_NOSE_TIP,
    LANDMARK_RIGHT_EYE,
)

# Image-left eye (the person's right), image-right eye, nose tip, image-left and
# image-right mouth corners, for a 512 x 512 crop.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98, 239.95],
        [318.90, 240.19],
        [256.63, 314.02],
        [201.26, 371.41],
        [313.09, 371.15],
    ],
    dtype=np.float32,
)


# Five points (eyes, nose, mouth corners) span less of the face than the mesh's 51
# landmarks (brows to lips): their hull is grown more to cover the same region.
POINTS_REGION_GROW = 1.8


def ffhq_template(size: int = 256) -> NDArray[np.float32]:
    """The five template points scaled to a ``size x size`` crop, ``(5, 2)``."""
    return FFHQ_TEMPLATE_512 * np.float32(size / 512.0)


def ffhq_points(landmarks: NDArray[np.float32]) -> NDArray[np.float32]:
    """``(N, 51, D)`` SMPL-X static landmarks -> ``(N, 5, D)`` FFHQ points (any D)."""
    return np.stack(
        [
            landmarks[:, list(LANDMARK_RIGHT_EYE)].mean(axis=1),
            landmarks[:, list(LANDMARK_LEFT_EYE)].mean(axis=1),
            landmarks[:, LANDMARK_NOSE_TIP],
            landmarks[:, LANDMARK_MOUTH_RIGHT],
            landmarks[:, LANDMARK_MOUTH_LEFT],
        ],
        axis=1,
    ).astype(np.float32)


def similarity_transform(
    source: NDArray[np.float32], target: NDArray[np.float32]
) -> NDArray[np.float32]:
    """Least-squares rotation + uniform scale + translation mapping ``source`` to ``target``.

    Umeyama's method without reflection; ``(P, 2)`` points each, returns ``(2, 3)``.
    """
    source64, target64 = source.astype(np.float64), target.astype(np.float64)
    source_mean, target_mean = source64.mean(axis=0), target64.mean(axis=0)
    source_centred, target_centred = source64 - source_mean, target64 - target_mean
    covariance = target_centred.T @ source_centred / len(source64)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    variance = (source_centred**2).sum() / len(source64)
    scale = float(np.trace(np.diag(singular) @ sign) / max(variance, 1e-12))
    translation = target_mean - scale * rotation @ source_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1).astype(np.float32)


def _resize_matrix(source: int, target: int) -> NDArray[np.float64]:
    """(3, 3) map from ``source``-pixel crop coordinates to ``target``-pixel ones, pixel
    centres kept: p -> (p + 0.5) * target / source - 0.5."""
    scale = target / source
    return np.array(
        [[scale, 0.0, 0.5 * scale - 0.5], [0.0, scale, 0.5 * scale - 0.5], [0.0, 0.0, 1.0]]
    )


def _aligned(align_size: int | None, size: int) -> bool:
    return align_size is not None and align_size != size


def alignment_matrices(
    points: NDArray[np.float32], size: int = 256, align_size: int | None = None
) -> NDArray[np.float32]:
    """``(N, 5, 2)`` image points -> ``(N, 2, 3)`` matrices mapping image pixels to
    ``size`` crop pixels; with ``align_size``, the alignment to the template at that size
    followed by the resize to ``size``."""
    template = ffhq_template(size if align_size is None else align_size)
    matrices = np.stack([similarity_transform(points_, template) for points_ in points])
    if not _aligned(align_size, size):
        return matrices
    assert align_size is not None
    return rescale_matrices(matrices, align_size, size)


def rescale_matrices(
    matrices: NDArray[np.float32], source: int, target: int
) -> NDArray[np.float32]:
    """``(N, 2, 3)`` image -> ``source``-crop matrices as image -> ``target``-crop ones."""
    full = np.zeros((len(matrices), 3, 3), dtype=np.float64)
    full[:, :2] = matrices
    full[:, 2, 2] = 1.0
    return (_resize_matrix(source, target) @ full)[:, :2].astype(np.float32)


def invert_affine(matrices: NDArray[np.float32]) -> NDArray[np.float32]:
    """Inverse of ``(N, 2, 3)`` affine matrices."""
    full = np.zeros((len(matrices), 3, 3), dtype=np.float64)
    full[:, :2] = matrices
    full[:, 2, 2] = 1.0
    return np.linalg.inv(full)[:, :2].astype(np.float32)


def _sample(
    images: torch.Tensor, destination_to_source: NDArray[np.float32], height: int, width: int
) -> torch.Tensor:
    """Bilinear warp: output pixel centre p samples ``images`` at ``M p`` (pixels)."""
    count, _, source_height, source_width = images.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)  # (H*W, 3)
    matrices = torch.from_numpy(destination_to_source).to(images.dtype)
    source = pixels @ matrices.transpose(1, 2)  # (N, H*W, 2) source pixel coordinates
    grid = torch.stack(
        [
            (2.0 * source[..., 0] + 1.0) / source_width - 1.0,
            (2.0 * source[..., 1] + 1.0) / source_height - 1.0,
        ],
        dim=-1,
    ).reshape(count, height, width, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_faces(
    images: torch.Tensor,
    matrices: NDArray[np.float32],
    size: int = 256,
    align_size: int | None = None,
) -> torch.Tensor:
    """``(N, C, H, W)`` images -> ``(N, C, size, size)`` FFHQ-aligned crops; with
    ``align_size``, sampled at that size and area-resized to ``size`` (a 2x2 mean from 512
    to 256, as OpenCV's resize gives)."""
    if not _aligned(align_size, size):
        return _sample(images, invert_affine(matrices), size, size)
    assert align_size is not None
    large = rescale_matrices(matrices, size, align_size)
    crops = _sample(images, invert_affine(large), align_size, align_size)
    return F.interpolate(crops, size=(size, size), mode="area")


def uncrop(
    crops: torch.Tensor,
    matrices: NDArray[np.float32],
    height: int,
    width: int,
    align_size: int | None = None,
) -> torch.Tensor:
    """Inverse warp of ``(N, C, S, S)`` crops back into ``(N, C, height, width)`` images;
    with ``align_size``, the crops are first upsampled (bilinear) to that size and warped
    with the alignment at that size."""
    size = crops.shape[-1]
    if not _aligned(align_size, size):
        return _sample(crops, matrices, height, width)
    assert align_size is not None
    large = F.interpolate(
        crops, size=(align_size, align_size), mode="bilinear", align_corners=False
    )
    return _sample(large, rescale_matrices(matrices, size, align_size), height, width)


def blend_masks(
    count: int, size: int = 256, erosion: int | None = None, blur: int | None = None
) -> torch.Tensor:
    """``(count, 1, size, size)`` feathered masks: 1 inside, falling to exactly 0 at the border.

    The square is eroded by ``erosion`` pixels then blurred twice with a box filter of
    radius ``blur`` (a smooth ramp reaching ``2 * blur`` pixels out, with ``2 * blur <
    erosion``), so the warped mask is zero outside the crop and the paste-back leaves
    those pixels untouched.
    """
    erosion = max(2, size // 16) if erosion is None else erosion
    blur = max(1, erosion // 3) if blur is None else blur
    if not 0 < 2 * blur < erosion or 2 * erosion >= size:
        raise ValueError(f"need 0 < 2 blur ({blur}) < erosion ({erosion}) < size/2 ({size})")
    mask = torch.zeros(1, 1, size, size)
    mask[..., erosion:-erosion, erosion:-erosion] = 1.0
    kernel = torch.ones(1, 1, 2 * blur + 1, 2 * blur + 1) / float((2 * blur + 1) ** 2)
    for _ in range(2):
        mask = F.conv2d(F.pad(mask, (blur,) * 4), kernel)
    return mask.expand(count, 1, size, size).contiguous()


def paste_back(
    frames: torch.Tensor,
    crops: torch.Tensor,
    matrices: NDArray[np.float32],
    masks: torch.Tensor,
    align_size: int | None = None,
) -> torch.Tensor:
    """Blends enhanced ``(N, C, S, S)`` crops into ``(N, C, H, W)`` frames with ``masks``.

    ``out = frame * (1 - m) + uncrop(crop) * m`` where ``m`` is the warped mask;
    wherever ``m`` is 0 the frame's pixel is returned exactly.
    """
    height, width = frames.shape[-2:]
    warped = uncrop(crops, matrices, height, width, align_size)
    weight = uncrop(masks, matrices, height, width, align_size).clamp_(0.0, 1.0)
    blended = frames * (1.0 - weight) + warped * weight
    return torch.where(weight > 0, blended, frames)


# The authors' paste-back, in frame pixels at a 512-pixel frame: the warped crop mask
# eroded by a 40x40 kernel, then a 41x41 Gaussian blur (OpenCV's sigma for that size).
AUTHORS_BLEND_FRAME = 512
AUTHORS_EROSION = 40
AUTHORS_BLUR = 41


def _gaussian_kernel(size: int) -> torch.Tensor:
    sigma = 0.3 * ((size - 1) * 0.5 - 1.0) + 0.8
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    kernel = torch.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def authors_blend_weights(
    matrices: NDArray[np.float32], size: int, height: int, width: int, align_size: int | None = None
) -> torch.Tensor:
    """``(N, 1, height, width)`` blend weights of the authors' paste-back: the warped
    ``size``-pixel crop square, eroded (OpenCV ``erode``: a k x k minimum anchored at
    k // 2, the image border not eroding) and Gaussian-blurred (reflected border), with
    k = 40 and 41 scaled by the frame size over 512."""
    scale = max(height, width) / AUTHORS_BLEND_FRAME
    erosion = max(1, round(AUTHORS_EROSION * scale))
    blur = max(1, round(AUTHORS_BLUR * scale)) | 1
    ones = torch.ones(len(matrices), 1, size, size)
    warped = uncrop(ones, matrices, height, width, align_size).clamp(0.0, 1.0)
    before, after = erosion // 2, erosion - 1 - erosion // 2
    padded = F.pad(warped, (before, after, before, after), value=1.0)
    eroded = -F.max_pool2d(-padded, kernel_size=erosion, stride=1)
    kernel = _gaussian_kernel(blur)
    half = blur // 2
    if half:
        rows = F.pad(eroded, (half, half, 0, 0), mode="reflect")
        eroded = F.conv2d(rows, kernel.view(1, 1, 1, blur))
        columns = F.pad(eroded, (0, 0, half, half), mode="reflect")
        eroded = F.conv2d(columns, kernel.view(1, 1, blur, 1))
    return eroded.clamp(0.0, 1.0)


def paste_back_weighted(
    frames: torch.Tensor,
    crops: torch.Tensor,
    matrices: NDArray[np.float32],
    weights: torch.Tensor,
    align_size: int | None = None,
) -> torch.Tensor:
    """``paste_back`` with blend weights already in frame space ``(N, 1, H, W)``
    (``authors_blend_weights``); where a weight is 0 the frame's pixel is returned exactly."""
    height, width = frames.shape[-2:]
    warped = uncrop(crops, matrices, height, width, align_size)
    blended = frames * (1.0 - weights) + warped * weights
    return torch.where(weights > 0, blended, frames)


def face_region_masks(
    points: NDArray[np.float32], height: int, width: int, grow: float = 1.25
) -> NDArray[np.float32]:
    """``(N, 1, height, width)`` masks, 1 inside the convex hull of the projected face.

    ``points`` are ``(N, P, 2)`` pixel coordinates of face landmarks (e.g. the 51 SMPL-X
    landmarks projected); the hull is grown by ``grow`` around its centre and extended
    upwards to cover the forehead. In crop coordinates this is the region the Face
    SGDM regenerates (its inpainting mask is ``1 - region``: 1 marks pixels kept).
    """
    masks = np.zeros((len(points), 1, height, width), dtype=np.float32)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    for index, frame_points in enumerate(points.astype(np.float64)):
        centre = frame_points.mean(axis=0)
        grown = centre + grow * (frame_points - centre)
        brow_to_chin = grown[:, 1].max() - grown[:, 1].min()
        upper = grown[grown[:, 1] < centre[1]] - [0.0, 0.4 * brow_to_chin]
        hull = _convex_hull(np.concatenate([grown, upper]))
        inside = np.ones((height, width), dtype=bool)
        for start, end in zip(hull, np.roll(hull, -1, axis=0), strict=True):
            edge = end - start
            inside &= edge[0] * (ys - start[1]) - edge[1] * (xs - start[0]) >= 0
        masks[index, 0] = inside
    return masks


def _convex_hull(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Counter-clockwise (in y-down pixel space: clockwise on screen) hull, monotone chain."""
    ordered = sorted(map(tuple, points))

    def half(sequence: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
        chain: list[tuple[float, ...]] = []
        for point in sequence:
            while len(chain) >= 2:
                (ax, ay), (bx, by) = chain[-2], chain[-1]
                if (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax) <= 0:
                    chain.pop()
                else:
                    break
            chain.append(point)
        return chain

    lower, upper = half(ordered), half(ordered[::-1])
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)
