"""The Face SGDM behind the ``WindowDenoiser`` contract, for temporal face windows.

A window sampler over face crops runs this instead of ``FaceEnhancer.enhance``: the frames
of a window attend to each other (all-frame self-attention on the face UNet) and
overlapping windows are averaged by the sampler.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from model.attention import WindowContext, install_attention
from model.face_sgdm import FaceEnhancer
from model.guided import controlnet_unet_noise, precomputed_conditioning
from model.sgdm import conditioning_embedding, vae_decode

# Face UNet -> the denoiser whose window context its attention reads. One UNet serves every
# denoiser over the same enhancer (the sessions of one identity share it), each with its
# own context; weak keys, so a released model is not kept alive by this table.
_ATTENTION_OWNERS: weakref.WeakKeyDictionary[UNet2DConditionModel, FaceWindowDenoiser] = (
    weakref.WeakKeyDictionary()
)


class FaceWindowDenoiser:
    """The Face SGDM as a ``WindowDenoiser`` over (S, S) aligned face crops.

    Installs all-frame self-attention on the face UNet (a window of 1 frame behaves as
    the per-frame model, so ``FaceEnhancer.enhance`` is unaffected). Conditions per
    frame: (C0 + 5, S/8, S/8) = ControlNet embedding of the mesh crop, the keep mask at
    latent size and the VAE latent of the masked crop, stacked on channels.
    Not thread-safe: call from the thread that runs the model.
    """

    def __init__(self, enhancer: FaceEnhancer) -> None:
        self.enhancer = enhancer
        self.latent_channels = 4
        self.latent_height = self.latent_width = enhancer.size // 8
        self.context = WindowContext()
        self.activate()

    def activate(self) -> None:
        """Point the face UNet's window attention at this denoiser's context.

        The UNet is shared with every other denoiser over the same enhancer; the one about
        to run must own its attention. A no-op when it already does.
        """
        unet = self.enhancer.unet
        if _ATTENTION_OWNERS.get(unet) is not self:
            install_attention(unet, "all-frame", self.context)
            _ATTENTION_OWNERS[unet] = self

    def encode_conditions(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 7, S, S) = [crop (3), mesh crop (3), keep mask (1)] -> (N, C0 + 5, S/8, S/8)."""
        enhancer = self.enhancer
        crops, mesh_crops, masks = images[:, :3], images[:, 3:6], images[:, 6:7]
        keep = (masks > 0.5).to(crops.dtype)
        masked_latents = enhancer.masked_latents(crops.float().cpu() * keep.cpu())
        latent_size = (self.latent_height, self.latent_width)
        mask_latent = F.interpolate(masks.float().cpu(), size=latent_size)
        embedding = conditioning_embedding(
            enhancer.controlnet, mesh_crops.to(enhancer.device, enhancer.dtype)
        )
        return torch.cat(
            [
                embedding.float(),
                mask_latent.to(embedding.device),
                masked_latents.to(embedding.device),
            ],
            dim=1,
        )

    @torch.no_grad()
    def predict(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor
    ) -> torch.Tensor:
        """Guided noise (W, F, 4, h, w) for W windows of F aligned face crops."""
        enhancer = self.enhancer
        windows, frames = latents.shape[:2]
        count = windows * frames
        flat = conditions.reshape(count, *conditions.shape[2:]).to(enhancer.device)
        embedding, inpaint = flat[:, :-5], flat[:, -5:]
        guided = enhancer.guidance_scale > 1.0
        halves = 2 if guided else 1
        tokens = enhancer.appearance.expand(count, -1, -1)
        if guided:
            tokens = torch.cat([tokens, enhancer.null_embedding.expand(count, -1, -1)])
        tokens = tokens.to(enhancer.device, enhancer.dtype)
        sample = latents.reshape(count, *latents.shape[2:]).to(enhancer.device)
        model_input = torch.cat([sample] * halves).to(enhancer.dtype)
        unet_input = torch.cat([model_input, torch.cat([inpaint] * halves).to(enhancer.dtype)], 1)
        per_frame_t = torch.cat([timesteps.to(enhancer.device).repeat_interleave(frames)] * halves)
        with self.context.frames(frames), precomputed_conditioning(enhancer.controlnet):
            noise = controlnet_unet_noise(
                enhancer.unet,
                enhancer.controlnet,
                model_input,
                unet_input,
                per_frame_t,
                tokens,
                torch.cat([embedding] * halves).to(enhancer.dtype),
                enhancer.controlnet_scale,
                enhancer.guidance_scale,
            )
        return noise.reshape(latents.shape)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, 4, S/8, S/8) -> (N, 3, S, S) float32 [0, 1] face crops."""
        return vae_decode(self.enhancer.vae, latents)
