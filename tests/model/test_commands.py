"""``anchor bench model`` end to end on the tiny preset."""

from __future__ import annotations

import json

import pytest

from app.cli import main


def test_bench_model_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "model", "--json", "--latent-sizes", "2", "--repeats", "1"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["results"]
    assert {(r["attention"], r["cached_conditioning"]) for r in rows} == {
        (mode, cached) for mode in ("all-frame", "per-frame", "sparse") for cached in (True, False)
    }
    assert all(r["latent_size"] == 2 and r["ms_per_call"] > 0 for r in rows)
