"""A real server on a free port, a websockets producer and in-process aiortc viewers."""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.request
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serverkit import SECRET, run_with_server, tiny_config
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.config import AppConfig
from clients.producer_client import MotionProducer
from clients.viewer_client import ViewerProbe
from model.motion.demo_loop import demo_frame, demo_frames
from model.motion.readers import open_motion
from model.motion.wire import encode_binary
from server.media import read_seq
from server.protocol import encode_audio
from server.tokens import mint_token

FRAMES = 24


def ws_url(server: Any, session: str, kind: str, role: str | None = None, **token: Any) -> str:
    role = role or ("producer" if kind == "motion" else "viewer")
    secret = token.pop("secret", SECRET)
    ttl = token.pop("ttl", 120.0)
    minted = mint_token(secret, token.pop("token_session", session), role, ttl)  # type: ignore[arg-type]
    return f"ws://127.0.0.1:{server.port}/sessions/{session}/{kind}?token={minted}"


def http_get(server: Any, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=30) as response:
        return str(response.read().decode())


def recorded_seqs(path: Path) -> list[int | None]:
    with av.open(str(path)) as container:
        return [read_seq(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


@pytest.mark.slow
def test_stream_view_record_and_metrics(config: AppConfig) -> None:
    results: dict[str, Any] = {}

    async def body(server: Any) -> None:
        first = ViewerProbe(ws_url(server, "s1", "view"))
        second = ViewerProbe(ws_url(server, "s1", "view"))
        async with MotionProducer(ws_url(server, "s1", "motion")) as producer:
            await producer.start()
            await first.connect()
            half = FRAMES // 2
            await producer.send_frames(demo_frames(0, half), fps=30.0, binary=True)
            await second.connect()  # joins mid-stream
            await producer.send_frames(demo_frames(half, FRAMES - half), fps=30.0, binary=False)
            results["ended"] = await producer.end()
            results["errors"] = list(producer.errors)
            for viewer in (first, second):
                await viewer.wait_seq(FRAMES - 1, 60.0)
        # urlopen blocks: off the loop that runs the server
        results["metrics"] = await asyncio.to_thread(http_get, server, "/metrics")
        results["health"] = json.loads(await asyncio.to_thread(http_get, server, "/healthz"))
        for viewer in (first, second):
            await viewer.close()
        results["first"], results["second"] = first.frames, second.frames

    run_with_server(config, body)
    ended = results["ended"]
    assert results["errors"] == []
    assert (ended["accepted"], ended["committed"]) == (FRAMES, FRAMES)
    for frames in (results["first"], results["second"]):
        pts = [frame.pts for frame in frames]
        assert all(later > earlier for earlier, later in itertools.pairwise(pts))
        seqs = [frame.seq for frame in frames if frame.seq is not None]
        assert seqs == sorted(seqs) and seqs[-1] == FRAMES - 1
    # the recording holds every committed frame exactly once, in order, with its motion
    recording = Path(ended["recording"])
    assert recorded_seqs(recording) == list(range(FRAMES))
    motion = open_motion(recording.with_suffix(".motion.npz"))
    assert [frame.seq for frame in motion] == list(range(FRAMES))
    np.testing.assert_allclose(motion.frame(5).body_pose, demo_frame(5).body_pose)
    families = {
        family.name: family for family in text_string_to_metric_families(results["metrics"])
    }
    committed = {
        sample.labels["session"]: sample.value
        for sample in families["anchor_committed_frames"].samples
        if sample.name.endswith("_total")
    }
    assert committed["s1"] == FRAMES
    assert "anchor_stage_seconds" in families and "anchor_queue_depth" in families
    assert results["health"]["status"] == "ok"


@pytest.mark.parametrize(
    ("session", "kind", "role", "token"),
    [
        ("s1", "motion", "producer", {"secret": "wrong"}),
        ("s1", "motion", "producer", {"ttl": -1.0}),
        ("s1", "motion", "producer", {"token_session": "s2"}),
        ("s1", "motion", "viewer", {}),
        ("s1", "view", "producer", {}),
    ],
)
def test_bad_tokens_rejected_before_any_work(
    config: AppConfig, session: str, kind: str, role: str, token: dict[str, Any]
) -> None:
    statuses: list[int] = []

    async def body(server: Any) -> None:
        with pytest.raises(InvalidStatus) as rejected:
            await connect(ws_url(server, session, kind, role, **token))
        statuses.append(rejected.value.response.status_code)
        assert server.sessions == {}

    run_with_server(config, body)
    assert statuses == [401]


def test_missing_token_and_foreign_origin_rejected(config: AppConfig) -> None:
    async def body(server: Any) -> None:
        with pytest.raises(InvalidStatus) as missing:
            await connect(f"ws://127.0.0.1:{server.port}/sessions/s1/motion")
        assert missing.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as origin:
            await connect(ws_url(server, "s1", "view"), origin="http://evil.example")  # type: ignore[arg-type]
        assert origin.value.response.status_code == 403

    run_with_server(config, body)


def test_malformed_oversized_and_uncredited_messages_get_errors(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, max_message_bytes=4096)
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        async with MotionProducer(ws_url(server, "s1", "motion")) as producer:
            await producer.start()  # a garbage first message would close (server.door)
            await producer.send_raw("{not json")
            await producer.send_raw(json.dumps({"type": "dance"}))
            bad = {"type": "frame", "seq": 0, "pts": 0.0, "body_pose": [float("nan")] * 63}
            await producer.send_raw(json.dumps(bad))
            await producer.send_raw(b"x" * 5000)  # over the limit, under the hard limit
            # a burst far beyond the credits: the frames past them are refused, not dropped
            burst = producer.credit_limit + 16
            for seq in range(burst):
                await producer.send_raw(encode_binary(demo_frame(seq)))
            await producer.wait_for(
                lambda: len(producer.acked) + len(producer.errors) >= burst + 4, 120.0
            )
            # the session goes on: the producer resumes after its last accepted frame
            producer.in_flight = len(producer.acked) - len(producer.committed)
            resume = max(producer.acked) + 1
            await producer.send_frames(demo_frames(resume, burst + 4 - resume))
            outcome["ended"] = await producer.end()
            outcome["errors"] = producer.errors
            outcome["acked"] = producer.acked
            outcome["burst"] = burst

    run_with_server(config, body)
    fields = [(error.get("field"), error.get("seq")) for error in outcome["errors"]]
    assert fields[:4] == [("message", None), ("type", None), ("body_pose", 0), ("message", None)]
    refused = [seq for field, seq in fields[4:] if field == "credits"]
    assert refused and all(seq is not None for seq in refused)
    total = outcome["burst"] + 4
    assert outcome["acked"] == sorted(outcome["acked"]) and outcome["acked"][-1] == total - 1
    accepted = len(outcome["acked"])
    assert (outcome["ended"]["accepted"], outcome["ended"]["committed"]) == (accepted, accepted)


def test_pipeline_crash_ends_only_its_session(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    config = tiny_config(tmp_path)
    config.server.identities = {"broken": {"reference_image": broken}}  # type: ignore[dict-item]
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        async with (
            MotionProducer(ws_url(server, "bad", "motion")) as crashing,
            MotionProducer(ws_url(server, "good", "motion")) as healthy,
        ):
            await crashing.start(identity="broken")
            await healthy.start()
            await crashing.send_frame(demo_frame(0))
            await crashing.wait_for(lambda: any(e.get("fatal") for e in crashing.errors), 60.0)
            await healthy.send_frames(demo_frames(0, 6))
            outcome["healthy"] = await healthy.end()
            outcome["crashing"] = crashing.errors

    run_with_server(config, body)
    assert any(error.get("fatal") for error in outcome["crashing"])
    assert (outcome["healthy"]["accepted"], outcome["healthy"]["committed"]) == (6, 6)


@pytest.mark.slow
@pytest.mark.parametrize("temporal", [False, True])
def test_face_stage_streams_and_records_every_frame(tmp_path: Path, temporal: bool) -> None:
    config = tiny_config(tmp_path)
    config.face = config.face.model_copy(
        update={"enabled": True, "size": 32, "steps": 2, "face_temporal": temporal}
    )
    frames = 10
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        async with MotionProducer(ws_url(server, "face", "motion")) as producer:
            await producer.start()
            await producer.send_frames(demo_frames(0, frames))
            outcome["ended"] = await producer.end()
            outcome["errors"] = list(producer.errors)
        outcome["metrics"] = await asyncio.to_thread(http_get, server, "/metrics")

    run_with_server(config, body)
    ended = outcome["ended"]
    assert outcome["errors"] == [] and "error" not in ended
    assert (ended["accepted"], ended["committed"]) == (frames, frames)
    assert recorded_seqs(Path(ended["recording"])) == list(range(frames))
    # every frame went through the face stage
    families = {
        family.name: family for family in text_string_to_metric_families(outcome["metrics"])
    }
    face_counts = [
        sample.value
        for sample in families["anchor_stage_seconds"].samples
        if sample.name.endswith("_count") and sample.labels.get("stage") == "face"
    ]
    assert face_counts == [frames]


def test_started_reports_the_last_seq_of_earlier_runs(config: AppConfig) -> None:
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        async with MotionProducer(ws_url(server, "resume", "motion")) as first:
            await first.start()
            outcome["fresh"] = first.started
            await first.send_frames(demo_frames(0, 5))
            await first.wait_for(lambda: len(first.acked) == 5, 60.0)
        # the connection dropped mid-run (no `end`): the reconnecting producer is told what
        # was accepted, even though the old run may still be flushing
        async with MotionProducer(ws_url(server, "resume", "motion")) as second:
            await second.start()
            outcome["resumed"] = second.started
            await second.send_frames(demo_frames(5, 3))
            outcome["ended"] = await second.end()
        # after the session was removed (no producer, no viewer), a new one still knows
        for _ in range(300):
            if "resume" not in server.sessions:
                break
            await asyncio.sleep(0.1)
        assert "resume" not in server.sessions
        async with MotionProducer(ws_url(server, "resume", "motion")) as third:
            await third.start()
            outcome["later"] = third.started

    run_with_server(config, body)
    assert outcome["fresh"]["last_seq"] is None
    assert outcome["resumed"]["last_seq"] == 4
    assert (outcome["ended"]["accepted"], outcome["ended"]["committed"]) == (3, 3)
    assert outcome["later"]["last_seq"] == 7


def audio_seconds(path: Path) -> float:
    """Seconds of decoded audio in a recording."""
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(audio=0)) / float(
            container.streams.audio[0].sample_rate
        )


@pytest.mark.slow
def test_producer_audio_reaches_viewers_and_the_recording(config: AppConfig) -> None:
    rate = config.server.audio_sample_rate
    frames = 30
    per_frame = rate // 30
    time_axis = np.arange(frames * per_frame) / rate
    tone = (8000 * np.sin(2 * np.pi * 440.0 * time_axis)).astype(np.int16)
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        viewer = ViewerProbe(ws_url(server, "voice", "view"), audio=True)
        async with MotionProducer(ws_url(server, "voice", "motion")) as producer:
            await producer.start()
            await viewer.connect()
            for frame in demo_frames(0, frames):
                chunk = tone[frame.seq * per_frame : (frame.seq + 1) * per_frame]
                await producer.send_raw(encode_audio(frame.pts, rate, chunk))
                await producer.send_frames([frame], binary=True)
                await asyncio.sleep(1.0 / 30.0)
            outcome["ended"] = await producer.end()
            outcome["errors"] = list(producer.errors)
        try:
            await viewer.wait_seq(frames - 1, 60.0)
            for _ in range(600):  # the audio plays out with the video, in real time
                if viewer.audible_audio_frames > 0.5 * frames / 30.0 / 0.02:
                    break
                await asyncio.sleep(0.05)
        finally:
            await viewer.close()
        outcome["audible"] = viewer.audible_audio_frames

    run_with_server(config, body)
    assert outcome["errors"] == []
    # half the tone's 20 ms frames, at least, reached the viewer as sound
    assert outcome["audible"] > 0.5 * frames / 30.0 / 0.02
    recording = Path(outcome["ended"]["recording"])
    # the whole tone is recorded: one second, up to one AAC frame of encoder padding
    assert abs(audio_seconds(recording) - frames / 30.0) <= 1024 / rate
