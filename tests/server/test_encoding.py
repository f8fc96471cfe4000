"""The shared H.264 + AAC pieces: even-size crop, irregular pts, interleaved PCM."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest

from server import encoding

RATE = 48_000


def test_odd_frames_irregular_pts_and_stereo_pcm_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    image = np.zeros((33, 47, 3), dtype=np.uint8)
    image[:, :23] = 255  # left half white, so a crop on the wrong side would show
    # 5 ms apart: on a 1/30 s codec clock these would collide; on the 90 kHz one they don't.
    seconds = [0.0, 0.005, 0.010, 0.5]
    stereo = np.arange(2 * 4096, dtype=np.int16).reshape(1, -1)  # (1, N * 2) interleaved
    assert encoding.even_size(image) == (46, 32)
    writing = av.open(str(path), "w")
    video = encoding.add_h264_stream(
        writing, 30.0, *encoding.even_size(image), encoding.VIDEO_TIME_BASE, codec_time_base=True
    )
    output = encoding.MediaOutput(writing, video, encoding.add_aac_stream(writing, RATE, "stereo"))
    for at in seconds:
        frame = encoding.rgb_video_frame(image, video, round(at * 90_000), encoding.VIDEO_TIME_BASE)
        assert (frame.width, frame.height) == (46, 32)
        output.write_video(frame)
    pcm = encoding.pcm_audio_frame(stereo, RATE, 0, "stereo")
    assert pcm.samples == 4096 and pcm.time_base == fractions.Fraction(1, RATE)
    output.write_audio(pcm)
    output.close()
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        decoded = [float(f.pts * f.time_base) for f in frames if f.pts is not None and f.time_base]
        left = frames[0].to_ndarray(format="rgb24")[:, :20].mean()
    with av.open(str(path)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert decoded == seconds
    assert left > 200
    assert abs(samples - 4096) <= 1024  # AAC pads at most one frame


def test_writing_audio_without_an_audio_stream_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    writing = av.open(str(path), "w")
    video = encoding.add_h264_stream(writing, 30.0, 16, 16, encoding.VIDEO_TIME_BASE)
    output = encoding.MediaOutput(writing, video)
    samples = np.zeros(1024, dtype=np.int16)
    with pytest.raises(ValueError, match=r"silent\.mp4: no audio stream"):
        output.write_audio(encoding.pcm_audio_frame(samples, RATE, 0))
    output.close()
