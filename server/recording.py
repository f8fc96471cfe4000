"""Per-session recording: every committed frame and the producer audio into an mp4, plus the
motion each frame came from in a sidecar.

Encoding blocks, so it runs on the recorder's own thread.

Durability. The mp4 is fragmented, a fragment per second of video at most (a keyframe every
``fragment_frames`` frames, ``frag_keyframe``), and written through a file this module owns:
each time a fragment reaches the file it is ``os.fsync``-ed, and only then are its frames
reported written (``on_written``), which is when the session returns the producer's credits.
So after a hard kill the file is playable up to its last fragment and holds every credited
frame. The interleaver waits for nothing (``max_interleave_delta`` 1 us), so a recording
without audio reaches the disk as fast as one with it. The motion sidecar is appended as
JSON lines (the wire's JSON form, ``<base>.motion.jsonl``) and synced with each fragment;
``close`` turns it into ``<base>.motion.npz``.

Audio. The file opens at the first audio chunk or after one second of frames, whichever
comes first; the AAC stream exists when audio came first (live producers send it with every
frame, silence when there is none); audio that starts later is not recorded (logged once).
``delay_moov``: the moov is written with the first fragment, once the AAC encoder's 1024
priming samples are known, so it carries the edit list that trims them and the audio plays
at its pts; if the audio stopped before the encoder gave a packet, silence is added so the
moov (and every later fragment) is not held back. A video-only file uses ``empty_moov``.
"""

from __future__ import annotations

import json
import logging
import os
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
from model.motion.wire import encode_json, frame_from_dict
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
# Samples the AAC encoder takes before its first packet (1024 priming + one 1024 frame),
# with a frame to spare.
AAC_FIRST_PACKET_SAMPLES = 3 * 1024


