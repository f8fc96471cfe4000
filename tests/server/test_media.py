from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from server.media import VIDEO_CLOCK_RATE, PlayoutVideoTrack, ShownFrame, read_seq, stamp_seq
from server.playout import PlayoutBuffer

FPS = 30.0


@pytest.mark.parametrize("width", [64, 128, 512])
def test_seq_barcode_round_trip(width: int) -> None:
    rng = np.random.default_rng(0)
    for seq in (0, 1, 777, 2**20 - 1):
        image = rng.integers(0, 256, (width, width, 3), dtype=np.uint8)
        assert read_seq(stamp_seq(image, seq)) == seq


def test_unstamped_frame_reads_none() -> None:
    assert read_seq(np.zeros((64, 64, 3), dtype=np.uint8)) is None


class SimulatedClock:
    """A clock that advances only when the track sleeps: deterministic under any load."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def stamped(seq: int, fps: float = FPS) -> ShownFrame:
    image = stamp_seq(np.zeros((64, 64, 3), dtype=np.uint8), seq)
    return ShownFrame(seq, seq / fps, image, 0.0)


def make_track(clock: SimulatedClock, delay: int = 6, capacity: int = 40) -> PlayoutVideoTrack:
    return PlayoutVideoTrack(FPS, 64, 64, delay, capacity, clock=clock.time, sleep=clock.sleep)


async def read(
    track: PlayoutVideoTrack, until_seq: int, limit: int = 400
) -> list[tuple[int, int | None]]:
    """(pts, seq) of frames read until ``until_seq`` shows (at most ``limit`` reads)."""
    shown: list[tuple[int, int | None]] = []
    for _ in range(limit):
        frame = await track.recv()
        assert frame.pts is not None
        shown.append((frame.pts, read_seq(frame.to_ndarray(format="rgb24"))))
        if shown[-1][1] == until_seq:
            break
    return shown


def distinct(shown: list[tuple[int, int | None]]) -> list[tuple[int, int]]:
    """(pts, seq) of the first appearance of each stamped frame, in order."""
    seen: list[tuple[int, int]] = []
    for pts, seq in shown:
        if seq is not None and (not seen or seen[-1][1] != seq):
            seen.append((pts, seq))
    return seen


def test_burst_plays_out_every_frame_at_its_pts() -> None:
    async def main() -> None:
        clock = SimulatedClock()
        track = make_track(clock)
        burst = 12
        for seq in range(burst):  # one sampler commit: every frame at the same instant
            track.publish(stamped(seq))
        shown = await read(track, burst - 1)
        track.stop()
        pts = [pts for pts, _ in shown]
        assert all(later > earlier for earlier, later in itertools.pairwise(pts))
        frames = distinct(shown)
        assert [seq for _, seq in frames] == list(range(burst))
        # consecutive frames are one frame period apart on the 90 kHz clock, as stamped
        steps = {later - earlier for (earlier, _), (later, _) in itertools.pairwise(frames)}
        assert steps == {round(VIDEO_CLOCK_RATE / FPS)}
        assert track.buffer.dropped == 0

    asyncio.run(main())


def test_bursts_on_schedule_play_without_gaps_or_drops() -> None:
    async def main() -> None:
        clock = SimulatedClock()
        track = make_track(clock, delay=6)
        stride, bursts = 6, 5
        shown: list[tuple[int, int | None]] = []
        for burst in range(bursts):
            for seq in range(burst * stride, (burst + 1) * stride):
                track.publish(stamped(seq))
            # the next commit arrives one stride of real time later
            while clock.now < (burst + 1) * stride / FPS:
                shown += await read(track, -1, limit=1)
        shown += await read(track, bursts * stride - 1)
        track.stop()
        seqs = [seq for _, seq in shown if seq is not None]
        first = seqs.index(0)
        # from the first frame on, every read shows the next frame: no repeat, no skip
        assert seqs[first:] == list(range(bursts * stride))
        assert track.buffer.restarts == 0 and track.buffer.dropped == 0

    asyncio.run(main())


def test_far_behind_reader_drops_to_the_newest_frame() -> None:
    async def main() -> None:
        clock = SimulatedClock()
        track = make_track(clock, delay=0)
        for seq in range(30):
            track.publish(stamped(seq))
        clock.now = 2.0  # the reader stalled for two seconds: every frame is overdue
        frame = await track.recv()
        assert frame.pts is not None
        assert read_seq(frame.to_ndarray(format="rgb24")) == 29
        assert track.buffer.dropped == 29
        # the source is late too now: its next frame restarts the schedule, due after the delay
        track.publish(stamped(30))
        assert track.buffer.restarts == 1
        after = await read(track, 30)
        assert after[-1][1] == 30 and after[-1][0] > frame.pts
        track.stop()

    asyncio.run(main())


def test_source_ahead_of_real_time_is_bounded() -> None:
    buffer: PlayoutBuffer[ShownFrame] = PlayoutBuffer(delay_s=0.2, late_s=0.1, capacity=10)
    for seq in range(100):  # pts advance 100 frames while the wall clock stands still
        buffer.publish(stamped(seq), now=0.0)
    assert len(buffer) == 10 and buffer.dropped == 90
    # the oldest frame kept is due now: the buffer adds no more than its capacity of latency
    assert buffer.next_due() == pytest.approx(0.0)
    taken = buffer.take(0.0)
    assert taken is not None and taken.frame.seq == 90


def test_pts_going_back_starts_a_new_timeline() -> None:
    buffer: PlayoutBuffer[ShownFrame] = PlayoutBuffer(delay_s=0.2, late_s=0.1, capacity=10)
    for seq in range(5):
        buffer.publish(stamped(seq), now=0.0)
    due = buffer.publish(stamped(0), now=0.05)  # after `clear` the producer restarts at pts 0
    assert len(buffer) == 1 and due == pytest.approx(0.25)


def test_schedule_catches_up_after_a_slow_start() -> None:
    """A 2 s warm-up before the first frame, then frames arrive in real time 50 ms after
    their pts: the schedule must not keep the warm-up's latency for the rest of the run."""
    delay, fps = 0.2, 30.0
    buffer: PlayoutBuffer[ShownFrame] = PlayoutBuffer(delay_s=delay, late_s=2 / fps, capacity=90)
    arrival = {seq: 2.0 + seq / fps for seq in range(5)}  # the backlog of the warm-up
    arrival.update({seq: seq / fps + 0.05 for seq in range(5, 200)})
    latencies = []
    for seq in range(200):
        now = max(arrival[seq], arrival.get(seq - 1, 0.0))
        due = buffer.publish(stamped(seq), now=now)
        while buffer.take(now) is not None:
            pass
        latencies.append(due - seq / fps)
    assert latencies[0] == pytest.approx(2.0 + delay)
    assert buffer.catchups >= 1 and buffer.restarts == 0
    # once caught up, each frame is due its processing latency plus the playout delay
    assert latencies[-1] == pytest.approx(0.05 + delay, abs=1e-6)


def test_schedule_on_time_never_shifts() -> None:
    buffer: PlayoutBuffer[ShownFrame] = PlayoutBuffer(delay_s=0.2, late_s=0.1, capacity=30)
    stride, fps, frames = 6, 30.0, 120
    shown = []
    for tick in range(frames + 12):  # the reader looks once per frame period
        now = tick / fps
        if tick % stride == 0:  # a burst of `stride` frames arrives exactly on time
            for seq in range(tick, min(tick + stride, frames)):
                buffer.publish(stamped(seq), now=now)
        taken = buffer.take(now)
        if taken is not None:
            shown.append(taken.frame.seq)
    assert shown == list(range(frames))
    assert buffer.catchups == 0 and buffer.restarts == 0 and buffer.dropped == 0
