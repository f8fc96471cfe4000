"""Shared test helpers: a tiny real configuration and an in-process server on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from server.config import AppConfig

SECRET = "test-secret-for-anchor"


def tiny_config(tmp_path: Path, **server: Any) -> AppConfig:
    """Tiny preset at 64x64, 2 DDIM steps, 4-frame windows: seconds on 2 CPU cores."""
    settings: dict[str, Any] = {
        "port": 0,
        "token_secret": SECRET,
        "stamp_seq": True,
        "recordings_dir": str(tmp_path / "recordings"),
        "sampler_mode": "low",
    }
    settings.update(server)
    return AppConfig.model_validate(
        {
            "model": {"preset": "tiny", "device": "cpu"},
            "sampler": {"steps": 2, "window_size": 4, "overlap": 1},
            "face": {"enabled": False},
            "render": {"width": 64, "height": 64},
            "server": settings,
        }
    )


def run_with_server(
    config: AppConfig,
    body: Callable[[Any], Awaitable[None]],
    timeout: float = 240.0,
    factory: Any = None,
) -> None:
    """Start a real server, run ``body(server)``, always stop the server.

    factory: a PipelineFactory in place of the real model worker (None = the real one)."""
    from server.app import AnchorServer

    async def main() -> None:
        server = AnchorServer(config, factory)
        await server.start()
        try:
            await asyncio.wait_for(body(server), timeout)
        finally:
            await server.stop()

    asyncio.run(main())
