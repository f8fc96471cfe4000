"""Durable recordings: a frame is reported written only once its fragment is fsync-ed, and
the file as it is on disk mid-run (what a kill -9 leaves) plays every such frame."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from model.motion.demo_loop import demo_frame
from model.motion.frame import VECTOR_FIELDS
from model.motion.readers import open_motion
from server.media import read_seq, stamp_seq
from server.recording import RecordedAudio, RecordedFrame, SessionRecorder

FPS = 30.0
RATE = 16000


def decoded_seqs(data: bytes) -> list[int | None]:
    with av.open(io.BytesIO(data), "r", format="mp4") as container:
        return [read_seq(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def stamped(seq: int) -> np.ndarray:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    stamp_seq(image, seq)
    return image


@pytest.mark.parametrize("with_audio", [False, True])
def test_written_frames_are_playable_before_close(tmp_path: Path, with_audio: bool) -> None:
    written: list[int] = []
    changed = threading.Condition()

    def on_written(seq: int) -> None:
        with changed:
            written.append(seq)
            changed.notify_all()

    failures: list[BaseException] = []
    recorder = SessionRecorder(tmp_path / "run", FPS, RATE, on_written, failures.append)
    recorder.start()
    frames = 75  # two full fragments and part of a third
    for seq in range(frames):
        if with_audio:
            pts = seq / FPS
            recorder.add_audio(RecordedAudio(pts, np.zeros(RATE // 30, dtype=np.int16)))
        recorder.add_frame(RecordedFrame(seq, seq / FPS, stamped(seq), demo_frame(seq)))
    with changed:
        assert changed.wait_for(lambda: len(written) >= 60, timeout=60.0)
    # What is on disk now is what a kill -9 would leave.
    on_disk = recorder.video_path.read_bytes()
    credited = list(written)
    log_lines = recorder.motion_log_path.read_text().splitlines()
    assert credited == list(range(len(credited)))
    assert len(credited) < frames  # the fragment still being built is not credited
    seqs = decoded_seqs(on_disk)
    assert seqs[: len(credited)] == credited
    assert len(log_lines) >= len(credited)
    recorder.close()
    assert failures == []
    assert written == list(range(frames))
    assert decoded_seqs(recorder.video_path.read_bytes()) == list(range(frames))
    assert recorder.motion_path.exists() and not recorder.motion_log_path.exists()
    # The npz, read back from the sidecar at close, holds every frame's motion exactly.
    motion = open_motion(recorder.motion_path)
    assert [frame.seq for frame in motion] == list(range(frames))
    for seq in (0, 37, frames - 1):
        for name in VECTOR_FIELDS:
            np.testing.assert_array_equal(
                getattr(motion.frame(seq), name), getattr(demo_frame(seq), name)
            )
    if with_audio:
        with av.open(str(recorder.video_path)) as container:
            assert len(container.streams.audio) == 1
