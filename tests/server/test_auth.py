"""Auth at the door: malformed tokens of any encoding get 401, a request that never becomes
a WebSocket leaves no session behind, and ``start`` rechecks the token's expiry."""

from __future__ import annotations

import asyncio
import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from serverkit import SECRET, run_with_server, tiny_config
from websockets.asyncio.client import connect

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
