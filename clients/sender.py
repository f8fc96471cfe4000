"""``anchor send``: replay a motion file (or JSON-lines frames from stdin) to a session.

Pacing: frames leave at ``fps`` (on a schedule that restarts after a reconnect or after
falling more than ``FAR_BEHIND_FRAMES`` behind), or as fast as credits allow (``fps = 0``).
Never more frames in flight than the server's credits. With ``audio``, each frame is
preceded by its own slice of the audio (same pts), so the server plays speech in step.

Reconnects: a dropped connection is retried with backoff; the new run resumes at the first
frame the server did not acknowledge (see ``clients.producer`` for the ack semantics), so
no accepted frame is ever sent twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import numpy as np

from clients.producer import ConnectionLost, ProducerLink, ServerRefused
from model.audio2motion.audio import frame_boundary
from model.errors import AnchorError
from model.motion.clip import MotionClip
from model.motion.frame import MotionFrame
from model.motion.wire import decode_json

log = logging.getLogger("anchor.send")

FAR_BEHIND_FRAMES = 4
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)


@dataclass(slots=True)
class Item:
    """One frame to send and the PCM16 audio (N,) int16 that starts at its pts, if any."""

    frame: MotionFrame
    audio: np.ndarray | None = None


class Clock(Protocol):
    """Time source of the pacing (a test can substitute a virtual one)."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))


def clip_items(
    clip: MotionClip,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    loop: bool = False,
    start_at: int = 0,
) -> Iterator[Item]:
    """Frames of ``clip`` from the first with ``seq >= start_at``; with ``loop`` forever,
    each pass shifted by the clip's seq span and duration so seq and pts keep increasing.

    audio: (N,) int16 at ``audio_rate`` aligned with the clip's first frame; frame ``i``
    carries samples ``[floor(i * rate / fps), floor((i + 1) * rate / fps))`` (silence past
    the end), and each pass replays the audio with the motion.
    """
    if len(clip) == 0:
        raise AnchorError(f"{clip.path}: the motion file has no frames")
    first = clip.frame(0)
    last = clip.frame(len(clip) - 1)
    seq_span = last.seq - first.seq + 1
    duration = len(clip) / clip.fps
    start = next((i for i in range(len(clip)) if clip.frame(i).seq >= start_at), None)
    if start is None:
        raise AnchorError(f"--start-at {start_at}: the clip's last seq is {last.seq}")
    repeat = 0
    while True:
        for index in range(start if repeat == 0 else 0, len(clip)):
            frame = clip.frame(index)
            frame.seq += repeat * seq_span
            frame.pts = float(frame.pts) + repeat * duration
            chunk = None
            if audio is not None:
                begin = frame_boundary(index, audio_rate, clip.fps)
                end = frame_boundary(index + 1, audio_rate, clip.fps)
                chunk = np.zeros(end - begin, dtype=np.int16)
                available = audio[begin:end]
                chunk[: len(available)] = available
            yield Item(frame, chunk)
        if not loop:
            return
        repeat += 1


async def line_items(stream: IO[str]) -> AsyncIterator[Item]:
    """JSON-lines frames (the motion layer's JSON form, ``"type": "frame"`` optional) from
    ``stream``, read on a thread so a blocking pipe never stalls the event loop."""
    number = 0
    while True:
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        number += 1
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise AnchorError(f"stdin line {number}: not valid JSON ({err.msg})") from err
        if isinstance(record, dict):
            record.pop("type", None)
        yield Item(decode_json(json.dumps(record)))


async def _iterate(items: Iterator[Item] | AsyncIterator[Item]) -> AsyncIterator[Item]:
    if isinstance(items, Iterator):
        for item in items:
            yield item
    else:
        async for item in items:
            yield item


@dataclass
class SendReport:
    """What a replay did: frames sent (resends included), accepted, connections, runs."""

    sent: int = 0
    accepted: list[int] = field(default_factory=list)
    connections: int = 0
    resent: int = 0
    max_in_flight: int = 0
    send_times: list[tuple[int, float]] = field(default_factory=list)  # (seq, clock time)
    runs: list[dict[str, Any]] = field(default_factory=list)  # the `ended` summaries seen


