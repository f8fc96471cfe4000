"""RTMP egress of a session: its live video and audio as H.264 + AAC in FLV.

The pusher reads the session's live tracks through the session's MediaRelay (what viewers
see, at the live pace, repeats included, so the stream never stalls between runs),
re-stamps them on one clock, and encodes and writes on its own thread: encoding and the
RTMP socket block. A media server (nginx-rtmp) turns the stream into HLS for large
audiences.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.frame import PictureType

from model.errors import AnchorError
from server.encoding import MediaOutput, add_aac_stream, add_h264_stream, pcm_audio_frame
from server.tasks import cancel_and_wait

log = logging.getLogger("anchor.egress")

FLV_TIME_BASE = fractions.Fraction(1, 1000)
AAC_RATE = 44_100
# Media waiting for the encoder thread: about two seconds of 30 fps video plus its audio.
# When the encoder or the network falls that far behind, new media is dropped (counted):
# a live stream that queues without bound only grows its latency.
ENCODER_QUEUE = 200


class EgressError(AnchorError):
    """The RTMP server refused the stream or went away."""


@dataclass(slots=True)
class _VideoItem:
    planes: np.ndarray  # (H * 3/2, W) uint8 yuv420p
    width: int
    height: int
    ms: int  # FLV timestamp


@dataclass(slots=True)
class _AudioItem:
    samples: np.ndarray  # (1, N) int16 mono
    sample_rate: int
    start: int  # first sample's index on the stream's audio clock


_STOP = object()


class RtmpPusher:
    """Pushes ``video`` and ``audio`` (track proxies the pusher owns) to ``url``.

    ``start`` opens the RTMP connection (raises EgressError naming the URL when refused)
    and starts the readers and the encoder thread; ``failed`` is set when the stream
    breaks later (``error`` says why); ``close`` flushes the encoders and disconnects.
    """

    def __init__(
        self,
        url: str,
        video: MediaStreamTrack,
        audio: MediaStreamTrack | None,
        fps: float,
        video_bitrate: int,
        audio_bitrate: int,
        keyframe_interval_s: float,
    ) -> None:
        self.url = url
        self.video = video
        self.audio = audio
        self.fps = fps
        self.video_bitrate = video_bitrate
        self.audio_bitrate = audio_bitrate
        self.keyframe_ms = max(1, round(keyframe_interval_s * 1000.0))
        self._next_keyframe_ms = 0
        self.frames_sent = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self.failed = asyncio.Event()
        self._queue: queue.Queue[Any] = queue.Queue(ENCODER_QUEUE)
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._container: Any = None
        self._output: MediaOutput | None = None  # once the first frame gave the size
        self._clock_start = 0.0
        self._last_ms = -1
        self._audio_next = 0

    async def start(self) -> None:
        await asyncio.to_thread(self._open)
        loop = asyncio.get_running_loop()
        self._clock_start = time.monotonic()
        self._thread = threading.Thread(
            target=self._encode_loop, args=(loop,), name=f"rtmp:{self.url}"
        )
        self._thread.start()
        self._tasks.append(asyncio.create_task(self._read_video(), name="rtmp-video"))
        if self.audio is not None:
            self._tasks.append(asyncio.create_task(self._read_audio(), name="rtmp-audio"))
        log.info("rtmp %s: pushing (a keyframe every %d ms)", self.url, self.keyframe_ms)

    def _open(self) -> None:
        try:
            self._container = av.open(self.url, "w", format="flv")
        except (OSError, av.FFmpegError) as err:
            raise EgressError(f"rtmp: cannot open {self.url}: {err}") from err

    def _add_streams(self, width: int, height: int) -> MediaOutput:
        # Keyframes are forced on the stream's clock (``_write_video``), not every N frames:
        # live frames arrive late under load, and HLS cuts segments only at keyframes.
        video = add_h264_stream(
            self._container,
            self.fps,
            width,
            height,
            FLV_TIME_BASE,
            preset="veryfast",
            x264_params="keyint=infinite:scenecut=0",
            bit_rate=self.video_bitrate,
            # Millisecond encoder clock: frames of a burst (a far-behind live track) are
            # 1 ms apart and must not round to one frame slot.
            codec_time_base=True,
        )
        audio = None
        if self.audio is not None:
            audio = add_aac_stream(self._container, AAC_RATE, bit_rate=self.audio_bitrate)
        return MediaOutput(self._container, video, audio)

    def _enqueue(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _now_ms(self) -> int:
        return round((time.monotonic() - self._clock_start) * 1000.0)

    async def _read_video(self) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await self.video.recv()
                # A copy: the relay hands this frame object to every viewer's encoder.
                # PlayoutVideoTrack emits yuv420p; to_ndarray of the own format copies
                # the planes without a conversion.
                planes = frame.to_ndarray()
                ms = max(self._now_ms(), self._last_ms + 1)
                self._last_ms = ms
                self._enqueue(_VideoItem(planes, frame.width, frame.height, ms))

    async def _read_audio(self) -> None:
        assert self.audio is not None
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await self.audio.recv()
                samples = frame.to_ndarray().astype(np.int16, copy=False).reshape(1, -1)
                rate = int(frame.sample_rate)
                # Audio is contiguous on its own sample clock, which starts at the wall time
                # its first frame arrived (the track paces itself in real time).
                if self._audio_next == 0:
                    self._audio_next = round((time.monotonic() - self._clock_start) * rate)
                self._enqueue(_AudioItem(samples, rate, self._audio_next))
                self._audio_next += samples.shape[1]

    # encoder thread ----------------------------------------------------------------------

    def _encode_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while (item := self._queue.get()) is not _STOP:
                if isinstance(item, _VideoItem):
                    self._write_video(item)
                elif self._output is not None:  # audio before the first frame waits
                    self._write_audio(self._output, item)
        except Exception as err:  # reported to the owner, which reconnects later
            self.error = EgressError(f"rtmp {self.url}: stream broke: {err}")
            log.error("%s", self.error)
            loop.call_soon_threadsafe(self.failed.set)
            while self._queue.get() is not _STOP:
                pass
        finally:
            self._finalize()

    def _write_video(self, item: _VideoItem) -> None:
        if self._output is None:
            self._output = self._add_streams(item.width, item.height)
        frame = av.VideoFrame.from_ndarray(item.planes, format="yuv420p")
        frame.pts = item.ms
        frame.time_base = FLV_TIME_BASE
        if item.ms >= self._next_keyframe_ms:
            frame.pict_type = PictureType.I
            while self._next_keyframe_ms <= item.ms:
                self._next_keyframe_ms += self.keyframe_ms
        self._output.write_video(frame)
        self.frames_sent += 1

    def _write_audio(self, output: MediaOutput, item: _AudioItem) -> None:
        if output.audio is not None:
            output.write_audio(pcm_audio_frame(item.samples, item.sample_rate, item.start))

    def _finalize(self) -> None:
        if self._container is None:
            return
        try:
            if self.error is None and self._output is not None:
                self._output.flush()
        except Exception as err:
            log.warning("rtmp %s: flushing at the end failed: %s", self.url, err)
        finally:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None

    async def close(self) -> None:
        """Stop reading, flush and close the stream (blocking parts off the loop)."""
        self.video.stop()
        if self.audio is not None:
            self.audio.stop()
        await cancel_and_wait(self._tasks)
        if self._thread is not None:
            await asyncio.to_thread(self._queue.put, _STOP)
            await asyncio.to_thread(self._thread.join)
        elif self._container is not None:
            await asyncio.to_thread(self._container.close)
        log.info(
            "rtmp %s: closed (%d frames sent, %d dropped)", self.url, self.frames_sent, self.dropped
        )
