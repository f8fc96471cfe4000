"""A session: one producer, any number of viewers, one pipeline run at a time.

The session owns its media sources (shared by every viewer through one MediaRelay), the
current run (pipeline + recording + credit accounting) and its producer's outbox. All
methods run on the event loop; pipeline and recorder threads reach it only through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from aiortc.contrib.media import MediaRelay

from model.errors import AnchorError
from server.broadcast import SessionBroadcast
from server.ingest import RunRules
from server.live_rate import RateControl
from server.media import PlayoutVideoTrack, PtsAlignedAudioTrack, ShownFrame, stamp_seq
from server.metrics import ServerMetrics
from server.outbox import Outbox
from server.protocol import ProtocolError
from server.recording import RecordedAudio, RecordedFrame, SessionRecorder

if TYPE_CHECKING:
    from server.config import ServerSettings
    from streaming.config import IdentityConfig
    from streaming.pipeline import OutputFrame, PipelineFactory, SessionPipeline

log = logging.getLogger("anchor.session")

# Time allowed for a run's pipeline to drain its tail after `end` before it is closed anyway.
END_TIMEOUT_S = 300.0
# Closing a run's pipeline and finalizing its recording, once drained.
FINISH_TIMEOUT_S = 2.0


@dataclass(slots=True)
class RunStats:
    accepted: int = 0
    # Accepted but not rendered: live rate control dropped them (server.max_lag_s).
    skipped: int = 0
    committed: int = 0
    last_latency_s: float = 0.0


class SessionRun:
    """From `start` to `end`: the pipeline, the recording and the frames in flight."""

    def __init__(
        self,
        pipeline: SessionPipeline,
        recorder: SessionRecorder | None,
        credit_limit: int,
        rate: RateControl | None = None,
        hand_pca_count: int = 0,
    ) -> None:
        self.pipeline = pipeline
        self.recorder = recorder
        self.credit_limit = credit_limit
        # Live rate control (server.max_lag_s); None = every accepted frame is rendered.
        self.rate = rate
        # Seqs accepted and not yet committed+recorded; its size is what credits bound.
        self.in_flight: set[int] = set()
        # The motion frame of each seq in flight, recorded beside the video it produced.
        self.motions: dict[int, Any] = {}
        self.rules = RunRules(hand_pca_count)
        loop = asyncio.get_running_loop()
        self.drained: asyncio.Future[None] = loop.create_future()
        # Set once the run is over (pipeline closed, recording finalized).
        self.finished: asyncio.Future[None] = loop.create_future()
        self.failure: BaseException | None = None
        self.stats = RunStats()
        self.ending = False

    @property
    def credits(self) -> int:
        return max(0, self.credit_limit - len(self.in_flight))


class Session:
    """A named session. Use from the event loop only."""

    def __init__(
        self,
        session_id: str,
        config: ServerSettings,
        factory: PipelineFactory,
        metrics: ServerMetrics,
        persistent: bool,
        last_seq: int | None = None,
    ) -> None:
        self.id = session_id
        self.config = config
        self.factory = factory
        self.metrics = metrics
        self.persistent = persistent
        self.loop = asyncio.get_running_loop()
        stream = config.stream
        delay = config.server.playout_delay_frames
        if delay is None:
            delay = stream.window_stride
        self.playout_delay_frames = delay
        # Room for the delay plus the largest bursts: a window stride committed at once, the
        # tail of a low-mode run at its end; start_run widens it to the pipeline's latency.
        capacity = delay + 3 * stream.window_size
        self.video = PlayoutVideoTrack(
            stream.fps, stream.width, stream.height, delay_frames=delay, capacity_frames=capacity
        )
        self.audio = PtsAlignedAudioTrack(self.video, config.server.audio_sample_rate)
        self.relay = MediaRelay()
        self.producer: Outbox | None = None
        self.viewers: set[Outbox] = set()
        self.run: SessionRun | None = None
        self.runs_started = 0
        # The last seq any run of this session id accepted (survives runs and, through the
        # server, the session object): a resuming producer drops frames at or below it.
        self.last_accepted_seq = last_seq
        self.last_shown: ShownFrame | None = None
        self.last_latency_s = 0.0
        self.closed = False
        # Janus publishing and RTMP egress for the session's whole life ([broadcast]).
        self.broadcast: SessionBroadcast | None = None
        if SessionBroadcast.enabled(config):
            self.broadcast = SessionBroadcast(
                session_id, config, self.relay, self.video, self.audio
            )
            self.broadcast.start()

    # producer side ---------------------------------------------------------------------

    def identity_config(self, name: str) -> IdentityConfig | None:
        """Identity ``name`` of ``server.identities``; None = "default", the model section."""
        if name == "default" and name not in self.config.server.identities:
            return None
        identity = self.config.server.identities.get(name)
        if identity is None:
            known = ["default", *sorted(self.config.server.identities)]
            raise ProtocolError(f"unknown identity {name!r} (known: {known})", "identity")
        return identity

    def start_run(self, identity_name: str) -> SessionRun:
        """Start a run with identity ``identity_name``; raises AnchorError if one is active."""
        if self.run is not None:
            raise ProtocolError("start: the session already has a run; send end first", "type")
        identity = self.identity_config(identity_name)
        sink = _LoopSink(self)
        pipeline = self.factory.create(self.id, identity, sink)
        # A recording holds a committed frame until its fragment is on disk: a fragment of
        # up to a second of frames on top of the sampler's latency, and never so long that
        # the credits run out before it is complete (server/recording.py).
        second = max(1, round(self.config.stream.fps))
        recording = self.config.server.recordings_dir is not None
        latency = pipeline.latency_frames
        limit = self.config.server.max_in_flight or (latency + second * (2 if recording else 1))
        fragment_frames = min(second, limit - latency - 1)
        if fragment_frames < 1:
            pipeline.close()
            raise AnchorError(
                f"server.max_in_flight ({limit}) must exceed the sampler's latency plus one "
                f"({latency + 1} frames), or no frame could ever be committed and recorded"
            )
        # The end of a run releases every frame the pipeline holds at once (exact mode: many
        # windows): the live view must have room to play that tail out.
        buffer = self.video.buffer
        buffer.capacity = max(buffer.capacity, self.playout_delay_frames + pipeline.latency_frames)
        recorder = None
        recordings = self.config.server.recordings_dir
        self.runs_started += 1
        if recordings is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            base = Path(recordings) / f"{self.id}-{stamp}-{self.runs_started}"
            recorder = SessionRecorder(
                base,
                self.config.stream.fps,
                self.config.server.audio_sample_rate,
                fragment_frames=fragment_frames,
                on_written=lambda seq: self._call_soon(self._release, seq),
                on_failed=lambda err: self._call_soon(self._fail, err),
            )
            recorder.start()
        rate = None
        if self.config.server.max_lag_s is not None:
            # The worker takes frames in window strides: a stride of backlog is normal.
            stream = self.config.stream
            lag_frames = round(self.config.server.max_lag_s * stream.fps)
            rate = RateControl(max_backlog=stream.window_stride + lag_frames)
        self.run = SessionRun(pipeline, recorder, limit, rate, self.config.stream.hand_pca_count)
        sink.run = self.run
        log.info("session %s: run started (identity %s, credits %d)", self.id, identity_name, limit)
        return self.run

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    def accept_frame(self, motion: Any) -> tuple[int, bool]:
        """Admit a validated motion frame; returns (credits left, skipped). Raises AnchorError.

        skipped: live rate control (``server.max_lag_s``) accepted the frame without
        rendering it, because the pipeline is that far behind the producer.
        """
        run = self.run
        if run is None or run.ending:
            raise ProtocolError("no run in progress; send start first", "type", motion.seq)
        run.rules.check_frame(motion)
        if run.credits <= 0:
            raise CreditError(
                f"no credits left ({run.credit_limit} frames in flight); wait for a credit message",
                field="credits",
                seq=motion.seq,
            )
        run.rules.accept_frame(motion)
        self.last_accepted_seq = motion.seq
        run.stats.accepted += 1
        if run.rate is not None:
            backlog = run.pipeline.queue_depths().get("backlog", 0)
            if not run.rate.admit(backlog):
                run.stats.skipped += 1
                self.metrics.skipped_frames.labels(self.id).inc()
                return run.credits, True
        run.in_flight.add(motion.seq)
        run.motions[motion.seq] = motion
        run.pipeline.submit(motion)
        return run.credits, False

    def accept_audio(self, pts: float, samples: np.ndarray) -> None:
        run = self.run
        if run is None or run.ending:
            raise ProtocolError("audio: no run in progress; send start first", field="type")
        run.rules.check_audio(pts)
        run.rules.accept_audio(pts)
        self.audio.push(pts, samples)
        if run.recorder is not None:
            run.recorder.add_audio(RecordedAudio(pts, samples))

    def clear_run(self) -> tuple[int, list[int]]:
        """Discard the frames in flight (the sampler resets); returns the credits left and
        the seqs dropped (acked, now never committed)."""
        run = self.run
        if run is None or run.ending:
            # An ending run (a reconnecting producer's previous one) keeps its acked frames.
            raise ProtocolError("clear: no run in progress", field="type")
        dropped = sorted(run.in_flight)
        run.pipeline.clear()
        run.rules.clear()
        run.in_flight.clear()
        run.motions.clear()
        self.audio.clear()
        return run.credits, dropped

    async def wait_run_over(self) -> None:
        """If the current run is ending (flushing after a disconnect), wait until it is over."""
        run = self.run
        if run is not None and run.ending:
            await asyncio.wait_for(asyncio.shield(run.finished), END_TIMEOUT_S + 60.0)

    async def end_run(
        self, reason: str = "end", timeout_s: float = END_TIMEOUT_S
    ) -> dict[str, Any] | None:
        """Flush the pipeline (up to ``timeout_s``), finalize the recording, report; no-op
        without a run. Frames still in flight after the timeout are reported as dropped."""
        run = self.run
        if run is None or run.ending:
            return None
        run.ending = True
        if run.failure is None:
            run.pipeline.end()
            try:
                await asyncio.wait_for(asyncio.shield(run.drained), timeout_s)
            except TimeoutError:
                log.error("session %s: pipeline did not drain in %.1f s", self.id, timeout_s)
        return await self._finish_run(run, reason)

    async def _finish_run(self, run: SessionRun, reason: str) -> dict[str, Any]:
        await asyncio.to_thread(run.pipeline.close)
        recording = None
        if run.recorder is not None:
            await asyncio.to_thread(run.recorder.close)
            if run.recorder.video_path.exists():
                recording = str(run.recorder.video_path)
        self.run = None
        if not run.finished.done():
            run.finished.set_result(None)
        summary: dict[str, Any] = {
            "type": "ended",
            "reason": reason,
            "accepted": run.stats.accepted,
            "committed": run.stats.committed,
            "skipped": run.stats.skipped,
            "recording": recording,
            # Acked, never committed: the pipeline did not drain (shutdown) or failed.
            "dropped": sorted(run.in_flight),
        }
        if run.failure is not None:
            summary["error"] = str(run.failure)
        log.info(
            "session %s: run ended (%s): %d accepted, %d committed",
            self.id,
            reason,
            run.stats.accepted,
            run.stats.committed,
        )
        for outbox in [self.producer, *self.viewers]:
            if outbox is not None:
                outbox.send(summary)
        return summary

    # pipeline/recorder callbacks (event loop) -------------------------------------------

    def _on_frames(self, frames: list[OutputFrame]) -> None:
        run = self.run
        if run is None or run.failure is not None:
            return
        now = time.monotonic()
        for frame in frames:
            if self.config.server.stamp_seq:
                stamp_seq(frame.image, frame.seq)
            shown = ShownFrame(frame.seq, frame.pts, frame.image, now)
            self.video.publish(shown)
            self.last_shown = shown
            self.last_latency_s = now - frame.submitted_at
            run.stats.committed += 1
            self.metrics.frame_committed(self.id, now)
            self.metrics.stage_seconds.labels("ingest_to_output").observe(self.last_latency_s)
            for stage, seconds in frame.stage_seconds.items():
                self.metrics.stage_seconds.labels(stage).observe(seconds)
            motion = run.motions.pop(frame.seq, None)
            if run.recorder is not None:
                run.recorder.add_frame(RecordedFrame(frame.seq, frame.pts, frame.image, motion))
            else:
                self._release(frame.seq)
        self.update_queue_metrics()

    def _release(self, seq: int) -> None:
        run = self.run
        if run is None or seq not in run.in_flight:
            return
        run.in_flight.discard(seq)
        if self.producer is not None:
            self.producer.send({"type": "credit", "seq": seq, "credits": run.credits})

    def _on_drained(self) -> None:
        if self.run is not None and not self.run.drained.done():
            self.run.drained.set_result(None)

    def _fail(self, error: BaseException) -> None:
        run = self.run
        if run is None or run.failure is not None:
            return
        run.failure = error
        log.error("session %s: pipeline failed: %s", self.id, error)
        message = {"type": "error", "fatal": True, "field": None, "message": str(error)}
        for outbox in [self.producer, *self.viewers]:
            if outbox is not None:
                outbox.send(message)
        if not run.drained.done():
            run.drained.set_result(None)
        if not run.ending:
            run.ending = True
            self._failure_task = self.loop.create_task(self._finish_run(run, "error"))

    def update_queue_metrics(self) -> None:
        run = self.run
        if run is None:
            return
        depths = dict(run.pipeline.queue_depths())
        depths["in_flight"] = len(run.in_flight)
        depths["playout"] = len(self.video.buffer)
        if run.recorder is not None:
            depths["recording"] = run.recorder.depth
        for name, depth in depths.items():
            self.metrics.queue_depth.labels(self.id, name).set(depth)

    def status(self) -> dict[str, Any]:
        """What a viewer page shows: committed fps, latency, the seq on screen."""
        fps_samples = self.metrics._commit_times.get(self.id)
        fps = 0.0
        if fps_samples and len(fps_samples) >= 2 and fps_samples[-1] > fps_samples[0]:
            fps = (len(fps_samples) - 1) / (fps_samples[-1] - fps_samples[0])
        on_screen = self.video.current or self.last_shown
        extra = {"broadcast": self.broadcast.status()} if self.broadcast is not None else {}
        return extra | {
            "type": "status",
            "session": self.id,
            "running": self.run is not None,
            "committed_fps": round(fps, 2),
            "latency_ms": round(self.last_latency_s * 1000.0, 1),
            "seq": on_screen.seq if on_screen is not None else None,
            "viewers": len(self.viewers),
        }

    async def close(self, flush_timeout_s: float = END_TIMEOUT_S) -> None:
        """End the run (flushing up to ``flush_timeout_s``, recording what was committed) and
        stop the media sources."""
        if self.closed:
            return
        self.closed = True
        await self.end_run("shutdown", flush_timeout_s)
        run = self.run
        if run is not None and not run.finished.done():
            # Ending in another task (its producer left): bound its drain by ours too.
            finished = asyncio.shield(run.finished)
            done, _ = await asyncio.wait({finished}, timeout=flush_timeout_s)
            if not done:
                if not run.drained.done():
                    run.drained.set_result(None)
                await asyncio.wait({finished}, timeout=FINISH_TIMEOUT_S)
        task = getattr(self, "_failure_task", None)
        if task is not None:
            await task
        if self.broadcast is not None:
            await self.broadcast.close()
        self.video.stop()
        self.audio.stop()
        self.metrics.forget_session(self.id)


class CreditError(ProtocolError):
    """The producer sent a frame without a credit."""


class _LoopSink:
    """PipelineSink that forwards thread callbacks onto the session's event loop."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._call: Callable[..., Any] = session.loop.call_soon_threadsafe
        # The run this sink belongs to: callbacks arriving after it ended are ignored.
        self.run: SessionRun | None = None

    def _current(self, callback: Callable[..., None], *args: Any) -> None:
        if self.run is not None and self._session.run is self.run:
            callback(*args)

    def frames(self, frames: list[OutputFrame]) -> None:
        self._call(self._current, self._session._on_frames, frames)

    def ended(self) -> None:
        self._call(self._current, self._session._on_drained)

    def failed(self, error: BaseException) -> None:
        self._call(self._current, self._session._fail, error)
