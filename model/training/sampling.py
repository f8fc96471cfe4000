"""Per-frame DDIM sampling of trained networks (validation renders, evaluation)."""

from __future__ import annotations

import torch
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from model.appearance import clip_tokens
from model.guided import controlnet_unet_noise, uses_guidance
from model.noise import frame_noise
from model.scheduling import DDIMFrameScheduler
from model.sgdm import vae_decode
from model.training.networks import FrozenNetworks


@torch.no_grad()
def sample_body(
    unet: UNet2DConditionModel,
    controlnet: ControlNetModel,
    frozen: FrozenNetworks,
    reference: torch.Tensor,
    conditions: torch.Tensor,
    steps: int,
    guidance_scale: float = 1.0,
    controlnet_scale: float = 1.0,
    seed: int = 42,
) -> torch.Tensor:
    """Each condition (N, 3, H, W) [0, 1] -> a frame (N, 3, H, W) float32 [0, 1] on the CPU.

    reference (3, H, W): appearance image. One noise for every frame (the official "same
    frame noise"); CFG with the null embedding when guidance_scale > 1.
    """
    device, dtype = unet.device, unet.dtype
    count = conditions.shape[0]
    scheduler = DDIMFrameScheduler.sd15(steps)
    tokens = clip_tokens(frozen.clip, reference[None].to(frozen.clip.device))
    tokens = tokens.to(device, dtype).expand(count, -1, -1)
    guided = uses_guidance(guidance_scale)
    if guided:
        null = frozen.null_embedding.to(device, dtype).expand(count, -1, -1)
        tokens = torch.cat([tokens, null])
    shape = (4, conditions.shape[-2] // 8, conditions.shape[-1] // 8)
    latents = frame_noise(seed, range(count), shape, True).to(device) * scheduler.init_noise_sigma
    images = conditions.to(device, dtype)
    halves = 2 if guided else 1
    for index, timestep in enumerate(scheduler.timesteps.tolist()):
        model_input = torch.cat([latents] * halves).to(dtype)
        t = torch.full((count * halves,), timestep, device=device, dtype=torch.int64)
        noise = controlnet_unet_noise(
            unet,
            controlnet,
            model_input,
            model_input,
            t,
            tokens,
            torch.cat([images] * halves),
            controlnet_scale,
            guidance_scale,
        )
        latents = scheduler.step_frames(noise.cpu(), index, latents.cpu()).to(device)
    return vae_decode(frozen.vae, latents)
