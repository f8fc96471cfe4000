"""Typed frames of the streaming hot path.

Plain slotted dataclasses: one per hop of the one-way flow
condition frame -> committed frame (latent, then decoded image) -> enhanced frame.
Every frame carries ``seq`` (the frame index the sender gave it), ``pts`` (its capture
time, seconds) and ``epoch`` (which clip it belongs to: a reset or flush starts a new
epoch, so work that finishes after a reset can be recognised and dropped). The epoch is
the one reset mechanism of the hot path: a sender that resets counts clips the way the
sampler does, and the thread feeding the sampler drops frames of an older epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray


@dataclass(slots=True)
class FaceGeometry:
    """What the face stage needs of one frame, computed when its condition is rendered.

    matrix: (2, 3) float32, image pixels -> crop pixels (``alignment_matrices``), for
    images of ``image_size`` (H, W); frames of another size are mapped by scaling.
    mesh_crop: (3, S, S) float32 [0, 1], the aligned crop of the mesh render.
    keep_mask: (1, S, S) float32, the inpainting mask in crop space: 0 on the face
    region (regenerated), 1 elsewhere (kept).
    """

    matrix: NDArray[np.float32]
    mesh_crop: torch.Tensor
    keep_mask: torch.Tensor
    image_size: tuple[int, int]


@dataclass(slots=True)
class DeferredFace:
    """A frame whose condition image gave no face (no mesh, detector missed): the face
    stage looks for it on the generated frame, as the authors' face stage does.

    render: (3, H, W) float32 [0, 1] the condition image, whose aligned crop guides the
    face model once the face is found.
    """

    render: torch.Tensor


# What a frame carries to the face stage: its geometry, or a face still to be found.
FrameFace = FaceGeometry | DeferredFace


@dataclass(slots=True)
class ConditionFrame:
    """One frame of structure guidance entering the sampler.

    condition: (3, H, W) float32 in [0, 1], the rendered mesh image.
    features: the frame's encoded condition (``WindowDenoiser.encode_conditions`` of
    ``condition[None]``, without the batch dim) when the caller already has it; the
    sampler then skips encoding this frame.
    face: the frame's face geometry (an aligned-crop transform and mask from the motion
    layer's face geometry), a ``DeferredFace`` (no geometry from the condition: the face
    stage detects it on the generated frame), or None when the frame has no usable face;
    the sampler does not read it, it travels with the frame to the face stage.
    epoch: the sender's clip count when it sent the frame, bumped where it resets or
    ends a clip, as ``WindowSampler.epoch`` is at ``reset`` and ``flush``; a frame whose
    epoch is below the sampler's was sent before a reset and is dropped by the thread
    feeding the sampler (the sampler itself does not read it). A sender that never resets
    leaves it at 0.
    """

    seq: int
    pts: float
    condition: torch.Tensor
    face: FrameFace | None = None
    epoch: int = 0
    features: torch.Tensor | None = None


@dataclass(slots=True)
class CommittedFrame:
    """A frame whose latent is final: every window containing it has taken its last step.

    latent: (C, h, w) float32 (the denoiser's latent layout, e.g. (4, H/8, W/8)).
    image: (3, H, W) float32 in [0, 1] once decoded, None before.
    epoch: the sampler's clip count when it committed the frame.
    position: the frame's index within its epoch (0, 1, 2, ...), the index its initial
    noise was drawn for.
    face: the face geometry carried over from the condition frame.
    """

    seq: int
    pts: float
    epoch: int
    position: int
    latent: torch.Tensor
    image: torch.Tensor | None = None
    face: FrameFace | None = None