class ReplaySender:
    """Send ``items`` to a producer URL (token included) with pacing, credits, reconnects."""

    def __init__(
        self,
        url: str,
        items: Iterator[Item] | AsyncIterator[Item],
        fps: float = 30.0,
        audio_rate: int = 16000,
        identity: str = "default",
        retries: int = 10,
        max_rate: float = 150.0,
        clock: Clock | None = None,
    ) -> None:
        if fps < 0:
            raise AnchorError(f"--fps must be >= 0, got {fps}")
        self.url = url
        self.items = _iterate(items)
        self.fps = fps
        self.audio_rate = audio_rate
        self.identity = identity
        self.retries = retries
        # Messages per second, under the server's per-connection rate limit (a frame with
        # audio is two messages).
        self.max_rate = max_rate
        self.clock = clock or MonotonicClock()
        self.report = SendReport()
        self.link: ProducerLink | None = None
        self._pending: deque[Item] = deque()  # sent, not yet acknowledged, in seq order
        self._schedule: tuple[float, int] | None = None  # (clock time, frame number)
        self._frame_number = 0
        self._last_message = 0.0

    def _on_ack(self, seq: int) -> None:
        self.report.accepted.append(seq)
        while self._pending and self._pending[0].frame.seq <= seq:
            self._pending.popleft()

    async def run(self) -> SendReport:
        """Send everything, then ``end`` the run; returns the report."""
        failures = 0
        while True:
            try:
                async with ProducerLink(self.url, on_ack=self._on_ack) as link:
                    self.link = link
                    self.report.connections += 1
                    await link.start(self.identity)
                    failures = 0
                    await self._stream(link)
                    self.report.runs.append(await link.end())
                    self.report.max_in_flight = max(
                        self.report.max_in_flight, link.max_in_flight_seen
                    )
                    return self.report
            except ConnectionLost as err:
                failures += 1
                if self.link is not None:
                    self.report.max_in_flight = max(
                        self.report.max_in_flight, self.link.max_in_flight_seen
                    )
                if failures > self.retries:
                    raise AnchorError(f"send: connection lost {failures} times ({err})") from err
                delay = BACKOFF_S[min(failures - 1, len(BACKOFF_S) - 1)]
                log.warning(
                    "connection lost (%s); resuming in %.1f s at %s",
                    err,
                    delay,
                    f"seq {self._pending[0].frame.seq}" if self._pending else "the next frame",
                )
                self._schedule = None
                await asyncio.sleep(delay)
            except ServerRefused:
                raise

    async def _stream(self, link: ProducerLink) -> None:
        resume_after = (link.started or {}).get("last_seq")
        if isinstance(resume_after, int):  # a server that reports its last accepted seq
            while self._pending and self._pending[0].frame.seq <= resume_after:
                self._pending.popleft()
        for item in list(self._pending):
            self.report.resent += 1
            await self._send(link, item)
        async for item in self.items:
            self._pending.append(item)
            await self._send(link, item)

    async def _send(self, link: ProducerLink, item: Item) -> None:
        await link.wait_credit()
        await self._pace()
        if item.audio is not None and len(item.audio):
            await self._throttle()
            await link.send_audio(float(item.frame.pts), self.audio_rate, item.audio)
        await self._throttle()
        await link.send_frame(item.frame)
        self.report.sent += 1
        self.report.send_times.append((item.frame.seq, self.clock.now()))

    async def _pace(self) -> None:
        if self.fps == 0:
            return
        number = self._frame_number
        self._frame_number += 1
        now = self.clock.now()
        if self._schedule is None:
            self._schedule = (now, number)
        origin, origin_number = self._schedule
        deadline = origin + (number - origin_number) / self.fps
        if now - deadline > FAR_BEHIND_FRAMES / self.fps:
            self._schedule = (now, number)  # fell behind (credits): restart, never burst
            return
        await self.clock.sleep_until(deadline)

    async def _throttle(self) -> None:
        if self.fps != 0:
            return  # real-time pacing stays far under the rate limit
        gap = 1.0 / self.max_rate
        wait = self._last_message + gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_message = time.monotonic()


def load_audio(path: str | Any, sample_rate: int) -> np.ndarray:
    """A WAV file as (N,) int16 mono at ``sample_rate`` (the server's audio rate)."""
    from model.audio2motion.audio import read_wav, to_pcm16

    return to_pcm16(read_wav(path, sample_rate))


async def send_command(
    source: str,
    url: str,
    fps: float,
    loop: bool,
    start_at: int,
    audio_path: str | None,
    audio_rate: int,
    identity: str,
    retries: int,
    max_rate: float,
    stdin: IO[str],
) -> SendReport:
    """What ``anchor send`` runs: a motion file (or ``-`` for JSON lines on stdin)."""
    from model.motion.readers import open_motion

    items: Iterator[Item] | AsyncIterator[Item]
    if source == "-":
        if audio_path is not None or loop or start_at:
            raise AnchorError("send -: --audio, --loop and --start-at need a motion file")
        items = line_items(stdin)
    else:
        clip = open_motion(source)
        audio = load_audio(audio_path, audio_rate) if audio_path is not None else None
        items = clip_items(clip, audio, audio_rate, loop, start_at)
    sender = ReplaySender(url, items, fps, audio_rate, identity, retries, max_rate)
    return await sender.run()
