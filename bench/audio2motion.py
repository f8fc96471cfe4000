"""``anchor bench audio2motion``: speed of the built-in generator and the bot's latency.

- real-time factor: seconds of speech-like audio per second of generator time, pushed in
  20 ms chunks (what a live source delivers) and as one block;
- speech-to-video latency on loopback: an in-process tiny server, the bot speaking a clip
  whose speech starts after a silence, an aiortc viewer; latency = arrival of the first
  video frame stamped with the speech-onset seq (or later) minus the moment the bot took
  that audio from its buffer and sent its frame.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from app.config import AppConfig
from model.audio2motion import BuiltinAudioToMotion
from model.audio2motion.audio import SAMPLE_RATE, write_wav


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """(N,) float32: a 120 Hz harmonic voice with syllable-rate (4 Hz) bursts and pauses."""
    rng = np.random.default_rng(seed)
    time_axis = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    voice = sum(np.sin(2 * np.pi * 120 * k * time_axis) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4 * time_axis), 0, None) ** 2
    phrases = (np.sin(2 * np.pi * 0.2 * time_axis) > -0.3).astype(np.float64)
    noise = 0.05 * rng.standard_normal(len(time_axis))
    return (0.2 * (voice * syllables * phrases + noise * phrases)).astype(np.float32)


def real_time_factor(seconds: float = 20.0, repeats: int = 3) -> dict[str, float]:
    audio = speech_like(seconds)
    chunked, whole = [], []
    for _ in range(repeats):
        generator = BuiltinAudioToMotion()
        started = time.perf_counter()
        for start in range(0, len(audio), 320):
            generator.push(audio[start : start + 320])
        chunked.append(seconds / (time.perf_counter() - started))
        generator = BuiltinAudioToMotion()
        started = time.perf_counter()
        generator.push(audio)
        whole.append(seconds / (time.perf_counter() - started))
    return {
        "audio_seconds": seconds,
        "rtf_20ms_chunks": round(statistics.median(chunked), 1),
        "rtf_whole": round(statistics.median(whole), 1),
    }


def _tiny_config(config: AppConfig) -> AppConfig:
    return AppConfig.model_validate(
        {
            "model": {"preset": "tiny", "device": config.model.device},
            "sampler": {"steps": 2, "window_size": 4, "overlap": 1, "mode": "low"},
            "face": {"enabled": False},
            "render": {"width": 64, "height": 64},
            "server": {
                "port": 0,
                "token_secret": secrets.token_hex(16),
                "stamp_seq": True,
                "recordings_dir": None,
            },
        }
    )


async def bot_latency(config: AppConfig, utterances: int = 3) -> dict[str, Any]:
    """Speech-to-video latency of the bot through a tiny in-process server (loopback)."""
    from clients.bot import AnchorBot
    from clients.bot_sources import WavSource
    from clients.producer import with_token
    from clients.viewer_client import ViewerProbe
    from server.app import AnchorServer
    from server.tokens import mint_token
    from streaming.factory import load_pipeline_factory

    tiny = _tiny_config(config)
    secret = tiny.server.token_secret
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    burst = speech_like(1.0)
    audio = np.concatenate([silence, *[np.concatenate([burst, silence])] * utterances])
    server = AnchorServer(tiny.edge, partial(load_pipeline_factory, tiny.pipeline))
    await server.start()
    try:
        base = f"ws://127.0.0.1:{server.port}/sessions/bench"
        viewer = ViewerProbe(with_token(f"{base}/view", mint_token(secret, "bench", "viewer", 600)))
        await viewer.connect()
        with TemporaryDirectory() as folder:
            wav = Path(folder) / "speech.wav"
            write_wav(wav, audio)
            producer = with_token(f"{base}/motion", mint_token(secret, "bench", "producer", 600))
            bot = AnchorBot(producer, BuiltinAudioToMotion(), tiny.render.fps, tail_seconds=1.0)
            stats = await bot.run(WavSource(wav))
        await asyncio.sleep(0.5)
        await viewer.close()
    finally:
        await server.stop()
    onsets = []
    previous = False
    for frame in stats.frames:
        if frame.speech and not previous:
            onsets.append(frame)
        previous = frame.speech
    latencies = []
    for onset in onsets:
        shown = next((f for f in viewer.frames if f.seq is not None and f.seq >= onset.seq), None)
        if shown is not None:
            latencies.append((shown.received_at - onset.sent_at) * 1000.0)
    return {
        "utterances": len(onsets),
        "speech_to_video_ms": [round(value, 1) for value in latencies],
        "speech_to_video_ms_median": round(statistics.median(latencies), 1) if latencies else None,
        "frames_sent": len(stats.frames),
        "frames_received": len(viewer.frames),
    }


def run_bench(config: AppConfig, with_bot: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {"generator": real_time_factor()}
    if with_bot:
        results["bot"] = asyncio.run(bot_latency(config))
    return results
