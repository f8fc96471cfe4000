"""LMD: reference landmarks from the motion, the ONNX pose estimator, the counting rule.

The SMPL-X model is the generated stand-in (the real file is licence-restricted) and
the pose estimator a tiny ONNX graph exported here that puts every keypoint on the
brightest spot of its input (no pretrained estimator can be downloaded): frames with
one bright dot then have known predictions, so every distance has a known answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from eval_helpers import export_pose

from model.config import RenderConfig
from model.errors import AnchorError, WeightsError
from model.evaluation.config import EvalConfig
from model.evaluation.evaluate import Evaluator
from model.evaluation.landmarks import PARTS, ReferenceKeypoints, reference_keypoints
from model.evaluation.lmd import landmark_mean_distance
from model.evaluation.pose import PoseEstimator, crop_transform, warp_crop
from model.motion.readers import open_motion

RIGHT_WRIST = 10
FACE_STATIC = slice(23 + 17, 91)  # the 51 static landmarks among the 133 keypoints


def test_reference_keypoints_land_where_the_condition_renders_put_the_body(
    wave_motion: Path, render_config: RenderConfig
) -> None:
    """Same camera as render_motion_conditions: its face landmarks match, and the projected
    body and hand joints fall on mesh pixels of its images."""
    from model.motion.conditions import render_motion_conditions

    windows = list(render_motion_conditions(wave_motion, render_config, window=8, limit=12))
    images = np.concatenate([window.images for window in windows])
    rendered_landmarks = np.concatenate([window.landmarks for window in windows])
    clip = open_motion(wave_motion)
    reference = reference_keypoints(
        list(clip.frames(0, 12)), render_config, clip.settings, camera_frames=8
    )
    np.testing.assert_allclose(reference.points[:, FACE_STATIC], rendered_landmarks, atol=1e-3)
    assert not reference.valid[:, 23:40].any()  # the jaw contour is never a reference
    joints = [5, 6, 7, 8, 9, 10, 11, 12, 91, 112]  # shoulders .. hips, both hand wrists
    covered = []
    for frame, image in enumerate(images):
        for index in joints:
            if reference.valid[frame, index]:
                x, y = reference.points[frame, index].astype(int)
                covered.append(image[y, x].max() > 0)
    assert len(covered) > 100 and np.mean(covered) > 0.95
    box = reference.boxes[0]
    mesh = np.argwhere(images[0].max(axis=2) > 0)
    assert box[0] <= mesh[:, 1].min() + 1 and mesh[:, 1].max() <= box[2] + 1
    assert box[1] <= mesh[:, 0].min() + 1 and mesh[:, 0].max() <= box[3] + 1


def _dot_video(reference: ReferenceKeypoints, keypoint: int, red_only: bool = False) -> np.ndarray:
    """Black frames with one white (or red) pixel on ``keypoint``'s reference position."""
    video = np.zeros((len(reference.points), reference.height, reference.width, 3), np.uint8)
    for frame, (x, y) in enumerate(reference.points[:, keypoint].astype(int)):
        video[frame, y, x] = (255, 0, 0) if red_only else (255, 255, 255)
    return video


@pytest.fixture(scope="module")
def wave_reference(wave_motion: Path, render_config: RenderConfig) -> ReferenceKeypoints:
    evaluator = Evaluator(EvalConfig(), render_config)
    return evaluator.reference(wave_motion, 20, width=64, height=64)


@pytest.mark.parametrize("kind", ["simcc", "heatmap"])
def test_estimator_output_is_decoded_into_frame_pixels(
    kind: str, wave_reference: ReferenceKeypoints, tmp_path: Path
) -> None:
    estimator = PoseEstimator(export_pose(tmp_path / f"{kind}.onnx", 133, kind))
    video = _dot_video(wave_reference, RIGHT_WRIST)
    points, scores = estimator.predict(video, wave_reference.boxes)
    assert points.shape == (20, 133, 2) and scores.shape == (20, 133)
    dots = wave_reference.points[:, RIGHT_WRIST].astype(int) + 0.5  # the dot pixels' centres
    # Within the estimator's resolution in frame pixels (the crop has about 3.4 input pixels
    # per frame pixel): a simcc bin is half an input pixel, a heatmap cell four.
    tolerance = 1.0 if kind == "simcc" else 1.5
    assert np.abs(points - dots[:, None]).max() <= tolerance
    assert scores.min() > 0.3


