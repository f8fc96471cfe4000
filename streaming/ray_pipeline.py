"""Session workers on a Ray cluster: a ``PipelineFactory`` whose sessions run in Ray actors.

front process (server: websockets, WebRTC, recording)            Ray actor (any node)
  RaySession.submit/end/clear -> command queue -> sender thread -> SessionWorker.push
                                                                    -> WorkerSession (render,
                                                                       sampler, decode, face)
  PipelineSink <- receiver thread <- SessionWorker.pull (long poll) <- event queue

The actor (``streaming.ray_actor.SessionWorker``) runs the in-process pipeline of
``streaming.worker`` unchanged (its own ``ModelWorker`` over the GPU share Ray gave it);
this module only carries the typed commands and events of ``streaming.ray_actor``
across. It imports neither torch nor the model stack: the actor imports them in its
``__init__``, on the worker node.

Transport: neither side blocks per frame. The sender thread drains every command queued
while its previous ``push`` was in flight into one call (motion frames batched, order
kept: one ``push`` in flight at a time); the receiver thread long-polls ``pull``, which
returns every event the actor produced since the last poll (committed frames batched,
uint8 images as return values through Ray's object store).

Failure: an actor that dies (``RayActorError``), is never placed (``placement_timeout_s``)
or whose pipeline fails calls ``PipelineSink.failed`` once; ``close`` kills the actor,
freeing its resources.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from model.errors import AnchorError
from streaming.pipeline import OutputFrame, PipelineSink, worker_latency_frames
from streaming.ray_actor import (
    ClearRun,
    Command,
    EndRun,
    FramesDone,
    RunEnded,
    SessionWorker,
    SubmitFrames,
)

if TYPE_CHECKING:
    from model.motion.frame import MotionFrame
    from streaming.config import ClusterConfig, IdentityConfig, PipelineConfig

log = logging.getLogger("anchor.cluster")

# How long one ``pull`` waits in the actor for an event; bounds how long ``close`` waits
# for the receiver thread and how late an idle session notices a dead actor.
PULL_WAIT_S = 0.25
# Concurrent calls a session actor serves: one push, one pull and ``ready``.
ACTOR_CONCURRENCY = 3


def _cause(error: BaseException) -> str:
    """One line of a Ray error: why the actor died when Ray says so, else its first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("The actor is dead because"):
            return line.removeprefix("The actor is dead because").strip().rstrip(".")
    return lines[0].rstrip(".") if lines else type(error).__name__


