"""SMPL-X motion: the frame record, its wire formats and motion file readers.

Torch-free: the server imports this package to decode and validate frames. The body
model and the renderer live in ``model.body`` and ``model.render``.
"""

from model.motion.frame import (
    BodyModelSettings,
    Camera,
    FrameValidator,
    MotionFormatError,
    MotionFrame,
    MotionLimits,
    validate_frame,
)

__all__ = [
    "BodyModelSettings",
    "Camera",
    "FrameValidator",
    "MotionFormatError",
    "MotionFrame",
    "MotionLimits",
    "validate_frame",
]
