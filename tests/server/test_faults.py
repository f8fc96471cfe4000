"""``anchor serve`` under faults: a hard kill leaves a playable recording holding every
credited frame; SIGTERM with idle clients connected exits within the 10 s the product
promises, having told them why (1001, ``ended``)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest
from serverkit import SECRET, tiny_config
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.e2e import free_port, start_server
from clients.producer_client import MotionProducer
from clients.viewer_client import ViewerProbe
from model.motion.demo_loop import demo_frames
from server.app import SHUTDOWN_S
from server.media import read_seq
from server.tokens import mint_token


def _serve(tmp_path: Path) -> tuple[Any, Any]:
    config = tiny_config(tmp_path, port=free_port(), host="127.0.0.1")
    return config, start_server(config, tmp_path / "server.log")


def _url(port: int, kind: str) -> str:
    role = "producer" if kind == "motion" else "viewer"
    token = mint_token(SECRET, "s1", role, 300)  # type: ignore[arg-type]
    return f"ws://127.0.0.1:{port}/sessions/s1/{kind}?token={token}"


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["kill -9", "two SIGTERMs"])
def test_hard_stops_leave_every_credited_frame_playable(tmp_path: Path, stop: str) -> None:
    config, process = _serve(tmp_path)
    credited: list[int] = []

    async def produce() -> None:
        async with MotionProducer(_url(config.server.port, "motion")) as producer:
            await producer.start()
            sending = asyncio.create_task(producer.send_frames(demo_frames(0, 400)))
            try:
                # Two fragments on disk (the tiny preset records 30 frames per fragment).
                await producer.wait_for(lambda: len(producer.committed) >= 45, 240.0)
                if stop == "kill -9":
                    process.kill()  # SIGKILL: nothing gets to run
                else:  # the second exits at once, whatever the first was doing
                    process.send_signal(signal.SIGTERM)
                    await asyncio.sleep(0.3)
                    process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
                credited.extend(producer.committed)
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)

    try:
        asyncio.run(produce())
    finally:
        if process.poll() is None:
            process.kill()
    (recording,) = sorted((tmp_path / "recordings").glob("s1-*.mp4"))
    with av.open(str(recording)) as container:
        seqs = [read_seq(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    assert credited == list(range(len(credited)))
    assert seqs[: len(credited)] == credited, "a credited frame is missing from the recording"
    assert seqs == list(range(len(seqs)))
    motion_log = recording.with_suffix(".motion.jsonl")
    assert len(motion_log.read_text().splitlines()) >= len(credited)


@pytest.mark.slow
def test_sigterm_with_idle_clients_exits_within_the_bound(tmp_path: Path) -> None:
    config, process = _serve(tmp_path)
    port = config.server.port
    closes: list[int | None] = []
    ended: list[dict[str, Any]] = []
    elapsed: list[float] = []

    async def idle() -> None:
        async with MotionProducer(_url(port, "motion")) as producer:
            await producer.start()
            await producer.send_frames(demo_frames(0, 5))
            # A viewer that connects and never says anything, and one that never reads.
            silent = await connect(_url(port, "view"))
            deaf = await connect(_url(port, "view"), max_queue=1)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 60)
            elapsed.append(time.monotonic() - signalled)
            await producer.wait_for(lambda: producer.closed, 10.0)
            ended.append(producer.ended or {})
            for connection in (silent, deaf):
                try:
                    while True:
                        await asyncio.wait_for(connection.recv(), 5.0)
                except ConnectionClosed:
                    pass
                closes.append(connection.close_code)

    try:
        asyncio.run(idle())
    finally:
        if process.poll() is None:
            process.kill()
    # The product's contract (SIGTERM -> exit within 10 s), so it is asserted here.
    assert elapsed[0] < SHUTDOWN_S
    assert process.returncode == 0
    assert ended[0].get("reason") == "shutdown"
    assert closes == [1001, 1001]


STALL_S = 4.0
# How far behind the server's clock a resumed viewer's first frames may be (the live
# edge's staleness bound plus jitter), far less than the stall.
LIVE_EDGE_S = 1.5


@pytest.mark.slow
def test_a_stalled_viewer_resumes_at_the_live_edge(tmp_path: Path) -> None:
    """A viewer whose event loop blocks for STALL_S (nothing read: UDP and WebSocket back up
    in the kernel) resumes with current frames, not the backlog, and stays connected."""
    config, process = _serve(tmp_path)
    port = config.server.port
    commits: list[tuple[float, int]] = []  # (monotonic time, newest committed seq)
    resumed: list[float] = []
    report: dict[str, Any] = {}
    producing = threading.Event()
    done = threading.Event()

    def viewer() -> None:
        async def watch() -> None:
            probe = ViewerProbe(_url(port, "view"))
            await probe.connect()
            try:
                await probe.wait_seq(1, 120.0)
                report["before"] = len(probe.frames)
                time.sleep(STALL_S)  # noqa: ASYNC251 - the point: the whole viewer stops reading
                resumed.append(time.monotonic())
                await probe.wait_frames(report["before"] + 60, 60.0)
                report["frames"] = list(probe.frames)
                report["messages"] = list(probe.messages)
                assert probe._socket is not None
                report["close_code"] = probe._socket.close_code
                report["stale"] = probe.live_edge.stale if probe.live_edge else None
            finally:
                await probe.close()

        try:
            producing.wait(120.0)
            asyncio.run(watch())
        finally:
            done.set()

    async def produce() -> None:
        async with MotionProducer(_url(port, "motion")) as producer:
            await producer.start()
            sending = asyncio.create_task(producer.send_frames(demo_frames(0, 3000), fps=30))
            producing.set()
            try:
                while not done.is_set():
                    if producer.committed:
                        commits.append((time.monotonic(), producer.committed[-1]))
                    await asyncio.sleep(0.05)
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)

    thread = threading.Thread(target=viewer, name="stalled-viewer")
    thread.start()
    try:
        asyncio.run(produce())
    finally:
        thread.join(60)
        process.kill()
    assert resumed and "frames" in report, "the viewer did not receive again after its stall"
    live = max(seq for at, seq in commits if at <= resumed[0])
    frames = report["frames"]
    # Video pts is the server's send clock (90 kHz): what it sent during the stall, but
    # for its last LIVE_EDGE_S, is backlog that a viewer at the live edge never shows.
    backlog_end = frames[report["before"] - 1].pts + (STALL_S - LIVE_EDGE_S) * 90_000
    old = [f.seq for f in frames[report["before"] :] if f.pts < backlog_end]
    assert len(old) <= 3, f"a burst of {len(old)} old frames after the stall: {old[:20]}"
    after = [f.seq for f in frames[report["before"] :] if f.seq is not None]
    assert after[-1] > live, "the viewer did not follow the live edge after resuming"
    assert report["stale"] and report["stale"] > 0  # the backlog was there, and dropped
    assert report["close_code"] is None
    assert not [m for m in report["messages"] if m.get("type") in ("ended", "error")]
