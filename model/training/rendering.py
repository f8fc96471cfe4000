"""Condition renders for datasets: one camera for the whole clip, crops, perturbations.

``DatasetRenderer`` poses frames with the body model and renders the SHOW-style mesh
(``model.render.MeshRenderer``) and, for the synthetic anchor, the dressed figure
(``model.training.dressed.DressedRenderer``) with identical cameras. A frame's own camera
(SHOW fields) is used as given, shifted and scaled into the crop; frames without one use
a ``SessionCamera`` framed once on given frames, so a resumed run renders identically.
Rendering happens at ``supersample`` times the size and is box-filtered down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from model.body import BodyModel, BodyOutput
from model.config import RenderConfig
from model.motion.frame import BodyModelSettings, MotionFrame
from model.render import Intrinsics, MeshRenderer, SessionCamera

Crop = tuple[int, int, int]  # x, y, size in the source image's pixels


def perturb_frames(
    frames: Sequence[MotionFrame], std: float, seed: int, variant: int
) -> list[MotionFrame]:
    """SMPL-X parameter perturbation (the paper's augmentation): Gaussian noise of ``std``
    radians on every body joint, half of it on global orientation and jaw; seeded by
    (seed, frame seq, variant) so a frame's perturbation never depends on the batch."""
    perturbed = []
    for frame in frames:
        generator = np.random.default_rng([seed, frame.seq, variant])
        noise = generator.normal(0.0, std, 63 + 3 + 3).astype(np.float32)
        perturbed.append(
            replace(
                frame,
                body_pose=frame.body_pose + noise[:63],
                global_orient=frame.global_orient + 0.5 * noise[63:66],
                jaw_pose=frame.jaw_pose + 0.5 * noise[66:69],
            )
        )
    return perturbed


def _downsample(images: NDArray[np.uint8], factor: int) -> NDArray[np.uint8]:
    if factor == 1:
        return images
    count, height, width = images.shape[:3]
    blocks = images.reshape(count, height // factor, factor, width // factor, factor, -1)
    mean = blocks.astype(np.float32).mean(axis=(2, 4))
    out = np.rint(mean).astype(np.uint8)
    return out if images.ndim == 4 else out[..., 0]


class DatasetRenderer:
    """Renders frames of one clip at ``size x size`` (the dataset resolution).

    crop: the region of the source image the dataset frames show (camera-carrying
    frames are projected into it); None = the camera's full image, squared.
    """

    def __init__(
        self,
        config: RenderConfig,
        settings: BodyModelSettings,
        size: int,
        crop: Crop | None = None,
        supersample: int = 1,
        colors: NDArray[np.float32] | None = None,
    ) -> None:
        self.size, self.crop, self.supersample = size, crop, supersample
        render_size = size * supersample
        self.config = config.model_copy(update={"width": render_size, "height": render_size})
        self.body_model = BodyModel.from_config(config, settings)
        self.mesh = MeshRenderer(self.body_model.faces, self.body_model.vertex_count, self.config)
        self.dressed = None
        if colors is not None:
            from model.training.dressed import DressedRenderer

            self.dressed = DressedRenderer(self.body_model.faces, colors, self.config)
        self.session_camera: SessionCamera | None = None

    def frame_session(self, frames: Sequence[MotionFrame]) -> None:
        """Frames the default camera on ``frames`` (kept for the renderer's lifetime)."""
        body = self.body_model.forward(list(frames)[:16])
        self.session_camera = SessionCamera.from_body(body, self.config)

    def _geometry(
        self, frames: Sequence[MotionFrame], body: BodyOutput
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], list[Intrinsics]]:
        vertices = np.empty_like(body.vertices)
        landmarks = np.empty((*body.landmarks.shape[:2], 2), dtype=np.float32)
        intrinsics = []
        render_size = self.size * self.supersample
        for index, frame in enumerate(frames):
            if frame.camera is not None:
                camera = frame.camera
                x, y, side = self.crop or (0, 0, max(camera.width, camera.height))
                scale = render_size / side
                vertices[index] = body.vertices[index] + camera.translation
                marks = body.landmarks[index] + camera.translation
                intrinsic = Intrinsics(
                    float(camera.focal[0]) * scale,
                    float(camera.focal[1]) * scale,
                    (float(camera.principal[0]) - x) * scale,
                    (float(camera.principal[1]) - y) * scale,
                )
            else:
                if self.session_camera is None:
                    self.frame_session(frames)
                assert self.session_camera is not None
                vertices[index] = self.session_camera.to_camera(body.vertices[index])
                marks = self.session_camera.to_camera(body.landmarks[index])
                intrinsic = self.session_camera.intrinsics
            landmarks[index] = intrinsic.project(marks) / self.supersample
            intrinsics.append(intrinsic)
        return vertices, landmarks, intrinsics

    def render(
        self, frames: Sequence[MotionFrame]
    ) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
        """Mesh renders ``(N, size, size, 3)`` uint8 and landmarks ``(N, 51, 2)`` in pixels."""
        body = self.body_model.forward(list(frames))
        vertices, landmarks, intrinsics = self._geometry(frames, body)
        images = self.mesh.render(vertices, intrinsics)
        return _downsample(images, self.supersample), landmarks

    def render_dressed(
        self, frames: Sequence[MotionFrame]
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8], NDArray[np.float32]]:
        """The dressed figure ``(N, size, size, 3)`` on black, its foreground coverage
        ``(N, size, size)`` uint8 (255 = person), the mesh renders ``(N, size, size, 3)``
        and the landmarks ``(N, 51, 2)`` in pixels, all with the same cameras."""
        if self.dressed is None:
            raise ValueError("DatasetRenderer was built without vertex colours")
        body = self.body_model.forward(list(frames))
        vertices, landmarks, intrinsics = self._geometry(frames, body)
        images, masks = self.dressed.render_with_mask(vertices, intrinsics)
        coverage = masks.astype(np.uint8) * 255
        return (
            _downsample(images, self.supersample),
            _downsample(coverage, self.supersample),
            _downsample(self.mesh.render(vertices, intrinsics), self.supersample),
            landmarks,
        )

    def close(self) -> None:
        self.mesh.close()
        if self.dressed is not None:
            self.dressed.close()
