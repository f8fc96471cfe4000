"""One training step's loss for each model: noise-prediction MSE (DDPM) and the VAE's.

Tensors arrive on the accelerator's device; frozen networks run without gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddpm import DDPMScheduler
from transformers import CLIPVisionModel

from model.appearance import clip_tokens
from model.guided import controlnet_unet_noise


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL, images: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(N, 3, H, W) [0, 1] -> (N, 4, H/8, W/8) scaled latents (a sample of the posterior,
    as diffusers' training scripts do, drawn from ``generator``), float32."""
    posterior = vae.encode((images * 2.0 - 1.0).to(vae.dtype)).latent_dist  # type: ignore[union-attr]
    return (posterior.sample(generator=generator) * vae.config["scaling_factor"]).float()


def appearance_tokens(
    clip: CLIPVisionModel, references: torch.Tensor, drop: torch.Tensor, null: torch.Tensor
) -> torch.Tensor:
    """Reference tokens (N, T, D), rows with ``drop`` replaced by the null embedding."""
    tokens = clip_tokens(clip, references)
    return torch.where(drop.view(-1, 1, 1), null.to(tokens.device).expand_as(tokens), tokens)


def diffusion_loss(
    unet: UNet2DConditionModel,
    controlnet: ControlNetModel,
    noise_scheduler: DDPMScheduler,
    latents: torch.Tensor,
    condition: torch.Tensor,
    tokens: torch.Tensor,
    generator: torch.Generator,
    extra_channels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Noise-prediction MSE with uniform timesteps.

    latents (N, 4, h, w); condition (N, 3, H, W) [0, 1] (ControlNet image); tokens (N, T, D);
    extra_channels (N, 5, h, w) for the inpainting UNet (mask + masked-image latents).
    Noise and timesteps come from ``generator`` (CPU), so a step is reproducible.
    """
    count = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    steps = int(noise_scheduler.config["num_train_timesteps"])
    timesteps = torch.randint(0, steps, (count,), generator=generator).to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)  # type: ignore[arg-type]
    unet_input = noisy if extra_channels is None else torch.cat([noisy, extra_channels], dim=1)
    prediction = controlnet_unet_noise(
        unet, controlnet, noisy, unet_input, timesteps, tokens, condition
    )
    return F.mse_loss(prediction, noise.float())


def inpainting_channels(
    vae: AutoencoderKL, faces: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """The official 5 extra channels: mask at latent size + masked-image latents.

    faces (N, 3, S, S) [0, 1]; masks (N, 1, S, S), 1 = keep (``masked = face * (mask > 0.5)``).
    """
    masked = faces * (masks > 0.5).to(faces.dtype)
    with torch.no_grad():
        masked_latents = (
            vae.encode((masked * 2.0 - 1.0).to(vae.dtype)).latent_dist.mode()  # type: ignore[union-attr]
            * vae.config["scaling_factor"]
        ).float()
    mask_latent = F.interpolate(masks.float(), size=masked_latents.shape[-2:])
    return torch.cat([mask_latent, masked_latents], dim=1)


def vae_loss(
    vae: AutoencoderKL, images: torch.Tensor, kl_weight: float, generator: torch.Generator
) -> torch.Tensor:
    """Reconstruction (L1 + MSE) of a posterior sample plus ``kl_weight`` x KL."""
    pixels = images * 2.0 - 1.0
    posterior = vae.encode(pixels).latent_dist  # type: ignore[union-attr]
    noise = torch.randn(posterior.mean.shape, generator=generator).to(pixels.device)
    latents = posterior.mean + posterior.std * noise
    decoded = vae.decode(latents).sample  # type: ignore[union-attr]
    reconstruction = F.l1_loss(decoded, pixels) + F.mse_loss(decoded, pixels)
    return reconstruction + kl_weight * posterior.kl().mean()
