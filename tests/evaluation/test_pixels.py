"""SSIM, PSNR, L1 and flicker on videos with known answers; pair checks name both videos."""

from __future__ import annotations

import math

import numpy as np
import pytest
from eval_helpers import noisy, smooth_video
from scipy import ndimage

from model.errors import AnchorError
from model.evaluation.pixels import flicker, flicker_report, l1, psnr, ssim, ssim_per_frame
from model.evaluation.video import check_pair


def test_ssim_is_one_for_identical_videos_and_falls_with_noise() -> None:
    video = smooth_video(6)
    assert ssim(video, video) == pytest.approx(1.0, abs=1e-12)
    values = [ssim(noisy(video, level), video) for level in (5, 20, 60)]
    assert values[0] < 1.0
    assert values == sorted(values, reverse=True)
    assert values[-1] < 0.5


def _reference_ssim(first: np.ndarray, second: np.ndarray) -> float:
    """SSIM of one frame with scipy's Gaussian filter (radius 5 = the 11-tap window), keeping
    only the pixels whose window lies inside the image."""
    x, y = first.astype(np.float64), second.astype(np.float64)

    def blur(image: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(image, sigma=1.5, truncate=5 / 1.5, mode="constant")[
            5:-5, 5:-5
        ]

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    maps = []
    for channel in range(3):
        a, b = x[..., channel], y[..., channel]
        mean_a, mean_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mean_a**2, blur(b * b) - mean_b**2
        cov = blur(a * b) - mean_a * mean_b
        maps.append(
            ((2 * mean_a * mean_b + c1) * (2 * cov + c2))
            / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2))
        )
    return float(np.mean(maps))


def test_ssim_equals_an_independent_gaussian_filter_computation() -> None:
    gt = smooth_video(3, size=40, seed=3)
    pred = noisy(gt, 25, seed=4)
    expected = [_reference_ssim(pred[index], gt[index]) for index in range(3)]
    np.testing.assert_allclose(ssim_per_frame(pred, gt), expected, rtol=1e-10)


def test_psnr_and_l1_of_known_differences() -> None:
    gt = np.full((2, 16, 16, 3), 100, dtype=np.uint8)
    pred = gt.copy()
    pred[0] += 5  # MSE 25
    pred[1] += 10  # MSE 100
    expected = (10 * math.log10(255**2 / 25) + 10 * math.log10(255**2 / 100)) / 2
    assert psnr(pred, gt) == pytest.approx(expected, rel=1e-12)
    assert l1(pred, gt) == pytest.approx(7.5 / 255, rel=1e-12)
    assert psnr(gt, gt) == math.inf
    assert l1(gt, gt) == 0.0


def test_flicker_is_the_mean_frame_to_frame_change() -> None:
    steady = np.zeros((4, 16, 16, 3), dtype=np.uint8)
    steady[:] = np.arange(4, dtype=np.uint8)[:, None, None, None] * 51  # +51 per frame
    still = np.full_like(steady, 80)
    assert flicker(steady) == pytest.approx(51 / 255, rel=1e-12)
    assert flicker(still) == 0.0
    report = flicker_report(steady, still)
    assert report == pytest.approx({"pred": 0.2, "gt": 0.0, "difference": 0.2})
    with pytest.raises(AnchorError, match="at least 2 frames"):
        flicker(steady[:1])


def test_pairs_must_match_and_the_error_names_both() -> None:
    video = smooth_video(4, size=32)
    with pytest.raises(AnchorError, match="pred has 3 frames, gt has 4"):
        check_pair(video[:3], video)
    with pytest.raises(AnchorError, match="pred is 32x32, gt is 16x32"):
        check_pair(video, video[:, :, :16])
    with pytest.raises(AnchorError, match="gt: expected \\(T, H, W, 3\\) uint8"):
        check_pair(video, video.astype(np.float32))
    with pytest.raises(AnchorError, match="at least 11x11"):
        ssim(video[:, :8, :8], video[:, :8, :8])
