"""Decode and face stages: batched decode, face enhancement confined to the face region."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.face_geometry import alignment_matrices, ffhq_template, uncrop
from model.placement import Components
from streaming.face_stage import FaceGeometry, FaceStage, face_geometry
from streaming.frames import CommittedFrame
from streaming.stages import decode_frames

IMAGE = 64
FACE = 32


@pytest.fixture(scope="module")
def components() -> Components:
    model = ModelConfig(preset="tiny", device="cpu", image_size=IMAGE)
    face = FaceConfig(enabled=True, size=FACE, steps=2)
    return build_components(model, SamplerConfig(steps=2), face)


def face_frames(count: int, with_face: list[bool] | None = None) -> list[CommittedFrame]:
    """Decoded-looking frames with a face whose FFHQ points drift right by 1 px a frame."""
    generator = torch.Generator().manual_seed(0)
    frames = []
    for index in range(count):
        points = ffhq_template(24) + np.array([20.0 + index, 12.0], dtype=np.float32)
        matrix = alignment_matrices(points[None], FACE)[0]
        condition = torch.rand((3, IMAGE, IMAGE), generator=generator)
        has_face = with_face[index] if with_face is not None else True
        frames.append(
            CommittedFrame(
                seq=10 + index,
                pts=index / 30.0,
                epoch=0,
                position=index,
                latent=torch.randn((4, IMAGE // 8, IMAGE // 8), generator=generator),
                image=torch.rand((3, IMAGE, IMAGE), generator=generator),
                face=face_geometry(condition, matrix, points, FACE) if has_face else None,
            )
        )
    return frames


def outside_blend(stage: FaceStage, frame: CommittedFrame) -> torch.Tensor:
    """(H, W) bool: pixels where the stage's warped blend mask is exactly zero."""
    assert isinstance(frame.face, FaceGeometry)
    weight = uncrop(stage.blend_mask, frame.face.matrix[None], IMAGE, IMAGE)[0, 0]
    return weight <= 0


def test_decode_is_batched_and_only_for_undecoded_frames(components: Components) -> None:
    frames = face_frames(5)
    for frame in frames[1:]:
        frame.image = None
    kept = frames[0].image
    decode_frames(components.denoiser, frames, max_batch=2)
    assert frames[0].image is kept
    one_by_one = components.denoiser.decode(torch.stack([f.latent for f in frames[1:]]))
    for frame, image in zip(frames[1:], one_by_one, strict=True):
        assert frame.image is not None and frame.image.shape == (3, IMAGE, IMAGE)
        assert (frame.image - image).abs().max().item() <= 1e-5


def test_per_frame_face_stage_changes_only_the_face_region(components: Components) -> None:
    assert components.face is not None
    frames = face_frames(3, with_face=[True, False, True])
    before = [frame.image.clone() for frame in frames]  # type: ignore[union-attr]
    stage = FaceStage(components.face, FaceConfig(size=FACE, steps=2))
    out = stage.enhance(frames)
    assert [frame.seq for frame in out] == [10, 11, 12]
    assert torch.equal(out[1].image, before[1])  # type: ignore[arg-type]
    for index in (0, 2):
        image = out[index].image
        assert image is not None
        outside = outside_blend(stage, out[index])
        assert outside.any() and (~outside).any()
        assert torch.equal(image[:, outside], before[index][:, outside])
        assert (image[:, ~outside] - before[index][:, ~outside]).abs().max().item() > 1e-3


def test_temporal_face_with_one_frame_windows_equals_per_frame(components: Components) -> None:
    """The window path (FaceWindowDenoiser + WindowSampler) is the same model as
    FaceEnhancer.enhance when every window is a single frame."""
    assert components.face is not None
    frames = face_frames(4)
    per_frame = FaceStage(components.face, FaceConfig(size=FACE, steps=2)).enhance(
        copy.deepcopy(frames)
    )
    window = SamplerConfig(window_size=1, overlap=0)
    temporal = FaceStage(
        components.face, FaceConfig(size=FACE, steps=2, face_temporal=True), window
    )
    out = temporal.enhance(copy.deepcopy(frames)) + temporal.flush()
    assert [frame.seq for frame in out] == [frame.seq for frame in per_frame]
    for got, expected in zip(out, per_frame, strict=True):
        assert (got.image - expected.image).abs().max().item() <= 1e-4  # type: ignore[operator]


@pytest.mark.parametrize("mode", ["exact", "low"])
def test_temporal_face_windows_release_every_frame_once_in_order(
    components: Components, mode: str
) -> None:
    assert components.face is not None
    frames = face_frames(9, with_face=[True] * 4 + [False] + [True] * 4)
    before = [frame.image.clone() for frame in frames]  # type: ignore[union-attr]
    window = SamplerConfig(mode=mode, window_size=4, overlap=1)  # type: ignore[arg-type]
    stage = FaceStage(components.face, FaceConfig(size=FACE, steps=2, face_temporal=True), window)
    out = []
    for start in range(0, 9, 2):
        out += stage.enhance(frames[start : start + 2])
    assert len(out) < 9  # faces of the last windows are still in flight
    out += stage.flush()
    assert [frame.seq for frame in out] == [frame.seq for frame in frames]
    assert torch.equal(out[4].image, before[4])  # type: ignore[arg-type]
    for frame, original in zip(out, before, strict=True):
        if frame.face is not None:
            image = frame.image
            assert image is not None
            outside = outside_blend(stage, frame)
            assert torch.equal(image[:, outside], original[:, outside])
            assert not torch.equal(image, original)
