"""RTMP egress keeps every frame of a burst: frames a millisecond apart get their own
timestamps. The pusher writes FLV; here to a file (FFmpeg's FLV muxer, the same one that
feeds rtmp://), so no media server is needed for this check."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.egress import RtmpPusher


class BurstTrack(MediaStreamTrack):
    """Video frames delivered back to back, as a far-behind live track does."""

    kind = "video"

    def __init__(self, count: int) -> None:
        super().__init__()
        self.left = count

    async def recv(self) -> av.VideoFrame:
        if self.left == 0:
            raise MediaStreamError
        self.left -= 1
        image = np.full((64, 64, 3), 40 * (self.left % 6), dtype=np.uint8)
        return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")


def test_a_burst_of_frames_is_pushed_whole(tmp_path: Path) -> None:
    path = tmp_path / "burst.flv"

    async def main() -> RtmpPusher:
        pusher = RtmpPusher(str(path), BurstTrack(12), None, 30.0, 500_000, 64_000, 1.0)
        await pusher.start()
        await asyncio.sleep(0.5)
        await pusher.close()
        return pusher

    pusher = asyncio.run(main())
    assert not pusher.failed.is_set(), pusher.error
    with av.open(str(path)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    assert len(times) == 12
    assert all(later > earlier for earlier, later in itertools.pairwise(times))
