"""Motion file readers and writers: TalkSHOW .npy, EMAGE .npz, SHOW all.pkl, our own .npz.

SHOW's pickle lives in model/motion/show.py, the ``MotionClip`` every reader returns in
model/motion/clip.py.

``open_motion(path)`` detects the layout from the file's content (never its name) and
returns a ``MotionClip`` that produces validated ``MotionFrame``s lazily: TalkSHOW
arrays are memory-mapped, npz members are read once each on first use, so a long
clip is never loaded twice. Each clip carries the ``BodyModelSettings`` its source
was made with.

Only numpy and the standard library (the server may read motion files).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.motion.clip import (
    ColumnSource,
    MotionClip,
    fixed_column,
    float_array,
    frame_rows,
    npz_column,
)
from model.motion.frame import (
    DEFAULT_FPS,
    EMAGE_SETTINGS,
    TALKSHOW_SETTINGS,
    VECTOR_FIELDS,
    BodyModelSettings,
    Camera,
    MotionFormatError,
    MotionFrame,
)
from model.motion.show import open_show

TALKSHOW_COLUMNS = {
    "jaw_pose": slice(0, 3),
    "leye_pose": slice(3, 6),
    "reye_pose": slice(6, 9),
    "global_orient": slice(9, 12),
    "body_pose": slice(12, 75),
    "left_hand_pose": slice(75, 120),
    "right_hand_pose": slice(120, 165),
    "expression": slice(165, 265),
}
TALKSHOW_WIDTH = 265
# smplx full_pose order (EMAGE "poses"): global, body, jaw, leye, reye, left hand, right hand.
FULL_POSE_COLUMNS = {
    "global_orient": slice(0, 3),
    "body_pose": slice(3, 66),
    "jaw_pose": slice(66, 69),
    "leye_pose": slice(69, 72),
    "reye_pose": slice(72, 75),
    "left_hand_pose": slice(75, 120),
    "right_hand_pose": slice(120, 165),
}
FULL_POSE_WIDTH = 165
ANCHOR_FORMAT = "anchor-motion"
ANCHOR_VERSION = 1


# ---------------------------------------------------------------- TalkSHOW (.npy)


def open_talkshow(path: Path, fps: float = DEFAULT_FPS) -> MotionClip:
    """TalkSHOW demo output: float32 ``(T, 265)``, memory-mapped."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if array.ndim != 2 or array.shape[1] != TALKSHOW_WIDTH:
        raise MotionFormatError(
            f"{path}: TalkSHOW motion must be (T, {TALKSHOW_WIDTH}), got {array.shape}", "npy"
        )
    if array.dtype.kind != "f":
        raise MotionFormatError(f"{path}: expected floats, got {array.dtype}", "npy")
    columns: dict[str, ColumnSource] = {
        name: fixed_column(array[:, columns]) for name, columns in TALKSHOW_COLUMNS.items()
    }
    return MotionClip(path, "talkshow", array.shape[0], fps, TALKSHOW_SETTINGS, columns)


def write_talkshow(path: Path, frames: Sequence[MotionFrame]) -> None:
    """Writes the TalkSHOW layout (betas, transl and cameras are not part of it)."""
    table = np.zeros((len(frames), TALKSHOW_WIDTH), dtype=np.float32)
    for row, frame in enumerate(frames):
        for name, columns in TALKSHOW_COLUMNS.items():
            value = getattr(frame, name)
            table[row, columns.start : columns.start + value.shape[0]] = value
    with open(path, "wb") as handle:  # a handle: np.save would append ".npy" to the name
        np.save(handle, table)


# ---------------------------------------------------------------- EMAGE (.npz)


def _open_emage(path: Path, archive: np.lib.npyio.NpzFile) -> MotionClip:
    for key in ("poses", "expressions", "trans"):
        if key not in archive.files:
            raise MotionFormatError(f"{path}: EMAGE motion lacks {key!r}", key)
    poses = float_array(archive["poses"], "poses", path)
    length = poses.shape[0]
    poses = frame_rows(poses, "poses", path, length, FULL_POSE_WIDTH)
    fps = float(archive["mocap_frame_rate"]) if "mocap_frame_rate" in archive.files else DEFAULT_FPS
    columns: dict[str, ColumnSource] = {
        name: fixed_column(poses[:, columns]) for name, columns in FULL_POSE_COLUMNS.items()
    }
    expressions = float_array(archive["expressions"], "expressions", path)
    columns["expression"] = fixed_column(frame_rows(expressions, "expressions", path, length, None))
    columns["transl"] = fixed_column(
        frame_rows(float_array(archive["trans"], "trans", path), "trans", path, length, 3)
    )
    if "betas" in archive.files:
        betas = float_array(archive["betas"], "betas", path)
        columns["betas"] = fixed_column(frame_rows(betas, "betas", path, length, None))
    return MotionClip(path, "emage", length, fps, EMAGE_SETTINGS, columns)


def write_emage(path: Path, frames: Sequence[MotionFrame], fps: float = DEFAULT_FPS) -> None:
    """Writes the EMAGE layout (``poses`` in smplx full_pose order)."""
    poses = np.zeros((len(frames), FULL_POSE_WIDTH), dtype=np.float32)
    for row, frame in enumerate(frames):
        for name, columns in FULL_POSE_COLUMNS.items():
            poses[row, columns] = getattr(frame, name)
    betas = np.zeros(300, dtype=np.float32)
    if frames:
        betas[: frames[0].betas.shape[0]] = frames[0].betas
    with open(path, "wb") as handle:
        _save_emage(handle, poses, frames, betas, fps)


