"""Fuzzing the server's doors while a well-behaved session streams beside them.

Thousands of malformed producer and viewer messages of dozens of kinds: each one gets an
``error`` naming a field, nothing logs a traceback, and the good session's frames are all
committed, in order, and in its recording.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import av
import pytest
from fuzzkit import IN_RUN_KINDS, MESSAGE_LIMIT, PRODUCER_KINDS, VIEWER_KINDS, frame
from serverkit import SECRET, run_with_server, tiny_config
from websockets.asyncio.client import ClientConnection, connect

from clients.producer_client import MotionProducer
from model.motion.demo_loop import demo_frames
from server.media import read_seq
from server.tokens import mint_token

ROUNDS = 45  # messages per kind
GOOD_FRAMES = 60
# A viewer connection takes at most 200 signaling messages (server.viewer).
VIEWER_BATCH = 150
# First messages that pass the door (server.door) and are then refused by the handler:
# ``end`` with no run, an offer whose SDP is unusable. The fuzz follows on the same socket.
OPEN_PRODUCER = json.dumps({"type": "end"})
OPEN_VIEWER = json.dumps({"type": "offer", "sdp": "not an sdp"})


def url(server: Any, session: str, kind: str) -> str:
    role = "producer" if kind == "motion" else "viewer"
    token = mint_token(SECRET, session, role, 300)  # type: ignore[arg-type]
    return f"ws://127.0.0.1:{server.port}/sessions/{session}/{kind}?token={token}"


async def answer(connection: ClientConnection, message: str | bytes) -> dict[str, Any]:
    """Send ``message``; the server's next reply other than a viewer ``status``."""
    await connection.send(message)
    while True:
        reply = json.loads(await asyncio.wait_for(connection.recv(), 30.0))
        if reply.get("type") != "status":
            return dict(reply)


async def fuzz_producer(server: Any, errors: list[tuple[str, dict[str, Any]]]) -> None:
    async with connect(url(server, "fuzz", "motion"), max_size=None) as connection:
        # A valid first message opens the session (server.door); garbage first is closed.
        opened = await answer(connection, OPEN_PRODUCER)
        assert (opened["type"], opened["field"]) == ("error", "type"), opened
        for round_index in range(ROUNDS):
            for kind, make in PRODUCER_KINDS.items():
                errors.append((kind, await answer(connection, make(round_index))))
        started = await answer(connection, json.dumps({"type": "start"}))
        assert started["type"] == "started", started
        first = await answer(connection, frame(0, pts=10.0))
        assert first["type"] == "ack", first
        for round_index in range(ROUNDS):
            for kind, make in IN_RUN_KINDS.items():
                errors.append((kind, await answer(connection, make(round_index))))


async def fuzz_viewers(server: Any, errors: list[tuple[str, dict[str, Any]]]) -> None:
    messages = [
        (kind, make(round_index))
        for round_index in range(ROUNDS)
        for kind, make in VIEWER_KINDS.items()
    ]
    for start in range(0, len(messages), VIEWER_BATCH):
        async with connect(url(server, "fuzz", "view")) as connection:
            opened = await answer(connection, OPEN_VIEWER)
            assert (opened["type"], opened["field"]) == ("error", "sdp"), opened
            for kind, message in messages[start : start + VIEWER_BATCH]:
                errors.append((kind, await answer(connection, message)))


async def good_session(server: Any, results: dict[str, Any]) -> None:
    async with MotionProducer(url(server, "good", "motion")) as producer:
        await producer.start()
        await producer.send_frames(demo_frames(0, GOOD_FRAMES), fps=60.0)
        results["ended"] = await producer.end()
        results["committed"] = list(producer.committed)
        results["errors"] = list(producer.errors)


@pytest.mark.slow
def test_malformed_messages_are_answered_beside_a_good_session(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tiny_config(
        tmp_path,
        max_message_bytes=MESSAGE_LIMIT,
        rate_limit_per_s=100_000.0,
        rate_limit_burst=100_000,
    )
    producer_errors: list[tuple[str, dict[str, Any]]] = []
    viewer_errors: list[tuple[str, dict[str, Any]]] = []
    results: dict[str, Any] = {}

    async def body(server: Any) -> None:
        await asyncio.gather(
            good_session(server, results),
            fuzz_producer(server, producer_errors),
            fuzz_viewers(server, viewer_errors),
        )

    caplog.set_level(logging.DEBUG)
    run_with_server(config, body)

    kinds = {kind for kind, _ in producer_errors} | {f"v:{kind}" for kind, _ in viewer_errors}
    assert len(producer_errors) + len(viewer_errors) >= 2000 and len(kinds) >= 30
    for kind, reply in producer_errors + viewer_errors:
        assert reply["type"] == "error" and reply.get("field"), (kind, reply)
    tracebacks = [record for record in caplog.records if record.exc_info or record.exc_text]
    assert tracebacks == [], [record.getMessage() for record in tracebacks[:3]]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "errors logged"

    assert results["errors"] == []
    assert results["committed"] == list(range(GOOD_FRAMES))
    assert results["ended"]["committed"] == GOOD_FRAMES
    (recording,) = sorted((tmp_path / "recordings").glob("good-*.mp4"))
    with av.open(str(recording)) as container:
        seqs = [read_seq(image.to_ndarray(format="rgb24")) for image in container.decode(video=0)]
    assert seqs == list(range(GOOD_FRAMES))
