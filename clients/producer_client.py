"""Producer clients of ``WS /sessions/{id}/motion`` (messages in ``server/protocol.py``).

The one place that reads the server's answers and keeps a producer's credit accounting;
``anchor demo`` and the benches use it here, ``anchor send`` and ``anchor bot`` through
``clients.producer.ProducerLink``.

Server semantics a producer builds on (``server/producer.py``, ``server/session.py``):
- ``started`` announces ``credits``: how many frames may be in flight (sent, not yet
  committed and recorded). Each ``credit`` message returns one; ``cleared`` returns all; an
  ``ack`` with ``skipped: true`` returns its own at once (live rate control accepted the
  frame without rendering it, so no ``credit`` follows).
- ``ack`` means the frame was ACCEPTED: it will be committed and recorded even if the
  connection drops right after (a producer disconnect ends the run with a flush). A frame
  without an ack was not accepted, so a reconnecting sender resumes at the first
  unacknowledged seq and never sends an accepted frame twice.
- audio chunks get no answer unless they are rejected.
- a ``start`` while the session's previous run is still flushing gets an error containing
  ``STARTING_ERROR``; ``start`` tries again until its limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

from websockets.asyncio.client import ClientConnection, connect

from model.errors import AnchorError
from model.motion.frame import MotionFrame
from model.motion.wire import encode_binary, encode_json
from server.protocol import encode_audio

# Large enough for any motion frame or a second of 48 kHz PCM16 audio.
MAX_MESSAGE_BYTES = 1 << 21
STARTING_ERROR = "already has a run"  # the previous run of this session is still flushing
START_RETRY_S = 0.2


def refusal(err: BaseException) -> str:
    """What the server said when it refused a handshake: ``HTTP <status>: <body>`` (the
    server writes its reason in the body), or the error itself when there was no answer."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        return f"handshake failed: {err}"
    body = bytes(getattr(response, "body", b"") or b"").decode("utf-8", "replace").strip()
    return f"refused with HTTP {status}: {body or getattr(response, 'reason_phrase', '')}"


class ProducerError(AnchorError):
    """The server refused: the handshake (401, 403, 404), a ``start``, or a fatal error."""


class ConnectionLost(ConnectionError):
    """The WebSocket closed before the operation completed (a reconnect may resume)."""


def describe(error: dict[str, Any]) -> str:
    """A server ``error`` message in one line: its text, field and seq."""
    return f"{error.get('message')} (field {error.get('field')}, seq {error.get('seq')})"


def frame_message(frame: MotionFrame, binary: bool = True) -> str | bytes:
    """``frame`` in the motion layer's binary form, or as a JSON ``frame`` message."""
    if binary:
        return encode_binary(frame)
    message = json.loads(encode_json(frame))
    message["type"] = "frame"
    return json.dumps(message)


