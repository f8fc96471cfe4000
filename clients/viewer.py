"""``anchor view``: a headless aiortc viewer that records what it receives.

Built on the server package's ``ViewerProbe`` (signaling, loopback ICE, per-frame seq from
the barcode); this adds a recorder. Both tracks are timed by arrival on one clock (the
first media to arrive is t = 0), which is what a viewer saw; frames are encoded on the
recorder's own thread (blocking work stays off the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients.viewer_client import ReceivedFrame, ViewerProbe, frame_seq
from model.errors import AnchorError
from server.encoding import (
    VIDEO_CLOCK_RATE,
    VIDEO_TIME_BASE,
    MediaOutput,
    add_aac_stream,
    add_h264_stream,
    even_size,
    pcm_audio_frame,
    rgb_video_frame,
)

log = logging.getLogger("anchor.view")
_STOP = object()


class MediaFileWriter:
    """Writes received video (H.264) and audio (AAC) into one file on a dedicated thread.

    video: av.VideoFrame as decoded at ``seconds`` after t = 0, converted to RGB on the
    writer's thread; audio: av.AudioFrame as decoded (s16, 48 kHz from Opus), placed at its
    arrival time, then contiguous.
    """

    def __init__(self, path: Path, fps: float = 30.0) -> None:
        self.path = path
        self.fps = fps
        # Unbounded by type; bounded in practice by the real-time rate of the two tracks
        # against an encoder far faster than real time at viewer resolutions.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"view-recorder:{path.name}")
        self._output: MediaOutput | None = None
        self._resampler: Any = None
        self._pending_audio: list[tuple[float, Any]] = []
        self._last_video_pts = -1
        self._next_audio_sample: int | None = None
        self.video_frames = 0
        self.audio_samples = 0
        self.error: BaseException | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def add_video(self, seconds: float, frame: Any) -> None:
        self._queue.put(("video", seconds, frame))

    def add_audio(self, seconds: float, frame: Any) -> None:
        self._queue.put(("audio", seconds, frame))

    def close(self) -> None:
        """Flush and finalize (blocking)."""
        self._queue.put(_STOP)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not _STOP:
                kind, seconds, payload = item
                if kind == "video":
                    self._write_video(seconds, payload)
                elif self._output is None:
                    self._pending_audio.append((seconds, payload))
                else:
                    self._write_audio(self._output, seconds, payload)
        except Exception as err:  # reported by close()
            self.error = err
            log.exception("recording %s failed", self.path)
            while self._queue.get() is not _STOP:
                pass
        finally:
            self._finalize()

    def _open(self, width: int, height: int) -> MediaOutput:
        container = av.open(str(self.path), "w")
        # Arrival times are irregular: a 1/fps codec clock would give two frames one pts.
        video = add_h264_stream(
            container, self.fps, width, height, VIDEO_TIME_BASE, codec_time_base=True
        )
        rate, layout = 48_000, "stereo"  # what aiortc's Opus decoder produces
        if self._pending_audio:
            rate = self._pending_audio[0][1].sample_rate
            layout = self._pending_audio[0][1].layout.name
        self._output = MediaOutput(container, video, add_aac_stream(container, rate, layout))
        self._resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
        # Open both encoders and write the header now: mp4 needs every stream's codec
        # parameters before the first packet, whichever track delivers first.
        container.start_encoding()
        pending, self._pending_audio = self._pending_audio, []
        for seconds, frame in pending:
            self._write_audio(self._output, seconds, frame)
        return self._output

    def _write_video(self, seconds: float, frame: Any) -> None:
        image = frame.to_ndarray(format="rgb24")
        output = self._output or self._open(*even_size(image))
        pts = max(round(seconds * VIDEO_CLOCK_RATE), self._last_video_pts + 1)
        self._last_video_pts = pts
        output.write_video(rgb_video_frame(image, output.video, pts, VIDEO_TIME_BASE))
        self.video_frames += 1

    def _write_audio(self, output: MediaOutput, seconds: float, frame: Any) -> None:
        rate = self._resampler.rate  # the AAC stream's
        if self._next_audio_sample is None:
            self._next_audio_sample = round(seconds * rate)
        frame.pts = None  # re-timed below: contiguous from its arrival
        for converted in self._resampler.resample(frame):
            out = pcm_audio_frame(
                converted.to_ndarray(), rate, self._next_audio_sample, converted.layout.name
            )
            self._next_audio_sample += out.samples
            self.audio_samples += out.samples
            output.write_audio(out)

    def _finalize(self) -> None:
        if self._output is not None:
            self._output.close()


class RecordingViewer(ViewerProbe):
    """A ``ViewerProbe`` (video and audio) that also records into ``record``."""

    def __init__(self, url: str, record: Path | None = None, fps: float = 30.0) -> None:
        super().__init__(url, audio=True)
        self.writer = MediaFileWriter(record, fps) if record is not None else None
        self.origin: float | None = None
        self.audio_received_samples = 0
        self.audio_rate = 0

    def _seconds(self, arrival: float) -> float:
        if self.origin is None:
            self.origin = arrival
        return arrival - self.origin

    async def _read_video(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                arrival = time.monotonic()
                # No RGB conversion on the loop (ViewerProbe's frame_seq says why).
                self.frames.append(ReceivedFrame(arrival, int(frame.pts), frame_seq(frame)))
                if self.writer is not None:
                    self.writer.add_video(self._seconds(arrival), frame)
                self._frame_event.set()

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                arrival = time.monotonic()
                self.audio_frames += 1
                self.audio_received_samples += frame.samples
                self.audio_rate = frame.sample_rate
                if self.writer is not None:
                    self.writer.add_audio(self._seconds(arrival), frame)

    def statistics(self) -> dict[str, Any]:
        """Frames received, fps, distinct seqs, audio seconds, server-reported latency."""
        frames = self.frames
        fps = 0.0
        if len(frames) >= 2 and frames[-1].received_at > frames[0].received_at:
            fps = (len(frames) - 1) / (frames[-1].received_at - frames[0].received_at)
        latencies = [
            float(message["latency_ms"])
            for message in self.messages
            if message.get("type") == "status" and message.get("running")
        ]
        seqs = {frame.seq for frame in frames if frame.seq is not None}
        return {
            "frames_received": len(frames),
            "fps": round(fps, 2),
            "distinct_seqs": len(seqs),
            "audio_seconds": round(self.audio_received_samples / self.audio_rate, 3)
            if self.audio_rate
            else 0.0,
            "server_latency_ms_median": round(statistics.median(latencies), 1)
            if latencies
            else None,
        }

    async def close(self) -> None:
        await super().close()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)


def view_url(url: str) -> str:
    """Accept the viewer page URL (http[s]://HOST/sessions/ID) or the signaling URL."""
    if url.startswith(("http://", "https://")):
        scheme = "wss" if url.startswith("https://") else "ws"
        rest = url.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        return f"{scheme}://{rest}/view"
    return url


async def view_command(
    url: str, record: Path | None, seconds: float | None, fps: float
) -> dict[str, Any]:
    """What ``anchor view`` runs: connect, receive (and record) for ``seconds`` or until
    the run ends or Ctrl-C; returns the statistics."""
    viewer = RecordingViewer(url, record, fps)
    try:
        await viewer.connect()
        started = time.monotonic()
        while seconds is None or time.monotonic() - started < seconds:
            if any(message.get("type") == "ended" for message in viewer.messages):
                break
            if (reason := abnormal_end(viewer)) is not None:
                raise AnchorError(f"the stream ended abnormally: {reason}")
            await asyncio.sleep(0.1)
    finally:
        await viewer.close()
    return viewer.statistics()


def abnormal_end(viewer: Any) -> str | None:
    """Why ``viewer``'s stream is over without an ``ended`` message, or None while it goes on:
    the signaling socket closed (its close code and reason), a fatal error, the peer failed."""
    for message in viewer.messages:
        if message.get("type") == "error" and message.get("fatal"):
            reason = f" ({message['reason']})" if message.get("reason") else ""
            return f"server error{reason}: {message.get('message')}"
    socket = viewer._socket
    if socket is not None and socket.close_code is not None:
        return f"signaling closed with {socket.close_code} {socket.close_reason or ''}".strip()
    peer = viewer.peer
    if peer is not None and peer.connectionState in ("failed", "closed"):
        return f"WebRTC connection {peer.connectionState}"
    return None
