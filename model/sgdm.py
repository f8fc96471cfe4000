"""The structure-guided diffusion model (SGDM): UNet + ControlNet + CLIP appearance tokens.

``SGDMDenoiser`` implements the ``WindowDenoiser`` contract of model/denoiser.py. The loops
(offline here, streaming in streaming/) hand it windows of latents; it runs UNet and
ControlNet (model/guided.py) over all frames of all windows (and both CFG halves) in one
batch, with the window attention of model/attention.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from model.attention import WindowContext, install_attention, set_window_groupnorm
from model.config import AttentionMode, ControlNetResiduals, ModelConfig, SamplerConfig
from model.guided import (
    GuidedPrediction,
    controlnet_unet_noise,
    install_mid_block_residual,
)
from model.tiny_vae import Autoencoder


@torch.no_grad()
def conditioning_embedding(controlnet: ControlNetModel, images: torch.Tensor) -> torch.Tensor:
    """ControlNet conditioning-image embedding: (N, 3, H, W) [0, 1] -> (N, C0, H/8, W/8).

    Applies the channel order flip diffusers applies before the embedding.
    """
    if controlnet.config["controlnet_conditioning_channel_order"] == "bgr":
        images = torch.flip(images, dims=[1])
    return controlnet.controlnet_cond_embedding(images)  # type: ignore[no-any-return]


@torch.no_grad()
def vae_encode(vae: Autoencoder, images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) [0, 1] -> (N, 4, H/8, W/8) scaled latents (an AutoencoderKL's
    distribution mode, an AutoencoderTiny's latents), float32."""
    pixels = (images * 2.0 - 1.0).to(vae.device, vae.dtype)
    encoded: Any = vae.encode(pixels)
    tiny = isinstance(vae, AutoencoderTiny)
    latents = encoded.latents if tiny else encoded.latent_dist.mode()
    return (latents * vae.config["scaling_factor"]).float()


