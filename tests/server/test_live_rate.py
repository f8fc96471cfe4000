"""Live rate control: a producer faster than the pipeline gets bounded latency, not a backlog.

``RateControl`` is checked against a simulated pipeline queue; the server path runs a real
server and producer over websockets with a pipeline that renders at a fixed 10 frames/s.
That pipeline is a stand-in for *a slow machine* (the real one is faster than its
producer here); the rate control under test sees only its backlog, as with the real one.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serverkit import SECRET, run_with_server, tiny_config

from clients.producer_client import MotionProducer
from model.motion.demo_loop import demo_frames
from server.live_rate import RateControl
from server.tokens import mint_token
from streaming.pipeline import OutputFrame, PipelineSink


def simulate(control: RateControl | None, arrive_fps: float, take_fps: float, frames: int):
    """Frames arrive at ``arrive_fps``; the worker takes one every 1/take_fps.

    Returns (kept frame indices, largest backlog seen)."""
    kept: list[int] = []
    backlog, capacity, worst = 0, 0.0, 0
    for index in range(frames):
        # the worker's capacity since the last arrival; an idle worker banks at most one frame
        capacity += take_fps / arrive_fps
        served = min(backlog, int(capacity))
        backlog -= served
        capacity = min(capacity - served, 1.0) if backlog == 0 else capacity - served
        if control is None or control.admit(backlog):
            kept.append(index)
            backlog += 1
        worst = max(worst, backlog)
    return kept, worst


def test_rate_control_converges_to_the_pipeline_rate() -> None:
    control = RateControl(max_backlog=6)
    kept, worst = simulate(control, arrive_fps=30.0, take_fps=12.0, frames=900)
    _, unbounded = simulate(None, arrive_fps=30.0, take_fps=12.0, frames=900)
    assert unbounded > 500  # without control the backlog grows with the run
    assert worst <= 6 + 10  # with it, the backlog stays near its bound
    second_half = [index for index in kept if index >= 450]
    assert len(second_half) / 450 == pytest.approx(12.0 / 30.0, rel=0.15)
    # skips are spread out: never more than ceil(1 / min_keep) in a row
    gaps = [later - earlier for earlier, later in itertools.pairwise(kept)]
    assert max(gaps) <= int(np.ceil(1 / control.min_keep))


def test_rate_control_keeps_every_frame_when_the_pipeline_keeps_up() -> None:
    control = RateControl(max_backlog=6)
    kept, worst = simulate(control, arrive_fps=30.0, take_fps=35.0, frames=300)
    assert kept == list(range(300)) and control.skipped == 0 and worst <= 1


class _FixedRatePipeline:
    """A session pipeline that finishes one frame every ``1 / fps`` seconds (a thread)."""

    def __init__(self, sink: PipelineSink, fps: float) -> None:
        self.sink, self.period = sink, 1.0 / fps
        self.latency_frames = 2
        self.jobs: queue.Queue[Any] = queue.Queue()
        self.max_backlog_seen = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (motion := self.jobs.get()) is not None:
            if motion == "end":
                self.sink.ended()
                continue
            time.sleep(self.period)
            image = np.zeros((64, 64, 3), dtype=np.uint8)
            self.sink.frames([OutputFrame(motion.seq, motion.pts, image, time.monotonic())])

    def submit(self, motion: Any) -> None:
        self.jobs.put(motion)
        self.max_backlog_seen = max(self.max_backlog_seen, self.jobs.qsize())

    def end(self) -> None:
        self.jobs.put("end")

    def clear(self) -> None:
        pass

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(5.0)

    def queue_depths(self) -> dict[str, int]:
        return {"backlog": self.jobs.qsize()}


class _FixedRateFactory:
    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.pipelines: list[_FixedRatePipeline] = []

    def create(self, session_id: str, identity: Any, sink: PipelineSink) -> _FixedRatePipeline:
        self.pipelines.append(_FixedRatePipeline(sink, self.fps))
        return self.pipelines[-1]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("max_lag_s", [None, 0.1])
def test_server_skips_frames_instead_of_queueing_them(tmp_path: Path, max_lag_s: Any) -> None:
    frames = 75
    config = tiny_config(tmp_path, max_lag_s=max_lag_s, max_in_flight=200, recordings_dir=None)
    factory = _FixedRateFactory(fps=10.0)
    result: dict[str, Any] = {}

    async def body(server: Any) -> None:
        token = mint_token(SECRET, "s1", "producer", 60)
        url = f"ws://127.0.0.1:{server.port}/sessions/s1/motion?token={token}"
        async with MotionProducer(url) as producer:
            await producer.start()
            await producer.send_frames(demo_frames(0, frames), fps=30.0)
            result["ended"] = await producer.end()
            result["skipped"] = list(producer.skipped)
            result["errors"] = list(producer.errors)

    run_with_server(config, body, factory=factory)
    ended, pipeline = result["ended"], factory.pipelines[0]
    assert result["errors"] == []
    assert ended["accepted"] == frames
    assert ended["committed"] + ended["skipped"] == frames
    assert sorted(result["skipped"]) == result["skipped"]
    assert len(result["skipped"]) == ended["skipped"]
    if max_lag_s is None:  # every frame queued: the backlog grows with the run
        assert ended["skipped"] == 0 and pipeline.max_backlog_seen > 30
    else:  # one stride (3) + 0.1 s (3 frames) of backlog allowed, plus the reaction time
        assert ended["skipped"] > frames // 3
        assert pipeline.max_backlog_seen <= 3 + 3 + 8
