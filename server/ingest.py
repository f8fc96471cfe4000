"""What a run accepts beyond a well-formed frame: checks against the session's body model
and the run's own history, made at ingest so nothing acked can fail the run later.

The checks: ``seq`` below 2**63 (the sidecar's int64) and increasing; ``pts`` within
``[0, MAX_PTS_S]`` (the recording's 90 kHz int64 clock) and non-decreasing per stream
(video and audio apart; ``clear`` lets both restart); the hand PCA count the body model
takes; the same camera presence, betas and expression lengths in every frame of a run (the
motion sidecar stores them as one array each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from model.motion.frame import MotionFrame
from server.protocol import ProtocolError

MAX_SEQ = 2**63 - 1
# A billion seconds (31 years): far from the 2**63 ticks of the 90 kHz recording clock.
MAX_PTS_S = 1.0e9


@dataclass(frozen=True, slots=True)
class _Shape:
    camera: bool
    betas: int
    expression: int


class RunRules:
    """One run's ingest checks; ``check_frame``/``check_audio`` raise ProtocolError naming
    the field and seq, and remember nothing from a rejected message."""

    def __init__(self, hand_pca_count: int) -> None:
        # hand PCA coefficients per hand the body model takes (0 = 45 axis-angle values)
        self.hand_pca_count = hand_pca_count
        self.last_seq: int | None = None
        self.last_video_pts: float | None = None
        self.last_audio_pts: float | None = None
        self._shape: _Shape | None = None

    def check_frame(self, motion: MotionFrame) -> None:
        seq = motion.seq
        if seq > MAX_SEQ:
            raise ProtocolError(f"seq must be below 2**63, got {seq}", field="seq", seq=None)
        if self.last_seq is not None and seq <= self.last_seq:
            raise ProtocolError(
                f"seq must increase (last accepted {self.last_seq})", field="seq", seq=seq
            )
        _check_pts(motion.pts, "pts", seq)
        if self.last_video_pts is not None and motion.pts < self.last_video_pts:
            raise ProtocolError(
                f"pts {motion.pts:g} is before the previous frame's {self.last_video_pts:g}; "
                "pts must not decrease within a run (send clear to restart them)",
                field="pts",
                seq=seq,
            )
        if motion.hand_pca_count != self.hand_pca_count:
            expected = (
                f"{self.hand_pca_count} PCA coefficients per hand"
                if self.hand_pca_count
                else "45 axis-angle values per hand (hand_pca_count 0)"
            )
            raise ProtocolError(
                f"hand_pca_count {motion.hand_pca_count}: the body model takes {expected}",
                field="hand_pca_count",
                seq=seq,
            )
        shape = _Shape(motion.camera is not None, motion.betas.shape[0], motion.expression.shape[0])
        if self._shape is not None and shape != self._shape:
            for field in ("camera", "betas", "expression"):
                if getattr(shape, field) != getattr(self._shape, field):
                    raise ProtocolError(
                        f"{field} must stay the same within a run (first frame: "
                        f"{_describe(self._shape, field)}, this one: {_describe(shape, field)}); "
                        "send end and start a new run to change it",
                        field=field,
                        seq=seq,
                    )

    def accept_frame(self, motion: MotionFrame) -> None:
        """Remember an accepted frame (after ``check_frame`` passed)."""
        self.last_seq = motion.seq
        self.last_video_pts = motion.pts
        if self._shape is None:
            self._shape = _Shape(
                motion.camera is not None, motion.betas.shape[0], motion.expression.shape[0]
            )

    def check_audio(self, pts: float) -> None:
        _check_pts(pts, "pts", None)
        if self.last_audio_pts is not None and pts < self.last_audio_pts:
            raise ProtocolError(
                f"audio pts {pts:g} is before the previous chunk's {self.last_audio_pts:g}",
                field="pts",
            )

    def accept_audio(self, pts: float) -> None:
        self.last_audio_pts = pts

    def clear(self) -> None:
        """After ``clear`` the producer's pts may start again (seqs still increase)."""
        self.last_video_pts = None
        self.last_audio_pts = None


def _check_pts(pts: float, field: str, seq: int | None) -> None:
    if not math.isfinite(pts) or not 0.0 <= pts <= MAX_PTS_S:
        raise ProtocolError(
            f"pts must be a finite number of seconds within [0, {MAX_PTS_S:g}], got {pts!r}",
            field=field,
            seq=seq,
        )


def _describe(shape: _Shape, field: str) -> str:
    if field == "camera":
        return "with a camera" if shape.camera else "without a camera"
    return f"{getattr(shape, field)} values"
