"""H.264 + AAC encoding shared by the session recorder, the RTMP pusher and ``anchor view``.

Each writer opens its own container (fragmented mp4, FLV over RTMP, plain mp4) and keeps
its own timing; what they share is here: the libx264 (yuv420p) and AAC streams, the
even-size crop yuv420p needs, building frames from RGB images and PCM16 samples, and
the container with its encoders (``MediaOutput``), drained before it closes.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.stream import VideoStream

# The 90 kHz video clock of RTP, also the timescale of the mp4 recordings.
VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


def even_size(image: np.ndarray) -> tuple[int, int]:
    """(width, height) of ``image`` (H, W, C) rounded down to even, as yuv420p needs."""
    height, width = image.shape[:2]
    return width - width % 2, height - height % 2


def add_h264_stream(
    container: OutputContainer,
    fps: float,
    width: int,
    height: int,
    time_base: fractions.Fraction,
    *,
    preset: str = "ultrafast",
    x264_params: str | None = None,
    bit_rate: int | None = None,
    codec_time_base: bool = False,
) -> VideoStream:
    """A libx264 yuv420p stream tuned for zero latency, timed in ``time_base``.

    ``codec_time_base`` also runs the encoder on ``time_base``; otherwise it counts in
    frames at ``fps``, and frame pts are rounded to that. ``bit_rate`` in bits per second
    (libx264's default CRF when None); ``x264_params`` as libx264's ``-x264-params``.
    """
    video = container.add_stream("libx264", rate=round(fps))
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.time_base = time_base
    if codec_time_base:
        video.codec_context.time_base = time_base
    if bit_rate is not None:
        video.bit_rate = bit_rate
    options: dict[str, object] = {"preset": preset, "tune": "zerolatency"}
    if x264_params is not None:
        options["x264-params"] = x264_params
    video.options = options
    return video


def add_aac_stream(
    container: OutputContainer, rate: int, layout: str = "mono", bit_rate: int | None = None
) -> AudioStream:
    """An AAC stream at ``rate`` Hz; frames at another rate or layout are resampled."""
    audio = container.add_stream("aac", rate=rate)
    audio.layout = layout
    if bit_rate is not None:
        audio.bit_rate = bit_rate
    return audio


def rgb_video_frame(
    image: np.ndarray, stream: VideoStream, pts: int, time_base: fractions.Fraction
) -> av.VideoFrame:
    """``image`` (H, W, 3) uint8 RGB cropped to the stream's size, at ``pts`` in ``time_base``."""
    image = image[: stream.height, : stream.width]
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame.pts = pts
    frame.time_base = time_base
    return frame


def pcm_audio_frame(
    samples: np.ndarray, sample_rate: int, pts: int, layout: str = "mono"
) -> av.AudioFrame:
    """PCM16 ``samples`` (N,) or (1, N * channels), channels interleaved, as an audio frame
    starting at sample ``pts`` of a ``1 / sample_rate`` clock."""
    packed = samples.astype(np.int16, copy=False).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, sample_rate)
    return frame


@dataclass(slots=True)
class MediaOutput:
    """An open output container with its H.264 stream and, when there is audio, AAC stream.

    Encoding blocks: a writer uses one from its own thread.
    """

    container: OutputContainer
    video: VideoStream
    audio: AudioStream | None = None

    def write_video(self, frame: av.VideoFrame) -> None:
        self.container.mux(self.video.encode(frame))

    def write_audio(self, frame: av.AudioFrame) -> None:
        if self.audio is None:
            raise ValueError(f"{self.container.name}: no audio stream to write audio into")
        self.container.mux(self.audio.encode(frame))

    def flush(self) -> None:
        """Write the packets the encoders still hold into the container."""
        for stream in (self.video, self.audio):
            if stream is not None:
                self.container.mux(stream.encode(None))

    def close(self) -> None:
        """``flush``, then close the container (closed even when flushing fails)."""
        try:
            self.flush()
        finally:
            self.container.close()
