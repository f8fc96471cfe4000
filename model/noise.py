"""Seeded initial noise that does not depend on clip length or chunking.

Frame i's noise is a function of (seed, i) only, so an offline run over L frames and a
streaming run that learns L late draw exactly the same noise for every frame.
"""

from __future__ import annotations

import torch

# Spreads per-frame seeds far apart so (seed, i) and (seed + 1, i - k) never collide.
_FRAME_SEED_STRIDE = 1_000_003


def frame_noise(
    seed: int,
    frame_indices: list[int] | range,
    shape: tuple[int, int, int],
    same_frame_noise: bool,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Initial latents for the given frames: (len(frame_indices), *shape).

    same_frame_noise=True (the official default) repeats ONE Gaussian of ``shape`` for
    every frame; otherwise each frame gets its own Gaussian seeded by (seed, index).
    Generated on the CPU in float32 for bit-identical results on every device.
    """
    indices = list(frame_indices)
    if same_frame_noise:
        generator = torch.Generator().manual_seed(seed)
        one = torch.randn(shape, generator=generator, dtype=torch.float32)
        return one.expand(len(indices), *shape).clone().to(dtype)
    out = torch.empty((len(indices), *shape), dtype=torch.float32)
    for row, index in enumerate(indices):
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        generator = torch.Generator().manual_seed(seed * _FRAME_SEED_STRIDE + index)
        out[row] = torch.randn(shape, generator=generator, dtype=torch.float32)
    return out.to(dtype)
