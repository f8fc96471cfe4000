"""Session recordings: audio and video on one timeline (AAC priming trimmed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from server.recording import RecordedAudio, RecordedFrame, SessionRecorder

RATE = 16000
FPS = 30.0


def click_track(seconds: float, click_s: float) -> np.ndarray:
    """(N,) int16 silence with a 2.5 ms click at ``click_s``."""
    audio = np.zeros(round(seconds * RATE), dtype=np.int16)
    start = round(click_s * RATE)
    audio[start : start + 40] = 20000
    return audio


def first_video_time(path: Path) -> float:
    with av.open(str(path)) as container:
        frame = next(iter(container.decode(video=0)))
        assert frame.pts is not None and frame.time_base is not None
        return float(frame.pts * frame.time_base)


def click_time(path: Path) -> float:
    """Presentation time (s) of the first loud sample of the decoded audio."""
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            samples = frame.to_ndarray().reshape(-1)
            loud = np.flatnonzero(np.abs(samples) > 0.3)
            if len(loud):
                assert frame.pts is not None and frame.time_base is not None
                return float(frame.pts * frame.time_base) + int(loud[0]) / frame.sample_rate
    raise AssertionError(f"{path}: no click in the decoded audio")


@pytest.mark.parametrize("start_s", [0.0, 3.0])
def test_audio_click_lands_at_its_pts(tmp_path: Path, start_s: float) -> None:
    written: list[int] = []
    failures: list[BaseException] = []
    recorder = SessionRecorder(
        tmp_path / "session", FPS, RATE, on_written=written.append, on_failed=failures.append
    )
    recorder.start()
    click_s = 0.5
    audio = click_track(1.6, click_s)
    for index in range(60):
        image = np.full((64, 64, 3), index * 4, dtype=np.uint8)
        recorder.add_frame(RecordedFrame(index, start_s + index / FPS, image, None))
        if index < 48:  # audio in 1/30 s chunks with the frames, as a producer sends it
            first, last = index * RATE // 30, (index + 1) * RATE // 30
            recorder.add_audio(RecordedAudio(start_s + first / RATE, audio[first:last]))
    recorder.close()
    assert failures == [] and written == list(range(60))
    path = recorder.video_path
    offset = click_time(path) - first_video_time(path) - click_s
    # AAC's 1024 priming samples (64 ms) would put the click two frames late
    assert abs(offset) < 1.0 / FPS, f"click off by {offset * 1000:.1f} ms"


def test_pts_restart_after_clear_keeps_every_frame_in_order(tmp_path: Path) -> None:
    """After ``clear`` the producer's pts start again at 0: each frame still gets its own,
    increasing timestamp in the file (one 90 kHz tick apart at worst), none is merged."""
    failures: list[BaseException] = []
    recorder = SessionRecorder(
        tmp_path / "session", FPS, RATE, on_written=lambda seq: None, on_failed=failures.append
    )
    recorder.start()
    for seq, pts in enumerate([0.0, 1 / FPS, 2 / FPS, 0.0, 1 / FPS, 2 / FPS, 3 / FPS]):
        image = np.full((64, 64, 3), seq * 30, dtype=np.uint8)
        recorder.add_frame(RecordedFrame(seq, pts, image, None))
    recorder.close()
    with av.open(str(recorder.video_path)) as container:
        frames = list(container.decode(video=0))
    times = [
        float(frame.pts * frame.time_base)
        for frame in frames
        if frame.pts is not None and frame.time_base is not None
    ]
    assert failures == [] and len(times) == 7
    assert all(later > earlier for earlier, later in itertools.pairwise(times))
    shades = [int(frame.to_ndarray(format="rgb24").mean()) for frame in frames]
    assert all(abs(shade - seq * 30) <= 4 for seq, shade in enumerate(shades))
