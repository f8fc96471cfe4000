"""The contract between the denoising loops (offline in model/, streaming in streaming/)
and the networks that predict noise.

A loop never touches UNets or schedulers' internals directly: it asks a
``WindowDenoiser`` for guided noise predictions of a batch of equally long windows,
and a ``FrameScheduler`` to step latents of any set of frames at a given step index.
"""

from __future__ import annotations

from typing import Protocol

import torch


class WindowDenoiser(Protocol):
    """Predicts classifier-free-guided noise for batches of frame windows.

    Shapes use W = windows in the call, F = frames per window (equal for all windows of
    one call), h, w = latent height/width, H, W = image height/width.
    """

    latent_channels: int
    latent_height: int
    latent_width: int

    def encode_conditions(self, images: torch.Tensor) -> torch.Tensor:
        """Per-frame condition features from mesh renders.

        images: (N, 3, H, W) float32 in [0, 1]. Returns (N, ...) features, computed once
        per frame: the ControlNet conditioning-image embedding when caching is on, else
        the images themselves. Frames can be gathered into windows along dim 0.
        """
        ...

    def predict(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor
    ) -> torch.Tensor:
        """Guided noise for W windows in one batched call.

        latents: (W, F, C, h, w); timesteps: (W,) int64, one per window (windows of one
        call may be at different steps); conditions: (W, F, ...) from encode_conditions.
        Returns (W, F, C, h, w) = uncond + g * (cond - uncond), g the guidance scale
        (cond only when g == 1 or guidance is off). Frames attend across their own
        window only; windows and CFG halves never see each other.
        """
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) latents -> (N, 3, H, W) float32 images in [0, 1]."""
        ...


class FrameScheduler(Protocol):
    """A diffusion scheduler seen per frame: stateless between calls for a given step."""

    timesteps: torch.Tensor  # (T,) int64, in denoising order

    def step_frames(
        self, noise: torch.Tensor, step_index: int, latents: torch.Tensor
    ) -> torch.Tensor:
        """Latents of any frames at ``step_index`` -> latents after that step.

        noise, latents: (N, C, h, w). Purely elementwise across frames, so stepping frames
        one by one or all together gives identical results.
        """
        ...
