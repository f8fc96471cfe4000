"""Mode exact equals offline Algorithm 1, at offline's model cost, batched or not."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from stream_helpers import (
    condition_frames,
    condition_images,
    latents_of,
    offline_latents,
    run_stream,
    sampler_config,
)

from model.errors import AnchorError
from model.placement import Components
from streaming.sampler import WindowSampler, latency_frames


@pytest.mark.parametrize(("window_size", "overlap"), [(8, 2), (16, 4), (32, 8)])
@pytest.mark.parametrize("length", [1, 15, 16, 17, 28, 100])
def test_exact_equals_offline_frame_by_frame(
    components: Components, window_size: int, overlap: int, length: int
) -> None:
    config = sampler_config("exact", window_size=window_size, overlap=overlap)
    images = condition_images(length, seed=length)
    expected = offline_latents(components, images, config)
    sampler = WindowSampler(components.denoiser, components.scheduler, config)
    committed = run_stream(sampler, condition_frames(images))
    assert [frame.position for frame in committed] == list(range(length))
    assert (latents_of(committed) - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("schedule", ["batched", "eager"])
def test_exact_schedules_and_same_frame_noise_equal_offline(
    components: Components, schedule: str
) -> None:
    config = sampler_config("exact", window_size=8, overlap=3, same_frame_noise=True)
    images = condition_images(29, seed=3)
    expected = offline_latents(components, images, config)
    sampler = WindowSampler(components.denoiser, components.scheduler, config, schedule)  # type: ignore[arg-type]
    committed = run_stream(sampler, condition_frames(images), chunks=[5, 1, 7, 2])
    assert (latents_of(committed) - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("mode", ["exact", "low"])
def test_model_evaluations_per_frame_equal_offline(components: Components, mode: str) -> None:
    images = condition_images(26, seed=4)
    evaluations = {}
    for run_mode in ("offline", mode):
        config = sampler_config(run_mode, window_size=8, overlap=2)
        sampler = WindowSampler(components.denoiser, components.scheduler, config)
        committed = run_stream(sampler, condition_frames(images))
        assert len(committed) == 26
        evaluations[run_mode] = (
            sampler.stats.frame_evaluations / len(committed),
            sampler.stats.window_evaluations,
        )
    assert evaluations[mode] == evaluations["offline"]


def test_stream_batch_equals_unbatched(components: Components) -> None:
    images = condition_images(40, seed=5)
    results = {}
    batch_sizes = {}
    for max_batch in (1, 8):
        config = sampler_config("exact", window_size=8, overlap=2, max_batch=max_batch)
        sampler = WindowSampler(components.denoiser, components.scheduler, config)
        results[max_batch] = latents_of(run_stream(sampler, condition_frames(images)))
        batch_sizes[max_batch] = max(sampler.stats.batch_sizes)
    assert batch_sizes == {1: 1, 8: 3}  # steady state: one window per step in one call
    assert (results[1] - results[8]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("schedule", ["batched", "eager"])
def test_latency_matches_the_bound(components: Components, schedule: str) -> None:
    config = sampler_config("exact", window_size=8, overlap=2)
    sampler = WindowSampler(components.denoiser, components.scheduler, config, schedule)  # type: ignore[arg-type]
    worst = 0
    for received, frame in enumerate(condition_frames(condition_images(40, seed=6))):
        for committed in sampler.push([frame]):
            worst = max(worst, received - committed.position)
    assert worst == latency_frames(config, schedule)  # type: ignore[arg-type]
    assert worst == sampler.latency_frames


class MultistepFrameScheduler:
    """DPM-Solver++ multistep seen per frame: its step depends on earlier steps."""

    def __init__(self, steps: int) -> None:
        self.scheduler: Any = cast(Any, DPMSolverMultistepScheduler())
        self.scheduler.set_timesteps(steps)
        self.timesteps = self.scheduler.timesteps.to(torch.int64)

    def step_frames(
        self, noise: torch.Tensor, step_index: int, latents: torch.Tensor
    ) -> torch.Tensor:
        timestep = int(self.timesteps[step_index])
        return self.scheduler.step(noise, timestep, latents, return_dict=False)[0]  # type: ignore[no-any-return]


def test_exact_refuses_a_multistep_scheduler(components: Components) -> None:
    config = sampler_config("exact")
    with pytest.raises(AnchorError, match="DPMSolverMultistepScheduler"):
        WindowSampler(components.denoiser, MultistepFrameScheduler(config.steps), config)
