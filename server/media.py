"""Live media tracks of a session and the seq barcode.

One ``PlayoutVideoTrack`` and one ``PtsAlignedAudioTrack`` per session are the sources;
every viewer gets a ``MediaRelay(buffered=False)`` proxy of them, so a stalled viewer only
loses its own frames and never slows the source, the producer or the other viewers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.encoding import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, pcm_audio_frame
from server.playout import PlayoutBuffer

# Opus runs at 48 kHz; audio frames of 20 ms are what WebRTC packetizes.
AUDIO_OUTPUT_RATE = 48_000
AUDIO_PTIME = 0.020
# Audio that ended this long before the video on screen is never played (it would stay
# out of sync for good).
AUDIO_STALE_S = 1.0
# The reader falls "far behind" after this many frame periods late: repeats restart from now
# instead of bursting to catch up (a burst is latency that never comes back).
FAR_BEHIND_PERIODS = 4
# A frame more than this many periods overdue is dropped when a newer one is due too.
LATE_PERIODS = 2

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
    """The seq stamped by ``stamp_seq`` into ``image``, or None if unstamped.

    image: (H, W, 3) uint8 RGB, or (H, W) uint8 luma (the cells are black or white)."""
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


class PlayoutVideoTrack(MediaStreamTrack):
    """Video source that shows each committed frame at its pts plus a fixed playout delay.

    ``publish`` queues a frame in a ``PlayoutBuffer`` (``server.playout``: the schedule, its
    bound and its drop policy). ``recv`` returns the next frame when it is due, or repeats
    the frame on screen one period after the last one when nothing is due (a live track
    must keep sending), with a 90 kHz pts taken from the schedule: consecutive frames are
    ``pts`` apart as the producer stamped them, and pts strictly increase. The recording is
    fed separately and keeps every frame.

    clock/sleep: the time source (seconds) and how to wait; tests pass a simulated clock.
    """

    kind = "video"

    def __init__(
        self,
        fps: float,
        width: int,
        height: int,
        delay_frames: int,
        capacity_frames: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__()
        self.fps = fps
        self._period = 1.0 / fps
        self._clock = clock
        self._sleep = sleep
        self.buffer: PlayoutBuffer[ShownFrame] = PlayoutBuffer(
            delay_s=delay_frames * self._period,
            late_s=LATE_PERIODS * self._period,
            capacity=max(1, capacity_frames),
        )
        self._blank = np.zeros((height, width, 3), dtype=np.uint8)
        self.current: ShownFrame | None = None  # the frame on screen
        self._start: float | None = None  # wall time of pts 0
        self._last_emit: float | None = None  # wall time the last frame was shown for
        self.last_pts = -1
        self.schedule_resets = 0

    def publish(self, frame: ShownFrame) -> None:
        """Queue ``frame`` for its due time (event loop only)."""
        self.buffer.publish(frame, self._clock())

    def shown_pts(self) -> float | None:
        """Media pts (seconds) of the newest frame due now, whether or not a viewer reads."""
        return self.buffer.shown_pts(self._clock())

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            now = self._clock()
            if self._start is None:
                self._start = now
            taken = self.buffer.take(now)
            if taken is not None:
                self.current = taken.frame
                return self._emit(taken.frame.image, taken.due, now)
            if self._last_emit is None:
                return self._emit(self._shown_image(), now, now)
            repeat_at = self._last_emit + self._period
            next_due = self.buffer.next_due()
            # A frame due within a period after the repeat replaces it: no repeat squeezed in.
            wake = (
                next_due
                if next_due is not None and next_due < repeat_at + self._period
                else repeat_at
            )
            if wake > now:
                # At most one period per wait: a frame published meanwhile is seen in time.
                await self._sleep(min(wake - now, self._period))
                if self.readyState != "live":
                    raise MediaStreamError
                continue
            if wake == repeat_at:
                if now - repeat_at > FAR_BEHIND_PERIODS * self._period:
                    repeat_at = now  # the reader stalled: restart the repeat schedule
                    self.schedule_resets += 1
                return self._emit(self._shown_image(), repeat_at, now)

    def _shown_image(self) -> np.ndarray:
        return self.current.image if self.current is not None else self._blank

    def _emit(self, image: np.ndarray, at: float, now: float) -> av.VideoFrame:
        assert self._start is not None
        self._last_emit = max(at, now - FAR_BEHIND_PERIODS * self._period)
        pts = max(round((self._last_emit - self._start) * VIDEO_CLOCK_RATE), self.last_pts + 1)
        self.last_pts = pts
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
    frame due on the video's playout schedule, silence otherwise. Output: s16 mono at the
    producer's rate (aiortc's Opus encoder resamples).
    """

    kind = "audio"

    def __init__(self, video: PlayoutVideoTrack, sample_rate: int) -> None:
        super().__init__()
        self._video = video
        self.sample_rate = sample_rate
        self._samples_per_frame = round(AUDIO_PTIME * sample_rate)
        # (pts of first sample in seconds, samples int16); bounded by the producer's credits
        # (audio comes with the frames in flight) and by dropping audio that ended more than
        # AUDIO_STALE_S before the video on screen (no reader, or a reader that stalled).
        self._chunks: deque[tuple[float, np.ndarray]] = deque()
        self._start: float | None = None
        self._timestamp = 0

    def push(self, pts: float, samples: np.ndarray) -> None:
        """Queue PCM16 mono ``samples`` (N,) int16 starting at ``pts`` seconds."""
        self._chunks.append((pts, samples))
        self._drop_stale(self._video.shown_pts())

    def _drop_stale(self, shown: float | None) -> None:
        if shown is None:
            return
        while self._chunks:
            pts, samples = self._chunks[0]
            if pts + len(samples) / self.sample_rate >= shown - AUDIO_STALE_S:
                break
            self._chunks.popleft()

    def clear(self) -> None:
        self._chunks.clear()

    def _take(self, count: int) -> np.ndarray:
        out = np.zeros(count, dtype=np.int16)
        shown = self._video.shown_pts()
        if shown is None:
            return out
        self._drop_stale(shown)
        filled = 0
        while self._chunks and filled < count:
            pts, samples = self._chunks[0]
            if pts > shown:
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
        return pcm_audio_frame(
            self._take(self._samples_per_frame), self.sample_rate, self._timestamp
        )
