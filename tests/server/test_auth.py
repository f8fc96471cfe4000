"""Auth at the door: malformed tokens of any encoding get 401, a request that never becomes
a WebSocket, or whose first message is missing or invalid, leaves no session behind, and
``start`` rechecks the token's expiry."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from serverkit import SECRET, run_with_server, tiny_config
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.tokens import mint_token


def plain_get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_tokens_upgrades_and_expiry(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, max_sessions=2)
    outcome: dict[str, Any] = {}

    async def body(server: Any) -> None:
        port = server.port
        viewer = mint_token(SECRET, "s1", "viewer", 60)
        statuses = []
        for index in range(4):  # more than max_sessions: none of them may hold a slot
            token = mint_token(SECRET, f"plain{index}", "viewer", 60)
            path = f"/sessions/plain{index}/view?token={token}"
            statuses.append(await asyncio.to_thread(plain_get, port, path))
        outcome["plain"] = statuses
        outcome["sessions_after_plain"] = set(server.sessions)
        outcome["non_ascii"] = [
            await asyncio.to_thread(plain_get, port, f"/sessions/s1/view?token={quote(token)}")
            for token in ("\u00e9", viewer + "\u00e9", "\U0001f600.\U0001f600")
        ]
        short = mint_token(SECRET, "s2", "producer", 1.0)
        async with connect(f"ws://127.0.0.1:{port}/sessions/s2/motion?token={short}") as link:
            await asyncio.sleep(1.5)  # the token expires while the connection is open
            await link.send(json.dumps({"type": "start"}))
            outcome["late_start"] = json.loads(await asyncio.wait_for(link.recv(), 30.0))

    run_with_server(config, body)
    assert all(status == 426 for status, _ in outcome["plain"]), outcome["plain"]
    assert outcome["sessions_after_plain"] == set()
    assert [status for status, _ in outcome["non_ascii"]] == [401, 401, 401]
    assert all("malformed token" in text for _, text in outcome["non_ascii"])
    late = outcome["late_start"]
    assert (late["type"], late["field"]) == ("error", "token"), late


def test_a_session_needs_a_valid_first_message(tmp_path: Path, monkeypatch: Any) -> None:
    """Upgrading and then saying nothing, or garbage, creates no session and holds none of
    server.max_sessions: garbage is answered (field named) and closed with 1008, silence
    is closed with 1008 after door.FIRST_MESSAGE_S."""
    from server import door

    monkeypatch.setattr(door, "FIRST_MESSAGE_S", 3.0)
    config = tiny_config(tmp_path, max_sessions=2)
    outcome: dict[str, Any] = {}

    def url(port: int, session: str, kind: str) -> str:
        role = "producer" if kind == "motion" else "viewer"
        token = mint_token(SECRET, session, role, 60)  # type: ignore[arg-type]
        return f"ws://127.0.0.1:{port}/sessions/{session}/{kind}?token={token}"

    async def closed(link: Any) -> int | None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(link.recv(), 30.0)
        return link.close_code

    async def body(server: Any) -> None:
        port = server.port
        # More silent upgrades than max_sessions: none may take a slot.
        silent = [await connect(url(port, f"quiet{i}", kind)) for i, kind in
                  enumerate(("view", "view", "motion"))]  # fmt: skip
        garbage: list[tuple[str, str, str | bytes]] = [
            ("g0", "motion", "garbage"),
            ("g1", "motion", json.dumps({"type": "nope"})),
            ("g2", "view", b"\x00\x01"),
            ("g3", "view", json.dumps({"type": "candidate", "candidate": ""})),
        ]
        answers = []
        for session, kind, message in garbage:
            async with connect(url(port, session, kind)) as link:
                await link.send(message)
                reply = json.loads(await asyncio.wait_for(link.recv(), 30.0))
                answers.append((reply["type"], reply["field"], await closed(link)))
        outcome["answers"] = answers
        outcome["sessions_before"] = set(server.sessions)
        async with connect(url(port, "s3", "motion")) as producer:
            await producer.send(json.dumps({"type": "start"}))
            outcome["started"] = json.loads(await asyncio.wait_for(producer.recv(), 60.0))
            outcome["sessions_with_producer"] = set(server.sessions)
        outcome["silent"] = [await closed(link) for link in silent]

    run_with_server(config, body)
    assert outcome["answers"] == [
        ("error", "message", 1008),
        ("error", "type", 1008),
        ("error", "message", 1008),
        ("error", "type", 1008),
    ]
    assert outcome["sessions_before"] == set()
    assert outcome["started"]["type"] == "started", outcome["started"]
    assert outcome["sessions_with_producer"] == {"s3"}
    assert outcome["silent"] == [1008, 1008, 1008]
