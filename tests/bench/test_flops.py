"""``anchor bench flops``: the counter against hand counts, and the command's report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from app.cli import main
from app.config import load_config
from app.presets import PRESETS
from bench.flops import STAGES, bench_flops, count_flops
from model.attention import WindowContext, WindowSelfAttentionProcessor
from model.config import AttentionMode
from model.presets import tiny_clip_vision, tiny_controlnet, tiny_unet, tiny_vae


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
    # The face stage alone at 256: a 2-step student without CFG costs a fraction of the
    # paper's 20 steps with CFG (and the quality preset's face stage is that sampling).
    face = report["face_stage"]
    assert face["face_size"] == 256
    costs = face["tflops_per_frame"]
    assert costs["quality"] == pytest.approx(quality["stages"]["face"], rel=1e-4)
    assert costs["student 2 steps"] < costs["live"] < costs["quality"] / 5


def test_sd15_folders_count_their_config_json(tmp_path: Path) -> None:
    unet, face_unet = tiny_unet(), tiny_unet(in_channels=9)
    configs: dict[str, Any] = {
        "checkpoints/body/unet": unet,
        "checkpoints/body/controlnet": tiny_controlnet(unet),
        "checkpoints/head/unet": face_unet,
        "checkpoints/head/controlnet": tiny_controlnet(face_unet, in_channels=4),
        "sd/vae": tiny_vae(),
        "inpainting/vae": tiny_vae(),
    }
    for folder, network in configs.items():
        network.save_config(tmp_path / folder)
    tiny_clip_vision().config.save_pretrained(tmp_path / "clip")
    fields = {"checkpoint_path": "checkpoints", "sd_path": "sd"}
    fields |= {"sd_inpainting_path": "inpainting", "clip_path": "clip"}
    overrides = ["model.preset=sd15"]
    overrides += [f"model.{field}={tmp_path / name}" for field, name in fields.items()]
    report = bench_flops(load_config(None, overrides, environ={}))

    assert "config.json" in report["architecture"]
    with torch.device("meta"):
        meta_unet = UNet2DConditionModel.from_config(unet.config)
        sample, timesteps = torch.zeros(1, 4, 64, 64), torch.zeros(1)
        tokens = torch.zeros(1, 17, 32)  # the tiny CLIP's 17 tokens of width 32
    expected = count_flops(lambda: meta_unet(sample, timesteps, encoder_hidden_states=tokens))
    counted = report["presets"]["quality"]["per_evaluation_tflops"]["unet"]
    assert counted == pytest.approx(expected / 1e12, rel=1e-5)
