"""SHOW motion (``all.pkl``): a pickled dict of numpy arrays, read without running code.

``open_show`` is what ``model.motion.readers.open_motion`` calls for a pickle; cameras
come from the record's focal length, principal point and camera translation.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from model.motion.clip import ColumnSource, MotionClip, fixed_column, float_array, frame_rows
from model.motion.frame import (
    HAND_AXIS_ANGLE,
    BodyModelSettings,
    Camera,
    MotionFormatError,
    MotionFrame,
)

SHOW_KEYS = frozenset(
    (
        "body_pose_axis",
        "betas",
        "global_orient",
        "transl",
        "left_hand_pose",
        "right_hand_pose",
        "jaw_pose",
        "leye_pose",
        "reye_pose",
        "expression",
    )
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle can run code otherwise."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "slice"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise MotionFormatError(f"refusing to unpickle {module}.{name}", "pickle")


def open_show(path: Path, fps: float) -> MotionClip:
    """A SHOW ``all.pkl`` (a pickle of plain containers and numpy arrays only) as a clip.

    ``fps``: SHOW stores no frame rate. Raises ``MotionFormatError`` for an unreadable
    pickle or another layout.
    """
    try:
        with open(path, "rb") as handle:
            record = _ArrayUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, AttributeError) as err:
        raise MotionFormatError(f"{path}: unreadable pickle ({err})", "pickle") from None
    if isinstance(record, dict) and "body_pose_axis" in record:
        return _clip(path, record, fps)
    raise MotionFormatError(
        f"{path}: unknown pickle layout (expected a SHOW all.pkl dict)", "pickle"
    )


def _clip(path: Path, record: Mapping[str, Any], fps: float) -> MotionClip:
    """The clip of an unpickled SHOW record; hand PCA when its hand poses are not 45 wide."""
    missing = sorted(SHOW_KEYS - set(record))
    if missing:
        raise MotionFormatError(f"{path}: SHOW motion lacks {missing}", missing[0])
    body = float_array(record["body_pose_axis"], "body_pose_axis", path)
    length = body.shape[0]
    columns: dict[str, ColumnSource] = {
        "body_pose": fixed_column(frame_rows(body, "body_pose_axis", path, length, 63)),
    }
    for key in ("global_orient", "transl", "jaw_pose", "leye_pose", "reye_pose"):
        columns[key] = fixed_column(
            frame_rows(float_array(record[key], key, path), key, path, length, 3)
        )
    left = frame_rows(
        float_array(record["left_hand_pose"], "left_hand_pose", path),
        "left_hand_pose",
        path,
        length,
        None,
    )
    hand = left.shape[-1]
    right = frame_rows(
        float_array(record["right_hand_pose"], "right_hand_pose", path),
        "right_hand_pose",
        path,
        length,
        hand,
    )
    columns["left_hand_pose"], columns["right_hand_pose"] = fixed_column(left), fixed_column(right)
    betas = frame_rows(float_array(record["betas"], "betas", path), "betas", path, length, None)
    expression = frame_rows(
        float_array(record["expression"], "expression", path), "expression", path, length, None
    )
    columns["betas"], columns["expression"] = fixed_column(betas), fixed_column(expression)
    hand_pca = 0 if hand == HAND_AXIS_ANGLE else hand
    settings = BodyModelSettings(
        num_betas=max(betas.shape[-1], 10),
        num_expression=max(expression.shape[-1], 10),
        use_pca=bool(hand_pca),
        num_pca_comps=hand_pca or HAND_AXIS_ANGLE,
        flat_hand_mean=False,
    )
    camera = _show_camera(path, record, length) if "focal_length" in record else None
    return MotionClip(path, "show", length, fps, settings, columns, hand_pca, camera)


def _show_camera(path: Path, record: Mapping[str, Any], length: int) -> Callable[[int], Camera]:
    for key in ("camera_transl", "center", "width", "height"):
        if key not in record:
            raise MotionFormatError(f"{path}: SHOW camera lacks {key!r}", key)
    focal = float_array(record["focal_length"], "focal_length", path).reshape(-1)
    translation = frame_rows(
        float_array(record["camera_transl"], "camera_transl", path),
        "camera_transl",
        path,
        length,
        3,
    )
    center = frame_rows(float_array(record["center"], "center", path), "center", path, length, 2)
    width = int(np.asarray(record["width"]).reshape(-1)[0])
    height = int(np.asarray(record["height"]).reshape(-1)[0])
    if focal.shape[0] not in (1, 2, length):
        raise MotionFormatError(
            f"{path}: {focal.shape[0]} focal lengths for {length} frames", "focal_length"
        )

    def camera(index: int) -> Camera:
        value = focal[index] if focal.shape[0] == length and length > 2 else focal
        fx_fy = np.broadcast_to(np.asarray(value, dtype=np.float32), (2,)).copy()
        row = translation if translation.ndim == 1 else translation[index]
        principal = center if center.ndim == 1 else center[index]
        return Camera(
            fx_fy, principal.astype(np.float32).copy(), row.astype(np.float32).copy(), width, height
        )

    return camera


def write_show(path: Path, frames: Sequence[MotionFrame]) -> None:
    """Writes a SHOW ``all.pkl``-style dict of numpy arrays (cameras from frame 0 on)."""
    record: dict[str, Any] = {
        "body_pose_axis": np.stack([frame.body_pose for frame in frames]).reshape(-1, 21, 3),
        "betas": np.stack([frame.betas for frame in frames]),
        "global_orient": np.stack([frame.global_orient for frame in frames]),
        "transl": np.stack([frame.transl for frame in frames]),
        "left_hand_pose": np.stack([frame.left_hand_pose for frame in frames]),
        "right_hand_pose": np.stack([frame.right_hand_pose for frame in frames]),
        "jaw_pose": np.stack([frame.jaw_pose for frame in frames]),
        "leye_pose": np.stack([frame.leye_pose for frame in frames]),
        "reye_pose": np.stack([frame.reye_pose for frame in frames]),
        "expression": np.stack([frame.expression for frame in frames]),
    }
    cameras = [frame.camera for frame in frames if frame.camera is not None]
    if cameras and len(cameras) == len(frames):
        record["camera_transl"] = np.stack([camera.translation for camera in cameras])
        record["focal_length"] = np.asarray([c.focal[0] for c in cameras], dtype=np.float32)
        record["center"] = np.stack([camera.principal for camera in cameras])
        record["width"] = cameras[0].width
        record["height"] = cameras[0].height
    with open(path, "wb") as handle:
        pickle.dump(record, handle, protocol=4)
