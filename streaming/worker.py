"""The model worker: ONE thread that owns the model and its device, and per-session
pipelines feeding it.

Per session: motion frames -> render stage (a small thread pool; mesh renders are
independent per frame) -> a reorder buffer that restores submission order -> jobs on the
worker's queue -> sampler.push / flush / reset, VAE decode and face enhancement on the
worker thread -> ``PipelineSink.frames``. With ``face.enabled`` the render stage also builds
each frame's face geometry and the worker runs the face stage (``FaceStage``) on the decoded
frames next to the sampler: enhance per commit, flush at the end, reset on clear.

Queue policies:
- render pool queue: unbounded by type, bounded by the producer's credits (the server
  admits at most ``credit_limit`` frames that are not yet committed+recorded);
- worker job queue: same bound (one job per rendered chunk plus control jobs); never
  drops: a late frame waits, it is not skipped (the sampler needs every frame in order);
- reorder buffer: holds renders finished out of order, at most the render pool's width.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from model.config import ModelConfig
from model.errors import AnchorError
from streaming.face_stage import FaceGeometry, FaceStage, decode_frames, face_geometry
from streaming.frames import CommittedFrame, ConditionFrame
from streaming.pipeline import OutputFrame, PipelineSink, worker_latency_frames
from streaming.sampler import WindowSampler

if TYPE_CHECKING:
    from streaming.config import IdentityConfig, PipelineConfig

log = logging.getLogger("anchor.worker")


@dataclass(slots=True)
class RenderedFrame:
    """A motion frame after the render stage: the sampler's input plus timing."""

    condition: ConditionFrame
    submitted_at: float  # time.monotonic() when the session submitted the motion frame
    render_seconds: float


class ConditionRenderer:
    """Motion frame -> mesh render (the ControlNet condition) and, when the face stage runs,
    the frame's face geometry (aligned-crop matrix, mesh crop, keep mask).

    One per render thread: an OpenGL context belongs to the thread that made it.
    """

    def __init__(self, config: PipelineConfig) -> None:
        from model.motion.frame import BodyModelSettings
        from model.render import MotionRenderer

        self.renderer = MotionRenderer(config.render, BodyModelSettings())
        self.face_size = config.face.size if config.face.enabled else None

    def render(self, motion: Any) -> RenderedFrame:
        started = time.monotonic()
        window = self.renderer.render([motion])
        condition = window.as_tensor()[0]
        face = None
        if self.face_size is not None:
            face = frame_face_geometry(condition, window.landmarks[0], self.face_size)
        frame = ConditionFrame(
            seq=motion.seq, pts=float(motion.pts), condition=condition, face=face
        )
        return RenderedFrame(frame, started, time.monotonic() - started)

    def close(self) -> None:
        self.renderer.close()


def frame_face_geometry(
    render: torch.Tensor, landmarks: np.ndarray, size: int
) -> FaceGeometry | None:
    """Face geometry of one rendered frame, as ``streaming.generate.condition_frames`` builds it.

    render: (3, H, W) float32 [0, 1] mesh render; landmarks: (51, 2) float32 projected face
    landmarks in its pixels; size: the face crop side (``face.size``). None when the
    landmarks are not finite (no usable face): the frame then passes the face stage as is.
    """
    from model.face_geometry import alignment_matrices, ffhq_points

    if not np.isfinite(landmarks).all():
        return None
    points = ffhq_points(landmarks[None].astype(np.float32))
    matrix = alignment_matrices(points, size)[0]
    return face_geometry(render, matrix, landmarks.astype(np.float32), size)


