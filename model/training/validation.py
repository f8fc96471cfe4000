"""Validation renders of a body training run: ``OUT/validation/step-NNNNNN.png``.

A few fixed frames of the validation data (evenly spread), sampled with the networks
being trained: one row per frame, columns condition | target | sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from PIL import Image

from model.training.data import TrainingSamples
from model.training.networks import FrozenNetworks
from model.training.sampling import sample_body
from model.video_io import to_uint8


@torch.no_grad()
def validation_grid(
    unet: UNet2DConditionModel,
    controlnet: ControlNetModel,
    frozen: FrozenNetworks,
    samples: TrainingSamples,
    count: int,
    steps: int,
) -> torch.Tensor:
    """(3, N * S, 3 * S) float [0, 1]: condition | target | sample rows of ``count``
    evenly spread frames of ``samples`` (S px), sampled in ``steps`` DDIM steps with the
    appearance of the first one's clip. The networks are in eval mode while sampling and
    back in train mode after.
    """
    count = min(count, len(samples))
    picks = np.linspace(0, len(samples) - 1, count).round().astype(int)
    items = [samples.frames[i] for i in picks]
    rows = [samples._read(f, f.entry, name) for f in items for name in ("condition", "frame")]
    conditions, targets = torch.stack(rows[0::2]), torch.stack(rows[1::2])
    reference = samples._read(items[0], items[0].clip_entries[0], "frame")
    unet.eval()
    controlnet.eval()
    generated = sample_body(unet, controlnet, frozen, reference, conditions, steps)
    unet.train()
    controlnet.train()
    return torch.cat([torch.cat(list(column), dim=1) for column in
                      (conditions, targets, generated)], dim=2)  # fmt: skip


def write_validation(out: Path, step: int, grid: torch.Tensor) -> Path:
    """``OUT/validation/step-NNNNNN.png`` of a ``validation_grid``, rounded to uint8."""
    path = out / "validation" / f"step-{step:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(grid[None])[0]).save(path)
    return path