class ProducerClient:
    """One producer connection: ``async with ProducerClient(url) as producer``.

    It counts its own frames in flight (+1 per frame sent, -1 per ``credit`` or skipped
    ``ack``, 0 after ``started`` and ``cleared``) and sends a frame only while that count is
    below the ``credits`` of ``started``. Its state is bounded, so it can stream forever.
    Server errors are kept in ``errors`` and the client goes on; a subclass for which they
    end the work overrides ``_fatal``. ``on_ack(seq)`` is called for every accepted frame,
    in order, and ``on_message(message)`` for every server message after the accounting.
    """

    def __init__(
        self,
        url: str,
        *,
        on_ack: Callable[[int], None] | None = None,
        max_size: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.url = url
        self.max_size = max_size
        self.on_ack = on_ack
        self.on_message: Callable[[dict[str, Any]], None] | None = None
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
        self.start_refusals = 0
        self.closed = False
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        try:
            self.connection = await connect(
                self.url, compression=None, max_size=self.max_size, open_timeout=10
            )
        except (OSError, TimeoutError) as err:
            raise ConnectionLost(f"cannot connect: {err}") from err
        except Exception as err:  # websockets handshake errors (409 busy, 401 token, ...)
            status = getattr(getattr(err, "response", None), "status_code", None)
            reason = f"{self.url.split('?')[0]}: {refusal(err)}"
            if status in (401, 403, 404):
                raise ProducerError(reason) from err
            raise ConnectionLost(reason) from err
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

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (what a network failure does)."""
        if self.connection is not None:
            self.connection.transport.abort()

    async def _read(self) -> None:
        assert self.connection is not None
        try:
            async for raw in self.connection:
                self._handle(json.loads(raw))
                await self._notify()
        except Exception:  # any transport failure (or a garbled answer) is a lost connection
            pass
        finally:
            self.closed = True
            await self._notify()

    async def _notify(self) -> None:
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
            skipped = bool(message.get("skipped"))
            self.last_acked = seq
            if skipped:
                # Live rate control dropped it: it holds no credit, no credit message follows.
                self.in_flight = max(0, self.in_flight - 1)
            self._acked(seq, skipped)
        elif kind == "credit":
            self.in_flight = max(0, self.in_flight - 1)
            self._committed(int(message["seq"]))
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
        if self.on_message is not None:
            self.on_message(message)

    def _acked(self, seq: int, skipped: bool) -> None:
        """Frame ``seq`` was accepted (``skipped``: without being rendered)."""
        if self.on_ack is not None:
            self.on_ack(seq)

    def _committed(self, seq: int) -> None:
        """Frame ``seq`` was committed and recorded (its credit came back)."""

    def _fatal(self) -> dict[str, Any] | None:
        """The server error that ends this client's work; here none (errors are only kept)."""
        return None

    async def wait_for(self, predicate: Callable[[], bool], limit_s: float | None = None) -> None:
        """Wait until ``predicate()`` holds (checked after every server message).

        TimeoutError after ``limit_s``; ConnectionLost if the connection ends first;
        ProducerError on an error that ``_fatal`` names.
        """

        def done() -> bool:
            return predicate() or self.closed or self._fatal() is not None

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(done), limit_s)
        if predicate():
            return
        fatal = self._fatal()
        if fatal is not None:
            raise ProducerError(f"server error: {describe(fatal)}")
        raise ConnectionLost("connection closed")

    async def send_raw(self, message: str | bytes) -> None:
        """Send one message as it is; ConnectionLost if the connection is gone."""
        if self.connection is None or self.closed:
            raise ConnectionLost("connection closed")
        try:
            await self.connection.send(message)
        except Exception as err:
            raise ConnectionLost(f"send failed: {err}") from err

    async def start(self, identity: str = "default", limit_s: float = 300.0) -> dict[str, Any]:
        """Send ``start`` and return the server's ``started``; tried again while the session's
        previous run is still flushing. ProducerError when the server refuses it."""
        deadline = time.monotonic() + limit_s
        while True:
            self.started = None
            errors, refusals = len(self.errors), self.start_refusals
            await self.send_raw(json.dumps({"type": "start", "identity": identity}))
            await self.wait_for(
                lambda: (
                    self.started is not None
                    or len(self.errors) > errors  # noqa: B023
                    or self.start_refusals > refusals  # noqa: B023
                ),
                max(1.0, deadline - time.monotonic()),
            )
            if self.started is not None:
                return self.started
            if len(self.errors) > errors:
                raise ProducerError(f"start refused: {describe(self.errors[-1])}")
            if time.monotonic() > deadline:
                raise ProducerError("start: the session's previous run did not end in time")
            await asyncio.sleep(START_RETRY_S)

    async def wait_credit(self, limit_s: float | None = None) -> None:
        """Wait until one more frame may be in flight."""
        await self.wait_for(lambda: self.in_flight < self.credit_limit, limit_s)

    async def send_frame(
        self, frame: MotionFrame, binary: bool = True, limit_s: float = 300.0
    ) -> None:
        """Send one frame once a credit is free (at once after ``wait_credit``)."""
        await self.wait_credit(limit_s)
        self.in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        await self.send_raw(frame_message(frame, binary))

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

    async def send_audio(self, pts: float, sample_rate: int, samples: Any) -> None:
        """PCM16 mono (N,) int16 starting at ``pts`` seconds (binary audio message)."""
        await self.send_raw(encode_audio(pts, sample_rate, samples))

    async def clear(self, limit_s: float = 30.0) -> None:
        """Drop what the server holds of this run (barge-in); waits for ``cleared``."""
        before = self.cleared
        await self.send_raw(json.dumps({"type": "clear"}))
        await self.wait_for(lambda: self.cleared > before, limit_s)

    async def end(self, limit_s: float = 300.0) -> dict[str, Any]:
        """End the run; returns the server's ``ended`` summary."""
        self.ended = None
        await self.send_raw(json.dumps({"type": "end"}))
        await self.wait_for(lambda: self.ended is not None, limit_s)
        assert self.ended is not None
        return self.ended


class MotionProducer(ProducerClient):
    """A ProducerClient that also keeps every frame's history, for the tests and benches:
    the seqs acked, committed and skipped, and ``sent_at[seq]`` (``time.monotonic()`` when
    sent). It grows with every frame, so endless streams use ProducerClient."""

    def __init__(self, url: str, *, max_size: int = MAX_MESSAGE_BYTES) -> None:
        super().__init__(url, max_size=max_size)
        self.sent_at: dict[int, float] = {}
        self.acked: list[int] = []
        self.committed: list[int] = []
        self.skipped: list[int] = []

    def _acked(self, seq: int, skipped: bool) -> None:
        self.acked.append(seq)
        if skipped:
            self.skipped.append(seq)
        super()._acked(seq, skipped)

    def _committed(self, seq: int) -> None:
        self.committed.append(seq)

    async def send_frame(
        self, frame: MotionFrame, binary: bool = True, limit_s: float = 300.0
    ) -> None:
        await self.wait_credit(limit_s)
        self.sent_at[frame.seq] = time.monotonic()
        await super().send_frame(frame, binary, limit_s)
