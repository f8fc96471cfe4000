"""generate_streaming: a clip through sampler, decode and face stage, as a live session."""

from __future__ import annotations

import numpy as np
import torch

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.face_geometry import alignment_matrices, ffhq_template
from model.motion.conditions import ConditionWindow
from model.offline import offline_sample
from streaming.generate import generate_streaming
from streaming.stages import condition_frames

RENDER = 48  # render size differs from the model size: geometry is rescaled
IMAGE = 32
FACE = 32


def rendered_window(first_seq: int, count: int) -> ConditionWindow:
    generator = np.random.default_rng(first_seq)
    offsets = np.array([[12.0 + index, 8.0] for index in range(count)], dtype=np.float32)
    points = (ffhq_template(20)[None] + offsets[:, None]).astype(np.float32)
    return ConditionWindow(
        seq=np.arange(first_seq, first_seq + count, dtype=np.int64),
        images=generator.integers(0, 255, (count, RENDER, RENDER, 3), dtype=np.uint8),
        face_points=points,
        face_matrices=alignment_matrices(points, FACE),
        landmarks=points,
    )


def test_generate_streaming_exact_with_faces_matches_offline_latents() -> None:
    model = ModelConfig(preset="tiny", device="cpu", image_size=IMAGE)
    sampler = SamplerConfig(mode="exact", steps=2, window_size=4, overlap=1, same_frame_noise=False)
    face = FaceConfig(enabled=True, size=FACE, steps=2)
    components = build_components(model, sampler, face)
    conditions = condition_frames([rendered_window(100, 6), rendered_window(106, 5)], IMAGE, FACE)
    assert [frame.condition.shape for frame in conditions] == [(3, IMAGE, IMAGE)] * 11
    out = generate_streaming(conditions, components, sampler, face)
    assert [frame.seq for frame in out] == [frame.seq for frame in conditions]
    assert all(frame.image is not None and frame.image.shape == (3, IMAGE, IMAGE) for frame in out)
    features = components.denoiser.encode_conditions(
        torch.stack([frame.condition for frame in conditions])
    )
    expected = offline_sample(components.denoiser, components.scheduler, features, sampler, 42)
    latents = torch.stack([frame.latent for frame in out])
    assert (latents - expected).abs().max().item() <= 1e-4
    decoded = components.denoiser.decode(latents)
    # The face stage changed the face, not the whole frame.
    for frame, image in zip(out, decoded, strict=True):
        assert frame.image is not None
        changed = (frame.image - image).abs().amax(dim=0) > 1e-6
        assert changed.any() and not changed.all()
