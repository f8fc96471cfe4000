"""Clients say why the server refused them or ended their stream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from serverkit import SECRET, run_with_server, tiny_config

from clients.producer_client import ProducerClient, ProducerError
from clients.viewer import view_command
from clients.viewer_client import ViewerProbe
from model.errors import AnchorError
from server.tokens import mint_token


def test_refusals_and_abnormal_ends_are_reported(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    outcomes: dict[str, str] = {}

    async def body(server: Any) -> None:
        base = f"ws://127.0.0.1:{server.port}/sessions/s1"
        forged = mint_token("another-secret", "s1", "producer", 60)
        with pytest.raises(ProducerError) as refused:
            async with ProducerClient(f"{base}/motion?token={forged}"):
                pass
        outcomes["producer"] = str(refused.value)
        with pytest.raises(AnchorError) as refused_viewer:
            await ViewerProbe(f"{base}/view?token=\u00e9").connect()
        outcomes["viewer"] = str(refused_viewer.value)
        token = mint_token(SECRET, "s1", "viewer", 60)
        viewing = asyncio.create_task(view_command(f"{base}/view?token={token}", None, None, 30))
        for _ in range(600):  # until the viewer is connected
            if server.sessions.get("s1") and server.sessions["s1"].viewers:
                break
            await asyncio.sleep(0.05)
        for connection in list(server._server.connections):
            await connection.close(1011, "dropped by the test")
        with pytest.raises(AnchorError) as ended:
            await asyncio.wait_for(viewing, 30.0)
        outcomes["view"] = str(ended.value)

    run_with_server(config, body)
    assert "HTTP 401: bad token signature" in outcomes["producer"]
    assert "HTTP 401: malformed token" in outcomes["viewer"]
    assert "1011 dropped by the test" in outcomes["view"]