class RaySession:
    """SessionPipeline whose work runs in a Ray actor; the two threads here carry it."""

    def __init__(
        self,
        factory: RayPipelineFactory,
        handle: Any,
        session_id: str,
        sink: PipelineSink,
        latency_frames: int,
    ) -> None:
        self.factory = factory
        self.actor = handle
        self.session_id = session_id
        self.sink = sink
        self.latency_frames = latency_frames
        self.demand = factory.demand
        # Commands for the actor (a motion frame stands for itself until the sender groups
        # it); bounded by the producer's credits (frames) plus control.
        self._commands: queue.SimpleQueue[MotionFrame | EndRun | ClearRun | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        # Front-process submission times by seq: the actor's clock may be another machine's.
        self._submitted: dict[int, float] = {}
        self._depths: dict[str, int] = {}
        self._failed = False
        self._closing = threading.Event()
        self.placed = threading.Event()
        # What the actor's ``ready`` answered (host, pid, latency_frames) once it is placed.
        self.worker_info: dict[str, Any] = {}
        self._sender = threading.Thread(target=self._send, name=f"ray-send:{session_id}")
        self._receiver = threading.Thread(target=self._receive, name=f"ray-recv:{session_id}")
        self._sender.start()
        self._receiver.start()

    # SessionPipeline (event loop) -------------------------------------------------------

    def submit(self, motion: MotionFrame) -> None:
        with self._lock:
            self._submitted[motion.seq] = time.monotonic()
        self._commands.put(motion)

    def end(self) -> None:
        self._commands.put(EndRun())

    def clear(self) -> None:
        with self._lock:
            # Frames before the clear never come out (a late one keeps the actor's clock).
            self._submitted.clear()
        self._commands.put(ClearRun())

    def queue_depths(self) -> dict[str, int]:
        depths = dict(self._depths)
        depths["cluster_send"] = self._commands.qsize()
        # Live rate control acts on the backlog: the actor's, plus what waits to be sent.
        depths["backlog"] = depths.get("backlog", 0) + depths["cluster_send"]
        return depths

    def close(self) -> None:
        """Stop both threads and kill the actor (its resources are free again)."""
        import ray

        self._closing.set()
        self._commands.put(None)
        with contextlib.suppress(Exception):  # an actor that already died
            ray.kill(self.actor)
        self._sender.join()
        self._receiver.join()
        self.factory._forget(self)

    # threads ----------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self._failed or self._closing.is_set():
                return
            self._failed = True
        self.sink.failed(error)  # the session logs it

    def _worker_died(self, error: BaseException) -> AnchorError:
        """The session's error for a failed Ray call: a method raised, or the actor, its
        process or its node is gone (killed, crashed, out of memory)."""
        from ray.exceptions import RayTaskError

        if not self._closing.is_set():
            log.warning("session %s: worker lost: %s", self.session_id, error)
        what = "failed" if isinstance(error, RayTaskError) else "died"
        return AnchorError(
            f"session {self.session_id}: its worker {what} ({_cause(error)}); "
            "send start to run the session again on another worker"
        )

    def _send(self) -> None:
        """Move queued commands to the actor, batching what queued during the last call."""
        import ray
        from ray.exceptions import RayError

        while (item := self._commands.get()) is not None:
            batch = [item]
            stop = False
            while not stop:
                try:
                    following = self._commands.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    stop = True
                else:
                    batch.append(following)
            try:
                ray.get(self.actor.push.remote(_grouped(batch)))
            except RayError as err:
                self._fail(self._worker_died(err))
                return
            if stop:
                return

    def _receive(self) -> None:
        """Wait for the actor to be placed, then pull its results until closed."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError

        timeout = self.factory.cluster.placement_timeout_s
        try:
            self.worker_info = ray.get(self.actor.ready.remote(), timeout=timeout)
        except GetTimeoutError:
            self._fail(
                AnchorError(
                    f"session {self.session_id}: no worker was placed within {timeout:g} s "
                    f"(cluster.placement_timeout_s; the worker requests {_describe(self.demand)})"
                )
            )
            return
        except RayError as err:
            self._fail(self._worker_died(err))
            return
        finally:
            self.factory._placed(self)
        self.placed.set()
        log.info(
            "session %s: worker placed on %s (pid %s)",
            self.session_id,
            self.worker_info["host"],
            self.worker_info["pid"],
        )
        while not self._closing.is_set():
            try:
                events, depths = ray.get(self.actor.pull.remote(PULL_WAIT_S))
            except RayError as err:
                self._fail(self._worker_died(err))
                return
            self._depths = depths
            for event in events:
                if self._failed:  # the sender saw the actor die: nothing comes out after
                    return
                if isinstance(event, FramesDone):
                    self.sink.frames(self._restamp(event.frames))
                elif isinstance(event, RunEnded):
                    self.sink.ended()
                else:
                    self._fail(AnchorError(event.message))
                    return

    def _restamp(self, frames: list[OutputFrame]) -> list[OutputFrame]:
        """Submission times from this process's clock (latency is measured here), and
        images of our own: Ray hands arrays out read-only, mapped on its object store."""
        with self._lock:
            for frame in frames:
                frame.submitted_at = self._submitted.pop(frame.seq, frame.submitted_at)
                if not frame.image.flags.writeable:
                    frame.image = frame.image.copy()
        return frames


def _grouped(batch: list[MotionFrame | EndRun | ClearRun]) -> list[Command]:
    """Consecutive motion frames -> one ``SubmitFrames``; control commands as they are."""
    commands: list[Command] = []
    for item in batch:
        if isinstance(item, EndRun | ClearRun):
            commands.append(item)
        elif commands and isinstance(commands[-1], SubmitFrames):
            commands[-1].motions.append(item)
        else:
            commands.append(SubmitFrames([item]))
    return commands


def _describe(demand: dict[str, float]) -> str:
    return " and ".join(f"{amount:g} {name}" for name, amount in demand.items()) or "nothing"


def session_demand(cluster: ClusterConfig) -> dict[str, float]:
    """Ray resources one session actor requests (only the non-zero ones)."""
    demand = {"CPU": cluster.num_cpus, "GPU": cluster.num_gpus}
    return {name: amount for name, amount in demand.items() if amount > 0}


class RayPipelineFactory:
    """PipelineFactory that runs every session in its own Ray actor (``cluster`` section).

    Joins the cluster at ``cluster.ray_address`` unless this process already did
    (``ray.init``); "local" starts a Ray instance here for a try-out.
    """

    def __init__(self, config: PipelineConfig) -> None:
        import ray

        self.cluster = config.cluster
        device = config.model.device
        if device.startswith("cuda") and self.cluster.num_gpus == 0:
            raise AnchorError(
                f"cluster.num_gpus is 0 but model.device is {device!r}: Ray shows no GPU to an "
                "actor that requests none; set cluster.num_gpus (a fraction shares one GPU)"
            )
        if device == "cpu" and self.cluster.num_gpus > 0:
            log.warning("cluster.num_gpus reserves GPUs that model.device 'cpu' leaves unused")
        # What the actors receive: the pipeline's sections only (no secret of the edge).
        self.config = config
        self.demand = session_demand(self.cluster)
        self.latency_frames = worker_latency_frames(config) + config.worker.render_threads
        self._owns_ray = False
        if not ray.is_initialized():
            address = self.cluster.ray_address
            if address == "local":  # a new instance, even where a cluster runs already
                ray.init(address="local", namespace=self.cluster.namespace, include_dashboard=False)
            else:
                ray.init(address=address, namespace=self.cluster.namespace)
            self._owns_ray = True
        options: dict[str, Any] = {
            "num_cpus": self.cluster.num_cpus,
            "num_gpus": self.cluster.num_gpus,
            "max_concurrency": ACTOR_CONCURRENCY,
            "max_restarts": 0,  # a restarted actor would have lost its session's state
        }
        if self.cluster.env:
            options["runtime_env"] = {"env_vars": dict(self.cluster.env)}
        self._actor_class = ray.remote(SessionWorker).options(**options)
        self._lock = threading.Lock()
        self._sessions: set[RaySession] = set()
        self._unplaced: set[RaySession] = set()
        resources = ray.cluster_resources()
        log.info(
            "Ray cluster: %s; each session worker requests %s",
            _describe({name: resources.get(name, 0.0) for name in ("CPU", "GPU")}),
            _describe(self.demand),
        )

    def create(
        self, session_id: str, identity: IdentityConfig | None, sink: PipelineSink
    ) -> RaySession:
        """Start the session's actor; raises AnchorError when no worker capacity is free."""
        with self._lock:
            self._check_capacity()
            handle = self._actor_class.remote(self.config, session_id, identity)
            session = RaySession(self, handle, session_id, sink, self.latency_frames)
            self._sessions.add(session)
            if not session.placed.is_set():
                self._unplaced.add(session)
        return session

    def _check_capacity(self) -> None:
        """Refuse before creating an actor that could not be placed (caller holds the lock)."""
        import ray

        limit = self.cluster.max_workers
        if limit and len(self._sessions) >= limit:
            raise AnchorError(
                f"start: no worker capacity free: all {limit} session workers are busy "
                "(cluster.max_workers); try again when a session ends"
            )
        if not self.demand:
            return
        try:
            available = ray.available_resources()
        except Exception as err:  # the cluster is unreachable: refuse the session, not the server
            raise AnchorError(f"start: the Ray cluster does not answer ({err})") from err
        for name, amount in self.demand.items():
            # Actors created but not placed yet do not show in the cluster's usage.
            pending = sum(session.demand.get(name, 0.0) for session in self._unplaced)
            free = available.get(name, 0.0) - pending
            if free + 1e-9 < amount:
                raise AnchorError(
                    f"start: no worker capacity free: a session worker needs "
                    f"{_describe(self.demand)}, the Ray cluster has {max(free, 0.0):g} {name} "
                    f"free (cluster.num_{name.lower()}s); try again when a session ends"
                )

    def _placed(self, session: RaySession) -> None:
        with self._lock:
            self._unplaced.discard(session)

    def _forget(self, session: RaySession) -> None:
        with self._lock:
            self._sessions.discard(session)
            self._unplaced.discard(session)

    def close(self) -> None:
        """Close sessions still open, then leave the cluster if this factory joined it."""
        import ray

        for session in list(self._sessions):
            session.close()
        if self._owns_ray:
            ray.shutdown()