class _RenderPool:
    """``threads`` render threads sharing one input queue; each owns one renderer, made and
    closed on that thread (an OpenGL context belongs to the thread that made it).

    The input queue is unbounded by type and bounded by the producer's credits.
    """

    def __init__(
        self,
        threads: int,
        factory: Callable[[], ConditionRenderer],
        done: Callable[[int, int, RenderedFrame | None, BaseException | None], None],
        name: str,
    ) -> None:
        self._factory = factory
        self._done = done
        self.queue: queue.SimpleQueue[tuple[int, int, Any, float] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{index}") for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, index: int, generation: int, motion: Any) -> None:
        self.queue.put((index, generation, motion, time.monotonic()))

    def close(self) -> None:
        for _ in self._threads:
            self.queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        renderer: ConditionRenderer | None = None
        try:
            while (item := self.queue.get()) is not None:
                index, generation, motion, submitted = item
                try:
                    if renderer is None:
                        renderer = self._factory()
                    rendered = renderer.render(motion)
                    rendered.submitted_at = submitted
                except Exception as err:  # reported to the session, which fails
                    self._done(index, generation, None, err)
                else:
                    self._done(index, generation, rendered, None)
        finally:
            if renderer is not None:
                renderer.close()


@dataclass(slots=True)
class _Job:
    """Work for the model worker thread, run in queue order."""

    session: WorkerSession
    kind: str  # "open", "push", "end", "clear", "close"
    frames: list[RenderedFrame] | None = None
    generation: int = 0


class ModelWorker:
    """The thread that owns every network: loads identities, runs samplers, decodes, enhances."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.sampler_config = config.sampler
        # Temporal faces run their own window sampler behind the body's (FaceStage).
        self.latency_frames = worker_latency_frames(config)
        # One item per rendered chunk or control message of some session; bounded by credits.
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._components: dict[str, Any] = {}
        # Face UNet (by id) -> the temporal face denoiser whose context its attention reads.
        self._face_attention_owner: dict[int, Any] = {}
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=False)
        self._thread.start()

    def submit(self, job: _Job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        """Stop after the jobs already queued; joins the thread."""
        if self._thread.is_alive():
            self.jobs.put(None)
            self._thread.join()

    def components_for(self, identity: ModelConfig) -> Any:
        """Networks of ``identity``, built once and reused (worker thread only)."""
        key = identity.model_dump_json()
        if key not in self._components:
            from model.components import build_components

            self._components[key] = build_components(
                identity, self.sampler_config, self.config.face
            )
        return self._components[key]

    def activate_face_attention(self, stage: FaceStage) -> None:
        """Point the shared face UNet's window attention at ``stage``'s window context.

        A temporal FaceStage installs all-frame attention bound to its own context on the
        face UNet, which the sessions of one identity share; the stage about to run must own
        it (worker thread only).
        """
        denoiser = getattr(stage, "_face_denoiser", None)
        if denoiser is None:
            return
        unet = denoiser.enhancer.unet
        if self._face_attention_owner.get(id(unet)) is not denoiser:
            from model.attention import install_attention

            install_attention(unet, "all-frame", denoiser.context)
            self._face_attention_owner[id(unet)] = denoiser

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while (job := self.jobs.get()) is not None:
            session = job.session
            if session.failed:
                continue
            try:
                session.run_job(job)
            except Exception as err:  # ends this session only; the worker serves the others
                session.failed = True
                log.exception("session %s: pipeline failed", session.session_id)
                session.sink.failed(err)


class WorkerSession:
    """One session's run: its render pool, reorder buffer and sampler (SessionPipeline)."""

    def __init__(
        self,
        worker: ModelWorker,
        session_id: str,
        identity: ModelConfig,
        sink: PipelineSink,
        renderer_factory: Callable[[], ConditionRenderer],
        render_threads: int,
    ) -> None:
        self.worker = worker
        self.session_id = session_id
        self.identity = identity
        self.sink = sink
        self.latency_frames = worker.latency_frames + render_threads
        self.failed = False
        self._lock = threading.Lock()
        self._next_index = 0  # submission index of the next item
        self._next_release = 0  # index the reorder buffer releases next
        self._ready: dict[int, tuple[str, RenderedFrame | None, int]] = {}
        self._generation = 0  # bumped by clear: renders of older generations are discarded
        self._in_render = 0
        # Backlog accounting: frames submitted, frames whose render a clear discarded (both
        # under the lock) and frames the worker took off its queue (worker thread only).
        self._submitted = 0
        self._stale = 0
        self._taken = 0
        self._sampler: WindowSampler | None = None
        self._components: Any = None
        self._face: FaceStage | None = None
        # Render results of frames in the sampler, by seq (worker thread only).
        self._meta: dict[int, RenderedFrame] = {}
        self._worker_generation = 0  # the latest clear the sampler applied
        self.closed = False
        self._pool = _RenderPool(
            render_threads, renderer_factory, self._rendered, f"render:{session_id}"
        )
        worker.submit(_Job(self, "open"))

    # SessionPipeline (any thread) -------------------------------------------------------

    def submit(self, motion: Any) -> None:
        with self._lock:
            index, generation = self._next_index, self._generation
            self._next_index += 1
            self._in_render += 1
            self._submitted += 1
        self._pool.submit(index, generation, motion)

    def end(self) -> None:
        self._enqueue_marker("end")

    def clear(self) -> None:
        with self._lock:
            # Queued under the lock: no push of the new generation can precede the reset.
            self._generation += 1
            self.worker.submit(_Job(self, "clear", generation=self._generation))

    def close(self) -> None:
        self.closed = True
        self._pool.close()
        self.worker.submit(_Job(self, "close"))

    def queue_depths(self) -> dict[str, int]:
        sampler = self._sampler
        return {
            # Frames submitted that the model worker has not taken yet: the queue a
            # pipeline slower than its producer builds (server.max_lag_s acts on it).
            "backlog": max(0, self._submitted - self._stale - self._taken),
            "render": self._in_render,
            "reorder": len(self._ready),
            "worker": self.worker.jobs.qsize(),
            "sampler": sampler.pending if sampler is not None else 0,
        }

    # render pool threads ----------------------------------------------------------------

    def _rendered(
        self,
        index: int,
        generation: int,
        rendered: RenderedFrame | None,
        error: BaseException | None,
    ) -> None:
        with self._lock:
            self._in_render -= 1
            if error is not None or rendered is None:
                if not self.failed:
                    self.failed = True
                    self.sink.failed(error or AnchorError("render stage returned nothing"))
                return
            self._ready[index] = ("push", rendered, generation)
            self._release_in_order()

    def _enqueue_marker(self, kind: str) -> None:
        with self._lock:
            index = self._next_index
            self._next_index += 1
            self._ready[index] = (kind, None, self._generation)
            self._release_in_order()

    def _release_in_order(self) -> None:
        """Move consecutive ready items to the worker (caller holds the lock)."""
        chunk: list[RenderedFrame] = []
        chunk_generation = 0
        while self._next_release in self._ready:
            kind, frame, generation = self._ready.pop(self._next_release)
            self._next_release += 1
            if kind == "push" and frame is not None:
                if generation != self._generation:
                    self._stale += 1
                    continue  # rendered before a clear
                chunk.append(frame)
                chunk_generation = generation
                continue
            if chunk:
                self.worker.submit(_Job(self, "push", chunk, chunk_generation))
                chunk = []
            self.worker.submit(_Job(self, kind, generation=generation))
        if chunk:
            self.worker.submit(_Job(self, "push", chunk, chunk_generation))

    # model worker thread ------------------------------------------------------------------

    def run_job(self, job: _Job) -> None:
        if job.kind == "open":
            self._components = self.worker.components_for(self.identity)
            components = self._components
            self._sampler = WindowSampler(
                components.denoiser, components.scheduler, self.worker.sampler_config
            )
            face = self.worker.config.face
            if face.enabled:
                if components.face is None:
                    raise AnchorError("face.enabled: the identity's components have no face model")
                self._face = FaceStage(components.face, face, self.worker.sampler_config)
                self.worker.activate_face_attention(self._face)
            return
        sampler = self._sampler
        if sampler is None or (self.closed and job.kind != "close"):
            return
        if job.kind == "push":
            assert job.frames is not None
            self._taken += len(job.frames)
            if job.generation < self._worker_generation:
                return  # rendered before a clear that the sampler already applied
            assert job.frames is not None
            started = time.monotonic()
            self._meta.update({frame.condition.seq: frame for frame in job.frames})
            committed = sampler.push([frame.condition for frame in job.frames])
            self._emit(committed, started)
        elif job.kind == "end":
            started = time.monotonic()
            self._emit(sampler.flush(), started, last=True)
            self.sink.ended()
        elif job.kind == "clear":
            self._worker_generation = job.generation
            sampler.reset()
            if self._face is not None:
                self._face.reset()
            self._meta.clear()
        elif job.kind == "close":
            self._sampler = None

    def _emit(self, committed: list[CommittedFrame], started: float, last: bool = False) -> None:
        """Decode (and face-enhance) committed frames and hand the finished ones to the sink.

        last: the end of the run, so the face stage releases every frame it still holds.
        """
        decode_frames(self._components.denoiser, committed)
        model_seconds = time.monotonic() - started
        face_seconds = 0.0
        done = committed
        if self._face is not None and (committed or last):
            face_started = time.monotonic()
            self.worker.activate_face_attention(self._face)
            done = self._face.enhance(committed)
            if last:
                done += self._face.flush()
            face_seconds = time.monotonic() - face_started
        if not done:
            return
        outputs = []
        for frame in done:
            meta = self._meta.pop(frame.seq, None)
            stages = {
                "render": meta.render_seconds if meta is not None else 0.0,
                "model": model_seconds,
            }
            if self._face is not None:
                stages["face"] = face_seconds
            outputs.append(
                OutputFrame(
                    seq=frame.seq,
                    pts=frame.pts,
                    image=_to_uint8(frame),
                    submitted_at=meta.submitted_at if meta is not None else started,
                    stage_seconds=stages,
                )
            )
        self.sink.frames(outputs)


def _to_uint8(frame: CommittedFrame) -> np.ndarray:
    """A decoded frame's (3, H, W) float32 [0, 1] image -> (H, W, 3) uint8 RGB."""
    if frame.image is None:
        raise AnchorError(f"frame seq {frame.seq} reached the output undecoded")
    image = (frame.image.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    return image.permute(1, 2, 0).contiguous().numpy()


class WorkerPipelineFactory:
    """PipelineFactory over one shared ModelWorker."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        if config.model.threads is not None:
            torch.set_num_threads(config.model.threads)  # process-wide: before any thread runs
        self.worker = ModelWorker(config)
        self._renderer_factory = lambda: ConditionRenderer(config)

    def create(
        self, session_id: str, identity: IdentityConfig | None, sink: PipelineSink
    ) -> WorkerSession:
        return WorkerSession(
            self.worker,
            session_id,
            self.config.identity_model(identity),
            sink,
            self._renderer_factory,
            self.config.worker.render_threads,
        )

    def close(self) -> None:
        self.worker.close()