@torch.no_grad()
def vae_decode(vae: Autoencoder, latents: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """(N, 4, h, w) latents -> (N, 3, 8h, 8w) float32 [0, 1] images on the CPU, in chunks."""
    frames = []
    for start in range(0, latents.shape[0], chunk):
        part = (
            latents[start : start + chunk].to(vae.device, vae.dtype) / vae.config["scaling_factor"]
        )
        decoded = vae.decode(part).sample  # type: ignore[union-attr]
        frames.append(((decoded.float() + 1.0) / 2.0).clamp(0.0, 1.0).cpu())
    return torch.cat(frames) if frames else latents.new_zeros((0, 3, 0, 0))


class SGDMDenoiser(GuidedPrediction):
    """Body SGDM behind the ``WindowDenoiser`` contract (see model/denoiser.py).

    appearance, null_embedding: (T, D) float32 CLIP tokens of the reference frame and the
    unconditional embedding (SD1.5 empty prompt fitted to T, or zeros for tiny models);
    they are the ``encoder_hidden_states`` of both the UNet and the ControlNet.
    Classifier-free guidance runs when guidance_scale > 1 (diffusers' rule), else the
    conditional prediction alone. controlnet_residuals: how the ControlNet's residuals
    reach the UNet (model/guided.py). Networks run in ``dtype`` on ``device``; inputs and
    outputs of the public methods are float32. ``vae`` decodes (an AutoencoderTiny with
    ``model.tiny_vae_path``); ``encoder_vae`` encodes (default ``vae``).
    """

    @classmethod
    def configured(
        cls,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        vae: Autoencoder,
        appearance: torch.Tensor,
        null_embedding: torch.Tensor,
        *,
        image_size: int,
        model: ModelConfig,
        sampler: SamplerConfig,
        encoder_vae: Autoencoder | None = None,
    ) -> SGDMDenoiser:
        """The denoiser with the ``model`` and ``sampler`` sections' settings (guidance and
        conditioning scales, attention, window GroupNorm, residuals, cached conditioning)."""
        return cls(
            unet,
            controlnet,
            vae,
            appearance,
            null_embedding,
            image_size=image_size,
            guidance_scale=sampler.guidance_scale,
            controlnet_scale=sampler.controlnet_scale,
            attention=model.attention,
            window_groupnorm=model.window_groupnorm,
            controlnet_residuals=model.resolved_controlnet_residuals(),
            cache_conditioning=model.cache_conditioning,
            encoder_vae=encoder_vae,
        )

    def __init__(
        self,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        vae: Autoencoder,
        appearance: torch.Tensor,
        null_embedding: torch.Tensor,
        *,
        image_size: int,
        guidance_scale: float = 7.5,
        controlnet_scale: float = 2.0,
        attention: AttentionMode = "all-frame",
        window_groupnorm: bool = False,
        cache_conditioning: bool = True,
        encoder_vae: Autoencoder | None = None,
        controlnet_residuals: ControlNetResiduals = "diffusers",
    ) -> None:
        if appearance.shape != null_embedding.shape or appearance.ndim != 2:
            raise ValueError(
                f"appearance {tuple(appearance.shape)} and null embedding "
                f"{tuple(null_embedding.shape)} must both be (T, D)"
            )
        if appearance.shape[1] != unet.config["cross_attention_dim"]:
            raise ValueError(
                f"appearance width {appearance.shape[1]} != UNet cross_attention_dim "
                f"{unet.config['cross_attention_dim']}"
            )
        if image_size % 8:
            raise ValueError(f"image size must be a multiple of 8, got {image_size}")
        self.unet, self.controlnet, self.vae = unet, controlnet, vae
        self.encoder_vae = vae if encoder_vae is None else encoder_vae
        self.device, self.dtype = unet.device, unet.dtype
        self.appearance = appearance.float()
        self.null_embedding = null_embedding.float()
        self.guidance_scale = guidance_scale
        self.controlnet_scale = controlnet_scale
        self.cache_conditioning = cache_conditioning
        self.controlnet_residuals: ControlNetResiduals = controlnet_residuals
        self.image_height = self.image_width = image_size
        self.latent_channels = int(unet.config["out_channels"])
        self.latent_height = self.latent_width = image_size // 8
        self.context = WindowContext()
        self.attention: AttentionMode = attention
        self.window_groupnorm = window_groupnorm
        install_attention(unet, attention, self.context)
        if unet.mid_block is not None:
            install_mid_block_residual(unet)
        set_window_groupnorm(unet, window_groupnorm, self.context)
        set_window_groupnorm(controlnet, window_groupnorm, self.context)

    def set_attention(self, mode: AttentionMode) -> None:
        """Switch the UNet self-attention mode (``all-frame``, ``per-frame``, ``sparse``)."""
        install_attention(self.unet, mode, self.context)
        self.attention = mode

    def set_appearance(self, appearance: torch.Tensor) -> None:
        """Replace the reference tokens: (T, D) float32, same shape as before."""
        if appearance.shape != self.appearance.shape:
            raise ValueError(
                f"appearance must be {tuple(self.appearance.shape)}, got {tuple(appearance.shape)}"
            )
        self.appearance = appearance.float()

    def encode_conditions(self, images: torch.Tensor) -> torch.Tensor:
        """Mesh renders (N, 3, H, W) float32 [0, 1] -> per-frame conditions.

        With caching on: the ControlNet conditioning embedding (N, C0, H/8, W/8) in the
        network dtype on the network device; else the images themselves (same placement).
        """
        expected = (3, self.image_height, self.image_width)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"condition images must be (N, {expected}), got {tuple(images.shape)}")
        images = images.to(self.device, self.dtype)
        if not self.cache_conditioning:
            return images
        out = []
        for start in range(0, images.shape[0], 32):
            out.append(conditioning_embedding(self.controlnet, images[start : start + 32]))
        return torch.cat(out)

    @torch.no_grad()
    def denoise_windows(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        hidden_states: torch.Tensor,
        conditions: torch.Tensor,
    ) -> torch.Tensor:
        """Unguided noise for B windows of F frames in one UNet + ControlNet call.

        latents: (B, F, C, h, w); timesteps: (B,); hidden_states: (B, T, D) per-window
        cross-attention tokens; conditions: (B, F, ...) from ``encode_conditions``.
        Returns (B, F, C, h, w) float32. Rows of the batch never attend to each other.
        """
        windows, frames = latents.shape[:2]
        sample = latents.reshape(windows * frames, *latents.shape[2:]).to(self.device, self.dtype)
        per_frame_t = timesteps.to(self.device).repeat_interleave(frames)
        tokens = hidden_states.to(self.device, self.dtype).repeat_interleave(frames, dim=0)
        cond = conditions.reshape(windows * frames, *conditions.shape[2:]).to(
            self.device, self.dtype
        )
        with self.context.frames(frames):
            noise = controlnet_unet_noise(
                self.unet,
                self.controlnet,
                sample,
                sample,
                per_frame_t,
                tokens,
                cond,
                self.controlnet_scale,
                precomputed=self.cache_conditioning,
                residuals=self.controlnet_residuals,
            )
        return noise.reshape(latents.shape)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) latents -> (N, 3, H, W) float32 images in [0, 1] on the CPU."""
        return vae_decode(self.vae, latents)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) [0, 1] -> (N, C, h, w) float32 latents (distribution mode)."""
        return vae_encode(self.encoder_vae, images)


def save_networks(denoiser: SGDMDenoiser, folder: Path) -> None:
    """``save_pretrained`` the body networks as ``folder/{unet,controlnet}`` (official layout)."""
    denoiser.unet.save_pretrained(folder / "unet")
    denoiser.controlnet.save_pretrained(folder / "controlnet")
