"""The stage chain, written once; the live worker, ``anchor generate`` and the benches
run it.

motion frame --RenderStage--> ConditionFrame (mesh condition + face geometry)
  --StageChain: WindowSampler--> CommittedFrame (latent) --decode_frames--> decoded image
  --FaceStage--> enhanced image --output_images--> (H, W, 3) uint8 RGB.

``condition_frames`` is the render stage for windows the motion layer already rendered
(``anchor generate`` renders a motion file window by window). Every stage but the render
stage runs on the thread that owns the model.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from model.config import FaceConfig, RenderConfig, SamplerConfig
from model.denoiser import WindowDenoiser
from model.errors import AnchorError
from model.motion.conditions import ConditionWindow
from model.motion.frame import MotionFrame
from model.placement import Components
from model.video_io import to_uint8
from streaming.face_stage import FaceStage, frame_face_geometry
from streaming.frames import CommittedFrame, ConditionFrame
from streaming.sampler import WindowSampler


def window_conditions(
    images: NDArray[np.uint8],
    landmarks: NDArray[np.float32],
    seqs: Sequence[int],
    pts: Sequence[float],
    face_size: int | None,
    image_size: int | None = None,
    epoch: int = 0,
    face_matrices: NDArray[np.float32] | None = None,
    align_size: int | None = None,
) -> list[ConditionFrame]:
    """Rendered frames -> condition frames (3, S, S) float32 [0, 1].

    images: (N, H, W, 3) uint8 RGB mesh renders; landmarks: (N, 51, 2) float32 projected
    face landmarks in render pixels; image_size: the model size S to resize to (bilinear,
    antialiased), None to keep the render size. face_size: the face crop side
    (``face.size``) to attach face geometry, None for none; geometry stays in render
    pixels, the face stage rescales it to the frame size. epoch: the sender's clip count
    (see ``ConditionFrame``). face_matrices: (N, 2, 3) float32 face alignments when the
    renderer computed them (aligned with the same ``align_size``), else they are aligned
    from the landmarks; align_size: ``face.align_size``.
    """
    renders = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    resized = renders
    if image_size is not None and tuple(renders.shape[-2:]) != (image_size, image_size):
        resized = F.interpolate(
            renders, size=(image_size, image_size), mode="bilinear", antialias=True
        )
    frames: list[ConditionFrame] = []
    for row, (seq, stamp) in enumerate(zip(seqs, pts, strict=True)):
        geometry = None
        if face_size is not None:
            matrix = None if face_matrices is None else face_matrices[row]
            geometry = frame_face_geometry(
                renders[row], landmarks[row], face_size, matrix, align_size
            )
        frames.append(
            ConditionFrame(
                seq=int(seq),
                pts=float(stamp),
                condition=resized[row].clamp(0.0, 1.0),
                face=geometry,
                epoch=epoch,
            )
        )
    return frames


def condition_frames(
    windows: Iterable[ConditionWindow],
    image_size: int,
    face_size: int | None,
    fps: float = 30.0,
    align_size: int | None = None,
) -> list[ConditionFrame]:
    """Windows the motion layer rendered -> condition frames at the model size
    (``window_conditions``); pts = seq / fps."""
    frames: list[ConditionFrame] = []
    for window in windows:
        seqs = [int(seq) for seq in window.seq.tolist()]
        frames += window_conditions(
            window.images,
            window.landmarks,
            seqs,
            [seq / fps for seq in seqs],
            face_size,
            image_size,
            face_matrices=window.face_matrices,
            align_size=align_size,
        )
    return frames


class RenderStage:
    """Motion frame -> condition frame at the render size, with face geometry when
    ``face_size`` is set (the face stage runs).

    One per render thread: an OpenGL context belongs to the thread that made it.
    """

    def __init__(
        self, render: RenderConfig, face_size: int | None, align_size: int | None = None
    ) -> None:
        from model.motion.frame import BodyModelSettings
        from model.render import MotionRenderer

        self.renderer = MotionRenderer(render, BodyModelSettings())
        self.face_size = face_size
        self.align_size = align_size

    def render(self, motion: MotionFrame, epoch: int = 0) -> ConditionFrame:
        """``motion``'s condition (3, H, W) float32 [0, 1] with its seq, pts and ``epoch``."""
        window = self.renderer.render([motion])
        frames = window_conditions(
            window.images,
            window.landmarks,
            [motion.seq],
            [motion.pts],
            self.face_size,
            epoch=epoch,
            align_size=self.align_size,
        )
        return frames[0]

    def close(self) -> None:
        self.renderer.close()


