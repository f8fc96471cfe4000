"""The per-session pipeline as the server sees it: a torch-free interface.

ingest (server) -> render (thread pool) -> sampler + decode + face (the ONE model worker
thread, ``streaming.worker``) -> output (server).

This module imports neither torch nor the model stack at import time, so the server can
import it; ``load_pipeline_factory`` imports ``streaming.worker`` (torch) when called.

Threads call the sink; the sink hands results to the event loop itself. Contracts:
- every submitted motion frame comes out exactly once, in order, as an ``OutputFrame``,
  unless a ``clear`` discarded it first (frames submitted before a clear never come out
  after it);
- ``end`` flushes: the tail is committed, then ``PipelineSink.ended`` is called once;
- a failure calls ``PipelineSink.failed`` once; nothing comes out after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from model.config import ModelConfig
    from server.config import AppConfig


@dataclass(slots=True)
class OutputFrame:
    """A committed, decoded (and face-enhanced) frame.

    image: (H, W, 3) uint8 RGB. pts: the motion frame's pts (seconds).
    submitted_at: time.monotonic() when the frame was submitted to the pipeline.
    stage_seconds: time spent per stage ("render", "model").
    """

    seq: int
    pts: float
    image: np.ndarray
    submitted_at: float
    stage_seconds: dict[str, float] = field(default_factory=dict)


class PipelineSink(Protocol):
    """Receives a session pipeline's results; called from pipeline threads."""

    def frames(self, frames: list[OutputFrame]) -> None: ...

    def ended(self) -> None: ...

    def failed(self, error: BaseException) -> None: ...


class SessionPipeline(Protocol):
    """One session's run from ``start`` to ``end``; every method returns without blocking
    on model work, except ``close`` which joins this session's threads."""

    latency_frames: int

    def submit(self, motion: Any) -> None:
        """Queue one validated motion frame (``model.motion`` record with seq and pts)."""
        ...

    def end(self) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...

    def queue_depths(self) -> dict[str, int]: ...


class PipelineFactory(Protocol):
    """Builds session pipelines that share one model worker (the device owner)."""

    def create(
        self, session_id: str, identity: ModelConfig, sink: PipelineSink
    ) -> SessionPipeline: ...

    def close(self) -> None: ...


def load_pipeline_factory(config: AppConfig) -> PipelineFactory:
    """The real factory: starts the model worker thread (imports torch)."""
    from streaming.worker import WorkerPipelineFactory

    return WorkerPipelineFactory(config)
