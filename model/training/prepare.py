"""``anchor prepare``: a video of one person + its SMPL-X parameters -> a training dataset.

Frames are read with av and resampled to the dataset fps (30 by default), cropped to a
fixed square (``--crop x,y,size``; default the centred square of the full frame) and
resized to ``size``. Conditions are rendered from the motion file (any supported format;
SHOW camera fields are honoured and projected into the crop; motions without a camera
use a session framing computed once from the first frames). Each frame also gets its
perturbed renders (``perturbations``; the paper's SMPL-X perturbation augmentation, done
here once so training never renders), aligned face crops and masks, and reference
candidates. The face geometry (``face_geometry``) is the mesh's; where the mesh gives none
(its five face points not finite or not inside the frame; "auto"), or for every frame
("detector"), the face detector (``model.face_detector``) finds the five points on the
video frame, and a frame it misses keeps the mesh geometry. Resumable: frames already in
the manifest are decoded (to stay in step) but not rendered or written again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from model.config import RenderConfig
from model.errors import AnchorError
from model.face_detector import FaceDetector
from model.face_geometry import ffhq_points
from model.motion.readers import open_motion
from model.training.dataset import DatasetHeader, iter_existing
from model.training.rendering import Crop, DatasetRenderer, perturb_frames
from model.training.segmentation import load_segmenter
from model.training.writer import write_window

log = logging.getLogger("anchor.training.prepare")

FINETUNE_MIN_SECONDS = 60.0
WINDOW = 16


@dataclass(frozen=True, slots=True)
class PrepareOptions:
    """What ``anchor prepare`` writes (see the module docstring)."""

    size: int = 512
    face_size: int = 256
    fps: float = 30.0
    crop: Crop | None = None
    perturbations: int = 1
    perturbation_std: float = 0.05
    foreground: Path | None = None
    # A segmentation plug-in spec (model/training/segmentation.py) run on the cropped
    # frames; the other way to get stage-1 foreground masks.
    segmenter: str | None = None
    stage: str = "finetune"
    reference_seed: int = 0
    # Where the face crops are aligned from: "auto" = the mesh, the detector on the video
    # frame where the mesh gives no face; "detector" = the detector first; "mesh" only.
    face_geometry: Literal["auto", "detector", "mesh"] = "auto"
    # The face detector's weights folder (None = the facenet-pytorch wheel's) and its
    # three stages' cut-offs (``face.detector_weights`` / ``face.detector_thresholds``).
    detector_weights: Path | None = None
    detector_thresholds: tuple[float, float, float] = (0.1, 0.1, 0.1)
    # The FFHQ alignment size of the face crops (``face.align_size``; None = face_size).
    face_align_size: int | None = None


@dataclass(slots=True)
class _FaceSource:
    """Runs the face detector on the frames the mesh leaves without a face geometry."""

    mode: str
    weights: Path | None
    thresholds: tuple[float, float, float]
    detector: FaceDetector | None = None
    asked: int = 0
    found: int = 0

    def points(
        self, frames: NDArray[np.uint8], landmarks: NDArray[np.float32]
    ) -> NDArray[np.float32] | None:
        """(N, 5, 2) detected FFHQ points (NaN where none or not asked), or None."""
        if self.mode == "mesh":
            return None
        ask = np.ones(len(frames), dtype=bool)
        if self.mode == "auto":
            ask = ~_mesh_face_visible(landmarks, frames.shape[1], frames.shape[2])
        if not ask.any():
            return None
        if self.detector is None:
            self.detector = FaceDetector(self.weights, self.thresholds)
        images = torch.from_numpy(frames[ask]).permute(0, 3, 1, 2).float() / 255.0
        found, _ = self.detector.detect(images)
        points = np.full((len(frames), 5, 2), np.nan, dtype=np.float32)
        points[ask] = found
        self.asked += int(ask.sum())
        self.found += int(np.isfinite(found).all(axis=(1, 2)).sum())
        return points


def _mesh_face_visible(
    landmarks: NDArray[np.float32], height: int, width: int
) -> NDArray[np.bool_]:
    """(N,) bool: the mesh's five FFHQ points are finite and inside the frame."""
    points = ffhq_points(landmarks)
    finite = np.isfinite(points).all(axis=(1, 2))
    inside = (
        (points[..., 0] >= 0) & (points[..., 0] < width)
        & (points[..., 1] >= 0) & (points[..., 1] < height)
    ).all(axis=1)  # fmt: skip
    return np.asarray(finite & inside, dtype=bool)


def parse_crop(text: str) -> Crop:
    """``"x,y,size"`` -> (x, y, size) integers."""
    try:
        x, y, size = (int(part) for part in text.split(","))
    except ValueError as err:
        raise AnchorError(f"--crop {text!r}: expected x,y,size (integers)") from err
    if x < 0 or y < 0 or size < 8:
        raise AnchorError(f"--crop {text!r}: x and y must be >= 0 and size >= 8")
    return x, y, size


