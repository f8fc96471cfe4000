"""The model worker: ONE thread that owns the model and its device, and per-session
pipelines feeding it.

Per session: motion frames -> render stage (``streaming.stages.RenderStage`` on a small
thread pool; mesh renders are independent per frame) -> a reorder buffer that restores
submission order -> jobs on the worker's queue -> the session's ``StageChain`` (sampler,
VAE decode, face stage) on the worker thread -> uint8 ``OutputFrame``s to
``PipelineSink.frames``.

Resets: the session counts clips in ``epoch`` exactly as its sampler does (``clear`` and
``end`` each start the next one, as ``reset`` and ``flush`` do); every condition frame
carries the epoch it was submitted in, and the worker drops frames older than the
sampler's epoch.

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
from typing import TYPE_CHECKING

import torch

from model.config import ModelConfig
from model.motion.frame import MotionFrame
from model.placement import Components
from streaming.frames import ConditionFrame
from streaming.pipeline import OutputFrame, PipelineSink, worker_latency_frames
from streaming.stages import RenderStage, StageChain, StageOutput, output_images

if TYPE_CHECKING:
    from streaming.config import IdentityConfig, PipelineConfig

log = logging.getLogger("anchor.worker")


@dataclass(slots=True)
class RenderedFrame:
    """A motion frame after the render stage: the sampler's input plus timing."""

    condition: ConditionFrame
    submitted_at: float  # time.monotonic() when the session submitted the motion frame
    render_seconds: float


@dataclass(slots=True)
class _RenderTask:
    """One motion frame for the render pool; ``index`` is its submission index."""

    index: int
    epoch: int
    motion: MotionFrame
    submitted_at: float


@dataclass(slots=True)
class _EndMarker:
    """The place of an ``end`` in the reorder buffer: after every frame submitted before."""


