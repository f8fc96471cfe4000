"""The body SGDM denoiser on tiny real diffusers/transformers models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sgdm_helpers import IMAGE_SIZE, random_images, random_latents, tiny_components

from model.guided import precomputed_conditioning
from model.loading import load_controlnet, load_unet
from model.sgdm import SGDMDenoiser, conditioning_embedding


def _conditions(denoiser: SGDMDenoiser, windows: int, frames: int) -> torch.Tensor:
    features = denoiser.encode_conditions(random_images(windows * frames))
    return features.reshape(windows, frames, *features.shape[1:])


def test_shapes(denoiser: SGDMDenoiser) -> None:
    assert denoiser.appearance.shape == (17, 32)  # tiny CLIP: 4x4 patches + class token
    assert (denoiser.latent_channels, denoiser.latent_height, denoiser.latent_width) == (4, 8, 8)
    conditions = _conditions(denoiser, 3, 5)
    assert conditions.shape == (3, 5, 32, 8, 8)  # conditioning embedding at latent size
    noise = denoiser.predict(random_latents(3, 5), torch.tensor([900, 500, 1]), conditions)
    assert noise.shape == (3, 5, 4, 8, 8) and noise.dtype == torch.float32
    frames = denoiser.decode(random_latents(1, 2)[0])
    assert frames.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0


def test_wrong_condition_size_is_an_error(denoiser: SGDMDenoiser) -> None:
    with pytest.raises(ValueError, match="condition images"):
        denoiser.encode_conditions(random_images(2, size=32))


def test_tiny_preset_is_deterministic() -> None:
    first, second = tiny_components().denoiser, tiny_components().denoiser
    assert torch.equal(first.appearance, second.appearance)
    latents, timesteps = random_latents(2, 3), torch.tensor([700, 200])
    assert torch.equal(
        first.predict(latents, timesteps, _conditions(first, 2, 3)),
        second.predict(latents, timesteps, _conditions(second, 2, 3)),
    )
    other_seed = tiny_components(tiny_seed=1).denoiser
    assert not torch.equal(first.appearance, other_seed.appearance)


def test_guidance_combines_halves(denoiser: SGDMDenoiser) -> None:
    latents, timesteps = random_latents(1, 3), torch.tensor([500])
    conditions = _conditions(denoiser, 1, 3)
    cond, uncond = denoiser.predict_branches(latents, timesteps, conditions)
    assert uncond is not None
    guided = denoiser.predict(latents, timesteps, conditions)
    assert torch.allclose(guided, uncond + 7.5 * (cond - uncond), atol=1e-5)
    denoiser.guidance_scale = 1.0
    cond_only, none = denoiser.predict_branches(latents, timesteps, conditions)
    assert none is None and torch.allclose(cond_only, cond, atol=1e-5)


def test_cached_conditioning_equals_per_step(denoiser: SGDMDenoiser) -> None:
    images = random_images(4)
    sample = random_latents(1, 4)[0]
    timesteps = torch.full((4,), 500)
    tokens = denoiser.appearance.expand(4, -1, -1)
    controlnet = denoiser.controlnet
    down, mid = controlnet(
        sample,
        timesteps,
        encoder_hidden_states=tokens,
        controlnet_cond=images,
        conditioning_scale=2.0,
        return_dict=False,
    )
    embedding = conditioning_embedding(controlnet, images)
    with precomputed_conditioning(controlnet):
        cached_down, cached_mid = controlnet(
            sample,
            timesteps,
            encoder_hidden_states=tokens,
            controlnet_cond=embedding,
            conditioning_scale=2.0,
            return_dict=False,
        )
    assert float(mid.abs().max()) > 0.0
    assert torch.allclose(mid, cached_mid, atol=1e-6)
    for plain, cached in zip(down, cached_down, strict=True):
        assert torch.allclose(plain, cached, atol=1e-6)
    # The embedding module is back in place, with its parameters in the state dict.
    assert any(k.startswith("controlnet_cond_embedding.") for k in controlnet.state_dict())
    # Whole denoiser: cached features vs raw images give the same guided noise.
    latents, steps = random_latents(1, 4), torch.tensor([500])
    cached_noise = denoiser.predict(latents, steps, denoiser.encode_conditions(images)[None])
    denoiser.cache_conditioning = False
    raw = denoiser.encode_conditions(images)
    assert raw.shape == (4, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.allclose(denoiser.predict(latents, steps, raw[None]), cached_noise, atol=1e-5)


def test_conditions_change_the_prediction(denoiser: SGDMDenoiser) -> None:
    latents, steps = random_latents(1, 2), torch.tensor([500])
    first = denoiser.predict(latents, steps, _conditions(denoiser, 1, 2))
    other = denoiser.encode_conditions(random_images(2, seed=9))[None]
    assert float((first - denoiser.predict(latents, steps, other)).abs().max()) > 1e-4


def test_save_load_round_trip_gives_identical_outputs(
    denoiser: SGDMDenoiser, tmp_path: Path
) -> None:
    denoiser.unet.save_pretrained(tmp_path / "body" / "unet")
    denoiser.controlnet.save_pretrained(tmp_path / "body" / "controlnet")
    unet = load_unet(tmp_path / "body" / "unet", "model.checkpoint_path")
    controlnet = load_controlnet(tmp_path / "body" / "controlnet", "model.checkpoint_path")
    loaded = SGDMDenoiser(
        unet,
        controlnet,
        denoiser.vae,
        denoiser.appearance,
        denoiser.null_embedding,
        image_size=IMAGE_SIZE,
    )
    latents, steps = random_latents(2, 3), torch.tensor([800, 100])
    assert torch.equal(
        denoiser.predict(latents, steps, _conditions(denoiser, 2, 3)),
        loaded.predict(latents, steps, _conditions(loaded, 2, 3)),
    )
