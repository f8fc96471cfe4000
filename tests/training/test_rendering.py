"""Dataset condition renders: SHOW cameras projected into the crop, perturbations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from model.config import RenderConfig
from model.motion.frame import TALKSHOW_SETTINGS, Camera
from model.training.rendering import DatasetRenderer, perturb_frames
from model.training.synth_motion import rest_frames


def test_frame_cameras_are_projected_into_the_crop(render_config: RenderConfig) -> None:
    camera = Camera(
        focal=np.array([600.0, 600.0], np.float32),
        principal=np.array([320.0, 240.0], np.float32),
        translation=np.array([0.0, 0.6, 5.0], np.float32),
        width=640,
        height=480,
    )
    frames = [replace(frame, camera=camera) for frame in rest_frames(1)]
    full = DatasetRenderer(render_config, TALKSHOW_SETTINGS, 64, crop=(0, 0, 640))
    shifted = DatasetRenderer(render_config, TALKSHOW_SETTINGS, 64, crop=(160, 80, 320))
    try:
        image_full, marks_full = full.render(frames)
        image_crop, marks_crop = shifted.render(frames)
    finally:
        full.close()
        shifted.close()
    # Principal point (320, 240) in source pixels: crop (0, 0, 640) -> (32, 24) at 64 px;
    # crop (160, 80, 320) -> (32, 32) and twice the scale.
    expected_full = (np.array([320.0, 240.0]) - 0) * 64 / 640
    expected_crop = (np.array([320.0, 240.0]) - (160, 80)) * 64 / 320
    # Landmarks (what face crops are cut with) scale by 2 around the principal point.
    np.testing.assert_allclose(
        marks_crop[0] - expected_crop, 2 * (marks_full[0] - expected_full), atol=1e-2
    )
    # The render agrees: the face's pixel lies on the mesh, and the figure is magnified.
    for image, marks in ((image_full[0], marks_full[0]), (image_crop[0], marks_crop[0])):
        x, y = np.rint(marks.mean(axis=0)).astype(int)
        assert image[y, x].sum() > 30
    assert (image_crop[0].sum(-1) > 30).sum() > 2 * (image_full[0].sum(-1) > 30).sum()


def test_perturbation_is_seeded_per_frame_and_leaves_the_input_alone() -> None:
    frames = rest_frames(3)
    original = [frame.body_pose.copy() for frame in frames]
    first = perturb_frames(frames, 0.05, seed=1, variant=0)
    again = perturb_frames(frames[1:], 0.05, seed=1, variant=0)
    np.testing.assert_array_equal(first[1].body_pose, again[0].body_pose)
    assert not np.allclose(first[0].body_pose, frames[0].body_pose)
    other = perturb_frames(frames, 0.05, seed=1, variant=1)
    assert not np.allclose(first[0].body_pose, other[0].body_pose)
    for frame, pose in zip(frames, original, strict=True):
        np.testing.assert_array_equal(frame.body_pose, pose)
