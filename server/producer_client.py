"""A motion producer over ``WS /sessions/{id}/motion`` that honours credits.

Used by ``anchor demo`` (replaying a clip in a loop), ``anchor bench e2e`` and the tests.
It counts its own frames in flight: +1 per frame sent, -1 per ``credit`` message, and
sends only while that count is below the limit the server announced in ``started``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from model.motion.frame import MotionFrame
from model.motion.wire import encode_binary, encode_json


class ProducerError(Exception):
    """The server answered with an error the producer did not expect."""


class MotionProducer:
    """One producer connection. Use ``async with MotionProducer(url) as producer``."""

    def __init__(self, url: str, max_size: int = 1 << 21) -> None:
        self.url = url
        self.max_size = max_size
        self.connection: ClientConnection | None = None
        self.credit_limit = 0
        self.in_flight = 0
        self.sent_at: dict[int, float] = {}  # seq -> time.monotonic() when sent
        self.acked: list[int] = []
        self.committed: list[int] = []
        self.errors: list[dict[str, Any]] = []
        self.skipped: list[int] = []
        self.ended: dict[str, Any] | None = None
        self.started: dict[str, Any] | None = None
        self.on_message: Callable[[dict[str, Any]], None] | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MotionProducer:
        self.connection = await connect(self.url, compression=None, max_size=self.max_size)
        self._reader = asyncio.create_task(self._read(), name="producer-reader")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        assert self.connection is not None
        with contextlib.suppress(Exception):
            async for raw in self.connection:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "started":
                    self.started = message
                    self.credit_limit = int(message["credits"])
                    self.in_flight = 0
                elif kind == "ack":
                    self.acked.append(int(message["seq"]))
                    if message.get("skipped"):
                        # Rate control dropped it: it holds no credit and gets no credit message.
                        self.skipped.append(int(message["seq"]))
                        self.in_flight = max(0, self.in_flight - 1)
                elif kind == "credit":
                    self.committed.append(int(message["seq"]))
                    self.in_flight = max(0, self.in_flight - 1)
                elif kind == "cleared":
                    self.in_flight = 0
                elif kind == "ended":
                    self.ended = message
                elif kind == "error":
                    self.errors.append(message)
                if self.on_message is not None:
                    self.on_message(message)
                async with self._changed:
                    self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float) -> None:
        """Wait until ``predicate()`` holds (checked after every server message)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), limit_s)

    async def send_raw(self, message: str | bytes) -> None:
        assert self.connection is not None
        await self.connection.send(message)

    async def start(self, identity: str = "default", limit_s: float = 120.0) -> None:
        self.started = None
        await self.send_raw(json.dumps({"type": "start", "identity": identity}))
        await self.wait_for(lambda: self.started is not None or bool(self.errors), limit_s)
        if self.started is None:
            raise ProducerError(f"start refused: {self.errors[-1]}")

    async def send_frame(
        self, frame: MotionFrame, binary: bool = True, limit_s: float = 300.0
    ) -> None:
        """Send one frame once a credit is available."""
        await self.wait_for(lambda: self.in_flight < self.credit_limit, limit_s)
        self.in_flight += 1
        self.sent_at[frame.seq] = time.monotonic()
        if binary:
            await self.send_raw(encode_binary(frame))
        else:
            message = json.loads(encode_json(frame))
            message["type"] = "frame"
            await self.send_raw(json.dumps(message))

    async def send_frames(
        self, frames: Iterable[MotionFrame], fps: float | None = None, binary: bool = True
    ) -> int:
        """Send frames in order, paced at ``fps`` when given (never faster than credits)."""
        start = time.monotonic()
        count = 0
        for index, frame in enumerate(frames):
            if fps is not None:
                await asyncio.sleep(max(0.0, start + index / fps - time.monotonic()))
            await self.send_frame(frame, binary=binary)
            count += 1
        return count

    async def end(self, limit_s: float = 300.0) -> dict[str, Any]:
        self.ended = None
        await self.send_raw(json.dumps({"type": "end"}))
        await self.wait_for(lambda: self.ended is not None, limit_s)
        assert self.ended is not None
        return self.ended
