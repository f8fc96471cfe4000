"""SMPL-X pose layout used by the built-in generator: joints, the rest pose, expression channels.

Body joints are SMPL-X joint numbers (1..21); ``body_pose`` holds joint ``j`` at
``3 * (j - 1)``. The rest pose matches the bundled demo clip: TalkSHOW-style global
orientation (pi about x, the OpenCV camera convention), arms down by the sides.

Expression channels: SMPL-X expression components are a PCA basis without fixed names;
the built-in generator drives the first few with these roles, an approximation of what
the leading FLAME components do (the renderer and Face SGDM see them as such).
"""

from __future__ import annotations

import numpy as np

from model.motion.frame import BODY_POSE, HAND_AXIS_ANGLE

SPINE1, SPINE2, SPINE3 = 3, 6, 9
NECK, LEFT_COLLAR, RIGHT_COLLAR, HEAD = 12, 13, 14, 15
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW = 16, 17, 18, 19
LEFT_WRIST, RIGHT_WRIST = 20, 21

EXPRESSION_CHANNELS = {
    "mouth_open": 0,
    "smile": 1,
    "lip_round": 2,
    "lip_spread": 3,
    "brow_raise": 4,
    "blink": 5,
}
EXPRESSION_SIZE = 10

REST_GLOBAL_ORIENT = np.array([np.pi, 0.0, 0.0], dtype=np.float32)


def joint(index: int) -> slice:
    """``body_pose`` columns of SMPL-X body joint ``index`` (1..21)."""
    return slice(3 * (index - 1), 3 * index)


def rest_body_pose() -> np.ndarray:
    """(63,) float32: standing, arms relaxed by the sides, elbows slightly bent."""
    pose = np.zeros(BODY_POSE, dtype=np.float32)
    pose[joint(LEFT_SHOULDER)] = (0.0, 0.0, -1.2)
    pose[joint(RIGHT_SHOULDER)] = (0.0, 0.0, 1.2)
    pose[joint(LEFT_ELBOW)] = (0.0, -0.3, 0.0)
    pose[joint(RIGHT_ELBOW)] = (0.0, 0.3, 0.0)
    return pose


def rest_hand_pose() -> np.ndarray:
    """(45,) float32 zeros: the relaxed mean hand (flat_hand_mean False)."""
    return np.zeros(HAND_AXIS_ANGLE, dtype=np.float32)


# Finger curl direction per hand joint (15 joints x 3): flexion about each joint's z axis,
# mirrored between the hands; scaled by the gesture's curl amount.
_CURL = np.zeros((15, 3), dtype=np.float32)
_CURL[:, 2] = 1.0
LEFT_CURL = (-_CURL).reshape(-1)
RIGHT_CURL = _CURL.reshape(-1).copy()
