"""A received video track that stays at the live edge: latest frame wins.

A viewer that stops reading (its event loop blocked, the process stopped, the application
busy) finds, on resume, a backlog: RTP packets queued in the kernel's UDP buffer and
decoded frames queued in aiortc's receiver. Played in order they are a burst of old frames
and the viewer stays seconds behind. ``LiveEdgeTrack`` drops both kinds of backlog:

- a pump task reads the source continuously and keeps only the newest decoded frame, so a
  consumer that reads late gets the newest frame, never a queue;
- a frame whose arrival is more than ``stale_s`` later than its RTP timestamp predicts is
  dropped. The prediction is the smallest (arrival - pts) seen so far: the server stamps
  video pts from its wall clock (90 kHz), so that difference is constant up to jitter
  while the viewer keeps up, and grows by the stall for every frame of a backlog. A
  backlog arrives as one burst on resume; frames that keep arriving late for longer than
  ``stale_s`` are a viewer that is persistently slower (an overloaded machine), not a
  backlog: the prediction is reset to them, so such a viewer still sees every frame it
  can decode, late, rather than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

VIDEO_CLOCK_RATE = 90_000
# More than any network and decode jitter of a live viewer, much less than a stall.
STALE_S = 1.0


class LiveEdgeTrack(MediaStreamTrack):
    """Wraps a received video track; ``recv()`` returns the newest fresh frame.

    skipped: frames dropped because a newer one arrived before the consumer read.
    stale: frames dropped because they arrived more than ``stale_s`` late (a backlog)."""

    kind = "video"

    def __init__(
        self,
        source: MediaStreamTrack,
        stale_s: float = STALE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """clock: seconds, the arrival time of each frame (time.monotonic; tests step it)."""
        super().__init__()
        self._clock = clock
        self.source = source
        self.stale_s = stale_s
        self.skipped = 0
        self.stale = 0
        self._latest: Any = None
        self._ended = False
        self._arrived = asyncio.Event()
        self._offset: float | None = None  # smallest (arrival - pts seconds) seen
        self._last_pts: int | None = None
        self._stale_since: float | None = None  # arrival of the first of a run of stale frames
        self._pump = asyncio.create_task(self._run(), name="live-edge-pump")

    def _is_stale(self, frame: Any) -> bool:
        pts = int(frame.pts)
        if self._last_pts is not None and pts < self._last_pts:
            self._offset = None  # RTP timestamp wrapped or a new stream: new baseline
        self._last_pts = pts
        now = self._clock()
        lateness = now - pts / VIDEO_CLOCK_RATE
        if self._offset is None or lateness < self._offset:
            self._offset = lateness
        if lateness - self._offset <= self.stale_s:
            self._stale_since = None
            return False
        if self._stale_since is None:
            self._stale_since = now
        elif now - self._stale_since > self.stale_s:  # persistently late: not a backlog
            self._offset, self._stale_since = lateness, None
            return False
        return True

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.source.recv()
                if self._is_stale(frame):
                    self.stale += 1
                    continue
                if self._latest is not None:
                    self.skipped += 1
                self._latest = frame
                self._arrived.set()
        except MediaStreamError:
            pass
        finally:
            self._ended = True
            self._arrived.set()

    async def recv(self) -> Any:
        """The newest fresh frame not returned yet; MediaStreamError once the source ended."""
        while self._latest is None:
            if self._ended:
                raise MediaStreamError
            self._arrived.clear()
            await self._arrived.wait()
        frame, self._latest = self._latest, None
        return frame

    def stop(self) -> None:
        super().stop()
        self._pump.cancel()

    async def aclose(self) -> None:
        """Stop and wait for the pump task."""
        self.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
