"""The authors' face stage, where it differs: sampled masked-image latents, their blend."""

from __future__ import annotations

import numpy as np
import torch
from sgdm_helpers import FACE_SIZE, random_images, tiny_components

from model.face_geometry import (
    alignment_matrices,
    authors_blend_weights,
    ffhq_template,
    paste_back_weighted,
    uncrop,
)


def _matrices(count: int, frame: int) -> np.ndarray:
    """Alignments of a face in the middle of a ``frame``-pixel image, slightly turned."""
    points = ffhq_template(frame // 2) + frame / 4
    rotation = np.array([[0.99, -0.12], [0.12, 0.99]], dtype=np.float32)
    turned = (points - frame / 2) @ rotation.T + frame / 2
    return alignment_matrices(np.stack([turned] * count).astype(np.float32), FACE_SIZE)


def _reference_weights(mask: np.ndarray, erosion: int, blur: int) -> np.ndarray:
    """OpenCV's erode (k x k, anchor k // 2, border not eroding) and GaussianBlur (its
    default sigma, reflect-101 border), written out in numpy."""
    height, width = mask.shape
    before = erosion // 2
    padded = np.pad(mask, ((before, erosion - 1 - before),) * 2, constant_values=1.0)
    eroded = np.full_like(mask, np.inf)
    for dy in range(erosion):
        for dx in range(erosion):
            eroded = np.minimum(eroded, padded[dy : dy + height, dx : dx + width])
    sigma = 0.3 * ((blur - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(blur) - (blur - 1) / 2
    kernel_1d = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel = np.outer(kernel_1d, kernel_1d) / kernel_1d.sum() ** 2
    half = blur // 2
    reflected = np.pad(eroded, half, mode="reflect")
    out = np.zeros_like(mask)
    for dy in range(blur):
        for dx in range(blur):
            out += kernel[dy, dx] * reflected[dy : dy + height, dx : dx + width]
    return out


def test_authors_blend_is_erosion_then_gaussian_blur_scaled_to_the_frame() -> None:
    frame = 128  # 1/4 of 512: erosion 10, blur 11 (41/4 rounded, made odd)
    matrices = _matrices(2, frame)
    weights = authors_blend_weights(matrices, FACE_SIZE, frame, frame)
    assert weights.shape == (2, 1, frame, frame)
    warped = uncrop(torch.ones(1, 1, FACE_SIZE, FACE_SIZE), matrices[:1], frame, frame)
    expected = _reference_weights(warped[0, 0].clamp(0, 1).numpy().astype(np.float64), 10, 11)
    assert np.abs(weights[0, 0].numpy() - expected).max() < 1e-5
    # The eroded, blurred mask is inside the warped crop: frame pixels outside stay exact.
    frames = random_images(2, frame)
    crops = random_images(2, FACE_SIZE, seed=5)
    blended = paste_back_weighted(frames, crops, matrices, weights)
    outside = weights == 0
    assert outside.any() and (weights > 0.99).any()
    assert torch.equal(blended.expand_as(frames)[outside.expand_as(frames)],
                       frames[outside.expand_as(frames)])  # fmt: skip
    assert (blended - frames).abs().max() > 0.1


@torch.no_grad()
def test_sampled_masked_latent_draws_the_same_noise_for_every_frame() -> None:
    components = tiny_components(face=True)
    enhancer = components.face
    assert enhancer is not None and enhancer.masked_latent == "mode"
    crops = random_images(3, FACE_SIZE)
    mode = enhancer.masked_latents(crops)
    enhancer.masked_latent = "sample"
    sampled = enhancer.masked_latents(crops)
    again = enhancer.masked_latents(crops[1:2])
    assert sampled.shape == mode.shape == (3, 4, FACE_SIZE // 8, FACE_SIZE // 8)
    assert (sampled - mode).abs().max() > 1e-4
    assert torch.equal(again[0], sampled[1])  # independent of the batch
    posterior = enhancer.vae.encode(crops[:1] * 2 - 1).latent_dist  # type: ignore[union-attr]
    draw = posterior.sample(generator=torch.Generator().manual_seed(enhancer.seed))
    expected = draw * enhancer.vae.config["scaling_factor"]
    assert torch.allclose(sampled[0], expected[0], atol=1e-6)
