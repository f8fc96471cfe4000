"""Face SGDM: identity-specific inpainting of aligned face crops, per frame.

A 9-channel inpainting UNet (4 noisy latent + 1 mask + 4 masked-image latent channels, the
SD-inpainting layout) plus a ControlNet that sees only the 4-channel noisy latent and the
face crop of the mesh render. Mask convention of the official implementation (inverted
relative to SD-inpainting): 1 marks pixels that are KEPT; ``masked_image = image *
(mask > 0.5)``; the face region (0) is regenerated. One fixed initial noise is used for
every frame; no temporal module (the paper finds it slightly hurts FVD).

Aligning crops to the FFHQ template and blending them back is done by the callers; this
module only runs the model on already aligned crops.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from model.config import FaceConfig
from model.guided import controlnet_unet_noise, uses_guidance
from model.scheduling import PerFrameScheduler
from model.sgdm import conditioning_embedding, vae_decode, vae_encode
from model.tiny_vae import Autoencoder


class FaceEnhancer:
    """Enhances batches of aligned face crops with the Face SGDM.

    appearance, null_embedding: (T, D) float32 CLIP tokens of the reference face and the
    unconditional embedding. Guidance runs when guidance_scale > 1 (default 3.5);
    controlnet_scale default 1.0. ``vae`` decodes (an AutoencoderTiny with
    ``face.tiny_vae_path``); ``encoder_vae`` encodes the masked crops (default ``vae``).
    masked_latent: the masked crop's VAE latent is the posterior's mode, or ("sample", the
    authors') a draw from a generator seeded with ``seed`` for each frame, so every frame
    draws the same noise whatever the batch.
    """

    @classmethod
    def configured(
        cls,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        vae: Autoencoder,
        appearance: torch.Tensor,
        null_embedding: torch.Tensor,
        scheduler: PerFrameScheduler,
        face: FaceConfig,
        encoder_vae: Autoencoder | None = None,
    ) -> FaceEnhancer:
        """The enhancer with the ``face`` section's size, scales, seed and masked latent."""
        return cls(
            unet,
            controlnet,
            vae,
            appearance,
            null_embedding,
            scheduler,
            size=face.size,
            guidance_scale=face.guidance_scale,
            controlnet_scale=face.controlnet_scale,
            seed=face.seed,
            encoder_vae=encoder_vae,
            masked_latent=face.masked_latent,
        )

    def __init__(
        self,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        vae: Autoencoder,
        appearance: torch.Tensor,
        null_embedding: torch.Tensor,
        scheduler: PerFrameScheduler,
        *,
        size: int = 256,
        guidance_scale: float = 3.5,
        controlnet_scale: float = 1.0,
        seed: int = 42,
        encoder_vae: Autoencoder | None = None,
        masked_latent: Literal["mode", "sample"] = "mode",
    ) -> None:
        if unet.config["in_channels"] != 9:
            raise ValueError(
                f"face UNet must take 9 input channels, has {unet.config['in_channels']}"
            )
        if controlnet.config["in_channels"] != 4:
            raise ValueError(
                f"face ControlNet must take the 4-channel noisy latent, has "
                f"{controlnet.config['in_channels']}"
            )
        if size % 8:
            raise ValueError(f"face.size must be a multiple of 8, got {size}")
        self.unet, self.controlnet, self.vae = unet, controlnet, vae
        self.encoder_vae = vae if encoder_vae is None else encoder_vae
        self.device, self.dtype = unet.device, unet.dtype
        self.appearance = appearance.float()
        self.null_embedding = null_embedding.float()
        self.scheduler = scheduler
        self.size = size
        self.guidance_scale = guidance_scale
        self.controlnet_scale = controlnet_scale
        if masked_latent not in ("mode", "sample"):
            raise ValueError(
                f"face.masked_latent must be 'mode' or 'sample', got {masked_latent!r}"
            )
        self.masked_latent = masked_latent
        self.seed = seed
        latent_shape = (4, size // 8, size // 8)
        generator = torch.Generator().manual_seed(seed)
        # One noise for every frame (official): (4, S/8, S/8) float32 on the CPU.
        self.noise = torch.randn(latent_shape, generator=generator)

    def set_appearance(self, appearance: torch.Tensor) -> None:
        """Replace the reference face tokens: (T, D) float32, same shape as before."""
        if appearance.shape != self.appearance.shape:
            raise ValueError(
                f"appearance must be {tuple(self.appearance.shape)}, got {tuple(appearance.shape)}"
            )
        self.appearance = appearance.float()

    @torch.no_grad()
    def masked_latents(self, masked: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) [0, 1] masked crops -> (N, 4, S/8, S/8) float32 scaled latents, by
        ``encoder_vae`` (an AutoencoderTiny has no posterior to sample: its latents)."""
        encoder = self.encoder_vae
        if self.masked_latent == "mode" or isinstance(encoder, AutoencoderTiny):
            return vae_encode(encoder, masked)
        latents = []
        for image in masked:
            pixels = (image[None] * 2.0 - 1.0).to(encoder.device, encoder.dtype)
            posterior = encoder.encode(pixels).latent_dist
            generator = torch.Generator(encoder.device).manual_seed(self.seed)
            latents.append(posterior.sample(generator=generator).float())
        return torch.cat(latents) * encoder.config["scaling_factor"]

    def _check(self, name: str, tensor: torch.Tensor, channels: int, count: int) -> None:
        expected = (count, channels, self.size, self.size)
        if tuple(tensor.shape) != expected:
            raise ValueError(f"{name} must be {expected}, got {tuple(tensor.shape)}")

    @torch.no_grad()
    def enhance(
        self, crops: torch.Tensor, mesh_crops: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """Regenerate the face region of aligned crops.

        crops: (N, 3, S, S) float32 [0, 1] crops of generated body frames; mesh_crops:
        (N, 3, S, S) [0, 1] the same crops of the mesh render; masks: (N, 1, S, S) in
        [0, 1], 1 = keep. Returns (N, 3, S, S) float32 [0, 1] on the CPU. Each frame is
        independent of the others in the batch.
        """
        count = crops.shape[0]
        self._check("crops", crops, 3, count)
        self._check("mesh_crops", mesh_crops, 3, count)
        self._check("masks", masks, 1, count)
        if count == 0:
            return crops.float().cpu()
        keep = (masks > 0.5).to(crops.dtype)
        masked_latents = self.masked_latents(crops.float().cpu() * keep.cpu()).to(self.device)
        latent_size = self.size // 8
        mask_latent = F.interpolate(masks.float().cpu(), size=(latent_size, latent_size))
        mask_latent = mask_latent.to(self.device)
        embedding = conditioning_embedding(self.controlnet, mesh_crops.to(self.device, self.dtype))
        guided = uses_guidance(self.guidance_scale)
        tokens = self.appearance.expand(count, -1, -1)
        if guided:
            tokens = torch.cat([tokens, self.null_embedding.expand(count, -1, -1)])
        tokens = tokens.to(self.device, self.dtype)
        halves = 2 if guided else 1
        latents = (
            self.noise.expand(count, -1, -1, -1).to(self.device) * self.scheduler.init_noise_sigma
        )
        for step_index, timestep in enumerate(self.scheduler.timesteps.tolist()):
            model_input = torch.cat([latents] * halves)
            unet_input = torch.cat(
                [
                    model_input,
                    torch.cat([mask_latent] * halves),
                    torch.cat([masked_latents] * halves),
                ],
                dim=1,
            ).to(self.dtype)
            t = torch.full((count * halves,), timestep, device=self.device, dtype=torch.int64)
            noise = controlnet_unet_noise(
                self.unet,
                self.controlnet,
                model_input.to(self.dtype),
                unet_input,
                t,
                tokens,
                torch.cat([embedding] * halves),
                self.controlnet_scale,
                self.guidance_scale,
                precomputed=True,
            )
            latents = self.scheduler.step_frames(noise, step_index, latents)
        return vae_decode(self.vae, latents)