def decode_frames(
    denoiser: WindowDenoiser, frames: list[CommittedFrame], max_batch: int = 16
) -> list[CommittedFrame]:
    """Sets ``image`` (3, H, W) float32 [0, 1] on frames that have none, ``max_batch``
    latents per VAE call; returns the same frames."""
    missing = [frame for frame in frames if frame.image is None]
    for start in range(0, len(missing), max_batch):
        part = missing[start : start + max_batch]
        images = denoiser.decode(torch.stack([frame.latent for frame in part]))
        for frame, image in zip(part, images, strict=True):
            frame.image = image
    return frames


def output_images(frames: list[CommittedFrame]) -> NDArray[np.uint8]:
    """Decoded frames -> (N, H, W, 3) uint8 RGB, rounded (``model.video_io.to_uint8``)."""
    images = []
    for frame in frames:
        if frame.image is None:
            raise AnchorError(f"frame seq {frame.seq} reached the output undecoded")
        images.append(frame.image)
    return to_uint8(torch.stack(images))


@dataclass(slots=True)
class StageOutput:
    """Frames the chain finished in one call, in order, ``image`` (3, H, W) float32 [0, 1].

    model_seconds: sampler and VAE decode; face_seconds: the face stage (None when the
    chain has none).
    """

    frames: list[CommittedFrame] = field(default_factory=list)
    model_seconds: float = 0.0
    face_seconds: float | None = None


class StageChain:
    """Sampler -> VAE decode -> face stage over one clip after another (one session).

    The face stage runs when ``face`` is given and enabled; the components must then have
    a face model. Not thread-safe: every call on the thread that owns the model.
    """

    def __init__(
        self, components: Components, sampler: SamplerConfig, face: FaceConfig | None = None
    ) -> None:
        self.denoiser = components.denoiser
        self.sampler = WindowSampler(components.denoiser, components.scheduler, sampler)
        self.face: FaceStage | None = None
        if face is not None and face.enabled:
            if components.face is None:
                raise AnchorError("face.enabled: the identity's components have no face model")
            self.face = FaceStage(components.face, face, sampler)

    @property
    def epoch(self) -> int:
        """The sampler's clip count: a ``reset`` or ``flush`` starts the next one."""
        return self.sampler.epoch

    @property
    def pending(self) -> int:
        """Frames in the sampler that are not committed yet."""
        return self.sampler.pending

    def push(self, conditions: list[ConditionFrame]) -> StageOutput:
        """Feed condition frames (seq increasing); returns the frames finished so far."""
        started = time.monotonic()
        return self._finish(self.sampler.push(conditions), started, last=False)

    def flush(self) -> StageOutput:
        """End the clip: every frame still in flight, sampler and face stage."""
        started = time.monotonic()
        return self._finish(self.sampler.flush(), started, last=True)

    def reset(self) -> None:
        """Drop every frame in flight; the next push starts a new clip."""
        self.sampler.reset()
        if self.face is not None:
            self.face.reset()

    def _finish(self, committed: list[CommittedFrame], started: float, last: bool) -> StageOutput:
        decode_frames(self.denoiser, committed)
        output = StageOutput(committed, time.monotonic() - started)
        if self.face is None:
            return output
        output.face_seconds = 0.0
        if committed or last:
            face_started = time.monotonic()
            output.frames = self.face.enhance(committed)
            if last:
                output.frames += self.face.flush()
            output.face_seconds = time.monotonic() - face_started
        return output
