"""The playout schedule of a session's live video: sans-I/O, fed with frames and the time.

The pipeline commits frames in bursts (the low sampler commits ``ws - os`` frames at once,
the end of a run the whole tail). Shown as they arrive, a viewer would see only the last
frame of each burst. ``PlayoutBuffer`` instead gives every frame a due time: its media pts
on a wall-clock timeline shifted by a fixed playout delay, so a burst plays out at the pace
its pts say.

Policy (each rule bounds the latency the buffer adds):
- anchor: the first frame (and the first after the pts went backwards, i.e. a new
  timeline after ``clear``) is due ``delay`` after it arrived; every later frame is due at
  ``anchor + (pts - anchor pts)``;
- a frame that arrives after its due time means the source fell behind the schedule
  (pipeline slower than real time, a stall): the schedule restarts from that frame, due
  ``delay`` after now (a pause, like a rebuffer; never a burst of stale frames);
- when the consumer falls behind (nothing read for a while), a due frame is dropped once it
  is more than ``late`` overdue while its successor is due too: latest wins, and the
  latency comes back to the schedule;
- catch-up: over every ``catchup_s`` of media time, the smallest slack (due time minus
  arrival time) of the frames that arrived is tracked; when even the tightest frame arrived
  more than ``delay + late`` ahead of its due time, the schedule moves earlier by the
  excess. A slow start (model warm-up, the first window) would otherwise set the latency of
  the whole run, because a schedule never moves on its own once the source keeps up;
- at most ``capacity`` frames are queued; a frame beyond that drops the oldest and pulls the
  schedule forward so the new oldest is due now, so a source that runs ahead of real time
  (pts faster than the wall clock) cannot make latency grow without bound.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Timed(Protocol):
    @property
    def pts(self) -> float: ...


FrameT = TypeVar("FrameT", bound=Timed)


@dataclass(slots=True)
class Scheduled(Generic[FrameT]):
    """A queued frame and the wall-clock time (seconds, the caller's clock) it is due."""

    frame: FrameT
    due: float


class PlayoutBuffer(Generic[FrameT]):
    """Frames with pts (seconds) in, each frame out at its due time; see the module docstring.

    delay_s: the fixed playout delay. late_s: how far overdue a frame may be shown while a
    newer one is also due. capacity: most frames queued (>= 1).
    """

    def __init__(
        self, delay_s: float, late_s: float, capacity: int, catchup_s: float = 2.0
    ) -> None:
        if delay_s < 0 or late_s < 0:
            raise ValueError("playout delay and lateness must be >= 0")
        if capacity < 1:
            raise ValueError("playout capacity must be >= 1")
        self.delay_s = delay_s
        self.late_s = late_s
        self.capacity = capacity
        self._queue: deque[Scheduled[FrameT]] = deque()
        self._anchor: tuple[float, float] | None = None  # (media pts, wall time it is due)
        self._last_pts: float | None = None  # newest published pts
        self._released_pts: float | None = None  # newest pts taken or dropped
        self.catchup_s = catchup_s
        self._window_pts: float | None = None  # media pts where the catch-up window began
        self._min_slack = float("inf")  # smallest (due - arrival) in the window
        self.dropped = 0
        self.restarts = 0
        self.catchups = 0

    def __len__(self) -> int:
        return len(self._queue)

    def publish(self, frame: FrameT, now: float) -> float:
        """Queue ``frame`` arriving at ``now``; returns its due time."""
        if self._last_pts is not None and frame.pts < self._last_pts:
            self._queue.clear()  # a new timeline: the old one's frames are abandoned
            self._anchor = None
            self._window_pts = None
        self._last_pts = frame.pts
        self._drop_overdue(now)
        due = self._due(frame.pts)
        if due is None or due < now:
            if due is not None:
                self.restarts += 1
            self._anchor = (frame.pts, now + self.delay_s)
            due = now + self.delay_s
            self._window_pts = None
        self._queue.append(Scheduled(frame, due))
        self._track_slack(frame.pts, due - now)
        if len(self._queue) > self.capacity:
            self._drop_oldest()
            ahead = self._queue[0].due - now
            if ahead > 0:
                self._shift(-ahead)
        return self._queue[-1].due

    def take(self, now: float) -> Scheduled[FrameT] | None:
        """The next frame if it is due at ``now`` (dropping the ones too late), else None."""
        self._drop_overdue(now)
        if self._queue and self._queue[0].due <= now:
            scheduled = self._queue.popleft()
            self._released_pts = scheduled.frame.pts
            return scheduled
        return None

    def next_due(self) -> float | None:
        """Due time of the next queued frame, None when empty."""
        return self._queue[0].due if self._queue else None

    def shown_pts(self, now: float) -> float | None:
        """Media pts of the newest frame due at ``now`` (shown or dropped), None before any."""
        shown = self._released_pts
        for scheduled in self._queue:
            if scheduled.due > now:
                break
            shown = scheduled.frame.pts
        return shown

    def _due(self, pts: float) -> float | None:
        if self._anchor is None:
            return None
        anchor_pts, anchor_due = self._anchor
        return anchor_due + (pts - anchor_pts)

    def _track_slack(self, pts: float, slack: float) -> None:
        if self._window_pts is None:
            self._window_pts, self._min_slack = pts, slack
            return
        self._min_slack = min(self._min_slack, slack)
        if pts - self._window_pts < self.catchup_s:
            return
        excess = self._min_slack - self.delay_s
        if excess > self.late_s:
            self._shift(-excess)
            self.catchups += 1
        self._window_pts, self._min_slack = pts, float("inf")

    def _drop_overdue(self, now: float) -> None:
        while (
            len(self._queue) >= 2
            and self._queue[1].due <= now
            and now - self._queue[0].due > self.late_s
        ):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._released_pts = self._queue.popleft().frame.pts
        self.dropped += 1

    def _shift(self, seconds: float) -> None:
        for scheduled in self._queue:
            scheduled.due += seconds
        if self._anchor is not None:
            self._anchor = (self._anchor[0], self._anchor[1] + seconds)
