"""``anchor bench sampler`` prints its figures (values of time are never asserted)."""

from __future__ import annotations

import json

import pytest

from app.cli import main


def test_bench_sampler_prints_every_mode_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--set", "model.device=cpu",
        "--set", "model.image_size=16",
        "--set", "sampler.window_size=8",
        "--set", "sampler.overlap=2",
        "bench", "sampler", "--json", "--frames", "20", "--steps", "2",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["modes"]) == {"offline", "exact", "exact_unbatched", "exact_eager", "low"}
    assert report["exact_max_abs_diff_vs_offline"] <= 1e-4
    modes = report["modes"]
    evaluations = {name: figures["frame_evaluations_per_frame"] for name, figures in modes.items()}
    assert len(set(evaluations.values())) == 1  # every mode costs offline's model evaluations
    assert modes["low"]["latency_frames_measured"] == 7
    assert modes["exact_unbatched"]["mean_batch"] == 1.0 < modes["exact"]["mean_batch"]
