"""Seeded initial noise that does not depend on clip length or chunking.

Frame i's noise is a function of (seed, i) only, so an offline run over L frames and a
streaming run that learns L late draw exactly the same noise for every frame.

``sampler.noise_device``: "cpu" draws float32 on the CPU, the same numbers on every
device. "authors" draws as the authors' pipeline does: on a CUDA device, float16 from a
CUDA generator seeded with the seed (so a GPU run reproduces theirs); on the CPU it is
"cpu".
"""

from __future__ import annotations

import torch

from model.config import NoiseDevice

# Spreads per-frame seeds far apart so (seed, i) and (seed + 1, i - k) never collide.
_FRAME_SEED_STRIDE = 1_000_003


def frame_noise(
    seed: int,
    frame_indices: list[int] | range,
    shape: tuple[int, int, int],
    same_frame_noise: bool,
    dtype: torch.dtype = torch.float32,
    *,
    device: torch.device | None = None,
    noise_device: NoiseDevice = "cpu",
) -> torch.Tensor:
    """Initial latents for the given frames: (len(frame_indices), *shape) in ``dtype``.

    same_frame_noise=True (the official default) repeats ONE Gaussian of ``shape`` for
    every frame; otherwise each frame gets its own Gaussian seeded by (seed, index).
    With noise_device "cpu" (or any non-CUDA ``device``) it is drawn on the CPU in float32
    and returned there, bit-identical on every machine; with "authors" and a CUDA
    ``device`` it is drawn there in float16 and returned on that device.
    """
    if noise_device not in ("cpu", "authors"):
        raise ValueError(f"sampler.noise_device must be 'cpu' or 'authors', got {noise_device!r}")
    on_gpu = noise_device == "authors" and device is not None and device.type == "cuda"
    draw_device = device if on_gpu and device is not None else torch.device("cpu")
    draw_dtype = torch.float16 if on_gpu else torch.float32

    def gaussian(frame_seed: int) -> torch.Tensor:
        generator = torch.Generator(draw_device).manual_seed(frame_seed)
        return torch.randn(shape, generator=generator, dtype=draw_dtype, device=draw_device)

    indices = list(frame_indices)
    if same_frame_noise:
        one = gaussian(seed).float()
        return one.expand(len(indices), *shape).clone().to(dtype)
    out = torch.empty((len(indices), *shape), dtype=torch.float32, device=draw_device)
    for row, index in enumerate(indices):
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        out[row] = gaussian(seed * _FRAME_SEED_STRIDE + index).float()
    return out.to(dtype)
