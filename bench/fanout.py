"""``anchor bench fanout``: server CPU per viewer, direct aiortc viewers vs through Janus.

A server runs as a subprocess (``anchor serve``, tiny preset, seq stamping); in the Janus
mode it also publishes every session into a local Janus VideoRoom (started and stopped
here, see bench.mediaservers). This process is the producer and the viewers: aiortc
peers of the server itself (direct) or VideoRoom subscribers (through Janus).

For each mode and viewer count a fresh session streams ``frames`` demo frames at 30 fps;
the CPU time (user + system, /proc/<pid>/stat) the server and Janus spend while they are
sent is divided by the wall time, giving cores. The 0-viewer row is the baseline (the
model, the playout and, through Janus, the one publishing encoder); CPU per viewer =
(cores with N viewers - baseline) / N.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.demo import demo_config
from bench.e2e import start_server
from bench.mediaservers import LocalJanus, free_port, process_cpu_seconds
from clients.producer_client import MotionProducer
from clients.viewer_client import JanusViewerProbe, ViewerProbe
from model.motion.demo_loop import demo_frames
from server.tokens import Role, mint_token

ROOM = 1234
WARMUP_FRAMES = 15


def _url(config: AppConfig, session: str, kind: str) -> str:
    role: Role = "producer" if kind == "motion" else "viewer"
    token = mint_token(config.server.token_secret, session, role, 600)
    return f"ws://127.0.0.1:{config.server.port}/sessions/{session}/{kind}?token={token}"


async def measure(
    config: AppConfig,
    mode: str,
    viewers: int,
    frames: int,
    server_pid: int,
    janus: LocalJanus | None,
) -> dict[str, Any]:
    """One row: ``viewers`` viewers of a fresh session while ``frames`` frames stream."""
    session = f"fanout-{mode}-{viewers}"
    fps = config.render.fps
    probes: list[ViewerProbe] = []
    async with MotionProducer(_url(config, session, "motion")) as producer:
        try:
            for _ in range(viewers):
                if janus is not None:
                    probe: ViewerProbe = JanusViewerProbe(
                        janus.url, audio=True, room=ROOM, display=session
                    )
                else:
                    probe = ViewerProbe(_url(config, session, "view"), audio=True)
                probes.append(probe)
                await probe.connect()
            await producer.start()
            await producer.send_frames(demo_frames(0, WARMUP_FRAMES), fps=fps)
            streaming = await _window(
                producer.send_frames(demo_frames(WARMUP_FRAMES, frames), fps=fps),
                probes,
                server_pid,
                janus,
            )
            await producer.end()
            # Between runs the live tracks go on (the last frame repeats): the same fan-out
            # work without the model's.
            idle = await _window(asyncio.sleep(frames / fps), probes, server_pid, janus)
        finally:
            for probe in probes:
                await probe.close()
    return {"mode": mode, "viewers": viewers, "streaming": streaming, "idle": idle}


async def _window(
    work: Any, probes: list[ViewerProbe], server_pid: int, janus: LocalJanus | None
) -> dict[str, Any]:
    """CPU of the server and Janus (cores) and the slowest viewer's fps while ``work`` runs."""
    counts = [len(probe.frames) for probe in probes]
    server_cpu = process_cpu_seconds(server_pid)
    janus_cpu = process_cpu_seconds(janus.pid) if janus is not None else 0.0
    started = time.monotonic()
    await work
    elapsed = time.monotonic() - started
    server_cores = (process_cpu_seconds(server_pid) - server_cpu) / elapsed
    janus_cores = (process_cpu_seconds(janus.pid) - janus_cpu) / elapsed if janus else 0.0
    received = [len(probe.frames) - count for probe, count in zip(probes, counts, strict=True)]
    return {
        "seconds": round(elapsed, 2),
        "server_cores": round(server_cores, 3),
        "janus_cores": round(janus_cores, 3),
        "viewer_fps": round(min(received) / elapsed, 1) if received else None,
    }


def _per_viewer(rows: list[dict[str, Any]]) -> None:
    """Add CPU per viewer (ms of CPU per second) against the mode's 0-viewer row."""
    for row in rows:
        if row["viewers"] == 0:
            continue
        baseline = next(r for r in rows if r["mode"] == row["mode"] and r["viewers"] == 0)
        for phase in ("streaming", "idle"):
            for process in ("server", "janus"):
                extra = row[phase][f"{process}_cores"] - baseline[phase][f"{process}_cores"]
                row[phase][f"{process}_ms_per_viewer_s"] = round(1000.0 * extra / row["viewers"], 2)


async def _run_mode(
    base: AppConfig, mode: str, counts: list[int], frames: int, folder: Path
) -> list[dict[str, Any]]:
    with ExitStack() as stack:
        janus = None
        config = demo_config(base, "127.0.0.1", free_port(), tiny=True)
        config = config.model_copy(
            update={"server": config.server.model_copy(update={"stamp_seq": True})}
        )
        if mode == "janus":
            janus = stack.enter_context(LocalJanus(folder / "janus"))
            broadcast = config.broadcast.model_copy(
                update={"janus_url": janus.url, "janus_room": ROOM, "retry_s": 1.0}
            )
            config = config.model_copy(update={"broadcast": broadcast})
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        process = start_server(config, folder / "server.log")
        try:
            return [
                await measure(config, mode, count, frames, process.pid, janus) for count in counts
            ]
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 60)


async def run_bench(base: AppConfig, viewer_counts: list[int], frames: int) -> dict[str, Any]:
    """Measure 0 + ``viewer_counts`` viewers, direct and through Janus."""
    counts = [0, *sorted({count for count in viewer_counts if count > 0})]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="anchor-bench-fanout-") as folder:
        for mode in ("direct", "janus"):
            rows += await _run_mode(base, mode, counts, frames, Path(folder) / mode)
    _per_viewer(rows)
    config = demo_config(base, "127.0.0.1", 0, tiny=True)
    return {
        "preset": config.model.preset,
        "resolution": f"{config.render.width}x{config.render.height}",
        "fps": config.render.fps,
        "frames": frames,
        "runs": rows,
    }


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value


def format_table(results: dict[str, Any]) -> str:
    lines = [
        f"fan-out, {results['preset']} preset {results['resolution']} at {results['fps']} fps, "
        f"{results['frames']} frames per row; CPU in cores, per viewer in ms of CPU per second;",
        "streaming = while frames are rendered, idle = live tracks only (between runs)",
        f"{'mode':<7} {'phase':<9} {'viewers':>7} {'server':>7} {'janus':>6} "
        f"{'server/viewer':>13} {'janus/viewer':>12} {'viewer fps':>10}",
    ]
    for row in results["runs"]:
        for phase in ("streaming", "idle"):
            cells = row[phase]
            lines.append(
                f"{row['mode']:<7} {phase:<9} {row['viewers']:>7} {cells['server_cores']:>7.3f} "
                f"{cells['janus_cores']:>6.3f} {cells.get('server_ms_per_viewer_s', ''):>13} "
                f"{cells.get('janus_ms_per_viewer_s', ''):>12} "
                f"{_blank_if_none(cells['viewer_fps']):>10}"
            )
    return "\n".join(lines)
