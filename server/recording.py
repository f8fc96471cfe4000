"""Per-session recording: every committed frame and the producer audio into an mp4, plus the
motion each frame came from in a sidecar ``.npz``.

Encoding blocks, so it runs on the recorder's own thread. The mp4 is fragmented
(``frag_keyframe``) so even a file cut short by a hard kill stays playable up to its last
fragment; a normal end, a producer disconnect and SIGTERM all run ``close`` which flushes the
encoder and writes the tail. ``delay_moov`` (not ``empty_moov``): the moov is written with the
first fragment, once the AAC encoder's 1024 priming samples are known, so it carries the edit
list that trims them and the audio plays at its pts (an empty moov cannot, and every sample
would play 64 ms late at 16 kHz).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from model.motion.frame import MotionFrame
from model.motion.readers import write_motion
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

log = logging.getLogger("anchor.recording")


@dataclass(slots=True)
class RecordedFrame:
    """One committed frame to record. image: (H, W, 3) uint8 RGB; pts in seconds."""

    seq: int
    pts: float
    image: np.ndarray
    motion: MotionFrame | None


@dataclass(slots=True)
class RecordedAudio:
    """PCM16 mono samples (N,) int16 starting at ``pts`` seconds."""

    pts: float
    samples: np.ndarray


_STOP = object()


class SessionRecorder:
    """Writes ``<base>.mp4`` (H.264 + AAC) and ``<base>.motion.npz`` on a dedicated thread.

    ``on_written(seq)`` is called from the recorder thread after each frame is encoded; the
    session returns the producer's credit for that frame only then, so the recorder's queue
    is bounded by the credit window and nothing committed is ever dropped.
    """

    def __init__(
        self,
        base: Path,
        fps: float,
        audio_sample_rate: int,
        on_written: Callable[[int], None],
        on_failed: Callable[[BaseException], None],
    ) -> None:
        self.video_path = base.with_suffix(".mp4")
        self.motion_path = base.with_suffix(".motion.npz")
        self.fps = fps
        self.audio_sample_rate = audio_sample_rate
        self._on_written = on_written
        self._on_failed = on_failed
        # Unbounded by type, bounded in practice: frames enter only while the producer holds
        # credits, and a credit comes back only after its frame was written here.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"recorder:{base.name}")
        self._output: MediaOutput | None = None
        self._last_video_pts = -1
        self._audio_next_sample = 0
        self._pending_audio: list[RecordedAudio] = []
        self._motion: list[MotionFrame] = []
        self.frames_written = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self.video_path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def add_frame(self, frame: RecordedFrame) -> None:
        self._queue.put(frame)

    def add_audio(self, audio: RecordedAudio) -> None:
        self._queue.put(audio)

    def close(self) -> None:
        """Flush everything queued, finalize both files, join the thread (blocking)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    # recorder thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if self.error is not None:
                    continue
                if isinstance(item, RecordedFrame):
                    self._write_frame(item)
                    self._on_written(item.seq)
                else:
                    self._write_audio(item)
        except Exception as err:  # reported to the session, which ends with the error
            self.error = err
            log.exception("recording %s failed", self.video_path)
            self._on_failed(err)
            self._drain()
        finally:
            self._finalize()

    def _drain(self) -> None:
        while self._queue.get() is not _STOP:
            pass

    def _open(self, width: int, height: int) -> MediaOutput:
        container = av.open(
            str(self.video_path),
            "w",
            options={"movflags": "frag_keyframe+delay_moov+default_base_moof"},
        )
        video = add_h264_stream(
            container, self.fps, width, height, VIDEO_TIME_BASE, codec_time_base=True
        )
        return MediaOutput(container, video, add_aac_stream(container, self.audio_sample_rate))

    def _write_frame(self, frame: RecordedFrame) -> None:
        if self._output is None:
            self._output = self._open(*even_size(frame.image))
            pending, self._pending_audio = self._pending_audio, []
            for audio in pending:
                self._write_audio(audio)
        # Motion pts may restart after `clear`; the file's timeline must still increase.
        pts = max(round(frame.pts * VIDEO_CLOCK_RATE), self._last_video_pts + 1)
        self._last_video_pts = pts
        self._output.write_video(
            rgb_video_frame(frame.image, self._output.video, pts, VIDEO_TIME_BASE)
        )
        if frame.motion is not None:
            self._motion.append(frame.motion)
        self.frames_written += 1

    def _write_audio(self, audio: RecordedAudio) -> None:
        if self._output is None:
            # The container opens with the first frame (its size is known only then).
            self._pending_audio.append(audio)
            return
        start = max(round(audio.pts * self.audio_sample_rate), self._audio_next_sample)
        audio_frame = pcm_audio_frame(audio.samples, self.audio_sample_rate, start)
        self._audio_next_sample = start + audio_frame.samples
        self._output.write_audio(audio_frame)

    def _finalize(self) -> None:
        if self._output is not None:
            self._output.close()
        if self._motion:
            write_motion(self.motion_path, self._motion, fps=self.fps)
        log.info("recording %s closed: %d frames", self.video_path, self.frames_written)
