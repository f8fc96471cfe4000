"""Live rate control (sans-I/O): which incoming motion frames a lagging session renders.

A producer such as a mocap rig sends at a fixed rate and cannot slow down. When the
pipeline renders fewer frames per second than arrive, every frame it queues adds latency
for good. ``RateControl`` keeps a *keep ratio*: the fraction of incoming frames rendered.

- Signal: the pipeline's backlog, frames submitted that the model worker has not taken yet.
  It grows exactly when frames arrive faster than the worker takes them (unlike latency,
  which also grows when fewer frames arrive, because the sampler waits for a full window).
- Control (AIMD): each frame, a backlog above ``max_backlog`` shrinks the ratio by
  ``decrease``; otherwise it grows by ``increase``, back to 1 (render everything).
- Selection: an accumulator admits a frame each time the kept fraction adds up to one, so
  skipped frames are spread evenly (a steady lower frame rate, not bursts of jumps).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RateControl:
    """Decide per incoming frame whether to render it; see the module docstring."""

    max_backlog: int
    min_keep: float = 0.1
    decrease: float = 0.93
    increase: float = 0.02
    keep: float = 1.0
    skipped: int = 0
    _credit: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.max_backlog < 0:
            raise ValueError("max_backlog must be >= 0")
        if not 0.0 < self.min_keep <= 1.0:
            raise ValueError("min_keep must be in (0, 1]")

    def admit(self, backlog: int) -> bool:
        """True when the frame arriving now should be rendered, given the current backlog."""
        if backlog > self.max_backlog:
            self.keep = max(self.min_keep, self.keep * self.decrease)
        else:
            self.keep = min(1.0, self.keep + self.increase)
        self._credit += self.keep
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        self.skipped += 1
        return False
