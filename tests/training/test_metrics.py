"""SSIM and PSNR used by ``anchor bench train``."""

from __future__ import annotations

import math

import torch

from bench.train import psnr, ssim


def test_identical_images_score_perfectly() -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert math.isclose(ssim(images, images), 1.0, abs_tol=1e-5)
    assert psnr(images, images) > 90.0


def test_scores_fall_with_noise() -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 32, 32, generator=generator).mul(0.5).add(0.25)
    noise = torch.randn(images.shape, generator=generator)
    slightly, badly = images + 0.02 * noise, images + 0.2 * noise
    assert ssim(images, slightly) > ssim(images, badly)
    assert math.isclose(psnr(images, images + 0.1), 20.0, abs_tol=1e-3)  # MSE 0.01
