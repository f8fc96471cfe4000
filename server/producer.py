"""The producer connection: ``WS /sessions/{id}/motion``.

Every message gets an answer: an ``ack`` (with the credits left) for an accepted frame, or
an ``error`` naming the field and seq. A frame is never dropped silently: without a credit
it is rejected with an error and the producer sends it again after a ``credit`` message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from model.errors import AnchorError
from server.config import ServerSettings
from server.metrics import ServerMetrics
from server.motion_codec import decode_binary_frame, decode_json_frame
from server.outbox import Outbox
from server.protocol import (
    AUDIO_MAGIC,
    ProtocolError,
    decode_binary_audio,
    decode_json_audio,
    parse_control,
    parse_text,
)
from server.ratelimit import TokenBucket
from server.session import CreditError, Session

log = logging.getLogger("anchor.producer")

# Acks and credits queued for a producer that does not read them: beyond this the
# connection is closed (1008) rather than buffering without bound.
PRODUCER_OUTBOX = 4096
# Rate-limit violations tolerated per connection before it is closed (1008).
MAX_RATE_VIOLATIONS = 1000


async def send_loop(connection: ServerConnection, outbox: Outbox) -> None:
    """Send queued messages in order until the outbox is closed or the peer goes away."""
    with contextlib.suppress(ConnectionClosed):
        while (message := await outbox.queue.get()) is not None:
            try:
                await connection.send(message)
            finally:
                outbox.queue.task_done()
        outbox.queue.task_done()


async def run_producer(
    connection: ServerConnection,
    session: Session,
    config: ServerSettings,
    metrics: ServerMetrics,
    token_expires_at: float = math.inf,
    first: str | bytes | None = None,
) -> None:
    """Serve one producer until it disconnects; a run still going is then ended (flushed,
    recorded) so the recording is complete and playable.

    token_expires_at: Unix time the connection's token expires; ``start`` is refused after.
    first: the connection's first message, already received (server.door)."""
    if session.producer is not None:
        await connection.close(1008, "session already has a producer")
        return
    outbox = Outbox(PRODUCER_OUTBOX, drop_when_full=False)
    session.producer = outbox
    sender = asyncio.create_task(send_loop(connection, outbox), name=f"producer-send:{session.id}")
    handler = ProducerHandler(session, config, metrics, outbox, token_expires_at)
    log.info("session %s: producer connected", session.id)
    try:
        if first is not None:
            await handler.handle(first)
        async for message in connection:
            if outbox.overflowed.is_set():
                await connection.close(1008, "producer does not read its acks")
                break
            if not await handler.handle(message):
                await connection.close(1008, "rate limit exceeded repeatedly")
                break
    finally:
        if session.producer is outbox:
            session.producer = None
        await session.end_run("producer disconnected")
        outbox.close()
        try:
            await asyncio.wait_for(sender, timeout=5.0)
        except TimeoutError:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        log.info("session %s: producer disconnected", session.id)


class ProducerHandler:
    """Decodes and dispatches one producer's messages; replies go to its outbox."""

    def __init__(
        self,
        session: Session,
        config: ServerSettings,
        metrics: ServerMetrics,
        outbox: Outbox,
        token_expires_at: float = math.inf,
    ) -> None:
        self.session = session
        self.token_expires_at = token_expires_at
        self.config = config
        self.metrics = metrics
        self.outbox = outbox
        server = config.server
        self.bucket = TokenBucket(server.rate_limit_per_s, server.rate_limit_burst)
        self.rate_violations = 0

    def _error(self, reason: str, message: dict[str, Any]) -> None:
        self.metrics.rejected_messages.labels(reason).inc()
        self.outbox.send(message)

    async def handle(self, message: str | bytes) -> bool:
        """Handle one message; False when the connection must be closed."""
        if not self.bucket.allow():
            self.rate_violations += 1
            self._error(
                "rate",
                ProtocolError(
                    f"rate limit: at most {self.config.server.rate_limit_per_s:g} messages/s",
                    field="rate",
                ).to_message(),
            )
            return self.rate_violations <= MAX_RATE_VIOLATIONS
        size = len(message)
        limit = self.config.server.max_message_bytes
        if size > limit:
            error = ProtocolError(
                f"message of {size} bytes exceeds server.max_message_bytes ({limit})",
                field="message",
            )
            self._error("oversized", error.to_message())
            return True
        try:
            await self._dispatch(message)
        except CreditError as err:
            self._error("credits", err.to_message())
        except ProtocolError as err:
            self._error("malformed", err.to_message())
        except AnchorError as err:
            self._error(
                "invalid",
                {
                    "type": "error",
                    "field": getattr(err, "field", None),
                    "seq": getattr(err, "seq", None),
                    "message": str(err),
                },
            )
        return True

    async def _dispatch(self, message: str | bytes) -> None:
        session = self.session
        rate = self.config.server.audio_sample_rate
        if isinstance(message, bytes):
            if message[: len(AUDIO_MAGIC)] == AUDIO_MAGIC:
                chunk = decode_binary_audio(message, rate)
                session.accept_audio(chunk.pts, chunk.samples)
                return
            motion = decode_binary_frame(message, self.config.server.max_message_bytes)
            self._accept(motion)
            return
        parsed = parse_text(message)
        kind = parsed["type"]
        if kind == "frame":
            self._accept(decode_json_frame(parsed, self.config.server.max_message_bytes))
        elif kind == "audio":
            chunk = decode_json_audio(parsed, rate)
            session.accept_audio(chunk.pts, chunk.samples)
        elif kind == "start":
            control = parse_control(parsed)
            if time.time() >= self.token_expires_at:
                raise ProtocolError(
                    "start: the connection's token has expired; reconnect with a fresh token",
                    field="token",
                )
            # A reconnecting producer's previous run may still be flushing: let it finish.
            await session.wait_run_over()
            last_seq = session.last_accepted_seq
            run = session.start_run(control.identity)
            self.outbox.send(
                {
                    "type": "started",
                    "session": session.id,
                    "credits": run.credits,
                    "latency_frames": run.pipeline.latency_frames,
                    # Last seq accepted by earlier runs of this session (None: none yet);
                    # a resuming producer drops its frames at or below it.
                    "last_seq": last_seq,
                }
            )
        elif kind == "clear":
            credits, dropped = session.clear_run()
            self.outbox.send({"type": "cleared", "credits": credits, "dropped": dropped})
        elif kind == "end":
            if session.run is None:
                raise ProtocolError("end: no run in progress", field="type")
            await session.end_run("end")

    def _accept(self, motion: Any) -> None:
        credits, skipped = self.session.accept_frame(motion)
        ack: dict[str, Any] = {"type": "ack", "seq": motion.seq, "credits": credits}
        if skipped:
            ack["skipped"] = True
        self.outbox.send(ack)
