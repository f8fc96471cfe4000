"""Temporal attention modes and window GroupNorm for the body UNet, without forking diffusers.

The networks stay plain diffusers 2D models that see a batch of frames ``(B * F, ...)``:
B windows (or CFG halves) of F frames each, frames contiguous per window. A shared
``WindowContext`` tells the installed processors how many frames form one window, so they
can regroup tokens per window; windows and CFG halves are separate batch rows and never
see each other.

Modes (UNet self-attention ``attn1`` only; cross-attention ``attn2`` and the ControlNet stay
per frame, as in the official implementation):

- ``all-frame``: ``(b f) d c -> b (f d) c``; every token attends to every token of every
  frame of its window (the paper's "fully frame" attention).
- ``per-frame``: plain per-image self-attention.
- ``sparse``: queries of frame i attend to the keys/values of the window's first frame and
  of frame i-1 (Tune-A-Video's sparse-causal attention; frame 0 attends to itself only).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from model.config import AttentionMode

ATTENTION_MODES: tuple[AttentionMode, ...] = ("all-frame", "per-frame", "sparse")


@dataclass
class WindowContext:
    """How many consecutive batch rows form one window; set around every network call."""

    # A traced size (a 0-dim tensor at run time, an int to the type checker, like any
    # ``tensor.shape[i]`` under tracing) while exporting to ONNX (``traced_frames``): the
    # frame count then stays a graph dimension instead of a constant.
    frames_per_window: int = 1

    @contextmanager
    def frames(self, count: int) -> Iterator[None]:
        """Within the block, a batch ``(B * count, ...)`` is B windows of ``count`` frames."""
        if count < 1:
            raise ValueError(f"frames per window must be >= 1, got {count}")
        with self._frames(count):
            yield

    @contextmanager
    def traced_frames(self, count: int) -> Iterator[None]:
        """``frames`` for ONNX export: ``count`` is the traced size ``latents.shape[1]``
        (a 0-dim int64 tensor under ``torch.jit`` tracing), so the exported graph regroups
        whatever number of frames its input has. Nothing is checked: it is symbolic."""
        with self._frames(count):
            yield

    @contextmanager
    def _frames(self, count: int) -> Iterator[None]:
        previous = self.frames_per_window
        self.frames_per_window = count
        try:
            yield
        finally:
            self.frames_per_window = previous

    def is_single_frame(self) -> bool:
        """True when every window is one frame (never while tracing: the count is symbolic)."""
        return type(self.frames_per_window) is int and self.frames_per_window == 1

    def check_batch(self, batch: int) -> None:
        """Raise unless a batch of ``batch`` frames is a whole number of windows (not checked
        while tracing, where both are symbolic)."""
        frames = self.frames_per_window
        if type(frames) is int and type(batch) is int and batch % frames:
            raise ValueError(
                f"batch of {batch} frames is not a whole number of {frames}-frame windows"
            )


class WindowSelfAttentionProcessor:
    """Self-attention processor regrouping the frames of each window (see module docstring).

    Token-wise projections are diffusers' own ``AttnProcessor2_0``; only the set of keys
    and values each query sees changes, so the weights and state-dict keys are untouched.
    """

    def __init__(self, mode: AttentionMode, context: WindowContext) -> None:
        if mode not in ATTENTION_MODES:
            raise ValueError(f"model.attention must be one of {ATTENTION_MODES}, got {mode!r}")
        self.mode = mode
        self.context = context
        self.inner = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """hidden_states: (B * F, D, C) tokens of B windows of F frames -> same shape."""
        if self.mode == "per-frame" or self.context.is_single_frame():
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("window self-attention takes no encoder states or attention mask")
        if hidden_states.ndim != 3:
            raise ValueError(f"expected (B*F, D, C) tokens, got shape {tuple(hidden_states.shape)}")
        frames = self.context.frames_per_window
        batch, tokens, channels = hidden_states.shape
        self.context.check_batch(batch)
        # Shapes are written with -1 for the window count and with the (possibly traced)
        # frame count, so the same code exports to ONNX with dynamic windows and frames.
        if self.mode == "all-frame":
            grouped = hidden_states.reshape(-1, frames * tokens, channels)
            out = self.inner(attn, grouped, None, None, temb)
            return out.reshape(batch, tokens, -1)
        per_window = hidden_states.reshape(-1, frames, tokens, channels)
        first = per_window[:, :1].expand_as(per_window)
        # Frame i-1 for frame i, frame 0 for itself.
        previous = torch.cat([per_window[:, :1], per_window[:, :-1]], dim=1)
        keys_values = torch.cat([first, previous], dim=2).reshape(batch, 2 * tokens, channels)
        return self.inner(attn, hidden_states, keys_values, None, temb)


class WindowGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics span all frames of a window: (B*F, C, H, W) read as
    (B, C, F, H, W), as an inflated 3D UNet normalises 5D tensors.

    Installed by swapping the class of an existing ``nn.GroupNorm`` (no new parameters, so
    state-dict keys are unchanged); ``window_context`` is a plain attribute.
    """

    window_context: WindowContext

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.window_context.is_single_frame():
            return super().forward(input)
        frames = self.window_context.frames_per_window
        batch, channels, height, width = input.shape
        self.window_context.check_batch(batch)
        volume = input.reshape(-1, frames, channels, height, width).transpose(1, 2)
        normed = F.group_norm(volume, self.num_groups, self.weight, self.bias, self.eps)
        return normed.transpose(1, 2).reshape(batch, channels, height, width)


def _window_norms(network: nn.Module) -> list[nn.GroupNorm]:
    """The GroupNorms an inflated 3D network applies to 5D tensors: every ResNet block's
    norm1/norm2 and the output norm. Transformer input norms stay per frame (the inflated
    transformer folds frames into the batch before normalising)."""
    norms: list[nn.GroupNorm] = []
    for module in network.modules():
        if isinstance(module, ResnetBlock2D):
            norms += [m for m in (module.norm1, module.norm2) if isinstance(m, nn.GroupNorm)]
    out_norm = getattr(network, "conv_norm_out", None)
    if isinstance(out_norm, nn.GroupNorm):
        norms.append(out_norm)
    return norms


def set_window_groupnorm(network: nn.Module, enabled: bool, context: WindowContext) -> None:
    """Share (or stop sharing) GroupNorm statistics across the frames of a window."""
    for norm in _window_norms(network):
        if enabled:
            norm.__class__ = WindowGroupNorm
            cast(WindowGroupNorm, norm).window_context = context
        else:
            norm.__class__ = nn.GroupNorm


def install_attention(
    unet: UNet2DConditionModel, mode: AttentionMode, context: WindowContext
) -> None:
    """Window self-attention on every UNet ``attn1``; diffusers' default on everything else."""
    processors: dict[str, Any] = {}
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            processors[name] = WindowSelfAttentionProcessor(mode, context)
        else:
            processors[name] = AttnProcessor2_0()
    unet.set_attn_processor(processors)
