"""``anchor bench gpu``: its code path on the CPU with tiny networks, and its CUDA check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from app.cli import main
from bench.gpu import FIGURES, NEEDS_CUDA, Architecture, bench_gpu
from model.loading import load_controlnet, load_unet
from model.presets import tiny_unet, tiny_vae


def _init_arguments(network: Any) -> dict[str, Any]:
    return {key: value for key, value in network.config.items() if not key.startswith("_")}


def tiny_architecture() -> Architecture:
    """The tiny preset's networks at 16 px (faces at 32), 6 frames per preset."""
    return Architecture(
        "tiny",
        16,
        32,
        _init_arguments(tiny_unet()),
        _init_arguments(tiny_vae()),
        (8, 16, 16, 32),
        clip={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        text={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
              "num_attention_heads": 2},
        frames=6,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_bench_gpu_runs_both_presets_on_the_authors_layout(tmp_path: Path) -> None:
    report = bench_gpu("cpu", tiny_architecture(), root=tmp_path)
    assert [row["preset"] for row in report["rows"]] == ["quality", "live"]
    for row in report["rows"]:
        assert set(FIGURES) <= set(row)
        assert row["dtype"] == "float32" and row["compile"] == "off"  # CUDA-only speed-ups
        assert row["peak_gpu_gib"] is None and row["frames"] == 6
        assert row["ms_per_frame"] > 0 and row["tflops_per_frame"] > 0
    quality, live = report["rows"]
    assert (quality["steps"], quality["guidance_scale"], quality["mode"]) == (20, 7.5, "exact")
    assert (live["steps"], live["guidance_scale"], live["mode"]) == (4, 1.0, "low")
    assert quality["tflops_per_frame"] > 5 * live["tflops_per_frame"]  # 20 steps, CFG
    assert "skipped" in report["onnxruntime"]  # no CUDA provider on a CPU build
    for part in ("body", "head"):
        unet = load_unet(tmp_path / "checkpoints" / part / "unet", "checkpoint")
        load_controlnet(tmp_path / "checkpoints" / part / "controlnet", "checkpoint")
        assert unet.config["in_channels"] == (4 if part == "body" else 9)
    for sd in ("sd", "sd-inpainting"):
        for sub in ("vae", "text_encoder", "tokenizer", "scheduler"):
            assert (tmp_path / sd / sub).is_dir(), f"{sd}/{sub}"
    assert (tmp_path / "clip" / "config.json").is_file()


def test_bench_gpu_without_cuda_says_so_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu", "--json"]) == NEEDS_CUDA == 2
    assert "needs CUDA" in capsys.readouterr().err
