"""``anchor send`` against a real tiny server: pacing, credits, reconnects, stdin frames."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clientkit import (
    DropRelay,
    VirtualClock,
    producer_url,
    recorded_motion_seqs,
    recordings,
    stream_durations,
    talkshow_file,
)
from serverkit import run_with_server, tiny_config

from clients.producer import with_token
from clients.sender import ReplaySender, clip_items
from model.audio2motion.audio import write_wav
from model.motion.readers import open_motion
from model.motion.wire import encode_json

ROOT = Path(__file__).resolve().parents[2]


def test_replay_honours_fps_and_carries_audio(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    clip = open_motion(talkshow_file(tmp_path / "clip.npy", 12))
    tone = (8000 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000)).astype(np.int16)
    clock = VirtualClock()
    reports: list[Any] = []

    async def body(server: Any) -> None:
        url, token = producer_url(server.port)
        sender = ReplaySender(
            with_token(url, token), clip_items(clip, audio=tone), fps=10.0, clock=clock
        )
        reports.append(await sender.run())

    run_with_server(config, body)
    report = reports[0]
    times = [moment for _, moment in report.send_times]
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-9)  # frame i at t0 + i / fps
    assert [seq for seq, _ in report.send_times] == list(range(12))
    assert report.runs[0]["accepted"] == 12
    video = Path(report.runs[0]["recording"])
    assert recorded_motion_seqs(video.parent) == list(range(12))
    durations = stream_durations(video)
    assert durations["audio"] == pytest.approx(durations["video"], abs=1.0 / 30 + 1024 / 16000)


def test_fast_replay_uses_exactly_the_credits(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, max_in_flight=10)
    clip = open_motion(talkshow_file(tmp_path / "clip.npy", 24))
    reports: list[Any] = []

    async def body(server: Any) -> None:
        url, token = producer_url(server.port)
        reports.append(await ReplaySender(with_token(url, token), clip_items(clip), fps=0).run())

    run_with_server(config, body)
    report = reports[0]
    assert report.max_in_flight == 10  # as fast as credits allow, never beyond
    assert report.runs[0]["accepted"] == 24
    assert recorded_motion_seqs(tmp_path / "recordings") == list(range(24))


def test_start_at_and_loop(tmp_path: Path) -> None:
    clip = open_motion(talkshow_file(tmp_path / "clip.npy", 5))
    items = clip_items(clip, loop=True, start_at=3)
    frames = [next(items).frame for _ in range(7)]
    assert [frame.seq for frame in frames] == [3, 4, 5, 6, 7, 8, 9]
    assert frames[2].pts == pytest.approx(5 / 30)
    np.testing.assert_array_equal(frames[2].body_pose, clip.frame(0).body_pose)


@pytest.mark.slow
def test_reconnect_resumes_without_duplicates(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, max_in_flight=10)
    clip = open_motion(talkshow_file(tmp_path / "clip.npy", 24))
    reports: list[Any] = []
    relays: list[DropRelay] = []

    async def body(server: Any) -> None:
        relay = DropRelay(server.port, drop_after=8)
        await relay.start()
        relays.append(relay)
        try:
            url, token = producer_url(relay.port)
            sender = ReplaySender(with_token(url, token), clip_items(clip), fps=0)
            reports.append(await sender.run())
        finally:
            await relay.stop()

    run_with_server(config, body)
    report, relay = reports[0], relays[0]
    assert relay.dropped.is_set()
    assert report.resent >= 1  # frames sent but never acknowledged were lost in the cut
    assert report.connections == 2
    seqs = recorded_motion_seqs(tmp_path / "recordings")
    assert len(recordings(tmp_path / "recordings")) == 2  # the dropped run and the resumed one
    assert seqs == list(range(24))  # each frame once, in order, across both runs


@pytest.mark.slow
def test_cli_sends_json_lines_from_stdin(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    clip = open_motion(talkshow_file(tmp_path / "clip.npy", 10))
    lines = "".join(encode_json(frame) + "\n" for frame in clip)
    outputs: list[tuple[int, bytes]] = []

    async def body(server: Any) -> None:
        url, token = producer_url(server.port)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.cli",
            "send",
            "-",
            "--url",
            url,
            "--token",
            token,
            "--fps",
            "0",
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate(lines.encode())
        outputs.append((process.returncode or 0, output))

    run_with_server(config, body)
    code, output = outputs[0]
    assert code == 0, output.decode()
    summary = json.loads(output.decode().strip().splitlines()[-1])
    assert summary["accepted"] == 10
    assert recorded_motion_seqs(tmp_path / "recordings") == list(range(10))


def test_wav_audio_is_resampled_to_the_server_rate(tmp_path: Path) -> None:
    from clients.sender import load_audio

    path = tmp_path / "tone.wav"
    write_wav(path, np.zeros(8000, dtype=np.float32), 8000)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.int16 and len(audio) == 16000
