"""``anchor prepare``: face crops aligned on the face detector's points where the mesh
gives no face geometry (or everywhere, ``face_geometry="detector"``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main
from model.config import RenderConfig
from model.face_geometry import alignment_matrices, crop_faces, ffhq_template
from model.motion.conditions import render_motion_conditions
from model.motion.readers import open_motion, write_motion
from model.training.dataset import load_dataset, read_png
from model.training.prepare import PrepareOptions, _FaceSource, prepare_dataset, read_frames
from model.training.writer import face_samples
from model.video_io import write_mp4

CLIP = Path(__file__).resolve().parents[2] / "clients" / "samples" / "wave_talkshow.npy"
FRAMES = 3


@pytest.fixture(scope="module")
def face_video(
    render_config: RenderConfig, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """A tiny synthetic video: 3 frames of the bundled clip rendered by our renderer at
    512 px (a face MTCNN finds), its motion file, the frames (N, 512, 512, 3) uint8, the
    face's (N, 5, 2) FFHQ points and (N, 51, 2) landmarks in the video's pixels."""
    folder = tmp_path_factory.mktemp("face-video")
    clip = open_motion(CLIP, fps=30.0)
    write_motion(folder / "motion.npz", list(clip.frames(0, FRAMES)), 30.0, clip.settings)
    (window,) = render_motion_conditions(folder / "motion.npz", render_config, window=FRAMES)
    frames = torch.from_numpy(window.images).permute(0, 3, 1, 2).float() / 255.0
    write_mp4(frames, folder / "video.mp4", 30.0)
    return folder, window.images, window.face_points, window.landmarks


def test_detector_aligns_the_crops_on_the_face_of_the_video(
    face_video: tuple[Path, np.ndarray, np.ndarray, np.ndarray],
    render_config: RenderConfig,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder, _, points, _ = face_video
    options = PrepareOptions(size=512, face_size=64, perturbations=0, face_geometry="detector")
    with caplog.at_level(logging.INFO, logger="anchor.training.prepare"):
        written = prepare_dataset(
            folder / "video.mp4", folder / "motion.npz", tmp_path / "data", options, render_config
        )
    assert written == FRAMES
    assert f"face detection: {FRAMES} of {FRAMES} frames (100%)" in caplog.text
    _, entries = load_dataset(tmp_path / "data")
    for entry, face_points in zip(entries, points, strict=True):
        matrix = np.asarray(entry.face_matrix, dtype=np.float32)
        in_crop = face_points @ matrix[:, :2].T + matrix[:, 2]
        # The video's face lands on the template (MTCNN's points on a stylised render: eyes
        # and nose within 3 of the crop's 64 pixels, the mouth corners looser).
        error = np.abs(in_crop - ffhq_template(64))
        assert error[:3].max() < 3.0 and error.max() < 8.0 and error.mean() < 2.5


def test_auto_asks_the_detector_only_where_the_mesh_has_no_face(
    face_video: tuple[Path, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    _, frames, points, landmarks = face_video
    off_frame = landmarks.copy()
    off_frame[1] += 5000.0  # the mesh's face far outside the frame
    source = _FaceSource("auto", None, (0.1, 0.1, 0.1))
    assert source.points(frames, landmarks) is None and source.asked == 0
    detected = source.points(frames, off_frame)
    assert detected is not None and source.asked == 1 and source.found == 1
    assert np.isnan(detected[[0, 2]]).all()
    assert np.abs(detected[1] - points[1]).max() < 12.0  # the face in the video
    assert _FaceSource("mesh", None, (0.1, 0.1, 0.1)).points(frames, off_frame) is None
    # Rows with detected points are aligned on them, the others on the mesh, unchanged.
    conditions = frames.copy()
    mesh = face_samples(frames, conditions, landmarks, 32)
    mixed = face_samples(frames, conditions, landmarks, 32, detected=detected)
    for index in (0, 2):
        assert np.array_equal(mixed[3][index], mesh[3][index])
        assert np.array_equal(mixed[2][index], mesh[2][index])
    expected = alignment_matrices(detected[1:2], 32)[0]
    assert np.allclose(mixed[3][1], expected, atol=1e-5)
    # The five points' grown hull: the regenerated region is the middle of the crop.
    assert mixed[2][1][16, 16] == 0 and mixed[2][1][0, 0] == 255


def test_cli_face_geometry_and_align_size(
    face_video: tuple[Path, np.ndarray, np.ndarray, np.ndarray],
    render_config: RenderConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``anchor prepare --face-geometry detector`` with ``face.align_size``: crops aligned
    at 128 and resized to 64, the matrices still image -> 64-pixel crop."""
    folder, _, points, _ = face_video
    out = tmp_path / "data"
    code = main(
        ["--set", f"render.standin_path={render_config.standin_path}",
         "--set", "face.align_size=128", "prepare", str(folder / "video.mp4"),
         "--motion", str(folder / "motion.npz"), "--out", str(out), "--size", "512",
         "--face-size", "64", "--perturbations", "0", "--face-geometry", "detector"]
    )  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out)["written"] == FRAMES
    _, entries = load_dataset(out)
    matrix = np.asarray(entries[0].face_matrix, dtype=np.float32)
    face = read_png(out / entries[0].face).astype(np.float32)
    decoded = next(read_frames(folder / "video.mp4", 30.0, (0, 0, 512), 512))
    image = torch.from_numpy(decoded[None].copy()).permute(0, 3, 1, 2).float() / 255.0
    aligned = crop_faces(image, matrix[None], 64, align_size=128)[0].permute(1, 2, 0) * 255
    direct = crop_faces(image, matrix[None], 64)[0].permute(1, 2, 0) * 255
    # The written crop is the 128 alignment halved (up to PNG rounding), not a 64 warp.
    assert face.shape == (64, 64, 3)
    assert np.abs(face - aligned.numpy()).max() <= 0.51
    assert np.abs(face - direct.numpy()).max() > 2.0
    in_crop = points[0] @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(in_crop - (ffhq_template(128) + 0.5) / 2 + 0.5).mean() < 2.5
