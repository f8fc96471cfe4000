"""Shared test helpers: a tiny real configuration and an in-process server on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.config import AppConfig

SECRET = "test-secret-for-anchor"


def tiny_config(tmp_path: Path, **server: Any) -> AppConfig:
    """Tiny preset at 64x64, 2 DDIM steps, 4-frame windows: seconds on 2 CPU cores."""
    settings: dict[str, Any] = {
        "port": 0,
        "token_secret": SECRET,
        "stamp_seq": True,
        "recordings_dir": str(tmp_path / "recordings"),
    }
    settings.update(server)
    return AppConfig.model_validate(
        {
            "model": {"preset": "tiny", "device": "cpu"},
            "sampler": {"steps": 2, "window_size": 4, "overlap": 1, "mode": "low"},
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
    from streaming.factory import load_pipeline_factory

    def load_pipelines() -> Any:
        return factory if factory is not None else load_pipeline_factory(config.pipeline)

    async def main() -> None:
        server = AnchorServer(config.edge, load_pipelines)
        await server.start()
        try:
            await asyncio.wait_for(body(server), timeout)
        finally:
            await server.stop()

    asyncio.run(main())
