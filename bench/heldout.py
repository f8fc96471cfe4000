"""Quality and speed of a trained model through the live chain (sampler, decode).

Used by ``anchor bench train``: the demo bundle on held-out synthetic motion, with
SSIM/PSNR against the ground truth that the synthetic anchor provides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from bench.train import psnr, ssim
from model.bundle import bundle_meta, load_bundle
from model.config import FaceConfig, SamplerConfig
from model.face_geometry import crop_faces
from model.training.data import _image
from model.training.dataset import ManifestEntry, load_dataset, read_png
from streaming.face_stage import matrix_for
from streaming.frames import ConditionFrame, FaceGeometry
from streaming.generate import generate_streaming

if TYPE_CHECKING:
    from app.config import AppConfig


def demo_figures(
    folder: Path, heldout: Path, config: AppConfig, frames: int = 96
) -> dict[str, Any]:
    """Streaming fps and SSIM/PSNR of the demo bundle on held-out synthetic motion.

    The clip goes through the live chain (``streaming.generate.generate_streaming``:
    window sampler in ``low`` mode, condition encoding, VAE decode) with the sampler
    settings of the bundle's ``bundle.json``; fps counts committed, decoded frames. When
    the bundle has a face model (``head/``) the clip runs a second time with the face
    stage on, fed the held-out face geometry, and ``face_on`` reports its fps, whole-frame
    SSIM/PSNR, and SSIM/PSNR of the aligned face crops with and without the face stage.
    """
    meta = bundle_meta(folder)
    sampler = bundle_sampler(meta, config.sampler)
    model = config.model.model_copy(update={"attention": meta.get("attention", "per-frame")})
    face = bundle_face(folder, meta, config.face)
    components = load_bundle(folder, model, sampler, face=face)
    size = components.image_size
    clip = load_heldout(heldout, size, face.size if face is not None else None, frames)
    conditions, targets = clip.conditions, clip.targets
    generated, fps = run_clip(conditions, components, sampler, None)
    report: dict[str, Any] = {
        "bundle": str(folder),
        "heldout": str(heldout),
        "frames": len(conditions),
        "size": size,
        "steps": sampler.steps,
        "mode": sampler.mode,
        "window_size": sampler.window_size,
        "overlap": sampler.overlap,
        "attention": model.attention,
        "threads": torch.get_num_threads(),
        "fps": fps,
        "ssim": ssim(generated, targets),
        "psnr": psnr(generated, targets),
        "arm_adherence": arm_adherence(generated, clip),
        "face_on": None,
    }
    if face is not None:
        enhanced, face_fps = run_clip(conditions, components, sampler, face)
        matrices = clip.face_matrices
        truth = crop_faces(targets, matrices, face.size)
        before = crop_faces(generated, matrices, face.size)
        after = crop_faces(enhanced, matrices, face.size)
        report["face_on"] = {
            "face_size": face.size,
            "face_steps": face.steps,
            "fps": face_fps,
            "ssim": ssim(enhanced, targets),
            "psnr": psnr(enhanced, targets),
            "face_crop_ssim": ssim(after, truth),
            "face_crop_psnr": psnr(after, truth),
            "face_off_face_crop_ssim": ssim(before, truth),
            "face_off_face_crop_psnr": psnr(before, truth),
        }
    return report


@dataclass(slots=True)
class HeldOut:
    """A held-out synthetic clip at the model size: what the model gets and the truth.

    conditions: condition frames with the dataset's face geometry (when a face size was
    given); targets: (N, 3, S, S) [0, 1] ground-truth frames; face_matrices: (N, 2, 3)
    alignment of S-pixel frames to face crops; motion: the clip's motion file.
    """

    conditions: list[ConditionFrame]
    targets: torch.Tensor
    face_matrices: NDArray[np.float32]
    motion: Path
    # (N, 1, S, S) person masks (1 = person) when the dataset has them (anchor synth-dataset).
    foreground: torch.Tensor | None = None


def load_heldout(folder: Path, size: int, face_size: int | None, frames: int) -> HeldOut:
    """The first ``frames`` frames of the held-out dataset ``folder`` at ``size`` pixels."""
    header, entries = load_dataset(folder)
    entries = entries[:frames]
    targets = torch.stack([_image(read_png(folder / e.frame), size) for e in entries])
    conditions = [
        ConditionFrame(seq=index, pts=index / header.fps,
                       condition=_image(read_png(folder / entry.condition), size),
                       face=_geometry(folder, entry, header.size, face_size))
        for index, entry in enumerate(entries)
    ]  # fmt: skip
    matrices = _frame_matrices(entries, header.size, size)
    foreground = None
    if entries and all(entry.foreground for entry in entries):
        masks = [_image(read_png(folder / str(entry.foreground)), size) for entry in entries]
        foreground = (torch.stack(masks)[:, :1] > 0.5).float()
    return HeldOut(conditions, targets, matrices, folder / "motion.npz", foreground)


def arm_adherence(images: torch.Tensor, clip: HeldOut, threshold: float = 0.1) -> float | None:
    """Share of the moving-limb pixels where the generated frame is closer to the truth than
    to the background; None without person masks.

    Moving-limb pixels: person pixels (the dataset's masks) at places the person covers in
    some but not all frames of the clip (arms and hands, mostly), where the truth differs
    from the background by more than ``threshold`` (mean absolute RGB, 0..1). The
    background at a place is the mean of the truth over the frames that do not cover it.
    A model that fades the arms into the background scores near 0; one that draws them
    where the mesh puts them scores near 1.
    """
    masks = clip.foreground
    if masks is None:
        return None
    targets = clip.targets
    cover = masks.mean(dim=0, keepdim=True)
    moving = (cover > 0) & (cover < 1)
    uncovered = 1.0 - masks
    background = (targets * uncovered).sum(dim=0, keepdim=True) / uncovered.sum(
        dim=0, keepdim=True
    ).clamp_min(1.0)
    differs = (targets - background).abs().mean(dim=1, keepdim=True) > threshold
    region = (masks > 0.5) & moving & differs
    to_truth = (images - targets).abs().mean(dim=1, keepdim=True)
    to_background = (images - background).abs().mean(dim=1, keepdim=True)
    total = int(region.sum())
    return float(((to_truth < to_background) & region).sum()) / total if total else None


def run_clip(
    conditions: list[ConditionFrame],
    components: Any,
    sampler: SamplerConfig,
    face: FaceConfig | None,
) -> tuple[torch.Tensor, float]:
    """Generated frames (N, 3, S, S) of one streaming run and its committed frames/s."""
    clip = [replace(frame, features=None) for frame in conditions]
    start = time.perf_counter()
    committed = generate_streaming(clip, components, sampler, face)
    elapsed = time.perf_counter() - start
    images = torch.stack([frame.image for frame in committed if frame.image is not None])
    return images, len(clip) / elapsed


def bundle_sampler(meta: dict[str, Any], sampler: SamplerConfig) -> SamplerConfig:
    """``sampler`` with the settings a bundle was trained and measured with, streamed in
    ``sampler``'s mode when it is exact (the demo's), else in ``low`` mode."""
    return sampler.model_copy(
        update={
            "mode": "exact" if sampler.mode == "exact" else "low",
            "steps": int(meta.get("steps", 2)),
            "guidance_scale": float(meta.get("guidance_scale", 1.0)),
            "controlnet_scale": float(meta.get("controlnet_scale", 1.0)),
            "window_size": int(meta.get("window_size", 8)),
            "overlap": int(meta.get("overlap", 2)),
            "scheduler": meta.get("scheduler", "ddim"),
            "lcm_strength": float(meta.get("lcm_strength", 1.0)),
        }
    )


def bundle_face(folder: Path, meta: dict[str, Any], face: FaceConfig) -> FaceConfig | None:
    """The face settings the bundle was trained with, None without a face model."""
    settings = meta.get("face")
    if settings is None or not (folder / "head" / "unet").is_dir():
        return None
    return face.model_copy(
        update={
            "enabled": True,
            "size": int(settings["size"]),
            "steps": int(settings["steps"]),
            "guidance_scale": float(settings["guidance_scale"]),
            "controlnet_scale": float(settings.get("controlnet_scale", 1.0)),
            "scheduler": settings.get("scheduler", "ddim"),
            "lcm_strength": float(settings.get("lcm_strength", 1.0)),
        }
    )


def _geometry(
    folder: Path, entry: ManifestEntry, frame_size: int, face_size: int | None
) -> FaceGeometry | None:
    """A held-out frame's face geometry from the dataset (its alignment, mesh crop, mask)."""
    if face_size is None:
        return None
    mask = _image(read_png(folder / entry.face_mask), face_size)
    return FaceGeometry(
        matrix=np.asarray(entry.face_matrix, dtype=np.float32),
        mesh_crop=_image(read_png(folder / entry.face_condition), face_size),
        keep_mask=(mask[:1] > 0.5).float(),
        image_size=(frame_size, frame_size),
    )


def _frame_matrices(
    entries: list[ManifestEntry], frame_size: int, size: int
) -> NDArray[np.float32]:
    """(N, 2, 3) alignment matrices for frames of ``size`` pixels."""
    matrices = []
    for entry in entries:
        geometry = FaceGeometry(
            matrix=np.asarray(entry.face_matrix, dtype=np.float32),
            mesh_crop=torch.zeros(0),
            keep_mask=torch.zeros(0),
            image_size=(frame_size, frame_size),
        )
        matrices.append(matrix_for(geometry, size, size))
    return np.stack(matrices).astype(np.float32)
