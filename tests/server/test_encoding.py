"""The shared H.264 + AAC pieces: even-size crop, irregular pts, interleaved PCM."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np

from server.encoding import (
    VIDEO_TIME_BASE,
    add_aac_stream,
    add_h264_stream,
    even_size,
    flush,
    pcm_audio_frame,
    rgb_video_frame,
)

RATE = 48_000


def test_odd_frames_irregular_pts_and_stereo_pcm_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    image = np.zeros((33, 47, 3), dtype=np.uint8)
    image[:, :23] = 255  # left half white, so a crop on the wrong side would show
    # 5 ms apart: on a 1/30 s codec clock these would collide; on the 90 kHz one they don't.
    seconds = [0.0, 0.005, 0.010, 0.5]
    stereo = np.arange(2 * 4096, dtype=np.int16).reshape(1, -1)  # (1, N * 2) interleaved
    assert even_size(image) == (46, 32)
    with av.open(str(path), "w") as container:
        video = add_h264_stream(
            container, 30.0, *even_size(image), VIDEO_TIME_BASE, codec_time_base=True
        )
        audio = add_aac_stream(container, RATE, "stereo")
        for at in seconds:
            frame = rgb_video_frame(image, video, round(at * 90_000), VIDEO_TIME_BASE)
            assert (frame.width, frame.height) == (46, 32)
            container.mux(video.encode(frame))
        pcm = pcm_audio_frame(stereo, RATE, 0, "stereo")
        assert pcm.samples == 4096 and pcm.time_base == fractions.Fraction(1, RATE)
        container.mux(audio.encode(pcm))
        flush(container, (video, audio, None))
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        decoded = [float(f.pts * f.time_base) for f in frames if f.pts is not None and f.time_base]
        left = frames[0].to_ndarray(format="rgb24")[:, :20].mean()
    with av.open(str(path)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert decoded == seconds
    assert left > 200
    assert abs(samples - 4096) <= 1024  # AAC pads at most one frame
