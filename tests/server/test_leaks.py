"""Runs and sessions release what they held: encoder and recorder threads, pipeline
threads and the metrics label sets of removed sessions."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from serverkit import SECRET, run_with_server, tiny_config

from clients.producer_client import MotionProducer
from model.motion.demo_loop import demo_frames
from server.tokens import mint_token

RUNS = 20


def native_threads() -> int:
    """Threads of this process, native ones (x264's) included (Linux /proc), less the
    event loop's executor workers (a pool that grows to its bound on demand, not per run)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            pool = sum(t.name.startswith("asyncio_") for t in threading.enumerate())
            return int(line.split()[1]) - pool
    raise AssertionError("no Threads line in /proc/self/status")


def session_labels(server: Any) -> set[str]:
    text = server.metrics.render().decode()
    return {
        f"{sample.name}:{sample.labels['session']}"
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "session" in sample.labels
    }


async def one_run(server: Any, session: str) -> dict[str, Any]:
    token = mint_token(SECRET, session, "producer", 300)
    url = f"ws://127.0.0.1:{server.port}/sessions/{session}/motion?token={token}"
    async with MotionProducer(url) as producer:
        await producer.start()
        await producer.send_frames(demo_frames(0, 6))
        return await producer.end()


def test_twenty_runs_leave_no_threads_or_labels(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, max_lag_s=0.001)  # some frames skipped: that label too
    counts: dict[str, Any] = {}

    async def body(server: Any) -> None:
        await one_run(server, "warmup")  # model, encoder libraries and pools loaded once
        gc.collect()
        counts["before"] = native_threads()
        for index in range(RUNS):
            ended = await one_run(server, f"run{index}")
            counts.setdefault("recordings", []).append(ended["recording"])
        for _ in range(200):  # the last session is removed once its handler has returned
            if not server.sessions:
                break
            await asyncio.sleep(0.05)
        counts["after"] = native_threads()  # no gc pass: release must be deterministic
        counts["labels"] = session_labels(server)
        counts["sessions"] = set(server.sessions)

    run_with_server(config, body)
    assert all(path is not None and Path(path).exists() for path in counts["recordings"])
    assert counts["sessions"] == set()
    assert counts["labels"] == set(), counts["labels"]
    assert counts["after"] <= counts["before"], counts
