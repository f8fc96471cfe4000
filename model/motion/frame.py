"""The motion frame: one typed record of SMPL-X parameters per video frame.

Only numpy and the standard library: the server decodes and validates frames with
this module and must never import torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from model.errors import AnchorError

DEFAULT_FPS = 30.0
MAX_BETAS = 300
MAX_EXPRESSION = 100
HAND_AXIS_ANGLE = 45  # 15 joints x 3
BODY_POSE = 63  # 21 joints x 3

FloatArray = NDArray[np.float32]

# Order of the pose and shape fields, shared by the binary wire format and the npz writer.
VECTOR_FIELDS = (
    "betas",
    "global_orient",
    "body_pose",
    "jaw_pose",
    "leye_pose",
    "reye_pose",
    "left_hand_pose",
    "right_hand_pose",
    "expression",
    "transl",
)
ANGLE_FIELDS = ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose")


class MotionFormatError(AnchorError):
    """A motion frame or file does not have the expected layout or values.

    ``field`` names the offending field (or file key), ``seq`` the frame when known.
    """

    def __init__(self, message: str, field: str | None = None, seq: int | None = None):
        where = []
        if field is not None:
            where.append(f"field {field!r}")
        if seq is not None:
            where.append(f"seq {seq}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.field = field
        self.seq = seq


@dataclass(slots=True)
class Camera:
    """A pinhole camera in the OpenCV convention (x right, y down, z forward).

    The body's vertices are moved by ``translation`` and projected with
    ``focal (fx, fy)`` and ``principal (cx, cy)`` in pixels of an image of
    ``width x height``.
    """

    focal: FloatArray  # (2,) float32
    principal: FloatArray  # (2,) float32
    translation: FloatArray  # (3,) float32
    width: int
    height: int


def _zeros(count: int) -> FloatArray:
    return np.zeros(count, dtype=np.float32)


@dataclass(slots=True)
class MotionFrame:
    """SMPL-X parameters of one frame; every array is 1-D float32.

    Hands are 45 axis-angle values each, or ``hand_pca_count`` PCA coefficients
    when that is non-zero. ``betas`` (up to 300) and ``expression`` (up to 100) may
    be shorter than the body model's counts: missing components are zero.
    """

    seq: int
    pts: float  # seconds
    betas: FloatArray = field(default_factory=lambda: _zeros(0))
    global_orient: FloatArray = field(default_factory=lambda: _zeros(3))
    body_pose: FloatArray = field(default_factory=lambda: _zeros(BODY_POSE))
    jaw_pose: FloatArray = field(default_factory=lambda: _zeros(3))
    leye_pose: FloatArray = field(default_factory=lambda: _zeros(3))
    reye_pose: FloatArray = field(default_factory=lambda: _zeros(3))
    left_hand_pose: FloatArray = field(default_factory=lambda: _zeros(HAND_AXIS_ANGLE))
    right_hand_pose: FloatArray = field(default_factory=lambda: _zeros(HAND_AXIS_ANGLE))
    expression: FloatArray = field(default_factory=lambda: _zeros(0))
    transl: FloatArray = field(default_factory=lambda: _zeros(3))
    hand_pca_count: int = 0
    camera: Camera | None = None

    def hand_size(self) -> int:
        """Values per hand: 45 (axis-angle) or the PCA coefficient count."""
        return self.hand_pca_count or HAND_AXIS_ANGLE


@dataclass(frozen=True, slots=True)
class BodyModelSettings:
    """How a source's parameters must be fed to smplx (travels with each reader)."""

    num_betas: int = 300
    num_expression: int = 100
    use_pca: bool = False
    num_pca_comps: int = HAND_AXIS_ANGLE
    flat_hand_mean: bool = False
    gender: Literal["neutral", "male", "female"] = "neutral"


# TalkSHOW and EMAGE both use SMPLX_NEUTRAL_2020 with these settings.
TALKSHOW_SETTINGS = BodyModelSettings()
EMAGE_SETTINGS = BodyModelSettings()


@dataclass(frozen=True, slots=True)
class MotionLimits:
    """Bounds a frame must respect; anything beyond is rejected, never clipped."""

    max_betas: int = MAX_BETAS
    max_expression: int = MAX_EXPRESSION
    max_hand_pca: int = HAND_AXIS_ANGLE
    # Norm of one joint's axis-angle vector (radians); beyond 2 pi is a wrapped or bogus angle.
    max_angle: float = 2.0 * math.pi + 0.01
    max_translation: float = 100.0  # metres, per component
    max_coefficient: float = 50.0  # betas, expression and hand PCA coefficients
    max_focal: float = 1.0e5  # pixels
    max_image_size: int = 8192
    # Wire payload bound, checked before any parsing.
    max_payload_bytes: int = 64 * 1024


DEFAULT_LIMITS = MotionLimits()


