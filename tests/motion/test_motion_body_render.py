"""Stand-in body model, renderer orientation/framing/determinism and face geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from motion_helpers import random_frame, talkshow_frame

from model.config import RenderConfig
from model.face_geometry import (
    alignment_matrices,
    blend_masks,
    crop_faces,
    ffhq_points,
    ffhq_template,
    paste_back,
)
from model.motion.frame import TALKSHOW_SETTINGS, MotionFrame
from model.render import MotionRenderer
from model.smplx_layout import JOINT, SMPLX_VERTEX_IDS
from model.standin import build_standin

HEAD_BODY_POSE = 3 * (JOINT["head"] - 1)


@pytest.fixture(scope="module")
def renderer(render_config: RenderConfig):  # type: ignore[no-untyped-def]
    session = MotionRenderer(render_config, TALKSHOW_SETTINGS)
    yield session
    session.close()


@pytest.fixture(scope="module")
def talkshow_session(render_config: RenderConfig):  # type: ignore[no-untyped-def]
    """A session whose camera was framed on a TalkSHOW-style first frame."""
    session = MotionRenderer(render_config, TALKSHOW_SETTINGS)
    session.render([talkshow_frame(0)])
    yield session
    session.close()


def test_fast_forward_equals_smplx_for_varying_batch_sizes(body_model) -> None:  # type: ignore[no-untyped-def]
    generator = np.random.default_rng(0)
    for count in (3, 1, 5):
        frames = [random_frame(seq, generator) for seq in range(count)]
        params = body_model.stack(frames)
        ours = body_model.forward_tensors(params)
        with torch.inference_mode():
            reference = body_model.smplx(**params)
        np.testing.assert_allclose(ours.vertices, reference.vertices.numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.joints, reference.joints[:, :55].numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.landmarks, reference.joints[:, -51:].numpy(), atol=1e-5)


def test_standin_places_smplx_hard_coded_vertices() -> None:
    model = build_standin()
    vertices = model.arrays["v_template"]
    assert vertices.shape == (10475, 3) and model.arrays["shapedirs"].shape == (10475, 3, 400)
    parts = model.part_indices
    assert SMPLX_VERTEX_IDS["nose"] in parts["nose"]
    assert SMPLX_VERTEX_IDS["lindex"] in parts["left_index3"]
    assert SMPLX_VERTEX_IDS["RHeel"] in parts["right_foot"]
    assert vertices[SMPLX_VERTEX_IDS["leye"], 0] > 0 > vertices[SMPLX_VERTEX_IDS["reye"], 0]


def test_jaw_opens_mouth_and_fingers_curl(body_model) -> None:  # type: ignore[no-untyped-def]
    model = build_standin()
    rest, posed = MotionFrame(seq=0, pts=0.0), MotionFrame(seq=1, pts=0.0)
    posed.jaw_pose[0] = 0.4
    posed.left_hand_pose[2::3] = -0.8  # curl every left finger joint towards the palm
    output = body_model.forward([rest, posed])
    moved = np.linalg.norm(output.vertices[1] - output.vertices[0], axis=1)
    lower_lip, upper_lip = model.part_indices["lower_lip"], model.part_indices["upper_lip"]
    assert moved[lower_lip].mean() > 0.015 and moved[upper_lip].max() < 1e-6
    drop = output.vertices[0, lower_lip, 1] - output.vertices[1, lower_lip, 1]
    assert drop.mean() > 0.01  # the lower lip goes down: the mouth opens
    tip = SMPLX_VERTEX_IDS["lindex"]
    assert output.vertices[1, tip, 1] < output.vertices[0, tip, 1] - 0.02  # tip curls down
    assert moved[model.part_indices["right_index3"]].max() < 1e-6


def _mass(image: np.ndarray) -> np.ndarray:
    return image.max(axis=-1) > 10


def test_t_pose_renders_centred_and_deterministic(renderer: MotionRenderer) -> None:
    frames = [MotionFrame(seq=0, pts=0.0), MotionFrame(seq=1, pts=0.0)]
    first = renderer.render(frames).images
    second = renderer.render(frames).images
    np.testing.assert_array_equal(first, second)
    mask = _mass(first[0])
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    assert 0.1 < mask.mean() < 0.6
    assert abs(xs.mean() - width / 2) < 0.05 * width
    assert abs(ys.mean() - height / 2) < 0.15 * height


def _head_above_hips_and_facing(config: RenderConfig, frame: MotionFrame) -> None:
    session = MotionRenderer(config, TALKSHOW_SETTINGS)
    try:
        window = session.render([frame])
        camera = session.session_camera
        assert camera is not None
        joints = camera.to_camera(window.body.joints[0])
        projected = camera.intrinsics.project(joints)
        assert projected[JOINT["head"], 1] < projected[JOINT["pelvis"], 1] - 20  # upright
        # Facing the camera: the nose is nearer than the back of the head, and the
        # person's left shoulder appears on the image's right.
        nose = camera.to_camera(window.body.vertices[0, SMPLX_VERTEX_IDS["nose"]])
        assert nose[2] < joints[JOINT["head"], 2]
        assert projected[JOINT["left_shoulder"], 0] > projected[JOINT["right_shoulder"], 0]
        mask = _mass(window.images[0])
        rows = np.nonzero(mask.any(axis=1))[0]
        head_row = projected[JOINT["head"], 1]
        assert rows.min() < head_row < projected[JOINT["pelvis"], 1]
    finally:
        session.close()


def test_talkshow_style_comes_out_upright_and_facing(render_config: RenderConfig) -> None:
    _head_above_hips_and_facing(render_config, talkshow_frame())


def test_emage_style_comes_out_upright_and_facing(render_config: RenderConfig) -> None:
    frame = MotionFrame(seq=0, pts=0.0)  # y-up world, identity orientation
    frame.transl[:] = (0.0, 0.9, 0.0)
    _head_above_hips_and_facing(render_config, frame)


def test_face_points_sit_on_the_head_and_follow_its_rotation(
    talkshow_session: MotionRenderer,
) -> None:
    renderer = talkshow_session
    turned = talkshow_frame(1)
    turned.body_pose[HEAD_BODY_POSE + 1] = 0.6  # head turns about its vertical axis
    still = renderer.render([talkshow_frame(0)])
    moved = renderer.render([turned])
    camera = renderer.session_camera
    assert camera is not None
    points = ffhq_points(still.landmarks)[0]
    head = camera.intrinsics.project(camera.to_camera(still.body.joints[0, JOINT["head"]]))
    neck = camera.intrinsics.project(camera.to_camera(still.body.joints[0, JOINT["neck"]]))
    head_size = abs(neck[1] - head[1]) * 3
    assert np.abs(points - head).max() < head_size  # near the head joint
    assert (points[:, 1] < neck[1]).all()  # above the neck
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # FFHQ order
    assert points[2, 1] > points[0, 1] and points[3, 1] > points[2, 1]  # eyes, nose, mouth
    shift = ffhq_points(moved.landmarks)[0] - points
    assert np.abs(shift[:, 0]).mean() > 2.0  # the points move with the head


def test_alignment_crop_and_paste_back_leave_outside_untouched(
    talkshow_session: MotionRenderer,
) -> None:
    window = talkshow_session.render([talkshow_frame(0)])
    points = ffhq_points(window.landmarks)
    matrices = alignment_matrices(points, 64)
    aligned = (points[0] @ matrices[0, :, :2].T) + matrices[0, :, 2]
    np.testing.assert_allclose(aligned, ffhq_template(64), atol=3.0)
    images = window.as_tensor()
    crops = crop_faces(images, matrices, 64)
    assert crops.shape == (1, 3, 64, 64) and crops.mean() > 0.05  # the face is in the crop
    result = paste_back(images, torch.ones_like(crops), matrices, blend_masks(1, 64))
    changed = (result != images).any(dim=1)[0]
    assert changed.any()
    ys, xs = np.nonzero(changed.numpy())
    inverse_corner = np.linalg.inv(np.vstack([matrices[0], [0, 0, 1]]))
    corners = (inverse_corner @ np.array([[0, 0, 1], [64, 64, 1], [0, 64, 1], [64, 0, 1]]).T)[:2]
    assert xs.min() >= corners[0].min() - 1 and xs.max() <= corners[0].max() + 1
    assert ys.min() >= corners[1].min() - 1 and ys.max() <= corners[1].max() + 1
