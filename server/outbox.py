"""The outgoing JSON messages of one connection, bounded."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class Outbox:
    """Outgoing JSON messages of one connection, sent by a task its handler owns.

    Bounded: a peer that stops reading cannot make the server buffer without limit. Producer
    outboxes close the connection when full (acks must never be lost silently); viewer
    outboxes drop status messages when full (each one supersedes the previous).
    """

    def __init__(self, maxsize: int, drop_when_full: bool) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self.drop_when_full = drop_when_full
        self.overflowed = asyncio.Event()

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(json.dumps(message))
        except asyncio.QueueFull:
            if not self.drop_when_full:
                self.overflowed.set()

    def close(self) -> None:
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            self.overflowed.set()

    async def drained(self, limit_s: float) -> bool:
        """Wait up to ``limit_s`` until every queued message was sent (its sending task calls
        ``task_done`` per message); True if they were."""
        try:
            await asyncio.wait_for(self.queue.join(), limit_s)
        except TimeoutError:
            return False
        return True
