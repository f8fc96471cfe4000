"""Mode low: one window of latency, continuous seams, offline's model cost."""

from __future__ import annotations

import pytest
import torch
from stream_helpers import (
    condition_frames,
    condition_images,
    drifting_blob,
    latents_of,
    offline_latents,
    run_stream,
    sampler_config,
    window_sensitive_components,
)

from model.placement import Components
from streaming.sampler import WindowSampler


def seam_ratio(latents: torch.Tensor, stride: int) -> float:
    """Largest frame-to-frame change across a window seam / median change inside windows."""
    change = (latents[1:] - latents[:-1]).abs().mean(dim=(1, 2, 3))  # change[i]: i -> i+1
    seams = [start - 1 for start in range(stride, latents.shape[0], stride)]
    inside = [i for i in range(change.shape[0]) if i not in seams]
    return float(change[seams].max() / change[inside].median())


def test_low_mode_seams_are_as_smooth_as_the_inside_of_windows() -> None:
    components = window_sensitive_components(image_size=32)
    images = drifting_blob(72, 32)
    ratios = {}
    for name, window_size, overlap in (("low", 16, 4), ("disjoint", 12, 0)):
        # Same stride (12); "disjoint" cuts the clip into unrelated windows.
        config = sampler_config("low", window_size=window_size, overlap=overlap)
        config = config.model_copy(update={"same_frame_noise": True})
        sampler = WindowSampler(components.denoiser, components.scheduler, config)
        committed = run_stream(sampler, condition_frames(images))
        ratios[name] = seam_ratio(latents_of(committed), stride=12)
    assert ratios["disjoint"] > 2.0  # the setup does show seams when windows do not overlap
    assert ratios["low"] < 2.0


@pytest.mark.parametrize("length", [1, 11, 30])
def test_low_mode_without_overlap_equals_offline(components: Components, length: int) -> None:
    """With os = 0 no frame is shared, so there is nothing to approximate."""
    config = sampler_config("low", window_size=6, overlap=0)
    images = condition_images(length, seed=8)
    committed = run_stream(
        WindowSampler(components.denoiser, components.scheduler, config), condition_frames(images)
    )
    expected = offline_latents(components, images, config)
    assert (latents_of(committed) - expected).abs().max().item() <= 1e-4


def test_low_mode_commits_within_one_window(components: Components) -> None:
    config = sampler_config("low", window_size=8, overlap=2)
    sampler = WindowSampler(components.denoiser, components.scheduler, config)
    worst = 0
    for received, frame in enumerate(condition_frames(condition_images(24, seed=9))):
        for committed in sampler.push([frame]):
            worst = max(worst, received - committed.position)
    assert worst == config.window_size - 1 == sampler.latency_frames


def test_low_mode_stays_close_to_offline(components: Components) -> None:
    """An approximation of Algorithm 1 (not equal, since windows never see later windows),
    but a close one."""
    images = condition_images(20, seed=10)
    overlapped = sampler_config("low", window_size=8, overlap=2)
    committed = run_stream(
        WindowSampler(components.denoiser, components.scheduler, overlapped),
        condition_frames(images),
    )
    low = latents_of(committed)
    offline = offline_latents(components, images, overlapped)
    distance = (low - offline).abs().mean().item()
    scale = offline.abs().mean().item()
    assert 0.0 < distance < 0.2 * scale
