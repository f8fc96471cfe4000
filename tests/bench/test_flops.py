"""``anchor bench flops``: the counter against hand counts, and the command's report."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from app.cli import main
from app.presets import PRESETS
from bench.flops import STAGES, count_flops
from model.attention import WindowContext, WindowSelfAttentionProcessor
from model.config import AttentionMode


def test_linear_and_conv_counts_match_hand_computation() -> None:
    with torch.device("meta"):
        network = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.Flatten(), nn.Linear(180, 7))
        images = torch.zeros(2, 3, 6, 6)
    conv = 2 * (2 * 5 * 6 * 6) * (3 * 3 * 3)  # 2 x outputs x (in channels x kernel)
    linear = 2 * 2 * 180 * 7  # 2 x M x K x N
    assert count_flops(lambda: network(images)) == conv + linear


def _attention_flops(frames: int, tokens: int, channels: int, mode: AttentionMode | None) -> int:
    with torch.device("meta"):
        attention = Attention(channels, heads=4, dim_head=channels // 4, out_bias=True)
        hidden = torch.zeros(frames, tokens, channels)
    context = WindowContext()
    processor: Any = AttnProcessor2_0()
    if mode is not None:
        processor = WindowSelfAttentionProcessor(mode, context)
    attention.set_processor(processor)
    with context.frames(frames):
        return count_flops(lambda: attention(hidden))


def test_attention_block_counts_projections_and_cores() -> None:
    frames, tokens, channels = 2, 10, 16
    projections = 4 * 2 * frames * tokens * channels * channels  # q, k, v, out
    cores = 2 * 2 * frames * tokens * tokens * channels  # Q K^T and A V over all heads
    assert _attention_flops(frames, tokens, channels, None) == projections + cores


def test_all_frame_attention_extra_matches_token_counts() -> None:
    frames, tokens, channels = 4, 10, 16
    per_frame = _attention_flops(frames, tokens, channels, "per-frame")
    all_frame = _attention_flops(frames, tokens, channels, "all-frame")
    # One window of F*N tokens instead of F images of N: cores grow from F*N^2 to (F*N)^2.
    assert all_frame - per_frame == 2 * 2 * channels * tokens**2 * frames * (frames - 1)


def test_bench_flops_json_reports_every_preset_and_stage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "flops", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["resolution"] == 512
    assert set(report["presets"]) == set(PRESETS)
    for row in report["presets"].values():
        assert set(row["stages"]) == set(STAGES)
        assert row["tflops_per_frame"] == pytest.approx(sum(row["stages"].values()), rel=1e-4)
    quality, live = report["presets"]["quality"], report["presets"]["live"]
    assert quality["tflops_per_frame"] > live["tflops_per_frame"] > 0
    assert report["presets"]["cpu-tiny"]["tflops_per_frame"] > 0
    # 20 steps x 2 CFG branches x 16/12 windows per frame of the per-frame UNet.
    unet = quality["per_evaluation_tflops"]["unet"]
    assert quality["stages"]["unet"] == pytest.approx(20 * 2 * 16 / 12 * unet, rel=1e-4)
    assert quality["stages"]["attention_extra"] > quality["stages"]["unet"]
