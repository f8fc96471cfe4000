"""A producer link to ``WS /sessions/{id}/motion``: sends frames and audio, tracks the answers.

Server semantics this client builds on (``server/producer.py``, ``server/session.py``):
- ``started`` announces ``credits``: how many frames may be in flight (sent, not yet
  committed and recorded). Each ``credit`` message returns one; ``cleared`` returns all.
- ``ack`` means the frame was ACCEPTED: it will be committed and recorded even if the
  connection drops right after (a producer disconnect ends the run with a flush). A frame
  without an ack was not accepted, so a reconnecting sender resumes at the first
  unacknowledged seq and never sends an accepted frame twice.
- audio chunks get no answer unless they are rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect

from model.errors import AnchorError
from model.motion.frame import MotionFrame
from model.motion.wire import encode_binary
from server.protocol import encode_audio

# Large enough for any motion frame or a second of 48 kHz PCM16 audio.
MAX_MESSAGE_BYTES = 1 << 21
STARTING_ERROR = "already has a run"  # the previous run of this session is still flushing


class ConnectionLost(Exception):
    """The WebSocket closed before the operation completed (a reconnect may resume)."""


class ServerRefused(AnchorError):
    """The server answered with an error this client cannot recover from."""


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``token=...`` in its query (replacing any token already there)."""
    if not token:
        return url
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


class ProducerLink:
    """One producer connection; ``async with ProducerLink(url) as link``.

    ``on_ack(seq)`` is called for every accepted frame, in order.
    """

    def __init__(self, url: str, on_ack: Callable[[int], None] | None = None) -> None:
        self.url = url
        self.on_ack = on_ack
        self.connection: ClientConnection | None = None
        self.started: dict[str, Any] | None = None
        self.ended: dict[str, Any] | None = None
        self.credit_limit = 0
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self.last_acked: int | None = None
        self.errors: list[dict[str, Any]] = []
        self.messages = 0
        self.cleared = 0
        # Frames the server accepted but skipped (live rate control, server.max_lag_s).
        self.skipped = 0
        self.start_refusals = 0
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def __aenter__(self) -> ProducerLink:
        try:
            self.connection = await connect(
                self.url, compression=None, max_size=MAX_MESSAGE_BYTES, open_timeout=10
            )
        except (OSError, TimeoutError) as err:
            raise ConnectionLost(f"cannot connect: {err}") from err
        except Exception as err:  # websockets handshake errors (409 busy, 401 token, ...)
            status = getattr(getattr(err, "response", None), "status_code", None)
            if status in (401, 403, 404):
                raise ServerRefused(f"{self.url.split('?')[0]}: refused ({err})") from err
            raise ConnectionLost(f"handshake failed: {err}") from err
        self._reader = asyncio.create_task(self._read(), name="producer-link-reader")
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

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (what a network failure does)."""
        if self.connection is not None:
            self.connection.transport.abort()

    async def _read(self) -> None:
        assert self.connection is not None
        try:
            async for raw in self.connection:
                self._handle(json.loads(raw))
                async with self._changed:
                    self._changed.notify_all()
        except Exception:  # any transport failure is a lost connection
            pass
        finally:
            self._closed = True
            async with self._changed:
                self._changed.notify_all()

    def _handle(self, message: dict[str, Any]) -> None:
        self.messages += 1
        kind = message.get("type")
        if kind == "started":
            self.started = message
            self.credit_limit = int(message["credits"])
            self.in_flight = 0
        elif kind == "ack":
            seq = int(message["seq"])
            self.last_acked = seq
            if message.get("skipped"):
                # Live rate control dropped it: it holds no credit, no credit message follows.
                self.skipped += 1
                self.in_flight = max(0, self.in_flight - 1)
            if self.on_ack is not None:
                self.on_ack(seq)
        elif kind == "credit":
            self.in_flight = max(0, self.in_flight - 1)
        elif kind == "cleared":
            self.in_flight = 0
            self.cleared += 1
        elif kind == "ended":
            self.ended = message
        elif kind == "error":
            if STARTING_ERROR in str(message.get("message", "")):
                self.start_refusals += 1
            else:
                self.errors.append(message)

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float | None = None) -> None:
        """Wait until ``predicate()`` holds; ConnectionLost if the connection ends first,
        ServerRefused on a fatal error."""

        def done() -> bool:
            return predicate() or self._closed or self._fatal() is not None

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(done), limit_s)
        if predicate():
            return
        fatal = self._fatal()
        if fatal is not None:
            where = f"field {fatal.get('field')}, seq {fatal.get('seq')}"
            raise ServerRefused(f"server error: {fatal.get('message')} ({where})")
        raise ConnectionLost("connection closed")

    def _fatal(self) -> dict[str, Any] | None:
        return self.errors[0] if self.errors else None

    async def _send(self, message: str | bytes) -> None:
        if self.connection is None or self._closed:
            raise ConnectionLost("connection closed")
        try:
            await self.connection.send(message)
        except Exception as err:
            raise ConnectionLost(f"send failed: {err}") from err

    async def start(self, identity: str = "default", limit_s: float = 300.0) -> dict[str, Any]:
        """Send ``start``; retried while the session's previous run is still flushing."""
        deadline = time.monotonic() + limit_s
        while True:
            self.started = None
            refusals = self.start_refusals
            await self._send(json.dumps({"type": "start", "identity": identity}))
            await self.wait_for(
                lambda: self.started is not None or self.start_refusals > refusals,  # noqa: B023
                max(1.0, deadline - time.monotonic()),
            )
            if self.started is not None:
                return self.started
            if time.monotonic() > deadline:
                raise ServerRefused("start: the session's previous run did not end in time")
            await asyncio.sleep(0.2)

    async def wait_credit(self, limit_s: float | None = None) -> None:
        await self.wait_for(lambda: self.in_flight < self.credit_limit, limit_s)

    async def send_audio(self, pts: float, sample_rate: int, samples: Any) -> None:
        """PCM16 mono (N,) int16 starting at ``pts`` seconds (binary audio message)."""
        await self._send(encode_audio(pts, sample_rate, samples))

    async def send_frame(self, frame: MotionFrame) -> None:
        """Send one frame; the caller must hold a credit (``wait_credit``)."""
        if self.in_flight >= self.credit_limit:
            raise AnchorError(f"seq {frame.seq}: no credit left (sender bug)")
        self.in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        await self._send(encode_binary(frame))

    async def clear(self, limit_s: float = 30.0) -> None:
        before = self.cleared
        await self._send(json.dumps({"type": "clear"}))
        await self.wait_for(lambda: self.cleared > before, limit_s)

    async def end(self, limit_s: float = 300.0) -> dict[str, Any]:
        self.ended = None
        await self._send(json.dumps({"type": "end"}))
        await self.wait_for(lambda: self.ended is not None, limit_s)
        assert self.ended is not None
        return self.ended
