"""The training commands through the ``anchor`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main


def test_anchor_train_body_writes_checkpoints_and_a_bundle(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(["train", "body", "--data", str(synth_root / "train"), "--out", str(out),
                 "--steps", "2", "--batch-size", "2", "--checkpoint-every", "1",
                 "--validate-every", "100"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["step"] == 2 and printed["final"] == str(out / "final")
    for name in ("body/unet", "body/controlnet", "vae", "clip"):
        assert (out / "final" / name / "config.json").is_file(), name
    assert (out / "final" / "null_embedding.safetensors").is_file()
    _bundle_generates_frames(out / "final")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000001",
                                                               "checkpoint-000002"]  # fmt: skip
    # Resuming a finished run does no more steps.
    code = main(["train", "body", "--data", str(synth_root / "train"), "--out", str(out),
                 "--steps", "2", "--batch-size", "2", "--resume"])  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2


def test_anchor_train_reports_a_missing_dataset(tmp_path: Path) -> None:
    assert main(["train", "body", "--data", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "out")]) != 0  # fmt: skip


def test_anchor_bench_train_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "train", "--json", "--steps", "1", "--demo", str(tmp_path / "none")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train_step"]["it_per_s"] > 0
    assert report["train_step"]["batch"] == 4 and report["demo"] is None


def _bundle_generates_frames(folder: Path) -> None:
    import torch

    from model.bundle import load_bundle
    from model.config import ModelConfig, SamplerConfig
    from model.offline import generate_frames

    sampler = SamplerConfig(steps=1, guidance_scale=3.0, window_size=2, overlap=0)
    components = load_bundle(folder, ModelConfig(), sampler)
    assert components.image_size == 64
    conditions = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    frames = generate_frames(components.denoiser, components.scheduler, conditions, sampler)
    assert frames.shape == (2, 3, 64, 64) and torch.isfinite(frames).all()


def test_anchor_distill_body_writes_a_student_bundle(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = tmp_path / "teacher"
    assert main(["train", "body", "--data", str(synth_root / "train"), "--out", str(teacher),
                 "--steps", "1", "--batch-size", "2", "--checkpoint-every", "10"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "student"
    arguments = ["distill", "body", "--teacher", str(teacher / "final"), "--data",
                 str(synth_root / "train"), "--out", str(out), "--steps", "2", "--batch-size",
                 "2", "--checkpoint-every", "1", "--solver-steps", "10", "--strength", "0.5",
                 "--guidance-scale", "2", "--student-steps", "1"]  # fmt: skip
    assert main(arguments) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["final"] == str(out / "final")
    assert "distill body" in captured.err  # the progress bar
    meta = json.loads((out / "final" / "bundle.json").read_text())
    assert (meta["scheduler"], meta["steps"], meta["lcm_strength"]) == ("lcm", 1, 0.5)
    assert meta["distilled"]["guidance_scale_baked"] == 2.0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-000001",
                                                               "checkpoint-000002"]  # fmt: skip
    _bundle_generates_frames(out / "final")
    # Bad input is named, with no traceback.
    assert main(["distill", "face", *arguments[2:]]) == 1
    assert "--teacher" in capsys.readouterr().err
    assert main([*arguments[:-6], "--strength", "0.01"]) == 1
    assert "--strength" in capsys.readouterr().err


def test_anchor_bench_distill_names_a_missing_teacher(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's face is a distilled student whose teacher is not shipped: the bench says
    so and asks for --teacher instead of failing on a missing folder. Its rows would be
    face rows only (the demo's body is not distilled)."""
    from bench.distill import plan_rows

    assert main(["bench", "distill", "--json"]) == 1
    assert "pass --teacher" in capsys.readouterr().err
    rows = plan_rows(None, 1.0, face_strength=0.5, steps=(2,))
    assert {row["part"] for row in rows} == {"face"} and len(rows) == 4
