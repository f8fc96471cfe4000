"""Prometheus metrics of one server instance (its own registry, so tests can run several)."""

from __future__ import annotations

import contextlib
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds; covers the tiny CPU preset (tens of ms) up to multi-second diffusion windows.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServerMetrics:
    """Per-stage latency, committed fps, queue depths, viewers and rejected messages."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "anchor_stage_seconds",
            "Time a frame spends in each pipeline stage (render, model, face, ingest_to_output)",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.committed_frames = Counter(
            "anchor_committed_frames_total",
            "Frames committed by the model worker and delivered to the output",
            ["session"],
            registry=self.registry,
        )
        self.committed_fps = Gauge(
            "anchor_committed_fps",
            "Committed frames per second over the last few seconds",
            ["session"],
            registry=self.registry,
        )
        self.skipped_frames = Counter(
            "anchor_skipped_frames_total",
            "Frames skipped by live rate control (server.max_lag_s) because the pipeline lagged",
            ["session"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "anchor_queue_depth",
            "Frames waiting in each bounded queue of a session",
            ["session", "queue"],
            registry=self.registry,
        )
        self.viewers = Gauge(
            "anchor_viewers", "Connected viewers", ["session"], registry=self.registry
        )
        self.sessions = Gauge("anchor_sessions", "Live sessions", registry=self.registry)
        self.rejected_messages = Counter(
            "anchor_rejected_messages_total",
            "Messages answered with an error (malformed, oversized, rate, credits, auth)",
            ["reason"],
            registry=self.registry,
        )
        self.dropped_viewers = Counter(
            "anchor_dropped_viewers_total",
            "Viewers the server disconnected, told why (media_lost, stalled)",
            ["reason"],
            registry=self.registry,
        )
        self._commit_times: dict[str, deque[float]] = {}

    def frame_committed(self, session: str, now: float | None = None) -> None:
        """Count one committed frame of ``session`` and update its fps over a 5 s window."""
        current = time.monotonic() if now is None else now
        times = self._commit_times.setdefault(session, deque())
        times.append(current)
        while times and current - times[0] > 5.0:
            times.popleft()
        self.committed_frames.labels(session).inc()
        if len(times) >= 2 and times[-1] > times[0]:
            self.committed_fps.labels(session).set((len(times) - 1) / (times[-1] - times[0]))

    def forget_session(self, session: str) -> None:
        """Drop the label sets of a removed session (bounded label cardinality)."""
        self._commit_times.pop(session, None)
        for metric in (
            self.committed_frames,
            self.committed_fps,
            self.skipped_frames,
            self.viewers,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(session)
        for labels in list(self.queue_depth._metrics):
            if labels[0] == session:
                self.queue_depth.remove(*labels)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
