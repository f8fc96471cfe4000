"""Contracts of the window sampler: every frame once, in order; chunking; flush; reset."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_helpers import (
    condition_frames,
    condition_images,
    latents_of,
    run_stream,
    sampler_config,
    tiny_components,
)

from model.errors import AnchorError
from streaming.frames import ConditionFrame
from streaming.sampler import WindowSampler

CLIP = 26
COMPONENTS = tiny_components()
IMAGES = condition_images(CLIP, seed=11)
_REFERENCE: dict[str, torch.Tensor] = {}


def reference(mode: str) -> torch.Tensor:
    """Latents of the clip pushed one frame at a time (computed once per mode)."""
    if mode not in _REFERENCE:
        config = sampler_config(mode, window_size=8, overlap=2)
        sampler = WindowSampler(COMPONENTS.denoiser, COMPONENTS.scheduler, config)
        _REFERENCE[mode] = latents_of(run_stream(sampler, condition_frames(IMAGES)))
    return _REFERENCE[mode]


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mode=st.sampled_from(["exact", "low"]),
    chunks=st.lists(st.integers(min_value=0, max_value=CLIP), min_size=0, max_size=6),
)
def test_output_does_not_depend_on_chunking(mode: str, chunks: list[int]) -> None:
    config = sampler_config(mode, window_size=8, overlap=2)
    sampler = WindowSampler(COMPONENTS.denoiser, COMPONENTS.scheduler, config)
    committed = run_stream(sampler, condition_frames(IMAGES), chunks=chunks)
    assert [frame.position for frame in committed] == list(range(CLIP))
    assert (latents_of(committed) - reference(mode)).abs().max().item() <= 1e-6


@pytest.mark.parametrize("mode", ["exact", "low", "offline"])
def test_every_frame_once_in_order_with_its_seq_and_pts(mode: str) -> None:
    config = sampler_config(mode, window_size=8, overlap=2)
    sampler = WindowSampler(COMPONENTS.denoiser, COMPONENTS.scheduler, config)
    seqs = [3, 4, 9, 10, 11, 20, *range(30, 50)]  # gaps in seq are allowed
    frames = [
        ConditionFrame(seq=seq, pts=1000.0 + 0.5 * seq, condition=image)
        for seq, image in zip(seqs, IMAGES, strict=True)
    ]
    committed = []
    for start in range(0, len(frames), 5):
        committed += sampler.push(frames[start : start + 5])
    pending = sampler.pending
    tail = sampler.flush()
    assert len(tail) == pending > 0  # flush commits exactly what was in flight
    committed += tail
    assert [frame.seq for frame in committed] == seqs
    assert [frame.pts for frame in committed] == [1000.0 + 0.5 * seq for seq in seqs]
    assert {frame.epoch for frame in committed} == {0}
    assert all(frame.latent.shape == (4, 2, 2) and frame.image is None for frame in committed)
    assert sampler.pending == 0 and sampler.flush() == []


@pytest.mark.parametrize("mode", ["exact", "low"])
def test_reset_discards_in_flight_frames_and_starts_a_new_epoch(mode: str) -> None:
    config = sampler_config(mode, window_size=8, overlap=2)
    sampler = WindowSampler(COMPONENTS.denoiser, COMPONENTS.scheduler, config)
    early = sampler.push(condition_frames(condition_images(19, seed=12), first_seq=500))
    assert sampler.pending > 0
    sampler.reset()
    assert sampler.pending == 0 and sampler.epoch == 1
    # After a reset seq may start over; the new clip is sampled as if the sampler were new.
    committed = run_stream(sampler, condition_frames(IMAGES))
    assert all(frame.seq >= 500 for frame in early)
    assert [frame.seq for frame in committed] == list(range(CLIP))
    assert {frame.epoch for frame in committed} == {1}
    assert (latents_of(committed) - reference(mode)).abs().max().item() <= 1e-6
    assert sampler.epoch == 2  # flush ended that clip too


def test_seq_must_increase_within_a_clip() -> None:
    sampler = WindowSampler(COMPONENTS.denoiser, COMPONENTS.scheduler, sampler_config("exact"))
    frames = condition_frames(IMAGES[:3])
    sampler.push(frames[:2])
    with pytest.raises(AnchorError, match="seq 1 does not follow seq 1"):
        sampler.push([frames[1]])


def test_condition_must_be_an_rgb_image() -> None:
    sampler = WindowSampler(COMPONENTS.denoiser, COMPONENTS.scheduler, sampler_config("low"))
    with pytest.raises(AnchorError, match=r"seq 5: condition must be \(3, H, W\)"):
        sampler.push([ConditionFrame(seq=5, pts=0.0, condition=torch.zeros(1, 16, 16))])


@pytest.mark.parametrize("same_frame_noise", [True, False])
def test_seeded_noise_is_per_session_and_reproducible(same_frame_noise: bool) -> None:
    results = []
    for seed in (7, 7, 8):
        config = sampler_config(
            "low", window_size=8, overlap=2, seed=seed, same_frame_noise=same_frame_noise
        )
        sampler = WindowSampler(COMPONENTS.denoiser, COMPONENTS.scheduler, config)
        results.append(latents_of(run_stream(sampler, condition_frames(IMAGES[:10]))))
    assert torch.equal(results[0], results[1])
    assert not torch.allclose(results[0], results[2])
