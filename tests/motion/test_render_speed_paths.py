"""The fast paths of the body model and renderer give the reference results."""

from __future__ import annotations

import numpy as np
import torch
from motion_helpers import random_frame

from model.motion.frame import MotionFrame


def _shared_betas_window(generator: np.random.Generator, betas: np.ndarray) -> list[MotionFrame]:
    frames = [random_frame(seq, generator) for seq in range(4)]
    for frame in frames:
        frame.betas = betas.copy()
    return frames


def test_shared_betas_window_equals_smplx_and_the_shape_cache_follows_betas(body_model) -> None:  # type: ignore[no-untyped-def]
    generator = np.random.default_rng(1)
    first_betas = generator.normal(0.0, 0.5, 300).astype(np.float32)
    second_betas = generator.normal(0.0, 0.5, 300).astype(np.float32)
    # The second window reuses the cached shape, the third must replace it.
    for betas in (first_betas, first_betas, second_betas):
        params = body_model.stack(_shared_betas_window(generator, betas))
        ours = body_model.forward_tensors(params)
        with torch.inference_mode():
            reference = body_model.smplx(**params)
        np.testing.assert_allclose(ours.vertices, reference.vertices.numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.joints, reference.joints[:, :55].numpy(), atol=1e-5)


def test_forward_restores_the_callers_thread_count(body_model) -> None:  # type: ignore[no-untyped-def]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        body_model.forward([MotionFrame(seq=0, pts=0.0)])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_sparse_skinning_equals_the_dense_product() -> None:
    from model.body import DENSE_SKINNING_WIDTH, _SparseWeights

    generator = torch.Generator().manual_seed(0)
    transforms = torch.randn(3, 55, 3, 4, generator=generator)
    for width in (1, 4, DENSE_SKINNING_WIDTH + 3):
        weights = torch.zeros(200, 55)
        for row in range(200):
            joints = torch.randperm(55, generator=generator)[: 1 + row % width]
            weights[row, joints] = torch.rand(len(joints), generator=generator)
        dense = (weights @ transforms.reshape(3, 55, 12)).view(3, 200, 3, 4)
        torch.testing.assert_close(_SparseWeights(weights).blend(transforms), dense)
