"""Appearance tokens: a reference image through CLIP's own preprocessing and vision tower.

Preprocessing is transformers' ``CLIPImageProcessor`` on its PIL backend
(``CLIPImageProcessorPil``, what ``CLIPImageProcessor`` is without torchvision and what the
authors' ``CLIPProcessor`` ran): the image as uint8 RGB, PIL resize of the short side with
antialiasing, centre crop, rescale, CLIP mean/std. It is configured by the CLIP folder's
``preprocessor_config.json`` when there is one, else by ViT-B/32's defaults (bicubic, CLIP
mean/std) at the vision model's own image size (224 for ViT-B/32).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPVisionModel

from model.errors import AnchorError

PREPROCESSOR_CONFIG = "preprocessor_config.json"


def clip_processor(clip: CLIPVisionModel, folder: Path | None = None) -> CLIPImageProcessorPil:
    """The image processor of ``clip``: ``folder/preprocessor_config.json`` when present,
    else CLIPImageProcessor's (ViT-B/32) defaults with size and crop at
    ``clip.config.image_size``."""
    if folder is not None and (folder / PREPROCESSOR_CONFIG).is_file():
        try:
            loaded = CLIPImageProcessorPil.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as err:
            raise AnchorError(f"cannot read {folder / PREPROCESSOR_CONFIG}: {err}") from err
        return cast(CLIPImageProcessorPil, loaded)
    size = int(cast(int, clip.config.image_size))
    return CLIPImageProcessorPil(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float [0, 1] -> an RGB PIL image (uint8, rounded: lossless for images
    read from 8-bit files)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {tuple(image.shape)}")
    array = (image.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(array.permute(1, 2, 0).numpy()))


def clip_pixels(images: torch.Tensor, processor: CLIPImageProcessorPil) -> torch.Tensor:
    """(N, 3, H, W) float [0, 1] -> (N, 3, S, S) float32 CLIP pixel values."""
    pil = [to_pil(image) for image in images]
    pixels = processor(images=pil, return_tensors="pt")["pixel_values"]
    return cast(torch.Tensor, pixels).float()


@torch.no_grad()
def clip_tokens(
    clip: CLIPVisionModel,
    images: torch.Tensor,
    processor: CLIPImageProcessorPil | None = None,
) -> torch.Tensor:
    """CLIP vision ``last_hidden_state``: (N, 3, H, W) [0, 1] -> (N, T, D) float32 on the
    images' device. ViT-B/32: T = 50, D = 768. processor: default ``clip_processor(clip)``."""
    processor = processor or clip_processor(clip)
    pixels = clip_pixels(images, processor).to(clip.device, clip.dtype)
    return clip(pixel_values=pixels).last_hidden_state.float().to(images.device)


def encode_appearance(
    clip: CLIPVisionModel,
    image: torch.Tensor,
    processor: CLIPImageProcessorPil | None = None,
) -> torch.Tensor:
    """Appearance tokens of one reference image: (3, H, W) [0, 1] -> (T, D) float32 on the
    CPU."""
    return clip_tokens(clip, image[None].cpu(), processor)[0]
