"""Latent consistency distillation (LCM, Luo et al. 2023, Algorithm 1 "LCD"): one step's
loss for a student distilled from a trained SGDM (or Face SGDM) teacher.

The skipping-step solver is DDIM on the teacher's own schedule (SD1.5's 1,000 training
timesteps) restricted to ``solver_steps`` of them, k = 1000 / solver_steps apart:
t_n = (n + 1) k - 1 (19, 39, ..., 999 for 50), the grid diffusers' LCMScheduler samples
from (``original_inference_steps`` 50), so the 1-8 steps of a student land on it.

With ``strength`` s < 1 only the grid's first N s timesteps are trained (s = 0.5: 19 ..
499), the ones LCMScheduler samples at that strength: the student then starts from noise
at the top of its grid, as SD1.5's few-step DDIM ("leading" spacing: 501, 1 for two steps)
starts the teacher from noise at 501.

Per sample: n uniform, t = t_n and s = t_n - k (clamped at 0); the data latent is noised
to t; the teacher takes one DDIM step t -> s with classifier-free guidance at
``guidance_scale`` (conditional = the appearance tokens, unconditional = the null
embedding, this project's CFG; model/guided.py), with its ControlNet and appearance
conditioning; the target network (an EMA of the student, no gradient) maps the teacher's
x_s to its consistency output at s; the student maps x_t to its output at t; the loss is
LCM's pseudo-Huber distance of the two. A consistency output is
``c_skip(t) x + c_out(t) x0(eps)`` with LCMScheduler's boundary scalings, the very
formula model/scheduling.py's ``LCMFrameScheduler`` samples with.

The guidance scale is baked in: the student is sampled without CFG (one network call per
step instead of two) and its output is the guided teacher's. LCM's alternative, a
w-embedding input to the UNet, would change the network's signature, so every loader,
the ONNX graph and the window samplers would need it; a fixed scale does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_lcm import LCMScheduler

from model.guided import controlnet_unet_noise, uses_guidance
from model.presets import SD15_SCHEDULER_CONFIG

# LCM's pseudo-Huber constant (latents of unit variance).
HUBER_C = 0.001


@dataclass(frozen=True)
class ConsistencySchedule:
    """The solver grid and the boundary scalings of the student's scheduler.

    alphas: (1000,) cumulative alphas; grid: (N,) int64 solver timesteps, ascending;
    scheduler: the LCMScheduler the student is sampled with (its config is saved with it).
    """

    alphas: torch.Tensor
    grid: torch.Tensor
    skip: int
    scheduler: LCMScheduler

    @classmethod
    def sd15(cls, solver_steps: int = 50, strength: float = 1.0) -> ConsistencySchedule:
        """SD1.5's tables; ``strength`` keeps the first ``solver_steps * strength`` grid
        timesteps, the ones LCMScheduler samples at that ``strength``."""
        scheduler = LCMScheduler.from_config(
            SD15_SCHEDULER_CONFIG, original_inference_steps=solver_steps
        )
        total = int(scheduler.config["num_train_timesteps"])
        if not 1 <= solver_steps <= total or total % solver_steps:
            raise ValueError(f"solver_steps must divide {total}, got {solver_steps}")
        kept = int(solver_steps * strength)
        if not 0.0 < strength <= 1.0 or kept < 1:
            raise ValueError(f"strength must keep a grid timestep in (0, 1], got {strength}")
        skip = total // solver_steps
        grid = torch.arange(1, kept + 1, dtype=torch.int64) * skip - 1
        return cls(scheduler.alphas_cumprod.float(), grid, skip, scheduler)

    def boundary(self, timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_skip, c_out), each (B, 1, 1, 1) float32, at integer ``timesteps`` (B,)."""
        scalings = [
            self.scheduler.get_scalings_for_boundary_condition_discrete(int(t))
            for t in timesteps.tolist()
        ]
        c_skip, c_out = torch.tensor(scalings, dtype=torch.float32).T
        return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)

    def alpha(self, timesteps: torch.Tensor, device: torch.device) -> torch.Tensor:
        return self.alphas[timesteps.cpu()].view(-1, 1, 1, 1).to(device)


