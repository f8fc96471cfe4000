"""``anchor bench e2e``: glass-to-glass latency on loopback with the tiny preset.

A server runs as a subprocess (``anchor serve`` with the demo defaults plus seq stamping);
this process is the producer and 1..N aiortc viewers. Latency of a frame = time its motion
frame was sent -> time a viewer decoded the video frame whose barcode carries that seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.demo import demo_config, with_demo_model
from clients.producer_client import MotionProducer
from clients.viewer_client import ViewerProbe
from model.motion.demo_loop import demo_frames
from server.tokens import mint_token

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def overrides(config: AppConfig) -> list[str]:
    """``--set`` arguments reproducing ``config`` in a subprocess: ``model.preset`` (which
    decides whether the embedded default model applies) and every field that differs from
    the section defaults, JSON-encoded (what ``--set`` parses)."""
    defaults = AppConfig().model_dump(mode="json")
    defaults["model"].pop("preset")
    args: list[str] = []
    for section, fields in config.model_dump(mode="json").items():
        for name, value in fields.items():
            if defaults[section].get(name) != value:
                args += ["--set", f"{section}.{name}={json.dumps(value)}"]
    return args


def start_server(config: AppConfig, log_path: Path) -> Any:
    """``anchor serve`` in a subprocess; returns the Popen once /healthz answers."""
    import subprocess

    command = [sys.executable, "-m", "app.cli", *overrides(config), "serve"]
    log = log_path.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{config.server.port}/healthz"
    deadline = time.monotonic() + 180.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log_path}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2.0) as response:
            if response.status == 200:
                return process
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not answer {url}; see {log_path}")


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024.0, 1)
    return float("nan")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(config: AppConfig, session: str, viewers: int, frames: int) -> dict[str, Any]:
    secret, port = config.server.token_secret, config.server.port
    base = f"ws://127.0.0.1:{port}/sessions/{session}"
    probes = [
        ViewerProbe(f"{base}/view?token={mint_token(secret, session, 'viewer', 600)}")
        for _ in range(viewers)
    ]
    producer = MotionProducer(f"{base}/motion?token={mint_token(secret, session, 'producer', 600)}")
    try:
        for probe in probes:
            await probe.connect()
        async with producer:
            await producer.start()
            started = time.monotonic()
            await producer.send_frames(demo_frames(count=frames), fps=config.render.fps)
            await producer.end()
            # The last frame the pipeline rendered (rate control may have skipped later ones).
            skipped = set(producer.skipped)
            last = max(seq for seq in range(frames) if seq not in skipped)
            for probe in probes:
                await probe.wait_seq(last, 120.0)
            elapsed = time.monotonic() - started
    finally:
        for probe in probes:
            await probe.close()
    latencies: list[float] = []
    delivered: list[float] = []
    distinct: list[float] = []
    for probe in probes:
        first_seen: dict[int, float] = {}
        stamped = [frame for frame in probe.frames if frame.seq is not None]
        for frame in stamped:
            assert frame.seq is not None
            first_seen.setdefault(frame.seq, frame.received_at)
        for seq, seen in first_seen.items():
            if seq in producer.sent_at:
                latencies.append((seen - producer.sent_at[seq]) * 1000.0)
        span = max(stamped[-1].received_at - stamped[0].received_at, 1e-6)
        delivered.append(len(stamped) / span)
        distinct.append(len(first_seen) / span)
    return {
        "viewers": viewers,
        "frames": frames,
        "elapsed_s": round(elapsed, 2),
        "latency_ms_median": round(statistics.median(latencies), 1),
        "latency_ms_p90": round(_percentile(latencies, 0.9), 1),
        "delivered_fps": round(statistics.mean(delivered), 1),
        "distinct_fps": round(statistics.mean(distinct), 1),
        "skipped_frames": len(producer.skipped),
    }


async def run_bench(
    base: AppConfig, viewer_counts: list[int], frames: int, demo_model: bool = False
) -> dict[str, Any]:
    """Measure each viewer count on a fresh session of one server subprocess: the tiny
    preset, or with ``demo_model`` the trained demo bundle exactly as ``anchor demo`` runs it."""
    port = free_port()
    config = demo_config(base, "127.0.0.1", port, tiny=not demo_model)
    if demo_model:
        config = with_demo_model(config)
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"stamp_seq": True})}
    )
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"anchor-bench-e2e-{port}.log"
    process = start_server(config, log_path)
    runs = []
    try:
        # A first session pays the model's warm-up (first forwards, allocator growth); a live
        # server pays it once, so it is reported apart and the runs below measure a warm one.
        cold = await measure(config, "warmup", 1, min(frames, 60))
        for count in viewer_counts:
            row = await measure(config, f"bench{count}", count, frames)
            row["server_rss_mb"] = rss_mb(process.pid)
            runs.append(row)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)
    return {
        "preset": config.model.preset,
        "face": config.face.enabled,
        "resolution": f"{config.render.width}x{config.render.height}",
        "fps": config.render.fps,
        "max_lag_s": config.server.max_lag_s,
        "sampler": {
            "mode": config.sampler.mode,
            "steps": config.sampler.steps,
            "window_size": config.sampler.window_size,
            "overlap": config.sampler.overlap,
        },
        "cold_start": cold,
        "runs": runs,
    }
