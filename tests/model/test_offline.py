"""Algorithm 1 (offline batch-overlapped temporal denoising) and the DDIM frame scheduler."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from sgdm_helpers import random_images, tiny_components

from model.config import SamplerConfig
from model.noise import frame_noise
from model.offline import offline_sample, window_batches
from model.presets import SD15_SCHEDULER_CONFIG
from model.scheduling import DDIMFrameScheduler
from model.sgdm import SGDMDenoiser
from model.windows import official_windows


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (1, [(0, 1)]),
        (12, [(0, 12)]),
        (16, [(0, 16), (12, 16)]),
        (17, [(0, 16), (12, 17)]),
        (28, [(0, 16), (12, 28), (24, 28)]),
    ],
)
def test_official_window_boundaries(length: int, expected: list[tuple[int, int]]) -> None:
    assert official_windows(length, 16, 4) == expected


def test_official_windows_long_clips() -> None:
    windows = official_windows(119, 16, 4)
    assert len(windows) == 10 and windows[-1] == (108, 119)
    assert windows[-2] == (96, 112)
    hundred = official_windows(100, 16, 4)
    assert hundred[-2:] == [(84, 100), (96, 100)]


def test_window_batches_group_equal_lengths_up_to_max_batch() -> None:
    windows = official_windows(100, 16, 4)
    batches = window_batches(windows, 4)
    assert [len(b) for b in batches] == [4, 4, 1]  # 8 full windows, then 96..99 alone
    assert [w for b in batches for w in b] == windows
    assert all(len({e - s for s, e in b}) == 1 for b in batches)


def test_ddim_timesteps_and_elementwise_step() -> None:
    scheduler = DDIMFrameScheduler.sd15(20)
    assert scheduler.timesteps.tolist() == list(range(951, 0, -50))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn((5, 4, 8, 8), generator=generator)
    noise = torch.randn((5, 4, 8, 8), generator=generator)
    together = scheduler.step_frames(noise, 3, latents)
    one_by_one = torch.cat(
        [scheduler.step_frames(noise[i : i + 1], 3, latents[i : i + 1]) for i in range(5)]
    )
    assert torch.equal(together, one_by_one)
    reference = DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    reference.set_timesteps(20)
    expected = reference.step(noise, 801, latents, eta=0.0).prev_sample
    assert torch.allclose(together, expected)


def _reference_algorithm_1(
    denoiser: SGDMDenoiser, conditions: torch.Tensor, sampler: SamplerConfig, steps: int
) -> torch.Tensor:
    """The official loop, written plainly: one window at a time, cond and uncond averaged
    separately, guidance after averaging, one diffusers DDIM step over the whole clip."""
    length = conditions.shape[0]
    scheduler = DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    scheduler.set_timesteps(steps)
    latents = frame_noise(sampler.seed, range(length), (4, 8, 8), sampler.same_frame_noise)
    for t in scheduler.timesteps:
        cond_sum = torch.zeros_like(latents)
        uncond_sum = torch.zeros_like(latents)
        count = torch.zeros(length, 1, 1, 1)
        j = 0
        while j < length:
            end = min(j + sampler.window_size, length)
            cond, uncond = denoiser.predict_branches(
                latents[None, j:end], torch.tensor([int(t)]), conditions[None, j:end]
            )
            assert uncond is not None
            cond_sum[j:end] += cond[0]
            uncond_sum[j:end] += uncond[0]
            count[j:end] += 1
            j += sampler.window_size - sampler.overlap
        cond_mean, uncond_mean = cond_sum / count, uncond_sum / count
        guided = uncond_mean + sampler.guidance_scale * (cond_mean - uncond_mean)
        latents = scheduler.step(guided, t, latents, eta=0.0).prev_sample
    return latents


def test_algorithm_1_equals_reference_loop() -> None:
    components = tiny_components(steps=3)
    sampler = SamplerConfig(
        steps=3, window_size=6, overlap=2, max_batch=2, seed=7, same_frame_noise=False
    )
    conditions = components.denoiser.encode_conditions(random_images(13))
    ours = offline_sample(components.denoiser, components.scheduler, conditions, sampler, seed=7)
    reference = _reference_algorithm_1(components.denoiser, conditions, sampler, steps=3)
    assert ours.shape == (13, 4, 8, 8)
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4)


def test_batching_does_not_change_the_result() -> None:
    components = tiny_components(steps=1)
    conditions = components.denoiser.encode_conditions(random_images(11))
    results = [
        offline_sample(
            components.denoiser,
            components.scheduler,
            conditions,
            SamplerConfig(steps=1, window_size=4, overlap=1, max_batch=batch),
            seed=3,
        )
        for batch in (1, 3)
    ]
    for other in results[1:]:
        assert torch.allclose(results[0], other, atol=1e-5)


def _single_window(
    denoiser: SGDMDenoiser,
    scheduler: DDIMFrameScheduler,
    conditions: torch.Tensor,
    seed: int,
    same_frame_noise: bool = True,
) -> torch.Tensor:
    """All frames as ONE window through every step (no overlap averaging)."""
    latents = frame_noise(seed, range(conditions.shape[0]), (4, 8, 8), same_frame_noise)
    for step_index, t in enumerate(scheduler.timesteps.tolist()):
        noise = denoiser.predict(latents[None], torch.tensor([t]), conditions[None])[0]
        latents = scheduler.step_frames(noise, step_index, latents)
    return latents


@pytest.mark.parametrize(("length", "overlap"), [(12, 4), (16, 0)])
def test_clip_within_one_window_equals_a_single_window(length: int, overlap: int) -> None:
    components = tiny_components(steps=2)
    denoiser, scheduler = components.denoiser, components.scheduler
    sampler = SamplerConfig(steps=2, seed=5, window_size=16, overlap=overlap)
    assert len(official_windows(length, 16, overlap)) == 1
    conditions = denoiser.encode_conditions(random_images(length))
    ours = offline_sample(denoiser, scheduler, conditions, sampler, seed=5)
    assert torch.allclose(ours, _single_window(denoiser, scheduler, conditions, 5), atol=1e-6)


def test_sixteen_frames_with_overlap_four_add_the_official_tail_window() -> None:
    """The official rule gives L=16, ws=16, os=4 a second window 12..15: after one step,
    frames 0..11 equal the single-window result and 12..15 are averaged with the tail."""
    components = tiny_components(steps=1)
    denoiser, scheduler = components.denoiser, components.scheduler
    conditions = denoiser.encode_conditions(random_images(16))
    sampler = SamplerConfig(steps=1, same_frame_noise=False)
    ours = offline_sample(denoiser, scheduler, conditions, sampler, seed=5)
    single = _single_window(denoiser, scheduler, conditions, 5, same_frame_noise=False)
    assert torch.allclose(ours[:12], single[:12], atol=1e-6)
    assert float((ours[12:] - single[12:]).abs().max()) > 1e-4


def test_same_frame_noise_uses_one_noise_for_every_frame() -> None:
    components = tiny_components(steps=1)
    images = random_images(1).expand(5, -1, -1, -1)  # identical conditions
    conditions = components.denoiser.encode_conditions(images)
    out = offline_sample(
        components.denoiser,
        components.scheduler,
        conditions,
        SamplerConfig(steps=1, window_size=2, overlap=0),
        seed=1,
    )
    assert torch.allclose(out[0], out[4], atol=1e-5)  # different windows, same noise + condition
