from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from server.media import LatestFrameVideoTrack, ShownFrame, read_seq, stamp_seq


@pytest.mark.parametrize("width", [64, 128, 512])
def test_seq_barcode_round_trip(width: int) -> None:
    rng = np.random.default_rng(0)
    for seq in (0, 1, 777, 2**20 - 1):
        image = rng.integers(0, 256, (width, width, 3), dtype=np.uint8)
        assert read_seq(stamp_seq(image, seq)) == seq


def test_unstamped_frame_reads_none() -> None:
    assert read_seq(np.zeros((64, 64, 3), dtype=np.uint8)) is None


def test_video_track_pts_increase_and_latest_frame_wins() -> None:
    async def main() -> None:
        track = LatestFrameVideoTrack(fps=100.0, width=64, height=64)
        pts: list[int] = []
        seqs: list[int | None] = []
        for index in range(6):
            image = stamp_seq(np.zeros((64, 64, 3), dtype=np.uint8), index)
            # two frames published per tick: only the newer one is shown
            track.publish(ShownFrame(index * 10, 0.0, image, 0.0))
            track.publish(ShownFrame(index * 10 + 1, 0.0, image.copy(), 0.0))
            frame = await track.recv()
            assert frame.pts is not None
            pts.append(frame.pts)
            seqs.append(read_seq(frame.to_ndarray(format="rgb24")))
        # nothing new: the last frame repeats with a later pts
        repeat = await track.recv()
        track.stop()
        assert all(later > earlier for earlier, later in itertools.pairwise(pts))
        assert repeat.pts is not None and repeat.pts > pts[-1]
        assert seqs == list(range(6))
        assert read_seq(repeat.to_ndarray(format="rgb24")) == 5

    asyncio.run(main())
