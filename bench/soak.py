"""``anchor bench soak``: a producer at the stream's fps and N viewers against one
``anchor serve`` subprocess for S seconds, with the recording on.

Reports the server's RSS and thread count over time, committed fps, the frames accepted,
skipped (live rate control) and committed (credited back, i.e. on disk), the recording's
frame count and duration, and whether every committed frame is in the recording exactly
once and in order (frames carry their seq as a barcode, ``server.stamp_seq``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import av

from app.config import AppConfig
from app.demo import demo_config, with_demo_model
from bench.e2e import free_port, rss_mb, start_server
from bench.fuzzstorm import storm
from clients.producer_client import MotionProducer
from clients.viewer import abnormal_end
from clients.viewer_client import ViewerProbe
from model.motion.demo_loop import demo_frames
from server.media import read_seq
from server.tokens import mint_token

SAMPLE_PERIOD_S = 5.0
SESSION = "soak"
FUZZ_SESSION = "soak-fuzz"
# After a fuzz storm, the server gets this long before its RSS is read again.
FUZZ_SETTLE_S = 10.0


def threads(pid: int) -> int:
    """Threads of ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return -1


def recording_figures(path: Path) -> tuple[list[int | None], float]:
    """(seq of each recorded frame, video duration in seconds)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        seqs: list[int | None] = []
        first = last = None
        for frame in container.decode(stream):
            seqs.append(read_seq(frame.to_ndarray(format="rgb24")))
            if frame.pts is None or frame.time_base is None:
                continue
            seconds = float(frame.pts * frame.time_base)
            first = seconds if first is None else first
            last = seconds
    duration = (last - first) if first is not None and last is not None else 0.0
    return seqs, round(duration, 3)


async def _sample(pid: int, started: float, samples: list[dict[str, Any]]) -> None:
    while True:
        samples.append(
            {
                "t_s": round(time.monotonic() - started, 1),
                "rss_mb": rss_mb(pid),
                "threads": threads(pid),
            }
        )
        await asyncio.sleep(SAMPLE_PERIOD_S)


async def _fuzz_midway(
    config: AppConfig, pid: int, seconds: float, count: int, figures: dict[str, Any]
) -> None:
    """Halfway through the soak, ``count`` malformed messages; RSS before and after."""
    secret, port = config.server.token_secret, config.server.port
    base = f"ws://127.0.0.1:{port}/sessions/{FUZZ_SESSION}"
    producer = f"{base}/motion?token={mint_token(secret, FUZZ_SESSION, 'producer', 3600)}"
    viewer = f"{base}/view?token={mint_token(secret, FUZZ_SESSION, 'viewer', 3600)}"
    await asyncio.sleep(seconds / 2)
    figures["rss_before_fuzz_mb"] = rss_mb(pid)
    started = time.monotonic()
    figures["fuzz_answered"] = await storm(producer, viewer, count, config.server.max_message_bytes)
    figures["fuzz_s"] = round(time.monotonic() - started, 1)
    figures["rss_peak_fuzz_mb"] = rss_mb(pid)
    await asyncio.sleep(FUZZ_SETTLE_S)
    figures["rss_after_fuzz_mb"] = rss_mb(pid)


async def soak(
    config: AppConfig, pid: int, seconds: float, viewers: int, fuzz: int = 0
) -> dict[str, Any]:
    """Stream for ``seconds`` with ``viewers``; ``fuzz``: malformed messages sent midway."""
    secret, port = config.server.token_secret, config.server.port
    base = f"ws://127.0.0.1:{port}/sessions/{SESSION}"
    fps = config.render.fps
    probes = [
        ViewerProbe(f"{base}/view?token={mint_token(secret, SESSION, 'viewer', 3600)}")
        for _ in range(viewers)
    ]
    samples: list[dict[str, Any]] = []
    producer = MotionProducer(
        f"{base}/motion?token={mint_token(secret, SESSION, 'producer', 3600)}"
    )
    started = time.monotonic()
    sampler = asyncio.create_task(_sample(pid, started, samples))
    fuzz_figures: dict[str, Any] = {}
    fuzzing: asyncio.Task[None] | None = None
    try:
        # All at once: viewers joining together is one of the loads this soak checks.
        await asyncio.gather(*(probe.connect() for probe in probes))
        async with producer:
            await producer.start()
            if fuzz:
                fuzzing = asyncio.create_task(
                    _fuzz_midway(config, pid, seconds, fuzz, fuzz_figures)
                )
            await producer.send_frames(demo_frames(count=round(seconds * fps)), fps=fps)
            sent_s = time.monotonic() - started
            if fuzzing is not None:
                await fuzzing
            ended = await producer.end()
    finally:
        for task in (sampler, fuzzing):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (sampler, fuzzing) if t), return_exceptions=True)
        close_codes = [probe.close_code for probe in probes]
        ends = [abnormal_end(probe) for probe in probes]
        for probe in probes:
            await probe.close()
    samples.append({"t_s": round(time.monotonic() - started, 1), "rss_mb": rss_mb(pid),
                    "threads": threads(pid)})  # fmt: skip
    committed = list(producer.committed)
    recording = ended.get("recording") if ended else None
    seqs, duration = recording_figures(Path(recording)) if recording else ([], 0.0)
    return {
        "seconds": seconds,
        "viewers": viewers,
        "fps": fps,
        "frames_sent": len(producer.acked),
        "accepted": (ended or {}).get("accepted"),
        "skipped": (ended or {}).get("skipped"),
        "committed": (ended or {}).get("committed"),
        "credited": len(committed),
        "committed_fps": round(((ended or {}).get("committed") or 0) / sent_s, 2),
        "dropped": len((ended or {}).get("dropped", [])),
        "errors": len(producer.errors),
        "recording_frames": len(seqs),
        "recording_duration_s": duration,
        "recording_exact": seqs == sorted(committed) and len(set(seqs)) == len(seqs),
        "viewer_frames": [len(probe.frames) for probe in probes],
        # Newest seq each viewer decoded: one that stopped receiving is far behind.
        "viewer_last_seq": [_last_seq(probe) for probe in probes],
        # Close code of each viewer's signaling socket before the bench closed it (None: open).
        "viewer_close_codes": close_codes,
        # Why each viewer's stream ended before the bench closed it (the server's fatal
        # error, the close code and reason, a failed peer), None: still streaming.
        "viewer_ends": ends,
        **fuzz_figures,
        "samples": samples,
    }


def _last_seq(probe: ViewerProbe) -> int | None:
    seqs = [frame.seq for frame in probe.frames if frame.seq is not None]
    return max(seqs) if seqs else None


async def run_bench(
    base: AppConfig, seconds: float, viewers: int, demo_model: bool, fuzz: int = 0
) -> dict[str, Any]:
    """Serve ``base`` (tiny networks unless ``demo_model``) in a subprocess and soak it."""
    port = free_port()
    config = demo_config(base, "127.0.0.1", port, tiny=not demo_model)
    if demo_model:
        config = with_demo_model(config)
    with tempfile.TemporaryDirectory(prefix="anchor-soak-") as folder:
        server: dict[str, Any] = {
            "stamp_seq": True,
            "recordings_dir": str(Path(folder) / "recordings"),
        }
        if fuzz:  # the storm is answered message by message: no rate limit in the way
            server.update(rate_limit_per_s=1e6, rate_limit_burst=1_000_000)
        config = config.model_copy(update={"server": config.server.model_copy(update=server)})
        process = start_server(config, Path(folder) / "server.log")
        try:
            return await soak(config, process.pid, seconds, viewers, fuzz)
        finally:
            process.terminate()
            process.wait(timeout=30)