@dataclass
class Denoiser:
    """UNet + ControlNet of one part (student, target or teacher)."""

    unet: UNet2DConditionModel
    controlnet: ControlNetModel

    def noise(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        tokens: torch.Tensor,
        condition: torch.Tensor,
        extra: torch.Tensor | None,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Predicted noise; with guidance the batch is [cond; uncond] and the result is
        their ``guide`` (``controlnet_unet_noise``'s rule), half as long."""
        unet_input = latents if extra is None else torch.cat([latents, extra], dim=1)
        return controlnet_unet_noise(
            self.unet,
            self.controlnet,
            latents,
            unet_input,
            timesteps,
            tokens,
            condition,
            guidance_scale=guidance_scale,
        )


@dataclass(frozen=True)
class DistillBatch:
    """What one step sees: scaled latents (B, 4, h, w), condition images (B, 3, H, W),
    appearance tokens (B, T, D), the null embedding (T, D), and the face model's inpainting
    channels (B, 5, h, w) or None."""

    latents: torch.Tensor
    condition: torch.Tensor
    tokens: torch.Tensor
    null: torch.Tensor
    extra: torch.Tensor | None = None


def x0_from_noise(latents: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    return (latents - (1 - alpha).sqrt() * noise) / alpha.sqrt()


def consistency_output(
    schedule: ConsistencySchedule,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
) -> torch.Tensor:
    """``c_skip(t) x + c_out(t) x0`` for predicted ``noise`` at ``timesteps`` (B,)."""
    c_skip, c_out = (c.to(latents.device) for c in schedule.boundary(timesteps))
    alpha = schedule.alpha(timesteps, latents.device)
    return c_skip * latents + c_out * x0_from_noise(latents, noise, alpha)


@torch.no_grad()
def teacher_step(
    teacher: Denoiser,
    schedule: ConsistencySchedule,
    batch: DistillBatch,
    noisy: torch.Tensor,
    start: torch.Tensor,
    previous: torch.Tensor,
    guidance_scale: float,
) -> torch.Tensor:
    """One guided DDIM step of the teacher from ``start`` to ``previous`` (both (B,))."""
    latents, timesteps, tokens = noisy, start, batch.tokens
    condition, extra = batch.condition, batch.extra
    if uses_guidance(guidance_scale):
        null = batch.null.to(tokens).expand(noisy.shape[0], -1, -1)
        latents, timesteps = torch.cat([noisy, noisy]), torch.cat([start, start])
        tokens, condition = torch.cat([tokens, null]), torch.cat([condition, condition])
        extra = None if extra is None else torch.cat([extra, extra])
    noise = teacher.noise(latents, timesteps, tokens, condition, extra, guidance_scale)
    alpha = schedule.alpha(start, noisy.device)
    alpha_previous = schedule.alpha(previous, noisy.device)
    x0 = x0_from_noise(noisy, noise, alpha)
    return alpha_previous.sqrt() * x0 + (1 - alpha_previous).sqrt() * noise


def consistency_loss(
    student: Denoiser,
    target: Denoiser,
    teacher: Denoiser,
    schedule: ConsistencySchedule,
    batch: DistillBatch,
    guidance_scale: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """The LCD loss of one batch (module docstring); gradients reach the student only.

    Solver indices and noise come from ``generator`` (CPU), so a step is reproducible.
    """
    latents = batch.latents
    device = latents.device
    count = latents.shape[0]
    index = torch.randint(0, len(schedule.grid), (count,), generator=generator)
    start = schedule.grid[index]
    previous = (start - schedule.skip).clamp_min(0)
    noise = torch.randn(latents.shape, generator=generator).to(device)
    alpha = schedule.alpha(start, device)
    noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
    start_d, previous_d = start.to(device), previous.to(device)
    prediction = consistency_output(
        schedule,
        noisy,
        student.noise(noisy, start_d, batch.tokens, batch.condition, batch.extra),
        start,
    )
    solved = teacher_step(teacher, schedule, batch, noisy, start_d, previous_d, guidance_scale)
    with torch.no_grad():
        target_noise = target.noise(solved, previous_d, batch.tokens, batch.condition, batch.extra)
        goal = consistency_output(schedule, solved, target_noise, previous)
    difference = prediction.float() - goal.float()
    return (torch.sqrt(difference**2 + HUBER_C**2) - HUBER_C).mean()


@torch.no_grad()
def update_target(target: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """target <- decay * target + (1 - decay) * student (parameters, in place)."""
    for kept, trained in zip(target.parameters(), student.parameters(), strict=True):
        kept.lerp_(trained.detach().to(kept.dtype), 1.0 - decay)
