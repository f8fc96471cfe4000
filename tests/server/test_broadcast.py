"""Fan-out through a real Janus VideoRoom and RTMP/HLS egress through a real nginx-rtmp.

Each test starts its own Janus or nginx on 127.0.0.1 (free ports, configuration written to
tmp_path, see bench.mediaservers) and always stops it. The session is the tiny preset
with the seq barcode stamped, so what a subscriber or an HLS segment shows can be traced
back to the frame the producer sent.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from pathlib import Path
from typing import Any

import av
import pytest
from serverkit import SECRET, run_with_server, tiny_config

from bench.mediaservers import LocalJanus, LocalNginxRtmp, free_port
from clients.producer_client import MotionProducer
from clients.viewer_client import JanusViewerProbe
from model.motion.demo_loop import demo_frames
from server.janus import VIDEOROOM, JanusConnection
from server.media import read_seq
from server.tokens import mint_token

FRAMES = 45
ROOM = 4321


def producer_url(server: Any, session: str) -> str:
    token = mint_token(SECRET, session, "producer", 120.0)
    return f"ws://127.0.0.1:{server.port}/sessions/{session}/motion?token={token}"


async def wait_until(predicate: Any, limit_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def room_publishers(url: str, room: int) -> list[str]:
    async with JanusConnection(url) as janus:
        handle = await janus.attach(VIDEOROOM)
        data, _ = await handle.message({"request": "listparticipants", "room": room})
    return [p["display"] for p in data.get("participants", []) if p.get("publisher")]


@pytest.mark.slow
def test_session_publishes_into_janus_and_a_subscriber_receives_its_frames(
    tmp_path: Path,
) -> None:
    results: dict[str, Any] = {}
    with LocalJanus(tmp_path / "janus") as janus:
        config = tiny_config(tmp_path)
        config = config.model_copy(
            update={
                "broadcast": config.broadcast.model_copy(
                    update={"janus_url": janus.url, "janus_room": ROOM, "janus_create_room": True}
                )
            }
        )

        async def body(server: Any) -> None:
            async with MotionProducer(producer_url(server, "anchor1")) as producer:
                # The session exists once its producer's first message (start) is accepted.
                await producer.start()
                session = server.sessions["anchor1"]
                await wait_until(
                    lambda: session.broadcast.janus_feed is not None, 30.0, "publishing"
                )
                results["status"] = session.status()["broadcast"]
                viewer = JanusViewerProbe(janus.url, audio=True, room=ROOM, display="anchor1")
                await viewer.connect()
                try:
                    await producer.send_frames(demo_frames(0, FRAMES), fps=30.0)
                    results["ended"] = await producer.end()
                    await viewer.wait_seq(FRAMES - 1, 60.0)
                    await wait_until(lambda: viewer.audio_frames > 0, 10.0, "audio")
                finally:
                    await viewer.close()
                results["frames"], results["audio"] = viewer.frames, viewer.audio_frames
                results["during"] = await room_publishers(janus.url, ROOM)
            await server.stop()  # the session ends: its publisher must leave the room
            results["after"] = await room_publishers(janus.url, ROOM)

        run_with_server(config, body)

    assert results["status"]["janus"].startswith("publishing feed")
    assert results["ended"]["committed"] == FRAMES
    seqs = [frame.seq for frame in results["frames"] if frame.seq is not None]
    # Every stamped frame that came through Janus is a frame of this session, in order.
    assert seqs == sorted(seqs) and set(seqs) <= set(range(FRAMES))
    assert FRAMES - 1 in seqs and len(set(seqs)) > FRAMES // 2
    assert results["audio"] > 0
    assert results["during"] == ["anchor1"]
    assert results["after"] == []


def test_keepalives_keep_a_janus_session_that_would_otherwise_time_out(tmp_path: Path) -> None:
    async def main(janus: LocalJanus) -> None:
        async with (
            JanusConnection(janus.url, keepalive_s=0.5) as kept,
            JanusConnection(janus.url, keepalive_s=600.0) as silent,
        ):
            await asyncio.wait_for(silent.lost.wait(), 15.0)
            assert silent.closed_reason == "session timed out in Janus"
            assert not kept.lost.is_set()
            handle = await kept.attach(VIDEOROOM)  # the kept session still answers
            data, _ = await handle.message({"request": "exists", "room": ROOM})
            assert data["exists"] is False

    with LocalJanus(tmp_path / "janus", session_timeout_s=2) as janus:
        asyncio.run(main(janus))


def test_unreachable_janus_is_reported_in_the_status_and_the_session_still_runs(
    tmp_path: Path,
) -> None:
    url = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    config = tiny_config(tmp_path, recordings_dir=None)
    config = config.model_copy(
        update={
            "broadcast": config.broadcast.model_copy(update={"janus_url": url, "retry_s": 60.0})
        }
    )

    async def body(server: Any) -> None:
        async with MotionProducer(producer_url(server, "s")) as producer:
            # The session exists once its producer's first message (start) is accepted.
            await producer.start()
            session = server.sessions["s"]
            await wait_until(
                lambda: session.status()["broadcast"]["janus"].startswith("error"), 30.0, "error"
            )
            status = session.status()["broadcast"]["janus"]
            assert f"cannot connect to {url}" in status, status
            await producer.send_frames(demo_frames(0, 4))
            ended = await producer.end()
            assert ended["committed"] == 4

    run_with_server(config, body)


def playlist_segments(playlist: Path) -> list[tuple[float, str]]:
    """(EXTINF duration in seconds, segment file name) of each segment of ``playlist``."""
    lines = playlist.read_text().splitlines()
    segments = []
    for line, following in itertools.pairwise(lines):
        match = re.match(r"#EXTINF:([0-9.]+)", line)
        if match:
            segments.append((float(match.group(1)), following.strip()))
    return segments


@pytest.mark.slow
def test_rtmp_push_becomes_hls_segments_of_the_configured_length(tmp_path: Path) -> None:
    fragment_s, keyframe_s = 1.0, 0.5
    with LocalNginxRtmp(tmp_path / "nginx", fragment_s=fragment_s) as nginx:
        config = tiny_config(tmp_path, recordings_dir=None)
        config = config.model_copy(
            update={
                "broadcast": config.broadcast.model_copy(
                    update={
                        "rtmp_url": nginx.rtmp_url + "/{session}",
                        "rtmp_keyframe_interval_s": keyframe_s,
                    }
                )
            }
        )
        playlist = nginx.playlist("anchor1")

        async def body(server: Any) -> None:
            async with MotionProducer(producer_url(server, "anchor1")) as producer:
                await producer.start()
                await producer.send_frames(demo_frames(0, FRAMES), fps=30.0)
                await producer.end()
                # The live stream goes on between runs (the last frame repeats).
                await wait_until(
                    lambda: playlist.is_file() and len(playlist_segments(playlist)) >= 4,
                    60.0,
                    "four HLS segments",
                )
                status = server.sessions["anchor1"].status()["broadcast"]["rtmp"]
                assert status == f"pushing {nginx.rtmp_url}/anchor1", status

        run_with_server(config, body)
        segments = playlist_segments(playlist)
        seqs: set[int] = set()
        # The last segment is cut short by the end of the stream (the server stopped).
        complete = segments[:-1]
        durations = sorted(duration for duration, _ in complete)
        # nginx-rtmp cuts at the first keyframe at or after the fragment length, and the
        # pusher puts one every keyframe_s on the stream clock; a live frame that came late
        # (a loaded machine) can stretch one segment, never shorten it.
        assert durations[0] >= fragment_s - 0.05, segments
        assert durations[len(durations) // 2] <= fragment_s + keyframe_s + 0.05, segments
        for duration, name in complete:
            with av.open(str(playlist.parent / name)) as container:
                kinds = sorted(stream.type for stream in container.streams)
                assert kinds == ["audio", "video"]
                video = container.streams.video[0]
                assert video.codec_context.name == "h264"
                assert container.streams.audio[0].codec_context.name == "aac"
                frames = list(container.decode(video))
            # The segment's frames lie within the duration the playlist gives it.
            first, last = frames[0].pts, frames[-1].pts
            assert first is not None and last is not None and video.time_base is not None
            span = float((last - first) * video.time_base)
            assert 0.0 < span <= duration + 0.01, (name, span, duration)
            images = [frame.to_ndarray(format="rgb24") for frame in frames]
            seqs |= {seq for image in images if (seq := read_seq(image)) is not None}
    # The broadcast shows this session's frames.
    assert seqs and seqs <= set(range(FRAMES)), sorted(seqs)
