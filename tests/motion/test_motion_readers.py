"""Motion files: every format round-trips, the TalkSHOW columns map exactly, detection."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from motion_helpers import assert_frames_equal, random_frame

from model.motion.frame import TALKSHOW_SETTINGS, MotionFormatError
from model.motion.readers import open_motion, write_emage, write_motion, write_talkshow
from model.motion.show import write_show


def _frames(count: int, camera: bool = False) -> list:
    generator = np.random.default_rng(0)
    return [random_frame(seq, generator, camera=camera) for seq in range(count)]


def _zero_fields(frames: list, *names: str) -> None:
    for frame in frames:
        for name in names:
            getattr(frame, name)[:] = 0.0


def test_talkshow_round_trip_and_memory_map(tmp_path: Path) -> None:
    frames = _frames(5)
    _zero_fields(frames, "betas", "transl")  # not part of the TalkSHOW layout
    path = tmp_path / "clip.bin"  # detection must not depend on the name
    write_talkshow(path, frames)
    clip = open_motion(path)
    assert clip.format == "talkshow" and len(clip) == 5 and clip.settings == TALKSHOW_SETTINGS
    assert isinstance(clip.column("jaw_pose").base, np.memmap)
    for original, read in zip(frames, clip, strict=True):
        read.betas = np.zeros(300, np.float32)
        assert_frames_equal(original, read)


def test_talkshow_column_mapping(tmp_path: Path) -> None:
    table = np.zeros((2, 265), dtype=np.float32)
    table[0, 0] = 0.5  # jaw
    table[0, 3] = 0.25  # left eye
    table[0, 9] = 3.0  # global orient
    table[0, 12] = 0.1  # body pose (left hip)
    table[0, 75] = 0.2  # left hand
    table[0, 120] = 0.3  # right hand
    table[0, 165] = 0.4  # expression
    np.save(tmp_path / "m.npy", table)
    frame = next(iter(open_motion(tmp_path / "m.npy")))
    assert frame.jaw_pose[0] == 0.5 and frame.leye_pose[0] == 0.25
    assert frame.global_orient[0] == 3.0 and frame.body_pose[0] == np.float32(0.1)
    assert frame.left_hand_pose[0] == np.float32(0.2)
    assert frame.right_hand_pose[0] == np.float32(0.3)
    assert frame.expression[0] == np.float32(0.4) and frame.expression.shape == (100,)


def test_emage_round_trip(tmp_path: Path) -> None:
    frames = _frames(4)
    for frame in frames:
        frame.betas = frames[0].betas.copy()  # EMAGE stores one shape
    write_emage(tmp_path / "e.npz", frames, fps=25.0)
    clip = open_motion(tmp_path / "e.npz")
    assert clip.format == "emage" and clip.fps == 25.0
    for original, read in zip(frames, clip, strict=True):
        read.pts = original.pts
        assert_frames_equal(original, read)


def test_show_round_trip_with_camera(tmp_path: Path) -> None:
    frames = _frames(3, camera=True)
    write_show(tmp_path / "all.pkl", frames)
    clip = open_motion(tmp_path / "all.pkl")
    assert clip.format == "show"
    for original, read in zip(frames, clip, strict=True):
        assert_frames_equal(original, read)


def test_own_npz_round_trip(tmp_path: Path) -> None:
    frames = _frames(3, camera=True)
    frames[2].seq = 10
    write_motion(tmp_path / "own.npz", frames)
    clip = open_motion(tmp_path / "own.npz")
    assert clip.format == "anchor"
    for original, read in zip(frames, clip, strict=True):
        assert_frames_equal(original, read)


def test_unknown_layouts_are_clear_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((3, 100), dtype=np.float32))
    with pytest.raises(MotionFormatError, match=r"\(T, 265\)"):
        open_motion(tmp_path / "wide.npy")
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    with pytest.raises(MotionFormatError, match=r"unknown npz layout"):
        open_motion(tmp_path / "other.npz")
    (tmp_path / "text.txt").write_text("hello")
    with pytest.raises(MotionFormatError, match=r"unknown motion layout"):
        open_motion(tmp_path / "text.txt")


def test_pickles_that_run_code_are_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("owned",))

    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump({"body_pose_axis": Evil()}, handle)
    with pytest.raises(MotionFormatError, match=r"refusing to unpickle builtins.print"):
        open_motion(tmp_path / "evil.pkl")


def test_bad_values_in_a_file_name_the_frame(tmp_path: Path) -> None:
    table = np.zeros((3, 265), dtype=np.float32)
    table[2, 20] = np.nan
    np.save(tmp_path / "nan.npy", table)
    with pytest.raises(MotionFormatError, match=r"frame 2.*'body_pose'"):
        list(open_motion(tmp_path / "nan.npy"))