def _save_emage(
    handle: Any, poses: np.ndarray, frames: Sequence[MotionFrame], betas: np.ndarray, fps: float
) -> None:
    np.savez(
        handle,
        poses=poses,
        expressions=np.stack([frame.expression for frame in frames]),
        trans=np.stack([frame.transl for frame in frames]),
        betas=betas,
        mocap_frame_rate=np.asarray(fps),
    )


# ---------------------------------------------------------------- our own (.npz)


def write_motion(
    path: Path,
    frames: Sequence[MotionFrame],
    fps: float = DEFAULT_FPS,
    settings: BodyModelSettings = TALKSHOW_SETTINGS,
) -> None:
    """Writes the project's own npz: every field of every frame, cameras included."""
    if not frames:
        raise MotionFormatError("no frames to write", "frames")
    meta = {
        "format": ANCHOR_FORMAT,
        "version": ANCHOR_VERSION,
        "fps": fps,
        "hand_pca_count": frames[0].hand_pca_count,
        "settings": {
            "num_betas": settings.num_betas,
            "num_expression": settings.num_expression,
            "use_pca": settings.use_pca,
            "num_pca_comps": settings.num_pca_comps,
            "flat_hand_mean": settings.flat_hand_mean,
            "gender": settings.gender,
        },
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.asarray(json.dumps(meta)),
        "seq": np.asarray([frame.seq for frame in frames], dtype=np.int64),
        "pts": np.asarray([frame.pts for frame in frames], dtype=np.float64),
    }
    for name in VECTOR_FIELDS:
        arrays[name] = np.stack([getattr(frame, name) for frame in frames])
    cameras = [frame.camera for frame in frames]
    if any(camera is not None for camera in cameras):
        if not all(camera is not None for camera in cameras):
            raise MotionFormatError("either every frame has a camera or none", "camera")
        present = [camera for camera in cameras if camera is not None]
        arrays["camera_focal"] = np.stack([camera.focal for camera in present])
        arrays["camera_principal"] = np.stack([camera.principal for camera in present])
        arrays["camera_translation"] = np.stack([camera.translation for camera in present])
        arrays["camera_size"] = np.asarray(
            [(camera.width, camera.height) for camera in present], dtype=np.int64
        )
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def _open_anchor(path: Path, archive: np.lib.npyio.NpzFile) -> MotionClip:
    try:
        meta = json.loads(str(archive["meta"]))
        settings = BodyModelSettings(**meta["settings"])
        fps = float(meta["fps"])
    except (ValueError, KeyError, TypeError) as err:
        raise MotionFormatError(f"{path}: unreadable metadata ({err})", "meta") from None
    if meta.get("format") != ANCHOR_FORMAT or meta.get("version") != ANCHOR_VERSION:
        raise MotionFormatError(f"{path}: unsupported format/version", "meta")
    seq = archive["seq"]
    length = seq.shape[0]
    columns = {name: npz_column(path, name) for name in VECTOR_FIELDS if name in archive.files}
    camera = None
    if "camera_focal" in archive.files:
        focal = float_array(archive["camera_focal"], "camera_focal", path)
        principal = float_array(archive["camera_principal"], "camera_principal", path)
        translation = float_array(archive["camera_translation"], "camera_translation", path)
        size = np.asarray(archive["camera_size"])

        def camera(index: int) -> Camera:
            return Camera(
                focal[index].copy(),
                principal[index].copy(),
                translation[index].copy(),
                int(size[index, 0]),
                int(size[index, 1]),
            )

    return MotionClip(
        path,
        "anchor",
        length,
        fps,
        settings,
        columns,
        hand_pca_count=int(meta.get("hand_pca_count", 0)),
        camera=camera,
        seq=seq.tolist(),
        pts=archive["pts"].tolist(),
    )


# ---------------------------------------------------------------- detection


NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def open_motion(path: str | Path, fps: float = DEFAULT_FPS) -> MotionClip:
    """Opens any supported motion file, detecting its layout from the content.

    ``fps`` is used by layouts that do not store a frame rate (TalkSHOW, SHOW).
    Raises ``MotionFormatError`` naming the file for an unknown layout.
    """
    path = Path(path)
    if not path.is_file():
        raise MotionFormatError(f"{path}: no such motion file", "path")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(NPY_MAGIC):
        return open_talkshow(path, fps)
    if head.startswith(ZIP_MAGIC):
        try:
            archive = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            raise MotionFormatError(f"{path}: unreadable npz ({err})", "npz") from None
        with archive:
            if "meta" in archive.files:
                return _open_anchor(path, archive)
            if "poses" in archive.files:
                return _open_emage(path, archive)
            raise MotionFormatError(
                f"{path}: unknown npz layout with keys {sorted(archive.files)} (expected EMAGE "
                "'poses/expressions/trans' or an anchor-motion file)",
                "npz",
            )
    if head[:1] == b"\x80":
        return open_show(path, fps)
    raise MotionFormatError(
        f"{path}: unknown motion layout (expected TalkSHOW .npy, EMAGE .npz, SHOW .pkl or an "
        "anchor-motion .npz)",
        "path",
    )
