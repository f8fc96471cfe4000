"""LiveEdgeTrack: a backlog after a stall is dropped (latest frame wins), a viewer that
keeps up sees every frame, and one that is persistently late still sees frames."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack

from clients.live_edge import VIDEO_CLOCK_RATE, LiveEdgeTrack


class QueuedTrack(MediaStreamTrack):
    """A video track whose frames the test pushes."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    async def recv(self) -> Any:
        return await self.queue.get()


def _frame(pts_s: float) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
    frame.pts = round(pts_s * VIDEO_CLOCK_RATE)
    return frame


def test_backlog_dropped_keeping_up_and_persistently_late_viewers_see_frames() -> None:
    async def main() -> None:
        now = [100.0]
        source = QueuedTrack()
        track = LiveEdgeTrack(source, stale_s=1.0, clock=lambda: now[0])

        async def next_frame() -> Any:
            return await asyncio.wait_for(track.recv(), 10.0)  # none coming: a failure

        async def arrive(at: float, pts_s: float) -> None:
            now[0] = at
            source.queue.put_nowait(_frame(pts_s))
            for _ in range(3):  # let the pump take it
                await asyncio.sleep(0)

        # Keeping up: every frame is returned (arrival - pts constant).
        shown = []
        for index in range(30):
            await arrive(100.0 + index / 30, index / 30)
            shown.append((await next_frame()).pts)
        assert len(shown) == 30 and track.stale == track.skipped == 0

        # A 4 s stall: the backlog (sent during the stall) arrives at once on resume.
        for index in range(120):
            await arrive(105.0, 1.0 + index / 30)
        newest = await next_frame()
        assert newest.pts == round((1.0 + 119 / 30) * VIDEO_CLOCK_RATE)  # latest wins
        assert track.stale >= 85  # sent over 1 s before the resume: dropped as backlog

        # Persistently 2 s late (an overloaded viewer): dropped for 1 s, then shown again.
        for index in range(60):
            await arrive(106.0 + index / 30, 4.0 + index / 30)
        late = await next_frame()
        assert late.pts == round((4.0 + 59 / 30) * VIDEO_CLOCK_RATE)
        await arrive(108.0, 6.0)
        assert (await next_frame()).pts == 6 * VIDEO_CLOCK_RATE
        await track.aclose()

    asyncio.run(main())
