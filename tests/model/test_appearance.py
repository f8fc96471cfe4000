"""Reference images reach CLIP exactly as transformers' CLIPImageProcessor prepares them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPImageProcessorPil

from model.appearance import clip_pixels, clip_processor, encode_appearance
from model.presets import tiny_clip_vision


def _photo(height: int, width: int, seed: int = 0) -> tuple[Image.Image, torch.Tensor]:
    """A random 8-bit RGB image as PIL and as the (3, H, W) [0, 1] tensor read_image gives."""
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255.0
    return Image.fromarray(array), tensor


def test_default_preprocessing_is_clip_image_processor_vit_b32() -> None:
    """Without a preprocessor_config.json, a ViT-B/32-sized model gets CLIPImageProcessor's
    defaults: 224 short side, bicubic with antialiasing, centre crop 224, CLIP mean/std."""
    clip = tiny_clip_vision()
    clip.config.image_size = 224
    processor = clip_processor(clip)
    photo, tensor = _photo(300, 410)
    expected = CLIPImageProcessor()(images=photo, return_tensors="pt")["pixel_values"]
    pixels = clip_pixels(tensor[None], processor)
    assert pixels.shape == (1, 3, 224, 224)
    assert torch.equal(pixels, expected)
    # The hand-written torch resize it replaces (no antialiasing) is measurably different.
    torch_resized = torch.nn.functional.interpolate(
        tensor[None], size=(224, 306), mode="bicubic", align_corners=False
    )[..., 41:265]
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    assert ((torch_resized - mean) / std - pixels).abs().max() > 0.05


def test_folder_preprocessor_config_is_used(tmp_path: Path) -> None:
    clip = tiny_clip_vision()
    saved = CLIPImageProcessorPil(
        size={"shortest_edge": 40},
        crop_size={"height": 32, "width": 32},
        resample=Image.Resampling.LANCZOS,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
    )
    saved.save_pretrained(tmp_path)
    processor = clip_processor(clip, tmp_path)
    photo, tensor = _photo(50, 70, seed=1)
    expected = saved(images=photo, return_tensors="pt")["pixel_values"]
    assert torch.equal(clip_pixels(tensor[None], processor), expected)
    default = clip_pixels(tensor[None], clip_processor(clip, tmp_path / "missing"))
    assert (default - expected).abs().max() > 0.1


@torch.no_grad()
def test_appearance_tokens_are_clip_of_the_processor_output() -> None:
    torch.manual_seed(0)
    clip = tiny_clip_vision().eval()
    photo, tensor = _photo(45, 33, seed=2)
    expected_pixels = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )(images=photo, return_tensors="pt")["pixel_values"]
    expected = clip(pixel_values=expected_pixels).last_hidden_state[0]
    tokens = encode_appearance(clip, tensor)
    assert tokens.shape == (17, 32) and tokens.dtype == torch.float32
    assert torch.equal(tokens, expected)


def test_non_rgb_tensor_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        encode_appearance(tiny_clip_vision(), torch.rand(4, 8, 8))
