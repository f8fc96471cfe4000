"""The Ray actor side of ``streaming.ray_pipeline``: the typed messages and the actor body.

front (``RaySession``) --[Command]--> ``SessionWorker.push`` -> ``WorkerSession``
front <--[Event]-- ``SessionWorker.pull`` <- ``_EventQueue`` (the session's PipelineSink)

Imports neither torch nor the model stack at module level: the front process imports this
module too; the actor loads the model in ``SessionWorker.__init__``, on the worker node.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from model.errors import AnchorError
from streaming.pipeline import OutputFrame

if TYPE_CHECKING:
    from model.motion.frame import MotionFrame
    from streaming.config import IdentityConfig, PipelineConfig


# Commands, front -> actor (``SessionWorker.push``), applied in order. Module-level
# dataclasses, so they pickle by reference through Ray.


@dataclass(slots=True)
class SubmitFrames:
    """Motion frames to submit, in order."""

    motions: list[MotionFrame] = field(default_factory=list)


@dataclass(slots=True)
class EndRun:
    """``SessionPipeline.end``."""


@dataclass(slots=True)
class ClearRun:
    """``SessionPipeline.clear``."""


Command = SubmitFrames | EndRun | ClearRun


# Events, actor -> front (``SessionWorker.pull``), in the order the pipeline produced them.


@dataclass(slots=True)
class FramesDone:
    """Committed frames, (H, W, 3) uint8 images (read-only once through Ray)."""

    frames: list[OutputFrame]


@dataclass(slots=True)
class RunEnded:
    """``PipelineSink.ended``."""


@dataclass(slots=True)
class RunFailed:
    """``PipelineSink.failed``: the message, not the exception, which must unpickle in the
    front process."""

    message: str


Event = FramesDone | RunEnded | RunFailed


class _EventQueue:
    """PipelineSink inside the actor: collects results until the front pulls them.

    Unbounded by type, bounded by the producer's credits (every frame in it is in flight).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._events: list[Event] = []

    def _add(self, event: Event) -> None:
        with self._changed:
            last = self._events[-1] if self._events else None
            if isinstance(event, FramesDone) and isinstance(last, FramesDone):
                last.frames.extend(event.frames)
            else:
                self._events.append(event)
            self._changed.notify_all()

    def frames(self, frames: list[OutputFrame]) -> None:
        self._add(FramesDone(list(frames)))

    def ended(self) -> None:
        self._add(RunEnded())

    def failed(self, error: BaseException) -> None:
        self._add(RunFailed(str(error) or type(error).__name__))

    def take(self, wait_s: float) -> list[Event]:
        with self._changed:
            self._changed.wait_for(lambda: bool(self._events), wait_s)
            events, self._events = self._events, []
        return events


class SessionWorker:
    """The body of a session actor: one ``WorkerSession`` over its own ``ModelWorker``.

    Runs on a Ray worker node; torch and the model load here, in ``__init__``.
    """

    def __init__(
        self, config: PipelineConfig, session_id: str, identity: IdentityConfig | None
    ) -> None:
        from streaming.worker import WorkerPipelineFactory

        self._events = _EventQueue()
        self._factory = WorkerPipelineFactory(config)
        self._session = self._factory.create(session_id, identity, self._events)

    def ready(self) -> dict[str, Any]:
        """Where the actor runs and the session's latency (answered once ``__init__`` is done)."""
        import os
        import socket

        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "latency_frames": self._session.latency_frames,
        }

    def push(self, commands: list[Command]) -> None:
        """Apply commands in order."""
        session = self._session
        for command in commands:
            if isinstance(command, SubmitFrames):
                for motion in command.motions:
                    session.submit(motion)
            elif isinstance(command, EndRun):
                session.end()
            elif isinstance(command, ClearRun):
                session.clear()
            else:
                raise AnchorError(f"session worker: unknown command {command!r}")

    def pull(self, wait_s: float) -> tuple[list[Event], dict[str, int]]:
        """Events since the last pull (waiting up to ``wait_s`` for one) and queue depths."""
        events = self._events.take(wait_s)
        return events, self._session.queue_depths()
