"""``anchor bench quality``: the demo bundle's ablation rows scored against ground truth."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from app.cli import main
from app.config import AppConfig
from bench.quality import VARIANTS, bench_quality, format_report
from model.errors import AnchorError

DEMO = Path(__file__).resolve().parents[2] / "clients" / "models" / "demo"


def test_rows_reproduce_the_paper_tables(synth_root: Path) -> None:
    report = bench_quality(AppConfig(), DEMO, synth_root / "heldout", 12, ["full", "w/o FE"])
    full, no_face = report["rows"]
    assert report["frames"] == 12
    assert (full["mode"], full["attention"], full["window_size"], full["overlap"]) == (
        "exact",
        "all-frame",
        16,
        4,
    )
    assert full["face"] and not no_face["face"]
    for row in (full, no_face):
        metrics = row["metrics"]
        assert 0.3 < metrics["ssim"] <= 1.0 and metrics["psnr"] > 12.0
        assert 0.0 < metrics["l1"] < 0.5 and "flicker_difference" in metrics
        assert 0.0 < metrics["face_ssim"] <= 1.0
        # no feature networks are configured here: listed with the field to set
        assert "eval.lpips_weights" in row["skipped"]["lpips"]
    # the face stage regenerates the face crops: they differ with and without it
    assert full["metrics"]["face_psnr"] != no_face["metrics"]["face_psnr"]
    text = format_report(report)
    assert "w/o FE" in text and "face_ssim" in text and "not computed: fid" in text


def test_detected_faces_row_reports_the_detection_rate(
    synth_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The face geometry from the detector on the condition renders, as for a condition
    folder: the row carries the detection rate the log line reports; mesh rows carry None."""
    with caplog.at_level(logging.INFO, logger="anchor.face"):
        report = bench_quality(
            AppConfig(), DEMO, synth_root / "heldout", 8, ["w/o FE", "detected faces"], steps=1
        )
    no_face, detected = report["rows"]
    assert no_face["face_detection_rate"] is None
    assert detected["face"] and detected["window_size"] == 16
    rate = detected["face_detection_rate"]
    found = re.search(r"face detection: (\d+) of 8 condition images", caplog.text)
    assert found is not None and rate == int(found.group(1)) / 8
    assert 0.0 < detected["metrics"]["ssim"] <= 1.0
    assert f"detected faces: faces detected on {100 * rate:.0f}%" in format_report(report)


def test_unknown_variant_and_missing_data_are_named(tmp_path: Path) -> None:
    with pytest.raises(AnchorError, match=r"unknown \['nope'\]"):
        bench_quality(AppConfig(), DEMO, tmp_path, 12, ["nope"])
    with pytest.raises(AnchorError, match=r"no held-out synthetic dataset.*synth-dataset"):
        bench_quality(AppConfig(), DEMO, tmp_path, 12, [VARIANTS[0].name])


def test_cli_writes_json(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "quality.json"
    code = main(
        ["bench", "quality", "--heldout", str(synth_root / "heldout"), "--frames", "8",
         "--variants", "live demo", "--steps", "1", "--json", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert [row["variant"] for row in printed["rows"]] == ["live demo"]
    assert printed["steps"] == 1


def test_bench_presets_runs_a_preset_on_the_demo_weights(synth_root: Path) -> None:
    from bench.presets import bench_presets
    from bench.presets import format_report as format_presets

    report = bench_presets(None, [], synth_root / "heldout", 8, ["cpu-tiny"])
    assert report["weights"].startswith("demo bundle")
    (row,) = report["rows"]
    assert row["preset"] == "cpu-tiny" and row["mode"] == "exact" and row["face"]
    assert row["ms_per_frame"] > 0 and row["latency_frames"] == row["window_size"] - 1
    assert 0.3 < row["ssim"] <= 1.0 and 0.0 < row["face_ssim"] <= 1.0
    assert "cpu-tiny" in format_presets(report)
