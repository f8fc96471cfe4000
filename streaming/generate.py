"""A whole clip through the live chain: sampler -> decode -> face stage, in one process.

``generate_streaming`` is what ``anchor generate --mode exact|low`` can dispatch to when
the input carries face geometry (motion files): frames are pushed window by window as a
live session would, committed latents are decoded in batches and, when a face model is
present, enhanced. ``condition_frames`` turns the motion layer's rendered windows into
condition frames with their face geometry.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from model.config import FaceConfig, SamplerConfig
from model.motion.conditions import ConditionWindow
from model.placement import Components
from streaming.face_stage import FaceStage, decode_frames, face_geometry
from streaming.frames import CommittedFrame, ConditionFrame
from streaming.sampler import WindowSampler


def condition_frames(
    windows: Iterable[ConditionWindow], image_size: int, face_size: int | None, fps: float = 30.0
) -> list[ConditionFrame]:
    """Rendered windows -> condition frames (3, S, S) float32 [0, 1] at the model size.

    face_size: the face crop size (``face.size``) to attach face geometry, or None for
    none. Geometry stays in render pixels; the face stage rescales it to the frame size.
    """
    frames: list[ConditionFrame] = []
    for window in windows:
        renders = torch.from_numpy(window.images).permute(0, 3, 1, 2).float() / 255.0
        if renders.shape[-1] != image_size or renders.shape[-2] != image_size:
            resized = F.interpolate(
                renders, size=(image_size, image_size), mode="bilinear", antialias=True
            )
        else:
            resized = renders
        for row, seq in enumerate(window.seq.tolist()):
            geometry = None
            if face_size is not None:
                geometry = face_geometry(
                    renders[row], window.face_matrices[row], window.landmarks[row], face_size
                )
            frames.append(
                ConditionFrame(
                    seq=int(seq),
                    pts=int(seq) / fps,
                    condition=resized[row].clamp(0.0, 1.0),
                    face=geometry,
                )
            )
    return frames


def generate_streaming(
    conditions: list[ConditionFrame],
    components: Components,
    sampler: SamplerConfig,
    face: FaceConfig | None = None,
) -> list[CommittedFrame]:
    """Sample, decode and (with ``components.face`` and ``face.enabled``) enhance a clip.

    Mode from ``sampler.mode`` (offline, exact or low). Returns the committed frames in
    order with ``image`` (3, H, W) float32 [0, 1] set.
    """
    window_sampler = WindowSampler(components.denoiser, components.scheduler, sampler)
    stage = None
    if components.face is not None and face is not None and face.enabled:
        stage = FaceStage(components.face, face, sampler)
    out: list[CommittedFrame] = []

    def finish(committed: list[CommittedFrame], last: bool) -> None:
        decode_frames(components.denoiser, committed)
        if stage is None:
            out.extend(committed)
            return
        out.extend(stage.enhance(committed))
        if last:
            out.extend(stage.flush())

    step = sampler.window_size - sampler.overlap
    for start in range(0, len(conditions), step):
        finish(window_sampler.push(conditions[start : start + step]), last=False)
    finish(window_sampler.flush(), last=True)
    return out
