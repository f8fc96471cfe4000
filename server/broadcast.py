"""A session's fan-out and egress: Janus VideoRoom publishing and the RTMP push.

Configured by the ``[broadcast]`` section. For the session's whole life (across runs: the
live tracks keep playing between them) one supervisor task per egress publishes through the
session's MediaRelay, so the session is encoded once per egress whatever the audience, and
starts again ``retry_s`` after Janus or the RTMP server failed or went away. Every change of
state is logged once and shown in the session's status (``broadcast``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from model.errors import AnchorError
from server.egress import RtmpPusher
from server.janus import VideoRoomPublisher
from server.tasks import cancel_and_wait
from server.webrtc import create_peer

if TYPE_CHECKING:
    from server.config import ServerSettings

log = logging.getLogger("anchor.broadcast")


class SessionBroadcast:
    """Janus publisher and/or RTMP pusher of one session; ``start`` then ``close``."""

    def __init__(
        self,
        session_id: str,
        config: ServerSettings,
        relay: MediaRelay,
        video: MediaStreamTrack,
        audio: MediaStreamTrack,
    ) -> None:
        self.session_id = session_id
        self.config = config
        self.settings = config.broadcast
        self.relay = relay
        self.video = video
        self.audio = audio
        # egress name -> "starting" | "publishing feed N" | "pushing URL" | "error: ..."
        self.state: dict[str, str] = {}
        self.janus_feed: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @staticmethod
    def enabled(config: ServerSettings) -> bool:
        return bool(config.broadcast.janus_url or config.broadcast.rtmp_url)

    @property
    def rtmp_url(self) -> str:
        return self.settings.rtmp_url.replace("{session}", self.session_id)

    def start(self) -> None:
        if self.settings.janus_url:
            self._supervise("janus", self._publish_janus)
        if self.settings.rtmp_url:
            self._supervise("rtmp", self._push_rtmp)

    def _supervise(self, name: str, attempt: Callable[[], Awaitable[None]]) -> None:
        self.state[name] = "starting"
        task = asyncio.create_task(self._retry(name, attempt), name=f"{name}:{self.session_id}")
        self._tasks.append(task)

    async def _retry(self, name: str, attempt: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await attempt()
            except AnchorError as err:
                self._set(name, f"error: {err}")
            except Exception as err:  # a supervisor: anything else is retried too
                log.exception("session %s: %s egress failed", self.session_id, name)
                self._set(name, f"error: {type(err).__name__}: {err}")
            await asyncio.sleep(self.settings.retry_s)

    def _set(self, name: str, state: str) -> None:
        if self.state.get(name) != state:
            level = logging.ERROR if state.startswith("error") else logging.INFO
            log.log(level, "session %s: %s %s", self.session_id, name, state)
        self.state[name] = state

    def _tracks(self) -> list[MediaStreamTrack]:
        return [
            self.relay.subscribe(self.video, buffered=False),
            self.relay.subscribe(self.audio, buffered=False),
        ]

    async def _publish_janus(self) -> None:
        settings = self.settings
        tracks = self._tracks()
        publisher = VideoRoomPublisher(
            settings.janus_url,
            settings.janus_room,
            display=self.session_id,
            tracks=tracks,
            peer_factory=lambda: create_peer(self.config.server),
            room_secret=settings.janus_room_secret or None,
            pin=settings.janus_room_pin or None,
            create_room=settings.janus_create_room,
            api_secret=settings.janus_api_secret or None,
        )
        try:
            self.janus_feed = await publisher.start()
            self._set("janus", f"publishing feed {self.janus_feed} in room {settings.janus_room}")
            reason = await publisher.wait_lost()
            self._set("janus", f"error: publishing stopped: {reason}")
        finally:
            self.janus_feed = None
            await publisher.close()
            for track in tracks:
                track.stop()

    async def _push_rtmp(self) -> None:
        settings = self.settings
        video, audio = self._tracks()
        pusher = RtmpPusher(
            self.rtmp_url,
            video,
            audio,
            fps=self.config.stream.fps,
            video_bitrate=settings.rtmp_video_bitrate,
            audio_bitrate=settings.rtmp_audio_bitrate,
            keyframe_interval_s=settings.rtmp_keyframe_interval_s,
        )
        try:
            await pusher.start()
            self._set("rtmp", f"pushing {self.rtmp_url}")
            await pusher.failed.wait()
            self._set("rtmp", f"error: {pusher.error}")
        finally:
            await pusher.close()

    def status(self) -> dict[str, Any]:
        return dict(self.state)

    async def close(self) -> None:
        """Stop publishing and pushing: leave the room, flush and close the RTMP stream."""
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
