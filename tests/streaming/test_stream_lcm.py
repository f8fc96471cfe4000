"""LCM sampling (``sampler.scheduler = "lcm"``) behind the same per-frame contract as DDIM."""

from __future__ import annotations

import pytest
import torch
from diffusers.schedulers.scheduling_lcm import LCMScheduler
from stream_helpers import (
    IMAGE_SIZE,
    condition_frames,
    condition_images,
    latents_of,
    offline_latents,
    run_stream,
    sampler_config,
    tiny_components,
)

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.placement import Components
from model.presets import SD15_SCHEDULER_CONFIG
from model.scheduling import LCMFrameScheduler
from streaming.sampler import WindowSampler

SEED_STRIDE = 1_000_003  # model/scheduling.py's per-step seed spacing


@pytest.fixture(scope="module")
def lcm_components() -> Components:
    """Tiny components with a 4-step LCM scheduler (noise seed 7).

    The ControlNet conditioning embedding runs inside ``predict`` (no caching): cached, it
    is computed per arrival chunk, and the CPU convolution of a one-frame chunk rounds
    differently from a batched one, which is not the scheduler's doing.
    """
    model = ModelConfig(
        preset="tiny", device="cpu", image_size=IMAGE_SIZE, cache_conditioning=False
    )
    sampler = SamplerConfig(steps=4, scheduler="lcm", seed=7)
    return build_components(model, sampler, FaceConfig(enabled=False))


def test_lcm_step_equals_diffusers_lcm_step() -> None:
    frames = LCMFrameScheduler.sd15(4, seed=3)
    reference = LCMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    reference.set_timesteps(4)
    assert frames.timesteps.tolist() == reference.timesteps.tolist() == [999, 759, 499, 259]
    generator = torch.Generator().manual_seed(0)
    ours = theirs = torch.randn((1, 4, 8, 8), generator=generator)
    for step_index, timestep in enumerate(reference.timesteps):
        noise = torch.randn((1, 4, 8, 8), generator=generator)
        # One frame: diffusers' own draw from this generator is the scheduler's step noise.
        step_generator = torch.Generator().manual_seed(3 * SEED_STRIDE + step_index)
        theirs = reference.step(
            noise, timestep, theirs, generator=step_generator, return_dict=False
        )[0]
        ours = frames.step_frames(noise, step_index, ours)
        assert torch.equal(ours, theirs), step_index


def test_lcm_step_is_elementwise_per_frame() -> None:
    scheduler = LCMFrameScheduler.sd15(4, seed=5)
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn((6, 4, 4, 4), generator=generator)
    noise = torch.randn((6, 4, 4, 4), generator=generator)
    for step_index in range(4):
        whole = scheduler.step_frames(noise, step_index, latents)
        parts = [scheduler.step_frames(noise[i : i + 2], step_index, latents[i : i + 2])
                 for i in (0, 2, 4)]  # fmt: skip
        assert torch.equal(whole, torch.cat(parts))
        assert torch.equal(whole[3:4], scheduler.step_frames(noise[3:4], step_index, latents[3:4]))


def test_lcm_noise_depends_on_seed_and_step() -> None:
    one, other = LCMFrameScheduler.sd15(4, seed=1), LCMFrameScheduler.sd15(4, seed=2)
    assert not torch.equal(one.step_noise(0, (4, 2, 2)), one.step_noise(1, (4, 2, 2)))
    assert not torch.equal(one.step_noise(0, (4, 2, 2)), other.step_noise(0, (4, 2, 2)))
    assert torch.equal(one.step_noise(2, (4, 2, 2)), one.with_steps(4).step_noise(2, (4, 2, 2)))


@pytest.mark.parametrize("schedule", ["batched", "eager"])
def test_lcm_exact_equals_offline_bit_identically(
    lcm_components: Components, schedule: str
) -> None:
    assert isinstance(lcm_components.scheduler, LCMFrameScheduler)
    config = sampler_config("exact", steps=4, scheduler="lcm", window_size=8, overlap=3)
    images = condition_images(29, seed=3)
    expected = offline_latents(lcm_components, images, config)
    sampler = WindowSampler(lcm_components.denoiser, lcm_components.scheduler, config, schedule)  # type: ignore[arg-type]
    committed = run_stream(sampler, condition_frames(images), chunks=[5, 1, 7, 2])
    assert [frame.position for frame in committed] == list(range(29))
    assert torch.equal(latents_of(committed), expected)


def test_lcm_four_steps_run_in_every_mode(lcm_components: Components) -> None:
    images = condition_images(12, seed=4)
    ddim = tiny_components(steps=4)
    for mode in ("offline", "exact", "low"):
        config = sampler_config(mode, steps=4, scheduler="lcm", window_size=8, overlap=2)
        sampler = WindowSampler(lcm_components.denoiser, lcm_components.scheduler, config)
        latents = latents_of(run_stream(sampler, condition_frames(images)))
        assert latents.shape == (12, 4, 2, 2) and torch.isfinite(latents).all()
        ddim_sampler = WindowSampler(ddim.denoiser, ddim.scheduler, config)
        ddim_latents = latents_of(run_stream(ddim_sampler, condition_frames(images)))
        assert not torch.allclose(latents, ddim_latents)


def test_face_scheduler_lcm_enhances_crops() -> None:
    model = ModelConfig(preset="tiny", device="cpu", image_size=IMAGE_SIZE)
    face = FaceConfig(size=32, steps=4, scheduler="lcm", guidance_scale=1.0)
    components = build_components(model, SamplerConfig(steps=4), face)
    enhancer = components.face
    assert enhancer is not None and isinstance(enhancer.scheduler, LCMFrameScheduler)
    assert enhancer.scheduler.seed == face.seed
    generator = torch.Generator().manual_seed(0)
    crops = torch.rand((2, 3, 32, 32), generator=generator)
    masks = torch.ones((2, 1, 32, 32))
    masks[:, :, 8:24, 8:24] = 0.0
    out = enhancer.enhance(crops, torch.rand((2, 3, 32, 32), generator=generator), masks)
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
