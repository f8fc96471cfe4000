"""Helpers of the client tests: URLs with tokens, recordings, a relay that drops connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import av
import numpy as np
from serverkit import SECRET
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve

from model.motion.readers import open_motion, write_talkshow
from model.motion.samples import wave_clip
from model.motion.wire import MAGIC
from server.media import read_seq
from server.tokens import mint_token


def producer_url(port: int, session: str = "s1") -> tuple[str, str]:
    """(URL without token, producer token)."""
    token = mint_token(SECRET, session, "producer", 300.0)
    return f"ws://127.0.0.1:{port}/sessions/{session}/motion", token


def viewer_url(port: int, session: str = "s1") -> tuple[str, str]:
    token = mint_token(SECRET, session, "viewer", 300.0)
    return f"ws://127.0.0.1:{port}/sessions/{session}/view", token


def talkshow_file(path: Path, frames: int) -> Path:
    """The bundled wave motion, ``frames`` long, as a TalkSHOW .npy."""
    from model.motion.readers import open_talkshow

    np.save(path, wave_clip(seconds=frames / 30.0)[:frames])
    clip = open_talkshow(path)
    assert len(clip) == frames
    write_talkshow(path, list(clip))
    return path


def recordings(folder: Path) -> list[Path]:
    """Session recordings (mp4) in creation order."""
    return sorted(folder.glob("*.mp4"), key=lambda path: path.stat().st_mtime_ns)


def recorded_motion_seqs(folder: Path) -> list[int]:
    """Every seq recorded in any run's motion sidecar, in recording order."""
    seqs: list[int] = []
    for video in recordings(folder):
        sidecar = video.with_suffix(".motion.npz")
        if sidecar.exists():
            seqs += [frame.seq for frame in open_motion(sidecar)]
    return seqs


def video_seqs(path: Path) -> list[int | None]:
    with av.open(str(path)) as container:
        return [read_seq(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def stream_durations(path: Path) -> dict[str, float]:
    """Decoded duration (s) of the video and audio streams of a media file."""
    durations: dict[str, float] = {}
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = [frame for frame in container.decode(video=0)]
        rate = float(video.average_rate or 30)
        durations["video"] = len(frames) / rate
    with av.open(str(path)) as container:
        samples = 0
        rate = 0
        for frame in container.decode(audio=0):
            samples += frame.samples
            rate = frame.sample_rate
        durations["audio"] = samples / rate if rate else 0.0
    return durations


class DropRelay:
    """A WebSocket relay between a producer and the server that breaks the first connection
    deterministically: after forwarding ``drop_after`` motion frames it forwards nothing
    more from the producer, waits until the server's ack for each forwarded frame reached
    the producer, then aborts the producer's TCP connection (no closing handshake). Later
    connections pass through untouched."""

    def __init__(self, upstream_port: int, drop_after: int) -> None:
        self.upstream_port = upstream_port
        self.drop_after = drop_after
        self.connections = 0
        self.dropped = asyncio.Event()
        self.held_back = 0  # producer messages swallowed after the cut
        self._server: Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, client: ServerConnection) -> None:
        self.connections += 1
        breaking = self.connections == 1
        assert client.request is not None
        target = f"ws://127.0.0.1:{self.upstream_port}{client.request.path}"
        async with connect(target, compression=None, max_size=None) as upstream:
            acked: set[int] = set()
            forwarded: list[int] = []
            all_acked = asyncio.Event()
            down = asyncio.create_task(self._down(upstream, client, acked, forwarded, all_acked))
            cut: asyncio.Task[None] | None = None
            try:
                async for message in client:
                    if cut is not None:
                        self.held_back += 1
                        continue
                    await upstream.send(message)
                    if isinstance(message, bytes) and message[:4] == MAGIC:
                        forwarded.append(len(forwarded))
                        if breaking and len(forwarded) == self.drop_after:
                            cut = asyncio.create_task(self._cut(client, all_acked))
            except Exception:
                pass
            finally:
                for task in (down, cut):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task

    async def _cut(self, client: ServerConnection, all_acked: asyncio.Event) -> None:
        await asyncio.wait_for(all_acked.wait(), 60.0)
        client.transport.abort()
        self.dropped.set()

    async def _down(
        self,
        upstream: ClientConnection,
        client: ServerConnection,
        acked: set[int],
        forwarded: list[int],
        all_acked: asyncio.Event,
    ) -> None:
        async for message in upstream:
            parsed: Any = json.loads(message)
            if parsed.get("type") == "ack":
                acked.add(int(parsed["seq"]))
            await client.send(message)
            if len(acked) >= self.drop_after and len(forwarded) >= self.drop_after:
                all_acked.set()


class VirtualClock:
    """A pacing clock that jumps to each deadline instead of sleeping."""

    def __init__(self) -> None:
        self.time = 1000.0

    def now(self) -> float:
        return self.time

    async def sleep_until(self, deadline: float) -> None:
        self.time = max(self.time, deadline)
        await asyncio.sleep(0)
