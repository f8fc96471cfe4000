"""Live media tracks of a session and the seq barcode.

One ``LatestFrameVideoTrack`` and one ``PtsAlignedAudioTrack`` per session are the sources;
every viewer gets a ``MediaRelay(buffered=False)`` proxy of them, so a stalled viewer only
loses its own frames and never slows the source, the producer or the other viewers.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)
# Opus runs at 48 kHz; audio frames of 20 ms are what WebRTC packetizes.
AUDIO_OUTPUT_RATE = 48_000
AUDIO_PTIME = 0.020
# Pacing falls "far behind" after this many frame periods late: the schedule restarts from now
# instead of bursting frames to catch up (a burst is latency that never comes back).
FAR_BEHIND_PERIODS = 4

BARCODE_BITS = 20
# Cells of the seq barcode: a white start cell, BARCODE_BITS data bits, a black stop cell
# (so a reader can tell a stamped frame from an unstamped one), in two rows of 11 so the
# cells stay large enough to survive VP8/H.264 at the 64-pixel tiny preset.
_BARCODE_CELLS = BARCODE_BITS + 2
_BARCODE_ROWS = 2
_BARCODE_COLUMNS = _BARCODE_CELLS // _BARCODE_ROWS
_MAX_CELL = 16


def barcode_cell_size(width: int) -> int:
    """Side in pixels of one barcode cell for frames ``width`` pixels wide."""
    return min(_MAX_CELL, max(2, width // _BARCODE_COLUMNS))


def _cell_origin(index: int, cell: int) -> tuple[int, int]:
    row, column = divmod(index, _BARCODE_COLUMNS)
    return row * cell, column * cell


def stamp_seq(image: np.ndarray, seq: int) -> np.ndarray:
    """Write ``seq`` as black/white cells in the top-left corner of ``image``, in place.

    image: (H, W, 3) uint8 RGB. Each cell is a flat square of 0 or 255, which survives lossy
    video coding. Returns ``image``.
    """
    height, width = image.shape[:2]
    cell = barcode_cell_size(width)
    if cell * _BARCODE_COLUMNS > width or cell * _BARCODE_ROWS > height:
        raise ValueError(f"frame {width}x{height} is too small for a seq barcode")
    bits = [1] + [(seq >> bit) & 1 for bit in range(BARCODE_BITS)] + [0]
    for index, bit in enumerate(bits):
        top, left = _cell_origin(index, cell)
        image[top : top + cell, left : left + cell] = 255 if bit else 0
    return image


def read_seq(image: np.ndarray) -> int | None:
    """The seq stamped by ``stamp_seq`` into ``image`` (H, W, 3) uint8, or None if unstamped."""
    cell = barcode_cell_size(image.shape[1])
    centre = cell // 2
    bits = []
    for index in range(_BARCODE_CELLS):
        top, left = _cell_origin(index, cell)
        bits.append(int(image[top + centre, left + centre].mean() > 127))
    if bits[0] != 1 or bits[-1] != 0:
        return None
    return sum(bit << position for position, bit in enumerate(bits[1:-1]))


@dataclass(slots=True)
class ShownFrame:
    """What the video source currently shows: the image and the motion pts it came from."""

    seq: int
    pts: float
    image: np.ndarray  # (H, W, 3) uint8 RGB
    committed_at: float  # time.monotonic() when the frame reached the output


class LatestFrameVideoTrack(MediaStreamTrack):
    """Video source paced at ``fps`` on a 90 kHz clock: latest frame wins, repeats when idle.

    ``publish`` replaces the current frame (frames between two ticks are skipped for live
    viewers; the recording still has every frame). ``recv`` waits for the next tick, restarts
    the schedule when more than FAR_BEHIND_PERIODS late, and returns the newest frame with a
    strictly increasing pts.
    """

    kind = "video"

    def __init__(self, fps: float, width: int, height: int) -> None:
        super().__init__()
        self.fps = fps
        self._period = 1.0 / fps
        self._blank = np.zeros((height, width, 3), dtype=np.uint8)
        self.current: ShownFrame | None = None
        self._schedule_start: float | None = None
        self._ticks = 0
        self._pts_offset = 0
        self.last_pts = -1
        self.schedule_resets = 0

    def publish(self, frame: ShownFrame) -> None:
        """Make ``frame`` the one shown from the next tick on."""
        self.current = frame

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._schedule_start is None:
            self._schedule_start = now
        else:
            self._ticks += 1
            deadline = self._schedule_start + self._ticks * self._period
            if now - deadline > FAR_BEHIND_PERIODS * self._period:
                self._pts_offset = self.last_pts + 1
                self._schedule_start, self._ticks = now, 0
                self.schedule_resets += 1
            else:
                await asyncio.sleep(max(0.0, deadline - now))
        if self.readyState != "live":
            raise MediaStreamError
        pts = self._pts_offset + round(self._ticks * self._period * VIDEO_CLOCK_RATE)
        pts = max(pts, self.last_pts + 1)
        self.last_pts = pts
        image = self.current.image if self.current is not None else self._blank
        # yuv420p here, once: MediaRelay hands this same frame object to every viewer's
        # encoder thread, and concurrent reformat() calls on one frame hang in libav.
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame


class PtsAlignedAudioTrack(MediaStreamTrack):
    """Producer audio for viewers, released in step with the video by pts.

    Audio arrives with the motion, long before the pipeline commits the frames it belongs
    to; each 20 ms tick emits the samples whose pts is not later than the motion pts of the
    frame the video source shows, silence otherwise. Output: s16 mono at the producer's rate
    (aiortc's Opus encoder resamples).
    """

    kind = "audio"

    def __init__(self, video: LatestFrameVideoTrack, sample_rate: int) -> None:
        super().__init__()
        self._video = video
        self.sample_rate = sample_rate
        self._samples_per_frame = round(AUDIO_PTIME * sample_rate)
        # (pts of first sample in seconds, samples int16); bounded by the caller's credits
        # because audio older than the shown video is consumed every tick.
        self._chunks: deque[tuple[float, np.ndarray]] = deque()
        self._start: float | None = None
        self._timestamp = 0

    def push(self, pts: float, samples: np.ndarray) -> None:
        """Queue PCM16 mono ``samples`` (N,) int16 starting at ``pts`` seconds."""
        self._chunks.append((pts, samples))

    def clear(self) -> None:
        self._chunks.clear()

    def _take(self, count: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.int16)
        shown = self._video.current
        if shown is None:
            return out
        filled = 0
        while self._chunks and filled < count:
            pts, samples = self._chunks[0]
            if pts > shown.pts:
                break
            take = min(count - filled, len(samples))
            out[filled : filled + take] = samples[:take]
            filled += take
            if take == len(samples):
                self._chunks.popleft()
            else:
                self._chunks[0] = (pts + take / self.sample_rate, samples[take:])
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._timestamp += self._samples_per_frame
            wait = self._start + self._timestamp / self.sample_rate - time.monotonic()
            await asyncio.sleep(max(0.0, wait))
        samples = self._take(self._samples_per_frame)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        return frame
