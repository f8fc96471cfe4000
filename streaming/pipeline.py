"""The per-session pipeline as the server sees it: a torch-free interface.

ingest (server) -> render (thread pool) -> sampler + decode + face (the ONE model worker
thread, ``streaming.worker``) -> output (server).

This module imports neither torch nor the model stack, so the server can import it;
``streaming.factory.load_pipeline_factory`` builds the configured factory, and the
composition root hands it to the server.

Threads call the sink; the sink hands results to the event loop itself. Contracts:
- every submitted motion frame comes out exactly once, in order, as an ``OutputFrame``,
  unless a ``clear`` discarded it first (frames submitted before a clear never come out
  after it);
- ``end`` flushes: the tail is committed, then ``PipelineSink.ended`` is called once;
- a failure calls ``PipelineSink.failed`` once; nothing comes out after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from model.config import SamplerConfig
from model.errors import AnchorError
from model.motion.frame import BodyModelSettings

if TYPE_CHECKING:
    from model.motion.frame import MotionFrame
    from streaming.config import IdentityConfig, PipelineConfig


# The body model settings the render stage poses every frame with (streaming/stages.py).
_BODY = BodyModelSettings()


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """The video a pipeline produces, as the network edge needs to know it.

    fps: frames per second of the motion and the video; width, height: frame size in
    pixels; window_size, window_stride: the sampler's window and the frames one window
    commits in steady state (the size of the bursts the edge must smooth out);
    hand_pca_count: the PCA coefficients per hand the body model takes (0 = 45 axis-angle
    values), which the edge checks every motion frame against.
    """

    fps: float
    width: int
    height: int
    window_size: int
    window_stride: int
    hand_pca_count: int = 0


def stream_format(config: PipelineConfig) -> StreamFormat:
    """The stream format of pipelines built from ``config``."""
    sampler = config.sampler
    return StreamFormat(
        fps=config.render.fps,
        width=config.render.width,
        height=config.render.height,
        window_size=sampler.window_size,
        window_stride=sampler.window_size - sampler.overlap,
        hand_pca_count=_BODY.num_pca_comps if _BODY.use_pca else 0,
    )


@dataclass(slots=True)
class OutputFrame:
    """A committed, decoded (and face-enhanced) frame.

    image: (H, W, 3) uint8 RGB. pts: the motion frame's pts (seconds).
    submitted_at: time.monotonic() when the frame was submitted to the pipeline.
    stage_seconds: time spent per stage ("render", "model" and, with the face stage,
    "face").
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

    def submit(self, motion: MotionFrame) -> None:
        """Queue one validated motion frame (seq increasing within a run)."""
        ...

    def end(self) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...

    def queue_depths(self) -> dict[str, int]: ...


class PipelineFactory(Protocol):
    """Builds session pipelines that share one model worker (the device owner)."""

    def create(
        self, session_id: str, identity: IdentityConfig | None, sink: PipelineSink
    ) -> SessionPipeline:
        """A pipeline for ``session_id``; identity None = the configured model."""
        ...

    def close(self) -> None: ...


def live_latency_frames(sampler: SamplerConfig) -> int:
    """Frames a live sampler may hold before the first commit (an upper bound).

    low: one window plus one stride; exact: the wavefront spans ``steps * m`` windows
    (m = ceil(ws/s) - 1) behind the newest complete window.
    """
    stride = sampler.window_size - sampler.overlap
    if sampler.mode == "low":
        return sampler.window_size + stride
    if sampler.mode == "exact":
        neighbours = max(1, -(-sampler.window_size // stride) - 1)
        return (sampler.steps * neighbours + 1) * stride + sampler.window_size
    raise AnchorError("sampler.mode: offline sampling cannot stream; use low or exact")


def worker_latency_frames(config: PipelineConfig) -> int:
    """Frames the model worker may hold before a frame comes out: the body sampler's
    latency plus, with temporal faces, the face sampler's behind it (render threads
    excluded)."""
    sampler = config.sampler
    latency = live_latency_frames(sampler)
    if config.face.enabled and config.face.face_temporal:
        face_mode = "low" if sampler.mode == "low" else "exact"
        latency += live_latency_frames(
            sampler.model_copy(update={"mode": face_mode, "steps": config.face.steps})
        )
    return latency
