"""``anchor view``: the recorder writes exactly what the viewer received."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from clientkit import producer_url, talkshow_file, video_seqs, viewer_url
from serverkit import run_with_server, tiny_config

from clients.producer import with_token
from clients.sender import ReplaySender, clip_items
from clients.viewer import RecordingViewer, view_url
from clients.viewer_client import frame_seq
from model.motion.readers import open_motion
from server.media import read_seq, stamp_seq


@pytest.mark.slow
def test_recorder_writes_what_it_received(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    clip = open_motion(talkshow_file(tmp_path / "clip.npy", 45))
    tone = (8000 * np.sin(np.arange(30000) * 2 * np.pi * 440 / 16000)).astype(np.int16)
    out = tmp_path / "viewer.mp4"
    viewers: list[RecordingViewer] = []

    async def body(server: Any) -> None:
        url, token = viewer_url(server.port)
        viewer = RecordingViewer(with_token(url, token), out)
        viewers.append(viewer)
        await viewer.connect()
        url, token = producer_url(server.port)
        sender = ReplaySender(with_token(url, token), clip_items(clip, audio=tone), fps=30.0)
        await sender.run()
        await viewer.wait_seq(44, 60.0)
        await asyncio.sleep(0.3)
        await viewer.close()

    run_with_server(config, body)
    viewer = viewers[0]
    received = [frame.seq for frame in viewer.frames]
    assert viewer.writer is not None and viewer.writer.video_frames == len(received)
    assert video_seqs(out) == received  # every received frame, in order, with its content
    assert 44 in received
    samples = 0
    with av.open(str(out)) as container:
        for frame in container.decode(audio=0):
            samples += frame.samples
    assert viewer.audio_received_samples > 0
    # AAC adds at most one frame of priming/padding at each end.
    assert abs(samples - viewer.audio_received_samples) <= 2 * 1024
    stats = viewer.statistics()
    assert stats["frames_received"] == len(received) and stats["fps"] > 0


def test_view_url_accepts_the_page_url() -> None:
    page = "http://127.0.0.1:8765/sessions/s1"
    assert view_url(page) == "ws://127.0.0.1:8765/sessions/s1/view"
    assert view_url("https://anchor.example/sessions/a/") == "wss://anchor.example/sessions/a/view"
    signaling = "ws://127.0.0.1:8765/sessions/s1/view"
    assert view_url(signaling) == signaling


@pytest.mark.parametrize("codec", ["libvpx", "libx264"])
def test_frame_seq_reads_the_barcode_of_decoded_frames(codec: str) -> None:
    """Through a real encoder and decoder, as a viewer receives them: the seq read on the
    luma plane of each yuv420p frame equals the stamped one, and equals the RGB reading."""
    seqs = [0, 1, 517, 40_000]
    encoder: Any = av.CodecContext.create(codec, "w")
    encoder.width = encoder.height = 64
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 30)
    decoder: Any = av.CodecContext.create("vp8" if codec == "libvpx" else "h264", "r")
    decoded = []
    for index, seq in enumerate([*seqs, None]):
        frames: list[Any] = [None]
        if seq is not None:
            image = stamp_seq(np.full((64, 64, 3), 90, dtype=np.uint8), seq)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            frames = [frame]
        for packet in (p for f in frames for p in encoder.encode(f)):
            decoded.extend(decoder.decode(packet))
    decoded.extend(decoder.decode(None))
    assert [frame.format.name for frame in decoded] == ["yuv420p"] * len(seqs)
    assert [frame_seq(frame) for frame in decoded] == seqs
    assert [read_seq(frame.to_ndarray(format="rgb24")) for frame in decoded] == seqs
