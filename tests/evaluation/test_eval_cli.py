"""``anchor eval`` on two small mp4 files written here, through the console script.

Feature networks and the pose estimator are the tiny stand-ins of eval_helpers (the
pretrained files cannot be downloaded in tests); the SMPL-X model is the stand-in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import noisy, smooth_video

from app.cli import main
from model.config import RenderConfig
from model.video_io import write_mp4

ROOT = Path(__file__).resolve().parents[2]


def _write(video: np.ndarray, path: Path) -> Path:
    write_mp4(torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0, path, fps=30.0)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("videos")
    gt = smooth_video(20)
    return _write(noisy(gt, 30), folder / "pred.mp4"), _write(gt, folder / "gt.mp4")


def _settings(weights_dir: Path, render_config: RenderConfig) -> list[str]:
    values = {
        "eval.lpips_weights": weights_dir / "lpips_alex.pth",
        "eval.fid_weights": weights_dir / "fid.pt",
        "eval.fvd_weights": weights_dir / "fvd.pt",
        "eval.pose_onnx": weights_dir / "pose_simcc.onnx",
        "eval.fvd_clip_length": 8,
        "eval.fvd_clip_stride": 4,
        "eval.fvd_size": 32,
        "render.standin_path": render_config.standin_path,
        "render.framing": "full",
        "render.width": 128,
        "render.height": 128,
    }
    return [item for key, value in values.items() for item in ("--set", f"{key}={value}")]


def test_anchor_eval_prints_every_metric_as_json(
    videos: tuple[Path, Path], weights_dir: Path, render_config: RenderConfig, wave_motion: Path
) -> None:
    pred, gt = videos
    anchor = Path(sys.executable).with_name("anchor")
    command = [str(anchor), *_settings(weights_dir, render_config), "eval"]
    command += ["--pred", str(pred), "--gt", str(gt), "--motion", str(wave_motion), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["frames"], report["width"], report["height"]) == (20, 64, 64)
    metrics = report["metrics"]
    assert report["skipped"] == {}
    assert 0.0 < metrics["ssim"] < 0.9 and 10.0 < metrics["psnr"] < 40.0
    assert metrics["lpips"] > 0 and metrics["fid"] > 0 and metrics["fvd"] > 0
    assert metrics["flicker_difference"] == pytest.approx(
        metrics["flicker_pred"] - metrics["flicker_gt"]
    )
    assert report["details"]["fvd"]["pred_samples"] == 4  # clips at 0, 4, 8, 12
    assert report["details"]["fid"]["pred_samples"] == 20
    assert {"lmd_face", "lmd_body", "lmd_hands"} <= set(metrics)
    assert report["details"]["lmd"]["body"]["reference"] > 0


def test_anchor_eval_table_and_errors(
    videos: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred, gt = videos
    assert main(["eval", "--pred", str(gt), "--gt", str(gt), "--metrics", "ssim,psnr"]) == 0
    table = capsys.readouterr().out
    assert "ssim" in table and "1.0000" in table and "inf dB" in table
    assert main(["eval", "--pred", str(gt), "--gt", str(gt), "--metrics", "psnr", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["psnr"] is None  # infinite
    assert main(["eval", "--pred", str(pred), "--gt", str(gt), "--metrics", "ssim,lpips"]) == 1
    assert "eval.lpips_weights is not set" in capsys.readouterr().err
    short = _write(smooth_video(12), tmp_path / "short.mp4")
    assert main(["eval", "--pred", str(short), "--gt", str(gt)]) == 1
    assert "pred has 12 frames, gt has 20" in capsys.readouterr().err
    assert main(["eval", "--pred", str(tmp_path / "none.mp4"), "--gt", str(gt)]) == 1
    assert "video not found" in capsys.readouterr().err
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video")
    assert main(["eval", "--pred", str(garbage), "--gt", str(gt)]) == 1
    assert f"cannot read video {garbage}" in capsys.readouterr().err
