"""A hand-written forward of diffusers' UNet2DConditionModel, for reference in tests.

It calls the UNet's own layers (so the weights are the same) but writes the data flow out:
every ResNet block and the output norm normalise with ``F.group_norm`` over the frames of a
window read as a 5D tensor (B, C, F, H, W), as the authors' inflated 3D UNet does, and the
mid block's input can be given the last ControlNet down residual, as their in-place
addition does. Transformer blocks (attention) are called as they are.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn


def group_norm_5d(norm: nn.GroupNorm, x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B*F, C, H, W) normalised as (B, C, F, H, W): statistics over all F frames."""
    batch, channels, height, width = x.shape
    volume = x.reshape(batch // frames, frames, channels, height, width).permute(0, 2, 1, 3, 4)
    normed = F.group_norm(volume, norm.num_groups, norm.weight, norm.bias, norm.eps)
    return normed.permute(0, 2, 1, 3, 4).reshape(batch, channels, height, width)


def resnet_5d(
    block: ResnetBlock2D, x: torch.Tensor, temb: torch.Tensor, frames: int
) -> torch.Tensor:
    """A default-config ResnetBlock2D with 5D GroupNorm."""
    hidden = block.nonlinearity(group_norm_5d(block.norm1, x, frames))
    hidden = block.conv1(hidden)
    hidden = hidden + block.time_emb_proj(block.nonlinearity(temb))[:, :, None, None]
    hidden = block.nonlinearity(group_norm_5d(block.norm2, hidden, frames))
    hidden = block.conv2(hidden)
    shortcut = x if block.conv_shortcut is None else block.conv_shortcut(x)
    return (shortcut + hidden) / block.output_scale_factor


def unet_5d(
    unet: UNet2DConditionModel,
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    tokens: torch.Tensor,
    down: list[torch.Tensor],
    mid: torch.Tensor,
    frames: int,
    mid_input_residual: bool,
) -> torch.Tensor:
    """UNet noise for (B*F, C, h, w) ``sample`` with ControlNet residuals ``down``/``mid``;
    ``mid_input_residual`` adds ``down[-1]`` to the mid block's input."""
    emb = unet.time_embedding(unet.time_proj(timesteps).to(sample.dtype))
    x = unet.conv_in(sample)
    skips = [x]
    block: Any
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", [None] * len(block.resnets))
        for resnet, attention in zip(block.resnets, attentions, strict=True):
            x = resnet_5d(resnet, x, emb, frames)
            if attention is not None:
                x = attention(x, encoder_hidden_states=tokens, return_dict=False)[0]
            skips.append(x)
        if block.downsamplers is not None:
            x = block.downsamplers[0](x)
            skips.append(x)
    skips = [skip + residual for skip, residual in zip(skips, down, strict=True)]
    if mid_input_residual:
        x = x + down[-1]
    middle: Any = unet.mid_block
    x = resnet_5d(middle.resnets[0], x, emb, frames)
    for attention, resnet in zip(middle.attentions, middle.resnets[1:], strict=True):
        x = attention(x, encoder_hidden_states=tokens, return_dict=False)[0]
        x = resnet_5d(resnet, x, emb, frames)
    x = x + mid
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", [None] * len(block.resnets))
        for resnet, attention in zip(block.resnets, attentions, strict=True):
            x = resnet_5d(resnet, torch.cat([x, skips.pop()], dim=1), emb, frames)
            if attention is not None:
                x = attention(x, encoder_hidden_states=tokens, return_dict=False)[0]
        if block.upsamplers is not None:
            x = block.upsamplers[0](x)
    x = unet.conv_act(group_norm_5d(unet.conv_norm_out, x, frames))
    return unet.conv_out(x)
