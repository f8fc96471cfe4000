"""Image and video files: condition-image folders in, mp4 or lossless PNG folders out."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.errors import AnchorError

FRAME_NAME = re.compile(r"^\d{6}\.png$")


def read_image(
    path: Path, size: int | None = None, resample: Image.Resampling = Image.Resampling.BICUBIC
) -> torch.Tensor:
    """An image file as (3, H, W) float32 RGB in [0, 1], resized (PIL ``resample``) to
    size x size."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if size is not None and rgb.size != (size, size):
                rgb = rgb.resize((size, size), resample)
            array = np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError as err:
        raise AnchorError(f"image not found: {path}") from err
    except OSError as err:
        raise AnchorError(f"cannot read image {path}: {err}") from err
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255.0


def condition_frame_paths(folder: Path) -> list[Path]:
    """The ``%06d.png`` files of a folder, sorted by name."""
    if not folder.is_dir():
        raise AnchorError(f"input folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if FRAME_NAME.match(p.name))
    if not paths:
        raise AnchorError(f"no condition images named %06d.png in {folder}")
    return paths


def read_condition_folder(
    folder: Path, size: int | None, frames: int | None = None
) -> torch.Tensor:
    """Condition images of a folder: (N, 3, size, size) float32 in [0, 1]; images of
    another size are resized with LANCZOS, as the authors' pipeline does (size None: as
    stored, all of one size).

    frames: take the first N images; more than the folder holds is an error.
    """
    paths = condition_frame_paths(folder)
    if frames is not None:
        if frames < 1 or frames > len(paths):
            raise AnchorError(f"--frames {frames}: {folder} holds {len(paths)} condition images")
        paths = paths[:frames]
    return torch.stack([read_image(path, size, Image.Resampling.LANCZOS) for path in paths])


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float [0, 1] -> (N, H, W, 3) uint8."""
    scaled = (frames.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).contiguous().numpy()


def write_png_folder(frames: torch.Tensor, folder: Path, names: list[str] | None = None) -> None:
    """Lossless PNG frames into folder, created when missing: named ``names`` (one per
    frame, e.g. the input frames' names), else ``%06d.png`` from 000000."""
    if names is not None and len(names) != frames.shape[0]:
        raise ValueError(f"{len(names)} frame names for {frames.shape[0]} frames")
    folder.mkdir(parents=True, exist_ok=True)
    for index, array in enumerate(to_uint8(frames)):
        name = f"{index:06d}.png" if names is None else names[index]
        Image.fromarray(array).save(folder / name)


def write_mp4(frames: torch.Tensor, path: Path, fps: float) -> None:
    """H.264 (libx264, yuv420p) mp4 at ``fps``. Width and height must be even (yuv420p)."""
    import av  # only the video writer needs it

    height, width = frames.shape[-2:]
    if height % 2 or width % 2:
        raise AnchorError(f"mp4 needs even width and height, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height  # type: ignore[attr-defined]
        stream.pix_fmt = "yuv420p"  # type: ignore[attr-defined]
        stream.options = {"crf": "18", "preset": "medium"}
        for array in to_uint8(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):  # type: ignore[attr-defined]
                container.mux(packet)
        for packet in stream.encode():  # type: ignore[attr-defined]
            container.mux(packet)


def write_frames(
    frames: torch.Tensor, out: Path, fps: float, names: list[str] | None = None
) -> None:
    """``out`` ending in .mp4: a video; anything else: a folder of lossless PNG frames
    (named ``names`` when given, see ``write_png_folder``)."""
    if out.suffix.lower() == ".mp4":
        write_mp4(frames, out, fps)
    elif out.suffix:
        raise AnchorError(f"--out {out}: expected an .mp4 file or a folder (no extension)")
    else:
        write_png_folder(frames, out, names)
