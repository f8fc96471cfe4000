"""Initial noise depends only on (seed, frame index), never on clip length or chunking."""

from __future__ import annotations

import pytest
import torch

from model.noise import frame_noise

SHAPE = (4, 8, 8)


def test_per_frame_noise_is_independent_of_how_frames_are_requested() -> None:
    whole = frame_noise(7, range(10), SHAPE, same_frame_noise=False)
    parts = torch.cat(
        [frame_noise(7, range(0, 3), SHAPE, False), frame_noise(7, range(3, 10), SHAPE, False)]
    )
    assert torch.equal(whole, parts)
    assert torch.equal(frame_noise(7, [5], SHAPE, False)[0], whole[5])
    assert not torch.equal(whole[0], whole[1])
    assert not torch.equal(whole, frame_noise(8, range(10), SHAPE, False))


def test_same_frame_noise_repeats_one_gaussian() -> None:
    noise = frame_noise(42, range(5), SHAPE, same_frame_noise=True)
    assert noise.shape == (5, *SHAPE)
    assert all(torch.equal(noise[0], noise[i]) for i in range(5))
    expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(42))
    assert torch.equal(noise[0], expected)
    assert abs(float(noise.std()) - 1.0) < 0.25


def test_authors_noise_on_the_cpu_is_the_cpu_noise() -> None:
    """Off CUDA, "authors" draws what the authors' pipeline draws on the CPU: float32 from a
    CPU generator seeded with the seed, i.e. exactly "cpu"."""
    cpu = torch.device("cpu")
    for same in (True, False):
        expected = frame_noise(42, range(4), SHAPE, same)
        drawn = frame_noise(42, range(4), SHAPE, same, device=cpu, noise_device="authors")
        assert drawn.dtype == torch.float32 and drawn.device == cpu
        assert torch.equal(drawn, expected)


def test_unknown_noise_device_is_named() -> None:
    with pytest.raises(ValueError, match=r"sampler\.noise_device"):
        frame_noise(42, range(2), SHAPE, True, noise_device="gpu")  # type: ignore[arg-type]
