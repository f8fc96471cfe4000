"""Per-connection rate limiting (token bucket)."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows ``rate`` messages/s sustained with bursts of up to ``burst`` messages."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._updated = time.monotonic()

    def allow(self, now: float | None = None) -> bool:
        """Take one token if available; False means the message must be rejected."""
        current = time.monotonic() if now is None else now
        self._tokens = min(self.burst, self._tokens + (current - self._updated) * self.rate)
        self._updated = current
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
