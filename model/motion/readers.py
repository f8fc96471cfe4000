"""Motion file readers and writers: TalkSHOW .npy, EMAGE .npz, SHOW all.pkl, our own .npz.

``open_motion(path)`` detects the layout from the file's content (never its name) and
returns a ``MotionClip`` that produces validated ``MotionFrame``s lazily: TalkSHOW
arrays are memory-mapped, npz members are read once each on first use, so a long
clip is never loaded twice. Each clip carries the ``BodyModelSettings`` its source
was made with.

Only numpy and the standard library (the server may read motion files).
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from model.motion.frame import (
    DEFAULT_FPS,
    DEFAULT_LIMITS,
    EMAGE_SETTINGS,
    HAND_AXIS_ANGLE,
    TALKSHOW_SETTINGS,
    VECTOR_FIELDS,
    BodyModelSettings,
    Camera,
    MotionFormatError,
    MotionFrame,
    MotionLimits,
    validate_frame,
)

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

ColumnSource = Callable[[], np.ndarray]


class MotionClip:
    """A motion file opened for reading: ``len(clip)`` frames, iterated lazily.

    ``columns`` maps each field to a ``(T, k)`` array (possibly memory-mapped) or a
    ``(k,)`` array shared by every frame; ``cameras`` optionally gives per-frame cameras.
    """

    def __init__(
        self,
        path: Path,
        format: str,
        length: int,
        fps: float,
        settings: BodyModelSettings,
        columns: Mapping[str, ColumnSource],
        hand_pca_count: int = 0,
        camera: Callable[[int], Camera | None] | None = None,
        seq: Sequence[int] | None = None,
        pts: Sequence[float] | None = None,
    ) -> None:
        self.path = path
        self.format = format
        self.fps = fps
        self.settings = settings
        self.hand_pca_count = hand_pca_count
        self._length = length
        self._sources = dict(columns)
        self._loaded: dict[str, np.ndarray] = {}
        self._camera = camera
        self._seq = seq
        self._pts = pts

    def __len__(self) -> int:
        return self._length

    def column(self, name: str) -> np.ndarray:
        """The whole column of ``name`` (read from disk at most once)."""
        if name not in self._loaded:
            self._loaded[name] = self._sources[name]()
        return self._loaded[name]

    def frame(self, index: int, limits: MotionLimits = DEFAULT_LIMITS) -> MotionFrame:
        """Frame ``index`` (0-based), validated."""
        if not 0 <= index < self._length:
            raise IndexError(f"frame {index} outside 0..{self._length - 1}")
        fields: dict[str, np.ndarray] = {}
        for name in self._sources:
            values = self.column(name)
            row = values if values.ndim == 1 else values[index]
            fields[name] = np.array(row, dtype=np.float32).reshape(-1)
        seq = int(self._seq[index]) if self._seq is not None else index
        pts = float(self._pts[index]) if self._pts is not None else index / self.fps
        frame = MotionFrame(
            seq=seq,
            pts=pts,
            hand_pca_count=self.hand_pca_count,
            camera=self._camera(index) if self._camera is not None else None,
            **fields,
        )
        try:
            validate_frame(frame, limits)
        except MotionFormatError as err:
            raise MotionFormatError(f"{self.path} frame {index}: {err}") from None
        return frame

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[MotionFrame]:
        """Frames ``start .. stop - 1``, one at a time."""
        stop = self._length if stop is None else min(stop, self._length)
        for index in range(start, stop):
            yield self.frame(index)

    def __iter__(self) -> Iterator[MotionFrame]:
        return self.frames()


def _fixed(value: np.ndarray) -> ColumnSource:
    return lambda: value


def _float_array(value: Any, key: str, path: Path) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise MotionFormatError(f"{path}: expected numbers, got dtype {array.dtype}", key)
    return array.astype(np.float32, copy=False)


def _rows(value: np.ndarray, key: str, path: Path, length: int, width: int | None) -> np.ndarray:
    """Normalises ``value`` to ``(length, width)`` or a shared ``(width,)`` row."""
    array = value.reshape(value.shape[0], -1) if value.ndim >= 2 else value
    if array.ndim == 2 and array.shape[0] == 1 and length != 1:
        array = array[0]
    if array.ndim == 2 and array.shape[0] != length:
        raise MotionFormatError(f"{path}: {array.shape[0]} rows, expected {length}", key)
    if width is not None and array.shape[-1] != width:
        raise MotionFormatError(
            f"{path}: {array.shape[-1]} values per frame, expected {width}", key
        )
    return array


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
        name: _fixed(array[:, columns]) for name, columns in TALKSHOW_COLUMNS.items()
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


def _npz_member(path: Path, key: str) -> ColumnSource:
    def load() -> np.ndarray:
        with np.load(path, allow_pickle=False) as archive:
            return _float_array(archive[key], key, path)

    return load


def _open_emage(path: Path, archive: np.lib.npyio.NpzFile) -> MotionClip:
    for key in ("poses", "expressions", "trans"):
        if key not in archive.files:
            raise MotionFormatError(f"{path}: EMAGE motion lacks {key!r}", key)
    poses = _float_array(archive["poses"], "poses", path)
    length = poses.shape[0]
    poses = _rows(poses, "poses", path, length, FULL_POSE_WIDTH)
    fps = float(archive["mocap_frame_rate"]) if "mocap_frame_rate" in archive.files else DEFAULT_FPS
    columns: dict[str, ColumnSource] = {
        name: _fixed(poses[:, columns]) for name, columns in FULL_POSE_COLUMNS.items()
    }
    expressions = _float_array(archive["expressions"], "expressions", path)
    columns["expression"] = _fixed(_rows(expressions, "expressions", path, length, None))
    columns["transl"] = _fixed(
        _rows(_float_array(archive["trans"], "trans", path), "trans", path, length, 3)
    )
    if "betas" in archive.files:
        betas = _float_array(archive["betas"], "betas", path)
        columns["betas"] = _fixed(_rows(betas, "betas", path, length, None))
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
    columns = {name: _npz_member(path, name) for name in VECTOR_FIELDS if name in archive.files}
    camera = None
    if "camera_focal" in archive.files:
        focal = _float_array(archive["camera_focal"], "camera_focal", path)
        principal = _float_array(archive["camera_principal"], "camera_principal", path)
        translation = _float_array(archive["camera_translation"], "camera_translation", path)
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


# ---------------------------------------------------------------- SHOW (all.pkl)


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


def _open_show(path: Path, record: Mapping[str, Any], fps: float) -> MotionClip:
    missing = sorted(SHOW_KEYS - set(record))
    if missing:
        raise MotionFormatError(f"{path}: SHOW motion lacks {missing}", missing[0])
    body = _float_array(record["body_pose_axis"], "body_pose_axis", path)
    length = body.shape[0]
    columns: dict[str, ColumnSource] = {
        "body_pose": _fixed(_rows(body, "body_pose_axis", path, length, 63)),
    }
    for key in ("global_orient", "transl", "jaw_pose", "leye_pose", "reye_pose"):
        columns[key] = _fixed(_rows(_float_array(record[key], key, path), key, path, length, 3))
    left = _rows(
        _float_array(record["left_hand_pose"], "left_hand_pose", path),
        "left_hand_pose",
        path,
        length,
        None,
    )
    hand = left.shape[-1]
    right = _rows(
        _float_array(record["right_hand_pose"], "right_hand_pose", path),
        "right_hand_pose",
        path,
        length,
        hand,
    )
    columns["left_hand_pose"], columns["right_hand_pose"] = _fixed(left), _fixed(right)
    betas = _rows(_float_array(record["betas"], "betas", path), "betas", path, length, None)
    expression = _rows(
        _float_array(record["expression"], "expression", path), "expression", path, length, None
    )
    columns["betas"], columns["expression"] = _fixed(betas), _fixed(expression)
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
    focal = _float_array(record["focal_length"], "focal_length", path).reshape(-1)
    translation = _rows(
        _float_array(record["camera_transl"], "camera_transl", path),
        "camera_transl",
        path,
        length,
        3,
    )
    center = _rows(_float_array(record["center"], "center", path), "center", path, length, 2)
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
        try:
            with open(path, "rb") as handle:
                record = _ArrayUnpickler(handle).load()
        except (pickle.UnpicklingError, EOFError, AttributeError) as err:
            raise MotionFormatError(f"{path}: unreadable pickle ({err})", "pickle") from None
        if isinstance(record, dict) and "body_pose_axis" in record:
            return _open_show(path, record, fps)
        raise MotionFormatError(
            f"{path}: unknown pickle layout (expected a SHOW all.pkl dict)", "pickle"
        )
    raise MotionFormatError(
        f"{path}: unknown motion layout (expected TalkSHOW .npy, EMAGE .npz, SHOW .pkl or an "
        "anchor-motion .npz)",
        "path",
    )
