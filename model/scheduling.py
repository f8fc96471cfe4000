"""Schedulers seen per frame: model/denoiser.py's ``FrameScheduler`` over diffusers'
DDIMScheduler (``sampler.scheduler = "ddim"``, the paper's) and LCMScheduler
(``"lcm"``, for LCM-distilled weights such as an LCM-LoRA, 2-8 steps).

Both are per-frame stateless: ``step_frames`` depends only on the step index and on the
frames it is given, elementwise, so frames may be stepped one by one, per window or all
at once with identical results (what mode ``exact`` and per-window stepping rely on).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_lcm import LCMScheduler

from model.presets import SD15_SCHEDULER_CONFIG

SchedulerKind = Literal["ddim", "lcm"]
# Spreads the per-step noise seeds of LCM far apart from one run seed to the next.
_STEP_SEED_STRIDE = 1_000_003


class DDIMFrameScheduler:
    """Deterministic DDIM (eta 0) with a fixed number of steps, stepping any set of frames.

    ``timesteps``: (T,) int64 in denoising order (SD1.5 "leading" spacing with steps_offset
    1: 951, 901, ..., 1 for 20 steps). ``step_frames`` is purely elementwise, so frames may
    be stepped one by one, per window or all at once with identical results.
    """

    per_frame_stateless = True

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
        _check_index(step_index, self.steps)
        timestep = int(self.timesteps[step_index])
        out = self.scheduler.step(
            noise.float(), timestep, latents.float(), eta=0.0, return_dict=False
        )[0]
        return out  # type: ignore[no-any-return]


class LCMFrameScheduler:
    """Latent-consistency sampling (diffusers' LCMScheduler) stepping any set of frames.

    ``timesteps``: (T,) int64 from LCMScheduler.set_timesteps (SD1.5's config with 4 steps:
    999, 759, 499, 259). Each step predicts x0 with the consistency boundary scalings and,
    except at the last step, re-noises it to the next timestep with fresh Gaussian noise.

    That noise is ONE (C, h, w) Gaussian per step, drawn on the CPU from a generator seeded
    by (``seed``, step index) and shared by every frame. Why shared rather than drawn per
    frame: ``step_frames`` receives latents, not frame indices, so a per-frame draw would
    depend on which frames happen to be stepped together (a window, a commit, the whole
    clip) and exact streaming would no longer equal offline; a per-step noise shared by all
    frames is elementwise per frame, deterministic, and the same choice the paper makes for
    the initial latents (``sampler.same_frame_noise``: one Gaussian for every frame keeps
    neighbouring frames consistent). diffusers' LCMScheduler.step is not called because it
    advances an internal step counter on every call, which would break stepping the same
    step index several times (once per window); the arithmetic here is its step formula
    on its own tables (alphas_cumprod, boundary scalings, final_alpha_cumprod).
    """

    per_frame_stateless = True

    def __init__(
        self, scheduler: LCMScheduler, steps: int, seed: int = 0, strength: float = 1.0
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.scheduler: LCMScheduler = LCMScheduler.from_config(scheduler.config)
        self.scheduler.set_timesteps(steps, strength=strength)
        if self.scheduler.config["prediction_type"] != "epsilon":
            raise ValueError(
                "LCM sampling supports prediction_type 'epsilon' only, got "
                f"{self.scheduler.config['prediction_type']!r}"
            )
        self.steps = steps
        self.seed = seed
        self.strength = strength
        self.timesteps: torch.Tensor = self.scheduler.timesteps.to(torch.int64).cpu()
        self.init_noise_sigma = float(self.scheduler.init_noise_sigma)

    @classmethod
    def from_config(
        cls, config: dict[str, Any], steps: int, seed: int = 0, strength: float = 1.0
    ) -> LCMFrameScheduler:
        """From any SD scheduler config dict (DDIM's, PNDM's, LCM's: the same tables).

        strength: diffusers' LCM ``strength``: the share of the distillation timesteps
        sampled (0.5: the first step at 499 instead of 999)."""
        return cls(LCMScheduler.from_config(config), steps, seed, strength)

    @classmethod
    def sd15(cls, steps: int, seed: int = 0) -> LCMFrameScheduler:
        """SD1.5's config as LCM (what an SD1.5 LCM-LoRA was distilled with)."""
        return cls.from_config(SD15_SCHEDULER_CONFIG, steps, seed)

    def with_steps(self, steps: int) -> LCMFrameScheduler:
        """The same schedule, strength and noise seed with another number of steps."""
        return LCMFrameScheduler(self.scheduler, steps, self.seed, self.strength)

    def step_noise(self, step_index: int, shape: tuple[int, ...]) -> torch.Tensor:
        """The re-noising Gaussian of step ``step_index``: ``shape`` float32 on the CPU."""
        generator = torch.Generator().manual_seed(self.seed * _STEP_SEED_STRIDE + step_index)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    def step_frames(
        self, noise: torch.Tensor, step_index: int, latents: torch.Tensor
    ) -> torch.Tensor:
        """(N, C, h, w) predicted noise and latents at ``timesteps[step_index]`` -> latents
        after the step, float32 on the latents' device."""
        _check_index(step_index, self.steps)
        timestep = int(self.timesteps[step_index])
        last = step_index == self.steps - 1
        alphas = self.scheduler.alphas_cumprod
        alpha = alphas[timestep]
        alpha_next = (
            alphas[int(self.timesteps[step_index + 1])]
            if not last
            else self.scheduler.final_alpha_cumprod
        )
        c_skip, c_out = self.scheduler.get_scalings_for_boundary_condition_discrete(timestep)
        sample = latents.float()
        predicted = (sample - (1 - alpha).sqrt() * noise.float()) / alpha.sqrt()
        if self.scheduler.config["clip_sample"]:
            bound = self.scheduler.config["clip_sample_range"]
            predicted = predicted.clamp(-bound, bound)
        denoised = c_out * predicted + c_skip * sample
        if last:
            return denoised
        fresh = self.step_noise(step_index, tuple(sample.shape[1:])).to(sample.device)
        return alpha_next.sqrt() * denoised + (1 - alpha_next).sqrt() * fresh


PerFrameScheduler = DDIMFrameScheduler | LCMFrameScheduler


def frame_scheduler(
    kind: SchedulerKind,
    config: dict[str, Any],
    steps: int,
    seed: int = 0,
    lcm_strength: float = 1.0,
) -> PerFrameScheduler:
    """The ``kind`` scheduler (``sampler.scheduler`` / ``face.scheduler``) from a diffusers
    scheduler config, ``steps`` steps; ``seed`` seeds LCM's per-step noise (DDIM has none),
    ``lcm_strength`` its share of the schedule (``sampler.lcm_strength``)."""
    if kind == "ddim":
        return DDIMFrameScheduler.from_config(config, steps)
    if kind == "lcm":
        return LCMFrameScheduler.from_config(config, steps, seed, lcm_strength)
    raise ValueError(f"unknown scheduler {kind!r}: expected 'ddim' or 'lcm'")


def _check_index(step_index: int, steps: int) -> None:
    if not 0 <= step_index < steps:
        raise IndexError(f"step_index {step_index} outside 0..{steps - 1}")
