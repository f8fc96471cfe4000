"""Pixel metrics of a predicted video against its ground truth: SSIM, PSNR, L1, flicker.

Every function takes ``(T, H, W, 3)`` uint8 RGB videos of the same shape (see
``model.evaluation.video.check_pair``) and averages per-frame values over the frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from model.errors import AnchorError

# SSIM as Wang et al. (2004) define it: an 11x11 Gaussian window of sigma 1.5, K1 = 0.01,
# K2 = 0.03, dynamic range L = 255; the statistics are taken over the windows that fit
# inside the image (no padding), per RGB channel, and the SSIM map is averaged over
# channels and pixels.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
PEAK = 255.0
CHUNK = 8  # frames per torch call: bounds memory on long videos


def _frames(video: np.ndarray) -> torch.Tensor:
    """``(T, H, W, 3)`` uint8 -> ``(T, 3, H, W)`` float64 in [0, 255]."""
    return torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).to(torch.float64)


def _gaussian_window() -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2.0
    weights = torch.exp(-(offsets**2) / (2.0 * SSIM_SIGMA**2))
    return weights / weights.sum()


def _blur(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter over the valid region: ``(N, 3, H, W)`` -> ``(N, 3, H-10, W-10)``
    (the window's 11 minus 1)."""
    channels = images.shape[1]
    rows = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    columns = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    return F.conv2d(F.conv2d(images, rows, groups=channels), columns, groups=channels)


def ssim_per_frame(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(T,)`` float64 SSIM of each frame (1 for identical frames)."""
    height, width = pred.shape[1:3]
    if min(height, width) < SSIM_WINDOW:
        raise AnchorError(
            f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
            f"got {width}x{height}"
        )
    window = _gaussian_window()
    c1, c2 = (SSIM_K1 * PEAK) ** 2, (SSIM_K2 * PEAK) ** 2
    values = []
    for start in range(0, len(pred), CHUNK):
        x, y = _frames(pred[start : start + CHUNK]), _frames(gt[start : start + CHUNK])
        mean_x, mean_y = _blur(x, window), _blur(y, window)
        variance_x = _blur(x * x, window) - mean_x * mean_x
        variance_y = _blur(y * y, window) - mean_y * mean_y
        covariance = _blur(x * y, window) - mean_x * mean_y
        numerator = (2.0 * mean_x * mean_y + c1) * (2.0 * covariance + c2)
        denominator = (mean_x * mean_x + mean_y * mean_y + c1) * (variance_x + variance_y + c2)
        values.append((numerator / denominator).mean(dim=(1, 2, 3)))
    return torch.cat(values).numpy()


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean SSIM over the frames (gaussian window, standard constants; see SSIM_*)."""
    return float(ssim_per_frame(pred, gt).mean())


def mse_per_frame(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``(T,)`` mean squared error of each frame on the 0..255 scale."""
    values = []
    for start in range(0, len(pred), CHUNK):
        difference = _frames(pred[start : start + CHUNK]) - _frames(gt[start : start + CHUNK])
        values.append((difference * difference).mean(dim=(1, 2, 3)))
    return torch.cat(values).numpy()


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error on the 0..255 scale; ``inf`` for 0."""
    return math.inf if mse == 0.0 else 10.0 * math.log10(PEAK * PEAK / mse)


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean over the frames of each frame's PSNR (dB, peak 255).

    A frame equal to its ground truth has an infinite PSNR, and so has the mean then.
    """
    return float(np.mean([psnr_from_mse(float(mse)) for mse in mse_per_frame(pred, gt)]))


def l1(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute difference on the 0..1 scale."""
    total = 0.0
    for start in range(0, len(pred), CHUNK):
        difference = _frames(pred[start : start + CHUNK]) - _frames(gt[start : start + CHUNK])
        total += float(difference.abs().sum())
    return total / (pred.size * PEAK)


def flicker(video: np.ndarray) -> float:
    """Mean absolute change between consecutive frames, on the 0..1 scale.

    Averaged over the ``T - 1`` frame pairs; needs at least two frames.
    """
    if len(video) < 2:
        raise AnchorError(f"flicker needs at least 2 frames, the video has {len(video)}")
    total = 0.0
    for start in range(0, len(video) - 1, CHUNK):
        frames = _frames(video[start : start + CHUNK + 1])
        total += float((frames[1:] - frames[:-1]).abs().sum())
    return total / (video[1:].size * PEAK)


def flicker_report(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Flicker of pred and of gt, and their difference (pred - gt; > 0: pred flickers more)."""
    of_pred, of_gt = flicker(pred), flicker(gt)
    return {"pred": of_pred, "gt": of_gt, "difference": of_pred - of_gt}