def expected_sizes(frame: MotionFrame) -> dict[str, int]:
    """Required length of each fixed-size field of ``frame``."""
    hand = frame.hand_size()
    return {
        "global_orient": 3,
        "body_pose": BODY_POSE,
        "jaw_pose": 3,
        "leye_pose": 3,
        "reye_pose": 3,
        "left_hand_pose": hand,
        "right_hand_pose": hand,
        "transl": 3,
    }


def validate_frame(frame: MotionFrame, limits: MotionLimits = DEFAULT_LIMITS) -> None:
    """Checks shapes, dtypes, finiteness and magnitudes; raises ``MotionFormatError``."""
    seq = frame.seq
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise MotionFormatError(f"must be a non-negative integer, got {seq!r}", "seq")
    if not isinstance(frame.pts, float | int) or not math.isfinite(frame.pts):
        raise MotionFormatError(f"must be a finite number, got {frame.pts!r}", "pts", seq)
    if not 0 <= frame.hand_pca_count <= limits.max_hand_pca:
        raise MotionFormatError(
            f"must be within 0..{limits.max_hand_pca}, got {frame.hand_pca_count}",
            "hand_pca_count",
            seq,
        )
    sizes = expected_sizes(frame)
    maxima = {"betas": limits.max_betas, "expression": limits.max_expression}
    for name in VECTOR_FIELDS:
        value = getattr(frame, name)
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.ndim != 1:
            raise MotionFormatError("must be a 1-D float32 array", name, seq)
        if name in sizes and value.shape[0] != sizes[name]:
            raise MotionFormatError(
                f"expected {sizes[name]} values, got {value.shape[0]}", name, seq
            )
        if name in maxima and value.shape[0] > maxima[name]:
            raise MotionFormatError(
                f"at most {maxima[name]} values, got {value.shape[0]}", name, seq
            )
        if not np.isfinite(value).all():
            raise MotionFormatError("contains NaN or infinity", name, seq)
    for name in ANGLE_FIELDS + (
        () if frame.hand_pca_count else ("left_hand_pose", "right_hand_pose")
    ):
        norms = np.linalg.norm(getattr(frame, name).reshape(-1, 3), axis=1)
        if norms.size and norms.max() > limits.max_angle:
            raise MotionFormatError(
                f"axis-angle of norm {norms.max():.3g} exceeds {limits.max_angle:.3g} rad",
                name,
                seq,
            )
    coefficient_fields = ["betas", "expression"]
    if frame.hand_pca_count:
        coefficient_fields += ["left_hand_pose", "right_hand_pose"]
    for name in coefficient_fields:
        value = getattr(frame, name)
        if value.size and np.abs(value).max() > limits.max_coefficient:
            raise MotionFormatError(
                f"magnitude {np.abs(value).max():.3g} exceeds {limits.max_coefficient}", name, seq
            )
    if np.abs(frame.transl).max() > limits.max_translation:
        raise MotionFormatError(f"magnitude exceeds {limits.max_translation} m", "transl", seq)
    if frame.camera is not None:
        _validate_camera(frame.camera, limits, seq)


def _validate_camera(camera: Camera, limits: MotionLimits, seq: int) -> None:
    for name, size in (("focal", 2), ("principal", 2), ("translation", 3)):
        value = getattr(camera, name)
        label = f"camera.{name}"
        if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != (size,):
            raise MotionFormatError(f"must be a float32 array of shape ({size},)", label, seq)
        if not np.isfinite(value).all():
            raise MotionFormatError("contains NaN or infinity", label, seq)
    if not (camera.focal > 0).all() or camera.focal.max() > limits.max_focal:
        raise MotionFormatError(f"must be within (0, {limits.max_focal}]", "camera.focal", seq)
    if np.abs(camera.principal).max() > limits.max_focal:
        raise MotionFormatError(f"magnitude exceeds {limits.max_focal}", "camera.principal", seq)
    if np.abs(camera.translation).max() > limits.max_translation:
        raise MotionFormatError(
            f"magnitude exceeds {limits.max_translation} m", "camera.translation", seq
        )
    for name in ("width", "height"):
        value = getattr(camera, name)
        if not isinstance(value, int) or not 1 <= value <= limits.max_image_size:
            raise MotionFormatError(
                f"must be an integer within 1..{limits.max_image_size}, got {value!r}",
                f"camera.{name}",
                seq,
            )


class FrameValidator:
    """Per-stream validation: each frame is checked and ``seq`` must strictly increase.

    A rejected frame leaves the validator as it was, so the stream goes on with the
    next good frame.
    """

    def __init__(self, limits: MotionLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.last_seq: int | None = None

    def validate(self, frame: MotionFrame) -> MotionFrame:
        """Returns ``frame`` when valid; raises ``MotionFormatError`` otherwise."""
        validate_frame(frame, self.limits)
        if self.last_seq is not None and frame.seq <= self.last_seq:
            raise MotionFormatError(
                f"must be greater than the previous frame's {self.last_seq}", "seq", frame.seq
            )
        self.last_seq = frame.seq
        return frame

    def reset(self) -> None:
        """Forgets the last ``seq`` (a new stream starts)."""
        self.last_seq = None
