"""``anchor demo``: a server with embedded defaults and a producer replaying a clip in a loop.

The bundled clip is procedural (no file, no licence): a figure facing the camera that waves
its arms, nods and talks, ``DEMO_CLIP_FRAMES`` frames at 30 fps, looped seamlessly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from model.motion.frame import MotionFrame
from server.config import AppConfig

log = logging.getLogger("anchor.demo")
DEMO_CLIP_FRAMES = 90
DEMO_SESSION = "demo"
DEMO_MAX_LAG_S = 0.25


def _axis_angle(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> list[float]:
    return [x, y, z]


def demo_frame(index: int, fps: float = 30.0, seq: int | None = None) -> MotionFrame:
    """Frame ``index`` of the looping demo clip (period DEMO_CLIP_FRAMES)."""
    phase = 2.0 * math.pi * (index % DEMO_CLIP_FRAMES) / DEMO_CLIP_FRAMES
    body = np.zeros(63, dtype=np.float32)

    # body_pose joint j (1-based SMPL-X joint index) occupies [3(j-1), 3j).
    def joint(number: int, values: list[float]) -> None:
        body[3 * (number - 1) : 3 * number] = values

    joint(15, _axis_angle(x=0.15 * math.sin(2 * phase)))  # head nods
    joint(16, _axis_angle(z=-1.1 + 0.35 * math.sin(phase)))  # left shoulder
    joint(17, _axis_angle(z=1.1 - 0.35 * math.sin(phase + math.pi)))  # right shoulder
    joint(18, _axis_angle(y=-0.6 - 0.4 * math.sin(phase)))  # left elbow
    joint(19, _axis_angle(y=0.6 + 0.4 * math.sin(phase + math.pi)))  # right elbow
    jaw = np.asarray(_axis_angle(x=0.12 + 0.12 * math.sin(6 * phase)), dtype=np.float32)
    return MotionFrame(
        seq=index if seq is None else seq,
        pts=index / fps,
        global_orient=np.asarray(_axis_angle(x=math.pi), dtype=np.float32),
        body_pose=body,
        jaw_pose=jaw,
        expression=np.zeros(10, dtype=np.float32),
    )


def demo_frames(
    start: int = 0, count: int | None = None, fps: float = 30.0
) -> Iterator[MotionFrame]:
    """Frames start, start+1, ... of the endless demo loop (``count`` of them, or forever)."""
    index = start
    while count is None or index < start + count:
        yield demo_frame(index, fps)
        index += 1


def demo_config(base: AppConfig, host: str, port: int) -> AppConfig:
    """Embedded demo defaults on top of ``base``: tiny preset, stand-in body, low latency."""
    data = base.model_dump()
    data["model"].update(preset="tiny", device="cpu")
    data["sampler"].update(steps=min(base.sampler.steps, 4), window_size=8, overlap=2)
    data["face"].update(enabled=False)
    data["render"].update(width=64, height=64)
    data["server"].update(
        host=host,
        port=port,
        token_secret=base.server.token_secret or secrets.token_urlsafe(32),
        sessions=[DEMO_SESSION],
        recordings_dir=None,
        sampler_mode="low",
        # Live rate control: if this machine cannot keep up with the 30 fps clip, frames are
        # skipped rather than queued, so glass-to-glass latency stays bounded.
        max_lag_s=DEMO_MAX_LAG_S if base.server.max_lag_s is None else base.server.max_lag_s,
    )
    return AppConfig.model_validate(data)


# The demo model trained on the synthetic anchor (see README, "Training").
DEMO_MODEL = Path(__file__).resolve().parents[1] / "clients" / "models" / "demo"


def demo_model_settings(folder: Path = DEMO_MODEL) -> dict[str, dict[str, Any]]:
    """The config fields (section -> field -> value) that run the trained bundle ``folder``
    with the sampler and face settings it was trained and measured with (its
    ``bundle.json``); face enhancement is on when the bundle carries a face model."""
    meta_path = folder / "bundle.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"demo model not found: {meta_path}")
    meta = json.loads(meta_path.read_text())
    size = int(meta["image_size"])
    settings: dict[str, dict[str, Any]] = {
        "model": {
            "preset": "bundle",
            "checkpoint_path": folder,
            "attention": meta.get("attention", "per-frame"),
        },
        "sampler": {
            "steps": int(meta["steps"]),
            "guidance_scale": float(meta["guidance_scale"]),
            "controlnet_scale": float(meta["controlnet_scale"]),
            "window_size": int(meta["window_size"]),
            "overlap": int(meta["overlap"]),
        },
        "render": {"width": size, "height": size},
        "face": {"enabled": False},
    }
    face = meta.get("face")
    if face is not None and (folder / "head" / "unet").is_dir():
        settings["face"] = {
            "enabled": True,
            "size": int(face["size"]),
            "steps": int(face["steps"]),
            "guidance_scale": float(face["guidance_scale"]),
            "controlnet_scale": float(face["controlnet_scale"]),
        }
    return settings


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
    from server.producer_client import ConnectionLost, ProducerClient, ProducerError

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
        # Cancelled (or already failed): either way the producer is gone.
        await asyncio.gather(*tasks, return_exceptions=True)

    return await serve_until_signal(config, announce, before_stop=stop_producer)