class SessionRecorder:
    """Writes ``<base>.mp4`` (H.264 + AAC) and the motion sidecar on a dedicated thread.

    ``on_written(seq)`` is called from the recorder thread once the fragment holding the
    frame is fsync-ed (module docstring); the session returns the producer's credit for that
    frame only then, so the recorder's queue is bounded by the credit window and nothing
    committed is ever dropped. Frames wait for their fragment at most ``fragment_frames`` frames.
    """

    def __init__(
        self,
        base: Path,
        fps: float,
        audio_sample_rate: int,
        on_written: Callable[[int], None],
        on_failed: Callable[[BaseException], None],
        fragment_frames: int | None = None,
    ) -> None:
        """fragment_frames: video frames per fragment (None: one second's worth)."""
        self.video_path = base.with_suffix(".mp4")
        self.motion_path = base.with_suffix(".motion.npz")
        self.motion_log_path = base.with_suffix(".motion.jsonl")
        self.fps = fps
        self.keyframe_interval = fragment_frames or max(1, round(fps))
        self.audio_sample_rate = audio_sample_rate
        self._on_written = on_written
        self._on_failed = on_failed
        # Unbounded by type, bounded in practice: frames enter only while the producer holds
        # credits, and a credit comes back only after its frame was written here.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"recorder:{base.name}")
        self._output: MediaOutput | None = None
        self._file: Any = None
        self._motion_log: Any = None
        self._synced_bytes = 0
        # Seqs encoded and not yet on disk; the last keyframe's index in it starts the
        # fragment still being built.
        self._unsynced: list[int] = []
        self._fragment_start = 0
        self._last_video_pts = -1
        self._audio_next_sample = 0
        self._audio_dropped = False
        self._audio_fed = 0
        self._pending_audio: list[RecordedAudio] = []
        self._pending_frames: list[RecordedFrame] = []
        # Motion frames go to the JSON-lines sidecar only, which ``close`` reads back into the
        # npz: held in memory, a run's motion would grow with its length (about 2 kB a frame,
        # 4 MB a minute at 30 fps).
        self.motion_frames = 0
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
                    self._add_frame(item)
                else:
                    self._write_audio(item)
                self._sync_if_written()
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

    def _open(self, width: int, height: int, with_audio: bool) -> MediaOutput:
        # Unbuffered: the file position is what reached the OS, so a change means a
        # fragment (or the header) was written and is ready to fsync.
        self._file = open(self.video_path, "wb", buffering=0)  # noqa: SIM115 - closed in _finalize
        moov = "delay_moov" if with_audio else "empty_moov"
        container = av.open(
            self._file,
            "w",
            format="mp4",
            options={
                "movflags": f"frag_keyframe+{moov}+default_base_moof",
                "flush_packets": "1",
                "max_interleave_delta": "1",
            },
        )
        interval = self.keyframe_interval
        video = add_h264_stream(
            container,
            self.fps,
            width,
            height,
            VIDEO_TIME_BASE,
            codec_time_base=True,
            x264_params=f"keyint={interval}:min-keyint={interval}:scenecut=0",
        )
        audio = add_aac_stream(container, self.audio_sample_rate) if with_audio else None
        self._motion_log = open(self.motion_log_path, "w", encoding="utf-8")  # noqa: SIM115
        return MediaOutput(container, video, audio)

    def _add_frame(self, frame: RecordedFrame) -> None:
        if self._output is None:
            # The first second of frames waits for audio, which decides the file's streams.
            self._pending_frames.append(frame)
            if len(self._pending_frames) >= self.keyframe_interval or self._pending_audio:
                self._open_pending()
            return
        self._write_frame(frame)

    def _open_pending(self) -> None:
        frames, self._pending_frames = self._pending_frames, []
        audio, self._pending_audio = self._pending_audio, []
        self._output = self._open(*even_size(frames[0].image), with_audio=bool(audio))
        for chunk in audio:
            self._write_audio(chunk)
        for frame in frames:
            self._write_frame(frame)

    def _write_frame(self, frame: RecordedFrame) -> None:
        assert self._output is not None
        # Motion pts may restart after `clear`; the file's timeline must still increase.
        pts = max(round(frame.pts * VIDEO_CLOCK_RATE), self._last_video_pts + 1)
        self._last_video_pts = pts
        if self.frames_written % self.keyframe_interval == 0:
            # Fragments start at keyframes: what came before is complete once this is muxed.
            self._fragment_start = len(self._unsynced)
            if self.frames_written and self._audio_fed < AAC_FIRST_PACKET_SAMPLES:
                self._pad_audio(AAC_FIRST_PACKET_SAMPLES - self._audio_fed)
        self._output.write_video(
            rgb_video_frame(frame.image, self._output.video, pts, VIDEO_TIME_BASE)
        )
        self._unsynced.append(frame.seq)
        if frame.motion is not None:
            self._motion_log.write(encode_json(frame.motion) + "\n")
            self.motion_frames += 1
        self.frames_written += 1

    def _write_audio(self, audio: RecordedAudio) -> None:
        if self._output is None:
            # The container opens with the first frames (their size is known only then).
            self._pending_audio.append(audio)
            if self._pending_frames:
                self._open_pending()
            return
        if self._output.audio is None:
            if not self._audio_dropped:
                self._audio_dropped = True
                log.warning(
                    "recording %s: audio began after the video; not recorded", self.video_path
                )
            return
        start = max(round(audio.pts * self.audio_sample_rate), self._audio_next_sample)
        audio_frame = pcm_audio_frame(audio.samples, self.audio_sample_rate, start)
        self._audio_next_sample = start + audio_frame.samples
        self._audio_fed += audio_frame.samples
        self._output.write_audio(audio_frame)

    def _pad_audio(self, samples: int) -> None:
        if self._output is None or self._output.audio is None:
            return
        silence = np.zeros(samples, dtype=np.int16)
        self._write_audio(RecordedAudio(self._audio_next_sample / self.audio_sample_rate, silence))

    def _sync_if_written(self) -> None:
        """fsync what the muxer wrote; frames before the latest keyframe are then on disk
        (the fragment holding them was cut at that keyframe)."""
        if self._file is None or self._file.tell() == self._synced_bytes:
            return
        self._sync()
        done = self._unsynced[: self._fragment_start]
        del self._unsynced[: self._fragment_start]
        self._fragment_start = 0
        for seq in done:
            self._on_written(seq)

    def _sync(self) -> None:
        self._motion_log.flush()
        os.fsync(self._motion_log.fileno())
        os.fsync(self._file.fileno())
        self._synced_bytes = self._file.tell()

    def _read_motion_log(self) -> list[MotionFrame]:
        """Every motion frame of the sidecar, in order (validated again, exact: the JSON
        holds each float32 value's shortest repr)."""
        self._motion_log.flush()
        with open(self.motion_log_path, encoding="utf-8") as lines:
            return [frame_from_dict(json.loads(line)) for line in lines]

    def _finalize(self) -> None:
        try:
            if self._output is None and self._pending_frames and self.error is None:
                self._open_pending()
            if self._output is not None:
                self._output.close()
                self._sync()
                for seq in self._unsynced:
                    self._on_written(seq)
                self._unsynced.clear()
            if self.motion_frames:
                write_motion(self.motion_path, self._read_motion_log(), fps=self.fps)
                self.motion_log_path.unlink(missing_ok=True)
        except Exception as err:
            self.error = err
            log.exception("recording %s: finalizing failed", self.video_path)
            self._on_failed(err)
        finally:
            for handle in (self._file, self._motion_log):
                if handle is not None:
                    handle.close()
            self._output = self._file = self._motion_log = None
        log.info("recording %s closed: %d frames", self.video_path, self.frames_written)
