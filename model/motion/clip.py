"""``MotionClip``: a motion file opened for reading, and the column helpers its readers share.

A clip produces validated ``MotionFrame``s lazily from per-field columns: each column is
read from disk at most once (a memory-mapped array, or an npz member on first use).
Only numpy and the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.motion.frame import (
    DEFAULT_LIMITS,
    BodyModelSettings,
    Camera,
    MotionFormatError,
    MotionFrame,
    MotionLimits,
    validate_frame,
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


def fixed_column(value: np.ndarray) -> ColumnSource:
    """A column already in memory (or memory-mapped)."""
    return lambda: value


def float_array(value: Any, key: str, path: Path) -> np.ndarray:
    """``value`` as float32; ``MotionFormatError`` naming ``key`` when it holds no numbers."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise MotionFormatError(f"{path}: expected numbers, got dtype {array.dtype}", key)
    return array.astype(np.float32, copy=False)


def frame_rows(
    value: np.ndarray, key: str, path: Path, length: int, width: int | None
) -> np.ndarray:
    """Normalises ``value`` to ``(length, width)`` or a shared ``(width,)`` row (``width``
    None: any); ``MotionFormatError`` naming ``key`` for another row count or width."""
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


def npz_column(path: Path, key: str) -> ColumnSource:
    """Member ``key`` of the npz at ``path`` as float32, read when the column is first used."""

    def load() -> np.ndarray:
        with np.load(path, allow_pickle=False) as archive:
            return float_array(archive[key], key, path)

    return load
