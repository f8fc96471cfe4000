"""DDIM seen per frame: model/denoiser.py's ``FrameScheduler`` over diffusers' DDIMScheduler."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

from model.presets import SD15_SCHEDULER_CONFIG


class DDIMFrameScheduler:
    """Deterministic DDIM (eta 0) with a fixed number of steps, stepping any set of frames.

    ``timesteps``: (T,) int64 in denoising order (SD1.5 "leading" spacing with steps_offset
    1: 951, 901, ..., 1 for 20 steps). ``step_frames`` is purely elementwise, so frames may
    be stepped one by one, per window or all at once with identical results.
    """

    def __init__(self, scheduler: DDIMScheduler, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.scheduler: DDIMScheduler = DDIMScheduler.from_config(scheduler.config)
        self.scheduler.set_timesteps(steps)
        self.steps = steps
        self.timesteps: torch.Tensor = self.scheduler.timesteps.to(torch.int64).cpu()
        self.init_noise_sigma = float(self.scheduler.init_noise_sigma)

    @classmethod
    def from_config(cls, config: dict[str, Any], steps: int) -> DDIMFrameScheduler:
        """From a scheduler config dict (SD1.5's by default in the tiny preset)."""
        return cls(DDIMScheduler.from_config(config), steps)

    @classmethod
    def sd15(cls, steps: int) -> DDIMFrameScheduler:
        """The paper's scheduler: SD1.5's config as DDIM."""
        return cls.from_config(SD15_SCHEDULER_CONFIG, steps)

    def with_steps(self, steps: int) -> DDIMFrameScheduler:
        """The same schedule with another number of steps."""
        return DDIMFrameScheduler(self.scheduler, steps)

    def step_frames(
        self, noise: torch.Tensor, step_index: int, latents: torch.Tensor
    ) -> torch.Tensor:
        """(N, C, h, w) noise and latents at ``timesteps[step_index]`` -> latents after the step.

        Computed in float32 whatever the input dtype; returns float32.
        """
        if not 0 <= step_index < self.steps:
            raise IndexError(f"step_index {step_index} outside 0..{self.steps - 1}")
        timestep = int(self.timesteps[step_index])
        out = self.scheduler.step(
            noise.float(), timestep, latents.float(), eta=0.0, return_dict=False
        )[0]
        return out  # type: ignore[no-any-return]