def test_lmd_of_a_known_prediction(wave_reference: ReferenceKeypoints, weights_dir: Path) -> None:
    """Every keypoint predicted on the right wrist: each group's LMD is the mean distance of
    its references to that wrist; the left hand is beyond 1.5 hand extents, so outliers."""
    config = EvalConfig(pose_onnx=weights_dir / "pose_simcc.onnx", lmd_outlier_factor=1.5)
    video = _dot_video(wave_reference, RIGHT_WRIST)
    report = Evaluator(config).evaluate(video, video, reference=wave_reference, metrics=["lmd"])
    dots = wave_reference.points[:, RIGHT_WRIST].astype(int) + 0.5
    distances = np.linalg.norm(wave_reference.points - dots[:, None], axis=-1)
    valid = wave_reference.valid
    lmd = report["details"]["lmd"]
    for group, indices in (("face", PARTS["face"]), ("body", PARTS["body"])):
        expected = distances[:, indices][valid[:, indices]].mean()
        assert report["metrics"][f"lmd_{group}"] == pytest.approx(expected, abs=1.0)
        assert lmd[group]["counted"] == valid[:, indices].sum() == lmd[group]["reference"]
        assert lmd[group]["outliers"] == 0 and lmd[group]["low_confidence"] == 0
    right = PARTS["right_hand"]
    expected_hands = distances[:, right][valid[:, right]].mean()
    assert report["metrics"]["lmd_hands"] == pytest.approx(expected_hands, abs=1.0)
    assert lmd["hands"]["counted"] == valid[:, right].sum()
    assert lmd["hands"]["outliers"] == valid[:, PARTS["left_hand"]].sum() > 0
    assert lmd["keypoints"] == 133 and "64x64" in lmd["units"]


def test_channel_order_reaches_the_network(
    wave_reference: ReferenceKeypoints, weights_dir: Path
) -> None:
    """A red dot is channel 0 in RGB order; in BGR order channel 0 is blue (no dot)."""
    video = _dot_video(wave_reference, RIGHT_WRIST, red_only=True)
    dots = wave_reference.points[:, RIGHT_WRIST].astype(int) + 0.5
    rgb = PoseEstimator(weights_dir / "pose_simcc.onnx", channel_order="rgb")
    bgr = PoseEstimator(weights_dir / "pose_simcc.onnx", channel_order="bgr")
    found = rgb.predict(video[:3], wave_reference.boxes[:3])[0][:, 0]
    missed = bgr.predict(video[:3], wave_reference.boxes[:3])[0][:, 0]
    assert np.abs(found - dots[:3]).max() < 1.5
    assert np.abs(missed - dots[:3]).max() > 5.0


def test_counting_rule_on_hand_made_keypoints() -> None:
    """Confidence threshold, per-hand outlier rule and pooled mean, with exact numbers."""
    points = np.zeros((1, 133, 2), dtype=np.float32)
    valid = np.zeros((1, 133), dtype=bool)
    for part, origin in (("body", 0.0), ("left_hand", 100.0), ("right_hand", 200.0)):
        indices = list(PARTS[part])[:3]
        points[0, indices] = [(origin, 0.0), (origin + 10.0, 0.0), (origin, 10.0)]
        valid[0, indices] = True
    reference = ReferenceKeypoints(points, valid, np.zeros((1, 4), np.float32), 300, 300)
    predicted = points.astype(np.float64).copy()
    scores = np.ones((1, 133))
    body = list(PARTS["body"])
    predicted[0, body[0]] += (3.0, 4.0)  # 5 px
    predicted[0, body[1]] += (100.0, 0.0)  # far, but the body has no outlier test
    scores[0, body[2]] = 0.1  # not confident: not counted
    left, right = list(PARTS["left_hand"]), list(PARTS["right_hand"])
    predicted[0, left[0]] += (6.0, 8.0)  # 10 px = the hand's extent: kept
    predicted[0, left[1]] += (0.0, 10.5)  # beyond 1 extent: an outlier
    predicted[0, right[0]] += (0.0, 2.0)
    result = landmark_mean_distance(predicted, scores, reference, 0.3, ["hands"], 1.0)
    assert result["body"].value == pytest.approx((5.0 + 100.0) / 2)
    assert (result["body"].counted, result["body"].low_confidence) == (2, 1)
    assert result["hands"].value == pytest.approx((10.0 + 0.0 + 2.0 + 0.0 + 0.0) / 5)
    assert (result["hands"].counted, result["hands"].outliers) == (5, 1)
    assert result["face"].value is None and result["face"].reference == 0
    everywhere = landmark_mean_distance(predicted, scores, reference, 0.3, ["body", "hands"], 1.0)
    assert everywhere["body"].value == pytest.approx(5.0) and everywhere["body"].outliers == 1


