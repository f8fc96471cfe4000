"""SSIM and PSNR of ``anchor bench train``: the evaluation metrics of the rounded frames."""

from __future__ import annotations

import math

import torch

from bench.train import psnr, ssim
from model.evaluation import pixels
from model.video_io import to_uint8


def test_bench_scores_are_the_evaluation_metrics_of_the_uint8_frames() -> None:
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 32, 32, generator=generator)
    noisy = (images + 0.05 * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    frames, noisy_frames = to_uint8(images), to_uint8(noisy)
    assert ssim(images, noisy) == pixels.ssim(frames, noisy_frames) < 1.0
    assert psnr(images, noisy) == pixels.psnr(frames, noisy_frames) < math.inf


def test_identical_images_score_perfectly() -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert math.isclose(ssim(images, images), 1.0, abs_tol=1e-12)
    assert psnr(images, images) == math.inf


def test_scores_fall_with_noise() -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 32, 32, generator=generator).mul(0.5).add(0.25)
    noise = torch.randn(images.shape, generator=generator)
    slightly, badly = images + 0.02 * noise, images + 0.2 * noise
    assert ssim(images, slightly) > ssim(images, badly)
    assert psnr(images, slightly) > psnr(images, badly)
