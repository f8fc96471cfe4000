"""What a sampler is handed (``Components``) and where its networks run.

``resolve_placement`` turns ``model.device`` / ``model.precision`` into a device and a
dtype, ``place`` puts a network there for inference. model/components.py (tiny, sd15,
onnxruntime) and model/bundle.py (trained bundles) both build ``Components`` with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.config import ModelConfig
from model.errors import AnchorError
from model.face_sgdm import FaceEnhancer
from model.onnx_runtime import OnnxDenoiser
from model.scheduling import PerFrameScheduler
from model.sgdm import SGDMDenoiser


@dataclass
class Components:
    """What a sampler needs: denoiser, scheduler, optional face enhancer, appearance tokens.

    appearance: (T, D) float32 CLIP tokens of the reference image (CPU). The denoiser is
    an ``OnnxDenoiser`` with ``model.backend = "onnxruntime"``.
    """

    denoiser: SGDMDenoiser | OnnxDenoiser
    scheduler: PerFrameScheduler
    face: FaceEnhancer | None
    appearance: torch.Tensor
    device: torch.device
    dtype: torch.dtype

    @property
    def image_size(self) -> int:
        return self.denoiser.image_height


def resolve_placement(config: ModelConfig) -> tuple[torch.device, torch.dtype]:
    """``auto``: CUDA + float16 when CUDA is available, else CPU + float32."""
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu")
        if config.device == "auto"
        else config.device
    )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AnchorError(f"model.device is {config.device!r} but CUDA is not available")
    if config.precision == "auto":
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, config.precision)
    if device.type == "cpu" and dtype == torch.float16:
        raise AnchorError("model.precision float16 needs a CUDA device (use float32 on the CPU)")
    return device, dtype


def place(network: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """``network`` in eval mode, frozen, on ``device`` in ``dtype`` (in place)."""
    network.eval().requires_grad_(False).to(device=device)
    # diffusers warns on every dtype cast, also a no-op one: cast only when it changes.
    if next(network.parameters()).dtype != dtype:
        network.to(dtype=dtype)