def test_a_body_only_estimator_reports_face_and_hands_as_skipped(
    wave_reference: ReferenceKeypoints, tmp_path: Path
) -> None:
    config = EvalConfig(pose_onnx=export_pose(tmp_path / "coco17.onnx", 17))
    video = _dot_video(wave_reference, RIGHT_WRIST)
    report = Evaluator(config).evaluate(video, video, reference=wave_reference, metrics=["lmd"])
    assert report["metrics"]["lmd_face"] is None and report["metrics"]["lmd_hands"] is None
    assert report["metrics"]["lmd_body"] is not None
    assert "17 keypoints" in report["details"]["lmd"]["face"]["skipped"]
    assert report["details"]["lmd"]["body"]["reference"] == wave_reference.valid[:, :17].sum()


def test_the_crop_puts_image_points_where_the_transform_says() -> None:
    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    frame[37, 23] = 255  # pixel centre (23.5, 37.5)
    transform = crop_transform(np.array([10.0, 5.0, 50.0, 55.0]), 192, 256, 1.25)
    crop = warp_crop(frame, transform)[0, 0].numpy()
    row, column = np.unravel_index(crop.argmax(), crop.shape)
    expected = transform.to_crop(np.array([23.5, 37.5]))
    assert abs(column + 0.5 - expected[0]) <= 1.0 and abs(row + 0.5 - expected[1]) <= 1.0
    np.testing.assert_allclose(transform.to_image(expected), [23.5, 37.5])
    assert transform.scale == pytest.approx(192 / (40 * 1.25))  # wide box: its width fits
    tall = crop_transform(np.array([10.0, 5.0, 30.0, 55.0]), 192, 256, 1.25)
    assert tall.scale == pytest.approx(256 / (50 * 1.25))  # tall box: its height fits


def test_pose_and_motion_errors_name_their_source(
    tmp_path: Path, wave_motion: Path, render_config: RenderConfig, weights_dir: Path
) -> None:
    with pytest.raises(WeightsError, match=r"eval.pose_onnx: .*absent\.onnx not found"):
        PoseEstimator(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match=r"eval\.pose_onnx: .*not a loadable ONNX model"):
        PoseEstimator(broken)
    odd = PoseEstimator(export_pose(tmp_path / "five.onnx", 5))
    with pytest.raises(WeightsError, match="5 keypoints; expected 133"):
        odd.predict(np.zeros((1, 32, 32, 3), np.uint8), np.array([[0.0, 0.0, 32.0, 32.0]]))
    evaluator = Evaluator(EvalConfig(pose_onnx=weights_dir / "pose_simcc.onnx"), render_config)
    video = np.zeros((25, 32, 32, 3), np.uint8)
    with pytest.raises(AnchorError, match="has 20 frames, the videos have 25"):
        evaluator.evaluate(video, video, motion=wave_motion, metrics=["lmd"])
    with pytest.raises(AnchorError, match="lmd: LMD needs the driving motion"):
        evaluator.evaluate(video, video, metrics=["lmd"])
    unset = Evaluator(EvalConfig(), render_config)
    with pytest.raises(AnchorError, match=r"lmd: eval\.pose_onnx is not set"):
        unset.evaluate(video, video, motion=wave_motion, metrics=["lmd"])
