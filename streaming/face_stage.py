"""Decode and face stages on committed frames.

``decode_frames``: VAE decode of committed latents, batched, only for frames that have no
image yet.

``FaceStage``: Face SGDM enhancement of decoded frames that carry face geometry:
FFHQ-aligned crop of the generated frame, inpainting of the face region (Face SGDM,
mask 1 = keep), inverse warp and feathered blend (``model.face_geometry``). Pixels where
the warped blend mask is zero are returned bit for bit.

- default, per frame (the paper): ``FaceEnhancer.enhance`` on each batch of crops;
- ``face_temporal``: the crops go through a ``WindowSampler`` over the face model (the
  body's ws/os; mode low when the body runs low, else exact), so the frames of a window
  attend to each other (all-frame attention) and overlapping windows are averaged,
  which keeps the face from flickering frame to frame. Crops stay in flight until their
  windows are done (``flush`` at the end of a clip), adding that mode's latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from model.attention import WindowContext, install_attention
from model.config import FaceConfig, SamplerConfig
from model.denoiser import WindowDenoiser
from model.face_geometry import blend_masks, crop_faces, face_region_masks, paste_back
from model.face_sgdm import FaceEnhancer
from model.guided import controlnet_unet_noise, precomputed_conditioning
from model.sgdm import conditioning_embedding, vae_decode, vae_encode
from streaming.frames import CommittedFrame, ConditionFrame
from streaming.sampler import WindowSampler


@dataclass(slots=True)
class FaceGeometry:
    """What the face stage needs of one frame, computed when its condition is rendered.

    matrix: (2, 3) float32, image pixels -> crop pixels (``alignment_matrices``), for
    images of ``image_size`` (H, W); frames of another size are mapped by scaling.
    mesh_crop: (3, S, S) float32 [0, 1], the aligned crop of the mesh render.
    keep_mask: (1, S, S) float32, the inpainting mask in crop space: 0 on the face
    region (regenerated), 1 elsewhere (kept).
    """

    matrix: NDArray[np.float32]
    mesh_crop: torch.Tensor
    keep_mask: torch.Tensor
    image_size: tuple[int, int]


def face_geometry(
    condition: torch.Tensor,
    matrix: NDArray[np.float32],
    landmarks: NDArray[np.float32],
    size: int,
) -> FaceGeometry:
    """Geometry of one frame from its mesh render (3, H, W) [0, 1], its (2, 3) alignment
    matrix and its (P, 2) projected face landmarks (image pixels)."""
    crop = crop_faces(condition[None].float(), matrix[None], size)[0]
    crop_points = landmarks @ matrix[:, :2].T + matrix[:, 2]
    region = face_region_masks(crop_points[None].astype(np.float32), size, size)[0]
    return FaceGeometry(
        matrix=matrix.astype(np.float32),
        mesh_crop=crop,
        keep_mask=1.0 - torch.from_numpy(region),
        image_size=(int(condition.shape[1]), int(condition.shape[2])),
    )


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


class FaceWindowDenoiser:
    """The Face SGDM behind the ``WindowDenoiser`` contract, for temporal face windows.

    Installs all-frame self-attention on the face UNet (a window of 1 frame behaves as
    the per-frame model, so ``FaceEnhancer.enhance`` is unaffected). Conditions per
    frame: (C0 + 5, S/8, S/8) = ControlNet embedding of the mesh crop, the keep mask at
    latent size and the VAE latent of the masked crop, stacked on channels.
    """

    def __init__(self, enhancer: FaceEnhancer) -> None:
        self.enhancer = enhancer
        self.latent_channels = 4
        self.latent_height = self.latent_width = enhancer.size // 8
        self.context = WindowContext()
        install_attention(enhancer.unet, "all-frame", self.context)

    def encode_conditions(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 7, S, S) = [crop (3), mesh crop (3), keep mask (1)] -> (N, C0 + 5, S/8, S/8)."""
        enhancer = self.enhancer
        crops, mesh_crops, masks = images[:, :3], images[:, 3:6], images[:, 6:7]
        keep = (masks > 0.5).to(crops.dtype)
        masked_latents = vae_encode(enhancer.vae, crops.float().cpu() * keep.cpu())
        latent_size = (self.latent_height, self.latent_width)
        mask_latent = F.interpolate(masks.float().cpu(), size=latent_size)
        embedding = conditioning_embedding(
            enhancer.controlnet, mesh_crops.to(enhancer.device, enhancer.dtype)
        )
        return torch.cat(
            [
                embedding.float(),
                mask_latent.to(embedding.device),
                masked_latents.to(embedding.device),
            ],
            dim=1,
        )

    @torch.no_grad()
    def predict(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: torch.Tensor
    ) -> torch.Tensor:
        """Guided noise (W, F, 4, h, w) for W windows of F aligned face crops."""
        enhancer = self.enhancer
        windows, frames = latents.shape[:2]
        count = windows * frames
        flat = conditions.reshape(count, *conditions.shape[2:]).to(enhancer.device)
        embedding, inpaint = flat[:, :-5], flat[:, -5:]
        guided = enhancer.guidance_scale > 1.0
        halves = 2 if guided else 1
        tokens = enhancer.appearance.expand(count, -1, -1)
        if guided:
            tokens = torch.cat([tokens, enhancer.null_embedding.expand(count, -1, -1)])
        tokens = tokens.to(enhancer.device, enhancer.dtype)
        sample = latents.reshape(count, *latents.shape[2:]).to(enhancer.device)
        model_input = torch.cat([sample] * halves).to(enhancer.dtype)
        unet_input = torch.cat([model_input, torch.cat([inpaint] * halves).to(enhancer.dtype)], 1)
        per_frame_t = torch.cat([timesteps.to(enhancer.device).repeat_interleave(frames)] * halves)
        with self.context.frames(frames), precomputed_conditioning(enhancer.controlnet):
            noise = controlnet_unet_noise(
                enhancer.unet,
                enhancer.controlnet,
                model_input,
                unet_input,
                per_frame_t,
                tokens,
                torch.cat([embedding] * halves).to(enhancer.dtype),
                enhancer.controlnet_scale,
                enhancer.guidance_scale,
            )
        return noise.reshape(latents.shape)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, 4, S/8, S/8) -> (N, 3, S, S) float32 [0, 1] face crops."""
        return vae_decode(self.enhancer.vae, latents)


class FaceStage:
    """Face SGDM on decoded committed frames; see the module docstring.

    ``enhance(frames)`` returns the frames that are done (all of them in per-frame mode;
    in ``face_temporal`` mode the ones whose face windows are complete) with ``image``
    replaced by the enhanced frame; frames without face geometry pass through in order.
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
        # blend_masks' default erosion (size/16, at least 2) is too thin below 48 px.
        erosion = max(3, self.size // 16)
        self.blend_mask = blend_masks(1, self.size, erosion=erosion, blur=max(1, erosion // 3))
        self._sampler: WindowSampler | None = None
        self._face_denoiser: FaceWindowDenoiser | None = None
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
            self._face_denoiser = FaceWindowDenoiser(enhancer)
            self._sampler = WindowSampler(self._face_denoiser, enhancer.scheduler, settings)

    def enhance(self, frames: list[CommittedFrame]) -> list[CommittedFrame]:
        """Decoded frames in, enhanced frames out (same order)."""
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
        matrices = np.stack([matrix_for(frame.face, height, width) for frame in frames])
        return crop_faces(images.float(), matrices, self.size), matrices

    def _blend(
        self, frames: list[CommittedFrame], crops: torch.Tensor, matrices: NDArray[np.float32]
    ) -> None:
        images = torch.stack([_image(frame) for frame in frames]).float()
        masks = self.blend_mask.expand(len(frames), -1, -1, -1)
        blended = paste_back(images, crops.float().cpu(), matrices, masks)
        for frame, image in zip(frames, blended, strict=True):
            frame.image = image

    def _per_frame(self, frames: list[CommittedFrame]) -> list[CommittedFrame]:
        with_face = [frame for frame in frames if frame.face is not None]
        if with_face:
            crops, matrices = self._crops(with_face)
            enhanced = self.enhancer.enhance(
                crops,
                torch.stack([frame.face.mesh_crop for frame in with_face]),
                torch.stack([frame.face.keep_mask for frame in with_face]),
            )
            self._blend(with_face, enhanced, matrices)
        return frames

    def _temporal(self, frames: list[CommittedFrame], flush: bool) -> list[CommittedFrame]:
        assert self._sampler is not None and self._face_denoiser is not None
        with_face = [frame for frame in frames if frame.face is not None]
        inputs: list[ConditionFrame] = []
        if with_face:
            crops, _ = self._crops(with_face)
            stacked = torch.cat(
                [
                    crops,
                    torch.stack([frame.face.mesh_crop for frame in with_face]),
                    torch.stack([frame.face.keep_mask for frame in with_face]),
                ],
                dim=1,
            )
            features = self._face_denoiser.encode_conditions(stacked)
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
        assert self._face_denoiser is not None
        by_seq = {face.seq: face for face in done}
        ready = [frame for frame in self._waiting if frame.seq in by_seq]
        crops = self._face_denoiser.decode(torch.stack([by_seq[f.seq].latent for f in ready]))
        height, width = _image(ready[0]).shape[-2:]
        matrices = np.stack([matrix_for(frame.face, height, width) for frame in ready])
        self._blend(ready, crops, matrices)
        self._enhanced.update(by_seq)


_NO_IMAGE = torch.empty(0)


def _image(frame: CommittedFrame) -> torch.Tensor:
    if frame.image is None:
        raise ValueError(f"frame seq {frame.seq} is not decoded: run decode_frames first")
    return frame.image
