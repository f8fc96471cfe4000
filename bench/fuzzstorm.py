"""The malformed-message storm of ``anchor bench soak --fuzz N``: N messages of many kinds
on producer and viewer connections of their own session, each answered before the next.

Every message is refused by the server with an ``error`` naming a field; the bench measures
what the storm leaves behind in the server's memory, not the answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect

from model.motion.demo_loop import demo_frame
from model.motion.wire import frame_to_dict

Message = str | bytes
# A viewer connection takes at most 200 signaling messages (server.viewer).
VIEWER_BATCH = 150
# First messages that pass the server's door and are then refused by the handler.
OPEN_PRODUCER = json.dumps({"type": "end"})
OPEN_VIEWER = json.dumps({"type": "offer", "sdp": "not an sdp"})


def _frame(index: int, **changes: object) -> str:
    record = frame_to_dict(demo_frame(index))
    record.update(changes, type="frame")
    return json.dumps(record)


def producer_kinds(limit: int) -> list[Callable[[int], Message]]:
    """Malformed producer messages (before any ``start``); ``limit``: max_message_bytes."""
    return [
        lambda i: "{" * (1 + i % 3),
        lambda i: "[" * (1000 + i % 50) + "]" * (1000 + i % 50),
        lambda i: '{"type":"frame","seq":' + "9" * (4301 + i % 50) + "}",
        lambda i: json.dumps({"type": f"x{i}"}),
        lambda i: json.dumps({"seq": i}),
        lambda i: _frame(1, seq=-1 - i),
        lambda i: _frame(1 + i % 100, pts=1e15),
        lambda i: _frame(1 + i % 100, body_pose=["a"] * 63),
        lambda i: _frame(1 + i % 100, colour=i),
        lambda i: json.dumps({"type": "audio", "pts": 1.0, "sample_rate": 16000, "data": "@@"}),
        lambda i: json.dumps({"type": "start", "identity": i}),
        lambda i: bytes([i % 256]) * 16,
        lambda i: json.dumps({"type": "frame", "pad": "x" * (limit + 10 + i % 7)}),
    ]


def viewer_kinds() -> list[Callable[[int], Message]]:
    return [
        lambda i: "{]",
        lambda i: "[" * (1000 + i % 50) + "]" * (1000 + i % 50),
        lambda i: '{"type":"offer","sdp":' + "7" * (5000 + i % 50) + "}",
        lambda i: json.dumps({"type": "offer", "sdp": i}),
        lambda i: json.dumps({"type": "candidate", "candidate": "candidate:x y"}),
        lambda i: json.dumps({"type": "answer", "sdp": f"v={i}"}),
    ]


async def _answer(connection: ClientConnection, message: Message) -> None:
    """Send ``message`` and wait for the server's reply other than a viewer ``status``."""
    await connection.send(message)
    while True:
        reply = json.loads(await asyncio.wait_for(connection.recv(), 30.0))
        if reply.get("type") != "status":
            return


async def storm(producer_url: str, viewer_url: str, count: int, limit: int) -> int:
    """Send ``count`` malformed messages (two thirds producer, one third viewer); the
    number answered."""
    answered = 0
    kinds = producer_kinds(limit)
    viewers = viewer_kinds()
    on_viewers = count // 3
    async with connect(producer_url, max_size=None) as connection:
        await _answer(connection, OPEN_PRODUCER)
        for index in range(count - on_viewers):
            await _answer(connection, kinds[index % len(kinds)](index))
            answered += 1
    for start in range(0, on_viewers, VIEWER_BATCH):
        async with connect(viewer_url, max_size=None) as connection:
            await _answer(connection, OPEN_VIEWER)
            for index in range(start, min(start + VIEWER_BATCH, on_viewers)):
                await _answer(connection, viewers[index % len(viewers)](index))
                answered += 1
    return answered
