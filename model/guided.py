"""One ControlNet -> UNet noise prediction, with classifier-free guidance when asked.

Every model path runs it: the body denoiser (model/sgdm.py) and its ONNX graph
(model/onnx_export.py), the face model (model/face_sgdm.py, streaming/face_stage.py),
the training loss (model/training/losses.py) and validation sampling. The ONNX Runtime
denoiser, whose graph returns both CFG halves, combines them with the same ``guide``.

CFG follows diffusers' rule: guidance runs when the scale is above 1, on a batch that
holds the conditional half first and the unconditional (null-token) half second.

ControlNet residuals reach the UNet one of two ways (``model.controlnet_residuals``):
"diffusers" adds them out of place to the skip features; "authors" also adds the last
down residual to the mid block's input, as the authors' inflated UNet does by adding the
residuals in place (its last skip feature is the mid block's input tensor). That is done
with a forward pre-hook on the UNet's mid block, armed for one call, so the network stays
diffusers' own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from model.config import ControlNetResiduals

WindowNoise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def uses_guidance(guidance_scale: float) -> bool:
    """Whether CFG runs at this scale (above 1; at 1 it equals the conditional half)."""
    return guidance_scale > 1.0


def guide(cond: torch.Tensor, uncond: torch.Tensor | None, guidance_scale: float) -> torch.Tensor:
    """``uncond + g * (cond - uncond)``; ``cond`` itself when there is no ``uncond``."""
    if uncond is None:
        return cond
    return uncond + guidance_scale * (cond - uncond)


@contextmanager
def precomputed_conditioning(controlnet: ControlNetModel) -> Iterator[None]:
    """Within the block, ``controlnet_cond`` is the already computed conditioning embedding.

    The embedding (``controlnet.controlnet_cond_embedding``) does not depend on the
    timestep, so it is computed once per frame and its submodule is swapped for an
    identity during the call; the parameters are restored (and never leave the model's
    state dict outside the block).
    """
    # A torch.compile'd ControlNet runs its original module: patch that one.
    target = getattr(controlnet, "_orig_mod", controlnet)
    embedding_module = target.controlnet_cond_embedding
    target.controlnet_cond_embedding = nn.Identity()
    try:
        yield
    finally:
        target.controlnet_cond_embedding = embedding_module


class MidBlockResidual:
    """A forward pre-hook on a UNet's mid block adding ``residual`` to its input while it
    is set. Installed once per UNet and kept (a hook added and removed per call would make
    a torch.compile'd UNet recompile on every call)."""

    def __init__(self) -> None:
        self.residual: torch.Tensor | None = None

    def __call__(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if self.residual is None:
            return None
        if args:
            return (args[0] + self.residual, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + self.residual}


_HOOK_ATTRIBUTE = "_anchor_mid_block_residual"


def install_mid_block_residual(unet: UNet2DConditionModel) -> MidBlockResidual:
    """The UNet's (disarmed) ``MidBlockResidual`` hook, installed on first use.

    Every body UNet gets it at construction, whatever its residual mode: torch.compile
    shares captured graphs between instances of one class, so all of them must carry the
    same hook for its guard (armed or not) to tell their graphs apart.
    """
    # A torch.compile'd UNet runs its original module: hook that one.
    target = getattr(unet, "_orig_mod", unet)
    if target.mid_block is None:
        raise ValueError("model.controlnet_residuals = 'authors' needs a UNet with a mid block")
    hook = target.mid_block.__dict__.get(_HOOK_ATTRIBUTE)
    if hook is None:
        hook = MidBlockResidual()
        target.mid_block.register_forward_pre_hook(hook, with_kwargs=True)
        target.mid_block.__dict__[_HOOK_ATTRIBUTE] = hook
    return hook  # type: ignore[no-any-return]


@contextmanager
def mid_block_input_residual(unet: UNet2DConditionModel, residual: torch.Tensor) -> Iterator[None]:
    """Within the block, the UNet's mid block receives ``input + residual``.

    residual: broadcastable to the mid block's input (B, C, h/2^k, w/2^k). This is the
    authors' in-place ControlNet addition seen from outside the UNet.
    """
    hook = install_mid_block_residual(unet)
    hook.residual = residual
    try:
        yield
    finally:
        hook.residual = None


def controlnet_unet_noise(
    unet: UNet2DConditionModel,
    controlnet: ControlNetModel,
    control_input: torch.Tensor,
    unet_input: torch.Tensor,
    timesteps: torch.Tensor,
    tokens: torch.Tensor,
    controlnet_cond: torch.Tensor,
    controlnet_scale: float | torch.Tensor = 1.0,
    guidance_scale: float = 1.0,
    *,
    precomputed: bool = False,
    residuals: ControlNetResiduals = "diffusers",
) -> torch.Tensor:
    """ControlNet residuals (scaled by ``controlnet_scale``) fed to the UNet: its noise.

    control_input: (B, 4, h, w) noisy latents for the ControlNet; unet_input: (B, Cu, h, w)
    (the same latents, or with inpainting channels appended); timesteps: (B,); tokens:
    (B, T, D) cross-attention tokens of both networks; controlnet_cond: (B, 3, H, W)
    images, or with ``precomputed`` their conditioning embedding (B, C0, h, w)
    (``precomputed_conditioning``). controlnet_scale: a float, or a () tensor in a traced
    graph. Returns (B, 4, h, w) float32; with guidance (``uses_guidance``) the batch holds
    the cond half then the uncond half, and the result is ``guide`` of them,
    (B/2, 4, h, w) float32. Gradients flow (the training loss runs it). residuals:
    "authors" also feeds the last down residual to the mid block (module docstring).
    """
    if residuals not in ("authors", "diffusers"):
        raise ValueError(
            f"model.controlnet_residuals must be 'authors' or 'diffusers', got {residuals!r}"
        )
    arguments = {
        "encoder_hidden_states": tokens,
        "controlnet_cond": controlnet_cond,
        "conditioning_scale": controlnet_scale,
        "return_dict": False,
    }
    if precomputed:
        with precomputed_conditioning(controlnet):
            down, mid = controlnet(control_input, timesteps, **arguments)
    else:
        down, mid = controlnet(control_input, timesteps, **arguments)
    in_place = mid_block_input_residual(unet, down[-1]) if residuals == "authors" else nullcontext()
    with in_place:
        noise = unet(
            unet_input,
            timesteps,
            encoder_hidden_states=tokens,
            down_block_additional_residuals=list(down),
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0].float()
    if uses_guidance(guidance_scale):
        cond, uncond = noise.chunk(2)
        noise = guide(cond, uncond, guidance_scale)
    return noise


def guided_branches(
    denoise_windows: WindowNoise,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    conditions: torch.Tensor,
    appearance: torch.Tensor,
    null_embedding: torch.Tensor,
    guided: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cond, uncond) noise of W windows, each (W, F, C, h, w) float32; uncond is None
    when not ``guided``.

    denoise_windows(latents, timesteps, tokens, conditions): unguided noise of a batch of
    windows (``SGDMDenoiser.denoise_windows``, ``OnnxDenoiser.denoise_windows``). Both
    halves run in one call: [W windows with the appearance tokens; W with the null
    embedding]. latents: (W, F, C, h, w); timesteps: (W,); conditions: (W, F, ...);
    appearance, null_embedding: (T, D).
    """
    windows = latents.shape[0]
    if timesteps.shape != (windows,):
        raise ValueError(f"timesteps must be ({windows},), got {tuple(timesteps.shape)}")
    cond_tokens = appearance.expand(windows, -1, -1)
    if not guided:
        return denoise_windows(latents, timesteps, cond_tokens, conditions), None
    null_tokens = null_embedding.expand(windows, -1, -1)
    noise = denoise_windows(
        torch.cat([latents, latents]),
        torch.cat([timesteps, timesteps]),
        torch.cat([cond_tokens, null_tokens]),
        torch.cat([conditions, conditions]),
    )
    return noise[:windows], noise[windows:]


class GuidedPrediction(ABC):
    """Classifier-free guided prediction over a class's ``denoise_windows``: shared by the
    torch ``SGDMDenoiser`` and ``OnnxDenoiser``.

    The subclass provides ``denoise_windows`` (unguided noise of a batch of windows, see
    ``guided_branches``), ``appearance`` and ``null_embedding`` ((T, D) float32) and
    ``guidance_scale``.
    """

    appearance: torch.Tensor
    null_embedding: torch.Tensor
    guidance_scale: float

    @abstractmethod
    def denoise_windows(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        hidden_states: torch.Tensor,
        conditions: torch.Tensor,
    ) -> torch.Tensor:
        """Unguided noise (B, F, C, h, w) float32 of B windows with per-window tokens."""

    @property
    def uses_guidance(self) -> bool:
        return uses_guidance(self.guidance_scale)

    def predict_branches(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(cond, uncond) noise, each (W, F, C, h, w) float32; uncond is None without CFG.

        Both halves run in one batched call: [W cond windows; W uncond windows].
        """
        return guided_branches(
            self.denoise_windows,
            latents,
            timesteps,
            conditions,
            self.appearance,
            self.null_embedding,
            self.uses_guidance,
        )

    def predict(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor
    ) -> torch.Tensor:
        """Guided noise (W, F, C, h, w) float32 for W windows (see WindowDenoiser.predict)."""
        return guide(*self.predict_branches(latents, timesteps, conditions), self.guidance_scale)
