"""Videos as ``(T, H, W, 3)`` uint8 RGB arrays: reading files and checking a pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model.errors import AnchorError

Video = NDArray[np.uint8]  # (T, H, W, 3) RGB


def read_video(path: Path, limit: int | None = None) -> Video:
    """Every frame of a video file (any container/codec av decodes), ``(T, H, W, 3)`` uint8.

    A folder of ``%06d.png`` frames is read too (``anchor generate`` writes either).
    ``limit`` keeps the first frames only.
    """
    path = Path(path)
    if path.is_dir():
        return _read_png_folder(path, limit)
    if not path.is_file():
        raise AnchorError(f"video not found: {path}")
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise AnchorError(f"{path}: no video stream")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if limit is not None and len(frames) >= limit:
                    break
    except av.error.FFmpegError as err:
        raise AnchorError(f"cannot read video {path}: {err}") from err
    if not frames:
        raise AnchorError(f"{path}: the video has no frames")
    return np.stack(frames)


def _read_png_folder(folder: Path, limit: int | None) -> Video:
    from PIL import Image

    from model.video_io import condition_frame_paths

    paths = condition_frame_paths(folder)[:limit]
    frames = []
    for path in paths:
        with Image.open(path) as image:
            frames.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
    shapes = {frame.shape for frame in frames}
    if len(shapes) != 1:
        raise AnchorError(f"{folder}: frames of different sizes {sorted(shapes)}")
    return np.stack(frames)


def check_video(video: np.ndarray, name: str) -> Video:
    """``video`` as a ``(T, H, W, 3)`` uint8 array, or an error naming it."""
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise AnchorError(
            f"{name}: expected (T, H, W, 3) uint8 RGB frames, got {video.dtype} {video.shape}"
        )
    if video.shape[0] < 1:
        raise AnchorError(f"{name}: no frames")
    return video


def check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[Video, Video]:
    """Both videos checked, with the same frame count and size (an error names both)."""
    pred, gt = check_video(pred, "pred"), check_video(gt, "gt")
    if pred.shape[0] != gt.shape[0]:
        raise AnchorError(
            f"frame counts differ: pred has {pred.shape[0]} frames, gt has {gt.shape[0]}"
        )
    if pred.shape[1:3] != gt.shape[1:3]:
        raise AnchorError(
            f"frame sizes differ: pred is {pred.shape[2]}x{pred.shape[1]}, "
            f"gt is {gt.shape[2]}x{gt.shape[1]} (width x height)"
        )
    return pred, gt