def _open_video(path: Path):  # type: ignore[no-untyped-def]
    import av

    if not path.is_file():
        raise AnchorError(f"video not found: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise AnchorError(f"video {path}: cannot open ({err})") from err
    if not container.streams.video:
        container.close()
        raise AnchorError(f"video {path}: no video stream")
    return container


def video_info(path: Path, fps: float) -> tuple[int, int, int]:
    """(frame count resampled to ``fps``, width, height), from the packets (no decoding)."""
    import av

    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        rate = float(stream.average_rate or fps)
        packets = sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.error.FFmpegError as err:
        raise AnchorError(f"video {path}: corrupt ({err})") from err
    finally:
        container.close()
    if packets == 0 or width == 0:
        raise AnchorError(f"video {path}: no frames")
    count = packets if abs(rate - fps) < 1e-3 else int(np.floor(packets * fps / rate + 1e-6))
    return count, width, height


def read_frames(path: Path, fps: float, crop: Crop, size: int) -> Iterator[NDArray[np.uint8]]:
    """Frames resampled to ``fps`` (the latest source frame at each output time), cropped
    and resized: ``(size, size, 3)`` uint8 each."""
    import av

    x, y, side = crop
    container = _open_video(path)
    try:
        stream = container.streams.video[0]
        emitted = 0
        first_time: float | None = None
        for frame in container.decode(stream):
            time = float(frame.time or 0.0)
            first_time = time if first_time is None else first_time
            # Emit every output tick this source frame covers (duplicates for low fps,
            # skips for high fps).
            while emitted / fps <= time - first_time + 0.5 / fps:
                image = frame.to_image().crop((x, y, x + side, y + side))
                if image.size != (size, size):
                    image = image.resize((size, size), Image.Resampling.LANCZOS)
                yield np.asarray(image.convert("RGB"), dtype=np.uint8)
                emitted += 1
    except av.error.FFmpegError as err:
        raise AnchorError(f"video {path}: corrupt ({err})") from err
    finally:
        container.close()


def _foreground(folder: Path, index: int, crop: Crop, size: int) -> NDArray[np.uint8]:
    path = folder / f"{index:06d}.png"
    if not path.is_file():
        raise AnchorError(f"--foreground: mask {path} for frame {index} not found")
    x, y, side = crop
    with Image.open(path) as image:
        cropped = image.convert("L").crop((x, y, x + side, y + side))
        return np.asarray(cropped.resize((size, size), Image.Resampling.BILINEAR), np.uint8)


def prepare_dataset(
    video: Path, motion: Path, out: Path, options: PrepareOptions, render: RenderConfig
) -> int:
    """Writes (or completes) the dataset in ``out``; returns the frames written this run."""
    if options.size % 8:
        raise AnchorError(f"--size must be a multiple of 8, got {options.size}")
    clip = open_motion(motion, fps=options.fps)
    count, width, height = video_info(video, options.fps)
    if count != len(clip):
        raise AnchorError(
            f"frame counts differ: video {video} has {count} frames at {options.fps:g} fps, "
            f"motion {motion} has {len(clip)} frames"
        )
    seconds = count / options.fps
    if options.stage == "finetune" and seconds < FINETUNE_MIN_SECONDS:
        log.warning(
            "video %s is %.1f s long: fine-tuning works best with at least %.0f s of one person",
            video,
            seconds,
            FINETUNE_MIN_SECONDS,
        )
    side = min(width, height)
    crop = options.crop or ((width - side) // 2, (height - side) // 2, side)
    if crop[0] + crop[2] > width or crop[1] + crop[2] > height:
        raise AnchorError(f"--crop {crop}: outside the {width}x{height} video {video}")
    if options.foreground is not None and options.segmenter is not None:
        raise AnchorError("--foreground and --segmenter both give masks: choose one")
    segmenter = load_segmenter(options.segmenter) if options.segmenter else None
    header = DatasetHeader(
        size=options.size,
        fps=options.fps,
        face_size=options.face_size,
        frame_count=count,
        source=str(video),
        motion=str(motion),
        crop=crop,
        perturbations=options.perturbations,
        perturbation_std=options.perturbation_std,
        foreground=options.foreground is not None or options.segmenter is not None,
        extra={"stage": options.stage},
    )
    if (out / "dataset.json").is_file():
        previous = DatasetHeader.read(out)
        if (previous.size, previous.frame_count, previous.crop) != (header.size, count, crop):
            raise AnchorError(
                f"{out} holds a dataset with other settings (size {previous.size}, "
                f"{previous.frame_count} frames, crop {previous.crop}): use another --out"
            )
    header.write(out)
    done = set(iter_existing(out))
    renderer = DatasetRenderer(render, clip.settings, options.size, crop=crop)
    faces = _FaceSource(
        options.face_geometry, options.detector_weights, options.detector_thresholds
    )
    written = 0
    try:
        renderer.frame_session(list(clip.frames(0, WINDOW)))
        frames = read_frames(video, options.fps, crop, options.size)
        for start in range(0, count, WINDOW):
            stop = min(start + WINDOW, count)
            images = [next(frames) for _ in range(start, stop)]
            todo = [index for index in range(start, stop) if index not in done]
            if not todo:
                continue
            motion_frames = [clip.frame(index) for index in todo]
            conditions, landmarks = renderer.render(motion_frames)
            perturbed = [
                renderer.render(
                    perturb_frames(
                        motion_frames, options.perturbation_std, options.reference_seed, k
                    )
                )[0]
                for k in range(options.perturbations)
            ]
            foreground = None
            if options.foreground is not None:
                foreground = np.stack(
                    [_foreground(options.foreground, i, crop, options.size) for i in todo]
                )
            elif segmenter is not None:
                foreground = segmenter(np.stack([images[index - start] for index in todo]))
            video_frames = np.stack([images[index - start] for index in todo])
            write_window(
                out,
                header,
                todo,
                video_frames,
                conditions,
                perturbed,
                landmarks,
                foreground,
                options.reference_seed,
                faces.points(video_frames, landmarks),
                options.face_align_size,
            )
            written += len(todo)
            log.info("prepared frames %d..%d of %d", start, stop - 1, count)
    finally:
        renderer.close()
    if faces.asked:
        log.info(
            "face detection: %d of %d frames (%.0f%%) aligned on the detected face, the "
            "others on the mesh",
            faces.found,
            faces.asked,
            100.0 * faces.found / faces.asked,
        )
    return written
