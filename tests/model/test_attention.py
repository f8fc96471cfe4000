"""Window attention modes and window GroupNorm on the tiny real UNet + ControlNet."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from sgdm_helpers import random_images, random_latents, tiny_components

from model.attention import WindowContext, WindowGroupNorm, WindowSelfAttentionProcessor
from model.sgdm import SGDMDenoiser

ATOL = 1e-5


def _run(denoiser: SGDMDenoiser, latents: torch.Tensor, seed: int = 3) -> torch.Tensor:
    """Unguided noise for (B, F, ...) latents: every window at t=500, reference tokens."""
    windows, frames = latents.shape[:2]
    conditions = denoiser.encode_conditions(random_images(windows * frames, seed=seed))
    conditions = conditions.reshape(windows, frames, *conditions.shape[1:])
    tokens = denoiser.appearance.expand(windows, -1, -1)
    timesteps = torch.full((windows,), 500)
    return denoiser.denoise_windows(latents, timesteps, tokens, conditions)


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


def test_processors_installed_on_unet_self_attention_only(denoiser: SGDMDenoiser) -> None:
    unet_processors = denoiser.unet.attn_processors
    window = {
        name for name, p in unet_processors.items() if isinstance(p, WindowSelfAttentionProcessor)
    }
    assert window and all(name.endswith("attn1.processor") for name in window)
    assert all(
        not isinstance(p, WindowSelfAttentionProcessor)
        for name, p in unet_processors.items()
        if name.endswith("attn2.processor")
    )
    controlnet_processors = denoiser.controlnet.attn_processors.values()
    assert not any(isinstance(p, WindowSelfAttentionProcessor) for p in controlnet_processors)


def test_all_frame_with_one_frame_equals_per_frame(denoiser: SGDMDenoiser) -> None:
    latents = random_latents(3, 1)
    all_frame = _run(denoiser, latents)
    denoiser.set_attention("per-frame")
    assert _diff(all_frame, _run(denoiser, latents)) < ATOL


def test_all_frame_mixes_frames_of_a_window_but_not_windows(denoiser: SGDMDenoiser) -> None:
    latents = random_latents(2, 6)
    base = _run(denoiser, latents)
    perturbed_latents = latents.clone()
    perturbed_latents[0, 0] += 1.0
    perturbed = _run(denoiser, perturbed_latents)
    assert _diff(base[0, 5], perturbed[0, 5]) > 1e-4  # same window: frame 5 sees frame 0
    assert _diff(base[1], perturbed[1]) == 0.0  # another window (or CFG half): untouched


def test_per_frame_keeps_frames_independent(denoiser: SGDMDenoiser) -> None:
    denoiser.set_attention("per-frame")
    latents = random_latents(1, 6)
    perturbed_latents = latents.clone()
    perturbed_latents[0, 0] += 1.0
    base, perturbed = _run(denoiser, latents), _run(denoiser, perturbed_latents)
    assert _diff(base[0, 0], perturbed[0, 0]) > 1e-4
    assert _diff(base[0, 1:], perturbed[0, 1:]) < ATOL


def test_cfg_halves_do_not_see_each_other(denoiser: SGDMDenoiser) -> None:
    latents = random_latents(2, 4)
    conditions = denoiser.encode_conditions(random_images(8)).reshape(2, 4, -1, 8, 8)
    timesteps = torch.tensor([500, 300])
    cond, uncond = denoiser.predict_branches(latents, timesteps, conditions)
    assert uncond is not None
    null_tokens = denoiser.null_embedding.expand(2, -1, -1)
    alone = denoiser.denoise_windows(latents, timesteps, null_tokens, conditions)
    assert _diff(uncond, alone) < ATOL
    assert _diff(cond, uncond) > 1e-4


def test_sparse_frame_zero_equals_per_frame_and_is_causal(denoiser: SGDMDenoiser) -> None:
    latents = random_latents(1, 6)
    denoiser.set_attention("sparse")
    sparse = _run(denoiser, latents)
    perturbed_latents = latents.clone()
    perturbed_latents[0, 5] += 1.0
    perturbed = _run(denoiser, perturbed_latents)
    assert _diff(sparse[0, :5], perturbed[0, :5]) < ATOL  # no frame attends to a later one
    denoiser.set_attention("per-frame")
    per_frame = _run(denoiser, latents)
    assert _diff(sparse[0, 0], per_frame[0, 0]) < ATOL
    assert _diff(sparse[0, 1:], per_frame[0, 1:]) > 1e-4


def test_sparse_layer_reads_keys_from_first_and_previous_frame() -> None:
    torch.manual_seed(0)
    attention = Attention(query_dim=8, heads=2, dim_head=4)
    context = WindowContext()
    processor = WindowSelfAttentionProcessor("sparse", context)
    tokens = torch.randn(2 * 5, 3, 8)  # 2 windows x 5 frames, 3 tokens each

    def frame3_after_perturbing(frame: int) -> torch.Tensor:
        changed = tokens.clone()
        changed[frame] += 1.0  # frame `frame` of window 0
        with context.frames(5):
            return processor(attention, changed)[3]

    with context.frames(5):
        base = processor(attention, tokens)
    assert _diff(base[3], frame3_after_perturbing(0)) > 1e-4  # the window's first frame
    assert _diff(base[3], frame3_after_perturbing(2)) > 1e-4  # the previous frame
    assert _diff(base[3], frame3_after_perturbing(1)) == 0.0
    assert _diff(base[3], frame3_after_perturbing(4)) == 0.0
    assert _diff(base[3], frame3_after_perturbing(5)) == 0.0  # frame 0 of the next window


def test_window_groupnorm_with_one_frame_equals_plain() -> None:
    plain = tiny_components().denoiser
    shared = tiny_components(window_groupnorm=True).denoiser
    latents = random_latents(2, 1)
    assert _diff(_run(plain, latents), _run(shared, latents)) < ATOL


def test_window_groupnorm_keeps_state_dict_and_shares_statistics() -> None:
    plain = tiny_components(attention="per-frame").denoiser
    shared = tiny_components(attention="per-frame", window_groupnorm=True).denoiser
    assert any(isinstance(m, WindowGroupNorm) for m in shared.unet.modules())
    assert any(isinstance(m, WindowGroupNorm) for m in shared.controlnet.modules())
    assert list(plain.unet.state_dict()) == list(shared.unet.state_dict())
    assert list(plain.controlnet.state_dict()) == list(shared.controlnet.state_dict())
    latents = random_latents(2, 4)
    base = _run(shared, latents)
    assert _diff(base, _run(plain, latents)) > 1e-4
    perturbed_latents = latents.clone()
    perturbed_latents[0, 0] += 1.0
    perturbed = _run(shared, perturbed_latents)
    # Per-frame attention, yet frame 3 changes: statistics are shared within the window...
    assert _diff(base[0, 3], perturbed[0, 3]) > 1e-5
    # ...and only within it.
    assert _diff(base[1], perturbed[1]) == 0.0
