"""Frame builders and comparisons shared by the motion tests."""

from __future__ import annotations

import numpy as np
import pytest

from model.motion.frame import MotionFrame


def talkshow_frame(seq: int = 0) -> MotionFrame:
    """A rest pose in TalkSHOW's world: global_orient of pi about x (OpenCV camera axes)."""
    frame = MotionFrame(seq=seq, pts=seq / 30.0)
    frame.global_orient[:] = (np.pi, 0.0, 0.0)
    return frame


def random_frame(seq: int, generator: np.random.Generator, camera: bool = False) -> MotionFrame:
    from model.motion.frame import Camera

    def values(count: int, scale: float) -> np.ndarray:
        return generator.normal(0.0, scale, count).astype(np.float32)

    frame = MotionFrame(
        seq=seq,
        pts=seq / 30.0,
        betas=values(300, 0.5),
        global_orient=values(3, 0.3),
        body_pose=values(63, 0.2),
        jaw_pose=values(3, 0.1),
        leye_pose=values(3, 0.1),
        reye_pose=values(3, 0.1),
        left_hand_pose=values(45, 0.2),
        right_hand_pose=values(45, 0.2),
        expression=values(100, 0.5),
        transl=values(3, 0.2),
    )
    if camera:
        frame.camera = Camera(
            focal=np.array([1000.0, 1000.0], dtype=np.float32),
            principal=np.array([256.0, 250.0], dtype=np.float32),
            translation=np.array([0.0, 0.3, 4.0], dtype=np.float32),
            width=512,
            height=512,
        )
    return frame


def assert_frames_equal(first: MotionFrame, second: MotionFrame) -> None:
    from model.motion.frame import VECTOR_FIELDS

    assert first.seq == second.seq
    assert first.pts == pytest.approx(second.pts)
    assert first.hand_pca_count == second.hand_pca_count
    for name in VECTOR_FIELDS:
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)
    assert (first.camera is None) == (second.camera is None)
    if first.camera is not None and second.camera is not None:
        np.testing.assert_array_equal(first.camera.focal, second.camera.focal)
        np.testing.assert_array_equal(first.camera.principal, second.camera.principal)
        np.testing.assert_array_equal(first.camera.translation, second.camera.translation)
        assert (first.camera.width, first.camera.height) == (
            second.camera.width,
            second.camera.height,
        )