class _RenderPool:
    """``threads`` render threads sharing one input queue; each owns one ``RenderStage``,
    made and closed on that thread (an OpenGL context belongs to the thread that made it).

    The input queue is unbounded by type and bounded by the producer's credits.
    """

    def __init__(
        self,
        threads: int,
        factory: Callable[[], RenderStage],
        done: Callable[[int, RenderedFrame | BaseException], None],
        name: str,
    ) -> None:
        self._factory = factory
        self._done = done
        self.queue: queue.SimpleQueue[_RenderTask | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{index}") for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, index: int, epoch: int, motion: MotionFrame) -> None:
        self.queue.put(_RenderTask(index, epoch, motion, time.monotonic()))

    def close(self) -> None:
        for _ in self._threads:
            self.queue.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        stage: RenderStage | None = None
        try:
            while (task := self.queue.get()) is not None:
                try:
                    if stage is None:
                        stage = self._factory()
                    started = time.monotonic()
                    condition = stage.render(task.motion, task.epoch)
                    rendered = RenderedFrame(
                        condition, task.submitted_at, time.monotonic() - started
                    )
                except Exception as err:  # reported to the session, which fails
                    self._done(task.index, err)
                else:
                    self._done(task.index, rendered)
        finally:
            if stage is not None:
                stage.close()


# Work for the model worker thread, run in queue order; each job names its session.


@dataclass(slots=True)
class _Open:
    session: WorkerSession


@dataclass(slots=True)
class _Push:
    session: WorkerSession
    frames: list[RenderedFrame]


@dataclass(slots=True)
class _End:
    session: WorkerSession


@dataclass(slots=True)
class _Clear:
    session: WorkerSession


@dataclass(slots=True)
class _Close:
    session: WorkerSession


_Job = _Open | _Push | _End | _Clear | _Close


class ModelWorker:
    """The thread that owns every network: loads identities, runs the sessions' stage
    chains (sampler, decode, face stage)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.sampler_config = config.sampler
        # Temporal faces run their own window sampler behind the body's (FaceStage).
        self.latency_frames = worker_latency_frames(config)
        # One item per rendered chunk or control message of some session; bounded by credits.
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._components: dict[str, Components] = {}
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=False)
        self._thread.start()

    def submit(self, job: _Job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        """Stop after the jobs already queued; joins the thread."""
        if self._thread.is_alive():
            self.jobs.put(None)
            self._thread.join()

    def components_for(self, identity: ModelConfig) -> Components:
        """Networks of ``identity``, built once and reused (worker thread only)."""
        key = identity.model_dump_json()
        if key not in self._components:
            from model.components import build_components

            self._components[key] = build_components(
                identity, self.sampler_config, self.config.face
            )
        return self._components[key]

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
    """One session's run: its render pool, reorder buffer and stage chain (SessionPipeline)."""

    def __init__(
        self,
        worker: ModelWorker,
        session_id: str,
        identity: ModelConfig,
        sink: PipelineSink,
        render_stage_factory: Callable[[], RenderStage],
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
        self._ready: dict[int, RenderedFrame | _EndMarker] = {}
        # The clip the next submitted frame belongs to, counted as the sampler counts
        # clips; and the epoch the latest clear started: renders older than it are stale.
        self._epoch = 0
        self._cleared_epoch = 0
        self._in_render = 0
        # Backlog accounting: frames submitted, frames whose render a clear discarded (both
        # under the lock) and frames the worker took off its queue (worker thread only).
        self._submitted = 0
        self._stale = 0
        self._taken = 0
        self._chain: StageChain | None = None
        # Render results of frames in the chain, by seq (worker thread only).
        self._meta: dict[int, RenderedFrame] = {}
        self.closed = False
        self._pool = _RenderPool(
            render_threads, render_stage_factory, self._rendered, f"render:{session_id}"
        )
        worker.submit(_Open(self))

    # SessionPipeline (any thread) -------------------------------------------------------

    def submit(self, motion: MotionFrame) -> None:
        with self._lock:
            index, epoch = self._next_index, self._epoch
            self._next_index += 1
            self._in_render += 1
            self._submitted += 1
        self._pool.submit(index, epoch, motion)

    def end(self) -> None:
        with self._lock:
            index = self._next_index
            self._next_index += 1
            self._epoch += 1  # the flush at the end starts the sampler's next clip
            self._ready[index] = _EndMarker()
            self._release_in_order()

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._cleared_epoch = self._epoch
            # Queued under the lock: no push of the new epoch can precede the reset.
            self.worker.submit(_Clear(self))

    def close(self) -> None:
        self.closed = True
        self._pool.close()
        self.worker.submit(_Close(self))

    def queue_depths(self) -> dict[str, int]:
        chain = self._chain
        return {
            # Frames submitted that the model worker has not taken yet: the queue a
            # pipeline slower than its producer builds (server.max_lag_s acts on it).
            "backlog": max(0, self._submitted - self._stale - self._taken),
            "render": self._in_render,
            "reorder": len(self._ready),
            "worker": self.worker.jobs.qsize(),
            "sampler": chain.pending if chain is not None else 0,
        }

    # render pool threads ----------------------------------------------------------------

    def _rendered(self, index: int, result: RenderedFrame | BaseException) -> None:
        with self._lock:
            self._in_render -= 1
            if isinstance(result, BaseException):
                if not self.failed:
                    self.failed = True
                    self.sink.failed(result)
                return
            self._ready[index] = result
            self._release_in_order()

    def _release_in_order(self) -> None:
        """Move consecutive ready items to the worker (caller holds the lock)."""
        chunk: list[RenderedFrame] = []
        while self._next_release in self._ready:
            item = self._ready.pop(self._next_release)
            self._next_release += 1
            if isinstance(item, RenderedFrame):
                if item.condition.epoch < self._cleared_epoch:
                    self._stale += 1
                    continue  # rendered before a clear
                chunk.append(item)
                continue
            if chunk:
                self.worker.submit(_Push(self, chunk))
                chunk = []
            self.worker.submit(_End(self))
        if chunk:
            self.worker.submit(_Push(self, chunk))

    # model worker thread ------------------------------------------------------------------

    def run_job(self, job: _Job) -> None:
        """Apply one job to this session's stage chain (worker thread only)."""
        if isinstance(job, _Open):
            components = self.worker.components_for(self.identity)
            self._chain = StageChain(
                components, self.worker.sampler_config, self.worker.config.face
            )
            return
        chain = self._chain
        if chain is None or (self.closed and not isinstance(job, _Close)):
            return
        if isinstance(job, _Push):
            self._taken += len(job.frames)
            # Frames of an older epoch were submitted before a clear the chain applied.
            fresh = [frame for frame in job.frames if frame.condition.epoch >= chain.epoch]
            if not fresh:
                return
            started = time.monotonic()
            self._meta.update({frame.condition.seq: frame for frame in fresh})
            self._emit(chain.push([frame.condition for frame in fresh]), started)
        elif isinstance(job, _End):
            started = time.monotonic()
            self._emit(chain.flush(), started)
            self.sink.ended()
        elif isinstance(job, _Clear):
            chain.reset()
            self._meta.clear()
        else:
            self._chain = None

    def _emit(self, output: StageOutput, started: float) -> None:
        """Hand the chain's finished frames to the sink as uint8 ``OutputFrame``s."""
        if not output.frames:
            return
        images = output_images(output.frames)
        outputs = []
        for frame, image in zip(output.frames, images, strict=True):
            meta = self._meta.pop(frame.seq, None)
            stages = {
                "render": meta.render_seconds if meta is not None else 0.0,
                "model": output.model_seconds,
            }
            if output.face_seconds is not None:
                stages["face"] = output.face_seconds
            outputs.append(
                OutputFrame(
                    seq=frame.seq,
                    pts=frame.pts,
                    image=image,
                    submitted_at=meta.submitted_at if meta is not None else started,
                    stage_seconds=stages,
                )
            )
        self.sink.frames(outputs)


class WorkerPipelineFactory:
    """PipelineFactory over one shared ModelWorker."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        if config.model.threads is not None:
            torch.set_num_threads(config.model.threads)  # process-wide: before any thread runs
        self.worker = ModelWorker(config)
        face_size = config.face.size if config.face.enabled else None
        align_size = config.face.align_size
        self._render_stage_factory = lambda: RenderStage(config.render, face_size, align_size)

    def create(
        self, session_id: str, identity: IdentityConfig | None, sink: PipelineSink
    ) -> WorkerSession:
        return WorkerSession(
            self.worker,
            session_id,
            self.config.identity_model(identity),
            sink,
            self._render_stage_factory,
            self.config.worker.render_threads,
        )

    def close(self) -> None:
        self.worker.close()
