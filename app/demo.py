"""The embedded default model (the committed demo bundle) and ``anchor demo``: a server with
a producer replaying a clip in a loop.

The producer replays ``model.motion.demo_loop``, a procedural clip looped seamlessly.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from functools import partial
from pathlib import Path

from app.config import AppConfig
from app.defaults import DEMO_MAX_LAG_S, DEMO_MODEL, demo_model_settings
from model.motion.demo_loop import demo_frames

log = logging.getLogger("anchor.demo")
DEMO_SESSION = "demo"


def demo_config(base: AppConfig, host: str, port: int, tiny: bool = False) -> AppConfig:
    """``base`` (the configured model: the demo bundle by default) served for the demo:
    one session, no recording, streaming (the model's own mode when it is ``exact``, as the
    demo bundle's is; else ``low``) and live rate control; ``tiny``: the random tiny
    networks at 64 px instead of the model (a smoke test, not an avatar)."""
    data = base.model_dump()
    if tiny:
        log.warning("anchor demo --tiny: random tiny networks, not a trained model")
        data["model"].update(preset="tiny", device="cpu")
        data["sampler"].update(
            steps=4, window_size=8, overlap=2, scheduler="ddim", lcm_strength=1.0
        )
        data["face"].update(enabled=False)
        data["render"].update(width=64, height=64)
    streaming = base.sampler.mode == "exact" and not tiny
    data["sampler"].update(mode="exact" if streaming else "low")
    data["server"].update(
        host=host,
        port=port,
        token_secret=base.server.token_secret or secrets.token_urlsafe(32),
        sessions=[DEMO_SESSION],
        recordings_dir=None,
        # Live rate control: if this machine cannot keep up with the 30 fps clip, frames are
        # skipped rather than queued, so glass-to-glass latency stays bounded.
        max_lag_s=DEMO_MAX_LAG_S if base.server.max_lag_s is None else base.server.max_lag_s,
    )
    return AppConfig.model_validate(data)


def with_demo_model(config: AppConfig, folder: Path = DEMO_MODEL) -> AppConfig:
    """``config`` switched from the tiny random networks to the trained demo bundle
    (``demo_model_settings``), with one torch thread unless ``model.threads`` is set: the
    render threads and the video encoder share a small CPU with the model, and a second
    torch thread mostly contends."""
    data = config.model_dump()
    for section, fields in demo_model_settings(folder).items():
        data[section].update(fields)
    data["model"]["threads"] = config.model.threads or 1
    return AppConfig.model_validate(data)


async def replay_forever(url: str, fps: float) -> None:
    """Producer loop: start, stream the clip in a loop at ``fps``, restart after errors."""
    from clients.producer_client import ConnectionLost, ProducerClient, ProducerError

    while True:
        try:
            # ProducerClient keeps no per-frame history: its memory stays flat forever.
            async with ProducerClient(url) as producer:
                await producer.start()
                await producer.send_frames(demo_frames(fps=fps), fps=fps)
        except (ConnectionLost, TimeoutError, ProducerError) as err:
            log.warning("demo producer: %s; reconnecting", err)
        await asyncio.sleep(1.0)


async def run_demo(config: AppConfig) -> int:
    """Serve with the demo producer until SIGINT/SIGTERM (then exit 0)."""
    from server.app import AnchorServer, serve_until_signal
    from server.tokens import mint_token
    from streaming.factory import load_pipeline_factory

    tasks: list[asyncio.Task[None]] = []

    def announce(server: AnchorServer) -> None:
        secret, ttl = config.server.token_secret, config.server.token_ttl_s
        base = f"{server.scheme}://{config.server.host}:{server.port}"
        viewer = mint_token(secret, DEMO_SESSION, "viewer", ttl)
        producer = mint_token(secret, DEMO_SESSION, "producer", ttl)
        ws = base.replace("http", "ws", 1)
        print(f"viewer: {base}/sessions/{DEMO_SESSION}?token={viewer}", flush=True)
        url = f"{ws}/sessions/{DEMO_SESSION}/motion?token={producer}"
        tasks.append(asyncio.create_task(replay_forever(url, config.render.fps), name="demo"))

    async def stop_producer() -> None:
        for task in tasks:
            task.cancel()
        # Cancelled (or already failed): either way the producer is gone. Bounded: a task
        # stuck in a send does not hold the shutdown (serve_until_signal bounds it too).
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    return await serve_until_signal(
        config.edge,
        partial(load_pipeline_factory, config.pipeline),
        announce,
        before_stop=stop_producer,
    )
