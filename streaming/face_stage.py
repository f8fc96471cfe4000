"""The face stage, in one place: face geometry, crop, enhance and blend.

``frame_face_geometry`` / ``face_geometry``: what the stage needs of one frame, computed
from its mesh render when the condition is rendered (``FaceGeometry``, carried by the
frame through the sampler).

``FaceStage``: Face SGDM enhancement of decoded frames that carry face geometry:
FFHQ-aligned crop of the generated frame, inpainting of the face region (Face SGDM,
mask 1 = keep), inverse warp and feathered blend (``model.face_geometry``; ``face.blend``
"authors": their erosion and Gaussian blur in frame pixels). Pixels where the blend
weight is zero are returned bit for bit.

- default, per frame (the paper): ``FaceEnhancer.enhance`` on each batch of crops;
- ``face_temporal``: the crops go through a ``WindowSampler`` over the face model (the
  body's ws/os; mode low when the body runs low, else exact), so the frames of a window
  attend to each other (all-frame attention) and overlapping windows are averaged,
  which keeps the face from flickering frame to frame. Crops stay in flight until their
  windows are done (``flush`` at the end of a clip), adding that mode's latency.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from model.config import FaceConfig, SamplerConfig
from model.face_detector import FaceDetector
from model.face_geometry import (
    POINTS_REGION_GROW,
    alignment_matrices,
    authors_blend_weights,
    blend_masks,
    crop_faces,
    face_region_masks,
    ffhq_points,
    paste_back,
    paste_back_weighted,
)
from model.face_parsing import FaceParser, load_bisenet
from model.face_sgdm import FaceEnhancer
from model.face_window import FaceWindowDenoiser
from streaming.frames import CommittedFrame, ConditionFrame, DeferredFace, FaceGeometry
from streaming.sampler import WindowSampler


def points_face_geometry(
    render: torch.Tensor, points: NDArray[np.float32], size: int, align_size: int | None = None
) -> FaceGeometry:
    """FaceGeometry of a (3, H, W) [0, 1] render from its (5, 2) FFHQ points (pixels);
    ``align_size``: ``face.align_size`` (``model.face_geometry``)."""
    matrix = alignment_matrices(points[None].astype(np.float32), size, align_size)[0]
    crop = crop_faces(render[None].float(), matrix[None], size, align_size)[0]
    crop_points = points @ matrix[:, :2].T + matrix[:, 2]
    region = face_region_masks(
        crop_points[None].astype(np.float32), size, size, grow=POINTS_REGION_GROW
    )[0]
    return FaceGeometry(
        matrix=matrix.astype(np.float32),
        mesh_crop=crop,
        keep_mask=1.0 - torch.from_numpy(region),
        image_size=(int(render.shape[1]), int(render.shape[2])),
    )


def face_geometry(
    condition: torch.Tensor,
    matrix: NDArray[np.float32],
    landmarks: NDArray[np.float32],
    size: int,
    align_size: int | None = None,
) -> FaceGeometry:
    """Geometry of one frame from its mesh render (3, H, W) [0, 1], its (2, 3) alignment
    matrix (image -> ``size`` crop) and its (P, 2) projected face landmarks (image pixels)."""
    crop = crop_faces(condition[None].float(), matrix[None], size, align_size)[0]
    crop_points = landmarks @ matrix[:, :2].T + matrix[:, 2]
    region = face_region_masks(crop_points[None].astype(np.float32), size, size)[0]
    return FaceGeometry(
        matrix=matrix.astype(np.float32),
        mesh_crop=crop,
        keep_mask=1.0 - torch.from_numpy(region),
        image_size=(int(condition.shape[1]), int(condition.shape[2])),
    )


def frame_face_geometry(
    render: torch.Tensor,
    landmarks: NDArray[np.float32],
    size: int,
    matrix: NDArray[np.float32] | None = None,
    align_size: int | None = None,
) -> FaceGeometry | None:
    """Face geometry of one rendered frame.

    render: (3, H, W) float32 [0, 1] mesh render; landmarks: (51, 2) float32 projected face
    landmarks in its pixels; size: the face crop side (``face.size``); matrix: its (2, 3)
    alignment when the renderer already computed it (``ConditionWindow.face_matrices``),
    else None: it is aligned here from the landmarks, and the frame has no geometry (None;
    it passes the face stage as is) when they are not finite; align_size:
    ``face.align_size`` (the matrix, when given, must come from the same alignment).
    """
    if matrix is None:
        if not np.isfinite(landmarks).all():
            return None
        points = ffhq_points(landmarks[None].astype(np.float32))
        matrix = alignment_matrices(points, size, align_size)[0]
    return face_geometry(render, matrix, landmarks.astype(np.float32), size, align_size)


def matrix_for(geometry: FaceGeometry, height: int, width: int) -> NDArray[np.float32]:
    """The alignment matrix for a frame of (height, width) pixels (pixel centres kept)."""
    source_height, source_width = geometry.image_size
    if (source_height, source_width) == (height, width):
        return geometry.matrix
    scale_x, scale_y = source_width / width, source_height / height
    # frame pixel p -> source pixel (p + 0.5) * scale - 0.5, then the source matrix.
    to_source = np.array(
        [[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5], [0, 0, 1]],
        dtype=np.float64,
    )
    full = np.vstack([geometry.matrix.astype(np.float64), [0.0, 0.0, 1.0]])
    return (full @ to_source)[:2].astype(np.float32)


class FaceStage:
    """Face SGDM on decoded committed frames; see the module docstring.

    ``enhance(frames)`` returns the frames that are done (all of them in per-frame mode;
    in ``face_temporal`` mode the ones whose face windows are complete) with ``image``
    replaced by the enhanced frame; frames without face geometry pass through in order.
    Runs on the thread that owns the model; in temporal mode the stage binds the shared
    face UNet's window attention to its own context before every run, so several stages
    over one enhancer (sessions of one identity) can interleave.
    """

    def __init__(
        self,
        enhancer: FaceEnhancer,
        config: FaceConfig,
        window: SamplerConfig | None = None,
    ) -> None:
        self.enhancer = enhancer
        self.config = config
        self.size = enhancer.size
        self.align_size = config.align_size
        # blend_masks' default erosion (size/16, at least 2) is too thin below 48 px.
        erosion = max(3, self.size // 16)
        self.blend_mask = blend_masks(1, self.size, erosion=erosion, blur=max(1, erosion // 3))
        self._detector: FaceDetector | None = None
        # Frames whose face was found on the generated frame (``DeferredFace``).
        self.fallback_found = 0
        self.parser: FaceParser | None = None
        if config.parsing_weights is not None:
            network = load_bisenet(config.parsing_weights)
            self.parser = FaceParser(network.to(enhancer.device, enhancer.dtype))
        self._sampler: WindowSampler | None = None
        self._window_denoiser: FaceWindowDenoiser | None = None
        # Temporal mode: decoded frames waiting for their face, in order, and the seqs of
        # those whose face is already blended in.
        self._waiting: list[CommittedFrame] = []
        self._enhanced: set[int] = set()
        if config.face_temporal:
            # The face model's own schedule, fixed noise for every frame (official); the
            # body's streaming mode (low: one window of latency), exact for offline.
            base = window or SamplerConfig(mode="exact")
            settings = base.model_copy(
                update={
                    "mode": "low" if base.mode == "low" else "exact",
                    "steps": len(enhancer.scheduler.timesteps),
                    "same_frame_noise": True,
                    "seed": config.seed,
                }
            )
            self._window_denoiser = FaceWindowDenoiser(enhancer)
            self._sampler = WindowSampler(self._window_denoiser, enhancer.scheduler, settings)

    def enhance(self, frames: list[CommittedFrame]) -> list[CommittedFrame]:
        """Decoded frames in ((3, H, W) float32 [0, 1] ``image``), enhanced frames out,
        same order."""
        self._resolve_deferred(frames)
        if self._sampler is None:
            return self._per_frame(frames)
        return self._temporal(frames, flush=False)

    def flush(self) -> list[CommittedFrame]:
        """End of clip: every frame still held by the temporal sampler."""
        if self._sampler is None:
            return []
        return self._temporal([], flush=True)

    def reset(self) -> None:
        """Drop frames in flight (temporal mode)."""
        self._waiting = []
        self._enhanced = set()
        if self._sampler is not None:
            self._sampler.reset()

    def _crops(self, frames: list[CommittedFrame]) -> tuple[torch.Tensor, NDArray[np.float32]]:
        images = torch.stack([_image(frame) for frame in frames])
        height, width = images.shape[-2:]
        matrices = np.stack([matrix_for(_geometry(frame), height, width) for frame in frames])
        return crop_faces(images.float(), matrices, self.size, self.align_size), matrices

    def _resolve_deferred(self, frames: list[CommittedFrame]) -> None:
        """Detect the face of ``DeferredFace`` frames on their generated image: its
        geometry, or None (the frame passes unenhanced)."""
        deferred = [frame for frame in frames if isinstance(frame.face, DeferredFace)]
        if not deferred:
            return
        if self._detector is None:
            self._detector = FaceDetector(
                self.config.detector_weights, self.config.detector_thresholds
            )
        points, _ = self._detector.detect(torch.stack([_image(frame) for frame in deferred]))
        for frame, found in zip(deferred, points, strict=True):
            assert isinstance(frame.face, DeferredFace)
            render = frame.face.render
            frame.face = None
            if np.isfinite(found).all():
                height, width = _image(frame).shape[-2:]
                scale = np.array(
                    [render.shape[2] / width, render.shape[1] / height], dtype=np.float32
                )
                # Pixel centres kept when the render and the frame differ in size.
                at_render = (found + 0.5) * scale - 0.5
                frame.face = points_face_geometry(render, at_render, self.size, self.align_size)
                self.fallback_found += 1

    def _keep_masks(self, frames: list[CommittedFrame], crops: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) inpainting masks (1 = keep): parsed from the generated crops with
        ``face.parsing_weights``, else the geometry's landmark hull."""
        if self.parser is not None:
            return self.parser.keep_masks(crops)
        return torch.stack([_geometry(frame).keep_mask for frame in frames])

    def _blend(
        self, frames: list[CommittedFrame], crops: torch.Tensor, matrices: NDArray[np.float32]
    ) -> None:
        images = torch.stack([_image(frame) for frame in frames]).float()
        if self.config.blend == "authors":
            height, width = images.shape[-2:]
            weights = authors_blend_weights(matrices, self.size, height, width, self.align_size)
            blended = paste_back_weighted(
                images, crops.float().cpu(), matrices, weights, self.align_size
            )
        else:
            masks = self.blend_mask.expand(len(frames), -1, -1, -1)
            blended = paste_back(images, crops.float().cpu(), matrices, masks, self.align_size)
        for frame, image in zip(frames, blended, strict=True):
            frame.image = image

    def _per_frame(self, frames: list[CommittedFrame]) -> list[CommittedFrame]:
        with_face = [frame for frame in frames if frame.face is not None]
        if with_face:
            crops, matrices = self._crops(with_face)
            enhanced = self.enhancer.enhance(
                crops,
                torch.stack([_geometry(frame).mesh_crop for frame in with_face]),
                self._keep_masks(with_face, crops),
            )
            self._blend(with_face, enhanced, matrices)
        return frames

    def _temporal(self, frames: list[CommittedFrame], flush: bool) -> list[CommittedFrame]:
        assert self._sampler is not None and self._window_denoiser is not None
        self._window_denoiser.activate()
        with_face = [frame for frame in frames if frame.face is not None]
        inputs: list[ConditionFrame] = []
        if with_face:
            crops, _ = self._crops(with_face)
            stacked = torch.cat(
                [
                    crops,
                    torch.stack([_geometry(frame).mesh_crop for frame in with_face]),
                    self._keep_masks(with_face, crops),
                ],
                dim=1,
            )
            features = self._window_denoiser.encode_conditions(stacked)
            inputs = [
                ConditionFrame(seq=frame.seq, pts=frame.pts, condition=_NO_IMAGE, features=feature)
                for frame, feature in zip(with_face, features, strict=True)
            ]
        self._waiting.extend(frames)
        done = self._sampler.push(inputs)
        if flush:
            done += self._sampler.flush()
        if done:
            self._blend_faces(done)
        released = []
        while self._waiting:
            frame = self._waiting[0]
            if frame.face is not None and frame.seq not in self._enhanced:
                break
            self._enhanced.discard(frame.seq)
            released.append(self._waiting.pop(0))
        return released

    def _blend_faces(self, done: list[CommittedFrame]) -> None:
        """Decode finished face latents and blend them into their waiting frames."""
        assert self._window_denoiser is not None
        by_seq = {face.seq: face for face in done}
        ready = [frame for frame in self._waiting if frame.seq in by_seq]
        crops = self._window_denoiser.decode(torch.stack([by_seq[f.seq].latent for f in ready]))
        height, width = _image(ready[0]).shape[-2:]
        matrices = np.stack([matrix_for(_geometry(frame), height, width) for frame in ready])
        self._blend(ready, crops, matrices)
        self._enhanced.update(by_seq)


_NO_IMAGE = torch.empty(0)


def _image(frame: CommittedFrame) -> torch.Tensor:
    if frame.image is None:
        raise ValueError(f"frame seq {frame.seq} is not decoded: run decode_frames first")
    return frame.image


def _geometry(frame: CommittedFrame) -> FaceGeometry:
    if not isinstance(frame.face, FaceGeometry):
        raise ValueError(f"frame seq {frame.seq} has no face geometry")
    return frame.face
