"""``anchor bench soak`` end to end at a small size: a real ``anchor serve`` subprocess, a
producer and two viewers; the report says each viewer's stream is still going."""

from __future__ import annotations

import asyncio

import pytest

from app.config import load_config
from bench.soak import run_bench


@pytest.mark.slow
def test_soak_reports_an_exact_recording_and_why_viewers_ended() -> None:
    results = asyncio.run(run_bench(load_config(), seconds=4.0, viewers=2, demo_model=False))
    assert results["errors"] == 0 and results["dropped"] == 0
    assert results["committed"] == results["credited"] == results["recording_frames"] > 0
    assert results["recording_exact"]
    # Both viewers decoded frames and nothing ended their streams before the bench did.
    assert all(seq is not None for seq in results["viewer_last_seq"])
    assert results["viewer_ends"] == [None, None]
    assert results["viewer_close_codes"] == [None, None]
    assert results["samples"] and all(sample["rss_mb"] > 0 for sample in results["samples"])
