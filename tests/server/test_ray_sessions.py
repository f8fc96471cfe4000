"""Session workers as Ray actors: a real local Ray instance (2 CPUs), a real server, a
websockets producer and an aiortc viewer; the tiny preset runs inside the actors.

One Ray instance serves the whole module (it takes seconds to start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from serverkit import SECRET, run_with_server, tiny_config

from app.config import AppConfig
from bench.e2e import free_port, overrides
from clients.producer_client import MotionProducer, ProducerError
from clients.viewer_client import ViewerProbe
from model.errors import AnchorError
from model.motion.demo_loop import demo_frames
from server.media import read_seq
from server.tokens import mint_token
from streaming.ray_pipeline import RayPipelineFactory, RaySession

ROOT = Path(__file__).resolve().parents[2]
RAY_CPUS = 2


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    # The actors import the project from its (editable) install: no working_dir upload.
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, namespace="anchor-tests")
    try:
        yield
    finally:
        ray.shutdown()


def ray_config(tmp_path: Path, **cluster: Any) -> AppConfig:
    config = tiny_config(tmp_path)
    settings: dict[str, Any] = {"ray_address": "auto", "num_cpus": 1.0}
    settings.update(cluster)
    config.cluster = config.cluster.model_validate(settings)
    return config


def ws_url(server: Any, session: str, kind: str) -> str:
    role = "producer" if kind == "motion" else "viewer"
    token = mint_token(server.config.server.token_secret, session, role, 120.0)  # type: ignore[arg-type]
    return f"ws://127.0.0.1:{server.port}/sessions/{session}/{kind}?token={token}"


def recorded_seqs(path: Path) -> list[int | None]:
    with av.open(str(path)) as container:
        return [read_seq(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def ray_pipeline(server: Any, session: str) -> RaySession:
    pipeline = server.sessions[session].run.pipeline
    assert isinstance(pipeline, RaySession)
    return pipeline


def test_front_process_stays_torch_free() -> None:
    """The factory module and the actor class load without torch (it loads in the actor)."""
    code = (
        "import sys\n"
        "import streaming.ray_pipeline, streaming.pipeline, server.app\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_cuda_model_without_gpus_is_refused_before_joining(tmp_path: Path) -> None:
    config = ray_config(tmp_path, num_gpus=0.0)
    config.model = config.model.model_copy(update={"device": "cuda"})
    with pytest.raises(AnchorError, match=r"cluster\.num_gpus is 0 but model\.device is 'cuda'"):
        RayPipelineFactory(config.pipeline)


@pytest.mark.slow
def test_serve_with_ray_local_streams_and_exits_cleanly(tmp_path: Path) -> None:
    """``anchor serve --ray local`` as a real process: its own Ray instance, one session
    through an actor, SIGTERM: exit 0 and a playable recording. (Runs before the module's
    shared instance starts: one Ray instance at a time on the test machine.)"""
    config = tiny_config(tmp_path, port=free_port())
    command = [sys.executable, "-m", "app.cli", *overrides(config), "serve", "--ray", "local"]
    log_path = tmp_path / "server.log"
    sent = 8
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(process, config.server.port, log_path)
        url = f"ws://127.0.0.1:{config.server.port}/sessions/s1/motion?token="
        url += mint_token(SECRET, "s1", "producer", 120.0)

        async def produce() -> dict[str, Any]:
            async with MotionProducer(url) as producer:
                await producer.start()
                await producer.send_frames(demo_frames(0, sent))
                return await producer.end()

        ended = asyncio.run(produce())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "error" not in ended, ended["error"]
    assert (ended["accepted"], ended["committed"]) == (sent, sent)
    assert recorded_seqs(Path(ended["recording"])) == list(range(sent))
    assert "worker placed on" in log_path.read_text()


def wait_healthy(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    """Wait until the server process answers /healthz (Ray starts first: seconds)."""
    for _ in range(600):
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}: {log_path.read_text()}")
        url = f"http://127.0.0.1:{port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2.0) as answer:
            if answer.status == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"server did not answer /healthz: {log_path.read_text()}")


def test_start_refused_when_the_cluster_lacks_the_resources(
    ray_cluster: None, tmp_path: Path
) -> None:
    config = ray_config(tmp_path, num_cpus=RAY_CPUS + 1)
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        async with MotionProducer(ws_url(server, "big", "motion")) as producer:
            with pytest.raises(ProducerError):
                await producer.start(limit_s=30.0)
            outcome["errors"] = list(producer.errors)
            outcome["run"] = server.sessions["big"].run

    run_with_server(config, body)
    [error] = outcome["errors"]
    assert "no worker capacity free" in error["message"]
    assert "cluster.num_cpus" in error["message"]
    assert outcome["run"] is None


def test_a_worker_not_ready_in_time_fails_its_session(ray_cluster: None, tmp_path: Path) -> None:
    """No actor starts Python, torch and the model in 50 ms: the run fails with the timeout."""
    config = ray_config(tmp_path, placement_timeout_s=0.05)
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        async with MotionProducer(ws_url(server, "slow", "motion")) as producer:
            await producer.start()
            await producer.wait_for(lambda: producer.ended is not None, 60.0)
            outcome["ended"] = producer.ended
            outcome["errors"] = list(producer.errors)
            outcome["factory_sessions"] = len(server.factory._sessions)

    run_with_server(config, body)
    [fatal] = outcome["errors"]
    assert fatal["fatal"] and "no worker was placed within 0.05 s" in fatal["message"]
    assert outcome["ended"]["reason"] == "error"
    assert outcome["factory_sessions"] == 0  # its actor is gone, its resources free


@pytest.mark.slow
def test_session_streams_through_an_actor_and_a_second_is_refused(
    ray_cluster: None, tmp_path: Path
) -> None:
    config = ray_config(tmp_path, max_workers=1)
    frames = 16
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        viewer = ViewerProbe(ws_url(server, "s1", "view"))
        try:
            async with (
                MotionProducer(ws_url(server, "s1", "motion")) as producer,
                MotionProducer(ws_url(server, "s2", "motion")) as refused,
            ):
                await producer.start()
                await viewer.connect()
                with pytest.raises(ProducerError):
                    await refused.start(limit_s=30.0)
                await producer.send_frames(demo_frames(0, frames))
                pipeline = ray_pipeline(server, "s1")
                outcome["placed"] = await asyncio.to_thread(pipeline.placed.wait, 60)
                outcome["worker_pid"] = pipeline.worker_info["pid"]
                # what the actor received: the model's settings, not the edge's secrets
                outcome["actor_sections"] = set(type(server.factory.config).model_fields)
                outcome["ended"] = await producer.end()
                outcome["errors"] = list(producer.errors)
                outcome["refused"] = list(refused.errors)
                await viewer.wait_seq(frames - 1, 60.0)
        finally:
            await viewer.close()
        outcome["viewed"] = [frame.seq for frame in viewer.frames if frame.seq is not None]

    run_with_server(config, body)
    assert outcome["placed"] and outcome["worker_pid"] != os.getpid()
    assert "server" not in outcome["actor_sections"] and config.server.token_secret
    ended = outcome["ended"]
    assert outcome["errors"] == [] and "error" not in ended
    assert (ended["accepted"], ended["committed"]) == (frames, frames)
    assert recorded_seqs(Path(ended["recording"])) == list(range(frames))
    assert outcome["viewed"] == sorted(outcome["viewed"]) and outcome["viewed"][-1] == frames - 1
    [refusal] = outcome["refused"]
    assert "cluster.max_workers" in refusal["message"]


@pytest.mark.slow
def test_killed_worker_ends_the_session_and_start_runs_on_a_new_one(
    ray_cluster: None, tmp_path: Path
) -> None:
    import ray

    config = ray_config(tmp_path)
    frames, before_kill = 24, 6
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        viewer = ViewerProbe(ws_url(server, "s1", "view"))
        try:
            await kill_and_restart(server, viewer)
        finally:
            await viewer.close()

    async def kill_and_restart(server: Any, viewer: ViewerProbe) -> None:
        async with MotionProducer(ws_url(server, "s1", "motion")) as producer:
            await producer.start()
            await viewer.connect()
            first = ray_pipeline(server, "s1")
            # More frames than the sampler holds, fewer than the credits: all go out at once.
            await producer.send_frames(demo_frames(0, frames))
            # Committed and shown (credits return later, once a recording fragment is on disk).
            await viewer.wait_seq(before_kill, 120.0)
            outcome["first_pid"] = first.worker_info["pid"]
            await asyncio.to_thread(ray.kill, first.actor)
            await producer.wait_for(lambda: producer.ended is not None, 60.0)
            outcome["ended"] = producer.ended
            outcome["errors"] = list(producer.errors)
            producer.errors.clear()
            await asyncio.sleep(0.5)  # the viewer's socket delivers the same two messages
            outcome["viewer_messages"] = [
                message for message in viewer.messages if message["type"] in ("error", "ended")
            ]
            # The producer starts the session again: a new actor serves it; a clear on the way
            # reaches it between the frames sent before and after.
            await producer.start()
            second = ray_pipeline(server, "s1")
            cleared: list[dict[str, Any]] = []
            producer.on_message = lambda message: (
                cleared.append(message) if message["type"] == "cleared" else None
            )
            await producer.send_frames(demo_frames(frames, 4))
            await producer.send_raw(json.dumps({"type": "clear"}))
            await producer.wait_for(lambda: bool(cleared), 30.0)
            await producer.send_frames(demo_frames(frames + 4, 6))
            outcome["second_pid"] = await asyncio.to_thread(
                lambda: second.placed.wait(60) and second.worker_info["pid"]
            )
            outcome["restarted"] = await producer.end()
            outcome["errors_after"] = list(producer.errors)

    run_with_server(config, body)
    ended = outcome["ended"]
    assert ended["reason"] == "error" and "worker died" in ended["error"]
    assert before_kill <= ended["committed"] < frames
    [fatal] = [error for error in outcome["errors"] if error.get("fatal")]
    assert "send start" in fatal["message"]
    assert [message["type"] for message in outcome["viewer_messages"]] == ["error", "ended"]
    # the recording up to the worker's death is playable and holds every committed frame
    assert recorded_seqs(Path(ended["recording"])) == list(range(ended["committed"]))
    restarted = outcome["restarted"]
    assert outcome["second_pid"] != outcome["first_pid"]
    assert outcome["errors_after"] == [] and "error" not in restarted
    assert restarted["accepted"] == 10
    recorded = recorded_seqs(Path(restarted["recording"]))
    seqs = [seq for seq in recorded if seq is not None]
    assert len(seqs) == len(recorded) == restarted["committed"] and seqs == sorted(seqs)
    # every frame after the clear, once; of those before it, only ones committed before it
    assert [seq for seq in seqs if seq >= frames + 4] == list(range(frames + 4, frames + 10))
    assert {seq for seq in seqs if seq < frames + 4} <= set(range(frames, frames + 4))
