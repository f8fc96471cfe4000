"""Face geometry without a mesh: MTCNN on condition renders, smoothing, hold and skip."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.cli import main
from model.config import FaceConfig, RenderConfig
from model.face_detector import FaceDetector, packaged_weights
from model.face_parsing import BiSeNet
from model.motion.conditions import render_motion_conditions
from streaming.face_stage import FaceStage
from streaming.face_tracking import FaceTrack, detected_face_geometries
from streaming.frames import CommittedFrame, DeferredFace, FaceGeometry

CLIP = Path(__file__).resolve().parents[2] / "clients" / "samples" / "wave_talkshow.npy"
POINTS = np.array([[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]], dtype=np.float32)


def test_a_miss_keeps_the_last_points_up_to_hold_frames_then_skips() -> None:
    track = FaceTrack(smoothing=0.0, hold_frames=2)
    outputs = [track.update(found) for found in (POINTS, None, None, None, POINTS + 1)]
    assert len(outputs) == 5  # one answer per frame: nothing shifted or dropped
    assert outputs[3] is None  # the third miss in a row: no enhancement for this frame
    expected = [POINTS, POINTS, POINTS, None, POINTS + 1]
    for output, wanted in zip(outputs, expected, strict=True):
        assert (output is None) == (wanted is None)
        if output is not None and wanted is not None:
            assert np.array_equal(output, wanted)
    assert track.detection_rate == 2 / 5
    assert FaceTrack().update(None) is None  # nothing to hold yet


def test_points_are_smoothed_over_time() -> None:
    track = FaceTrack(smoothing=0.75, hold_frames=0)
    track.update(POINTS)
    moved = track.update(POINTS + 8.0)
    assert moved is not None and np.allclose(moved, POINTS + 2.0)
    nan_points = POINTS.copy()
    nan_points[0, 0] = np.nan
    assert track.update(nan_points) is None  # a partial detection is a miss


@pytest.fixture(scope="module")
def clip_renders(standin_cache: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The bundled clip rendered by our own renderer at 512 px (the authors' condition
    size): (N, 3, 512, 512) [0, 1] and the mesh's own (N, 5, 2) FFHQ points."""
    config = RenderConfig(standin_path=standin_cache)
    windows = list(render_motion_conditions(CLIP, config, window=30))
    images = np.concatenate([window.images for window in windows])
    points = np.concatenate([window.face_points for window in windows])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0, points


@pytest.mark.slow
def test_mtcnn_finds_the_face_in_our_condition_renders(
    clip_renders: tuple[torch.Tensor, np.ndarray],
) -> None:
    """Faces in >= 90% of the bundled clip's frames, where the mesh puts them."""
    renders, mesh_points = clip_renders
    assert (packaged_weights() / "onet.pt").is_file()
    found, scores = FaceDetector(thresholds=FaceConfig().detector_thresholds).detect(renders)
    hit = np.asarray(np.isfinite(found).all(axis=(1, 2)), dtype=bool)
    assert hit.mean() >= 0.9, f"faces found in {hit.mean():.0%} of {len(hit)} frames"
    assert (scores[hit] > 0).all()
    eye_distance = np.linalg.norm(mesh_points[:, 1] - mesh_points[:, 0], axis=1)
    error = np.linalg.norm(found[hit] - mesh_points[hit], axis=2).mean(axis=1)
    assert np.median(error / eye_distance[hit]) < 0.35


def test_geometry_for_every_frame_in_order(clip_renders: tuple[torch.Tensor, np.ndarray]) -> None:
    renders = clip_renders[0][:6]
    geometries, track = detected_face_geometries(renders, FaceConfig(size=64))
    assert len(geometries) == 6 and track.frames == 6
    present = [geometry for geometry in geometries if isinstance(geometry, FaceGeometry)]
    assert present, "no face geometry at all"
    geometry = present[0]
    assert geometry.mesh_crop.shape == (3, 64, 64) and geometry.keep_mask.shape == (1, 64, 64)
    assert geometry.image_size == (512, 512)
    # The regenerated region (mask 0) is the middle of the aligned crop, not its border.
    assert geometry.keep_mask[0, 32, 32] == 0.0 and geometry.keep_mask[0, 0, 0] == 1.0


@pytest.mark.slow
def test_generate_runs_the_face_stage_on_a_condition_folder(
    clip_renders: tuple[torch.Tensor, np.ndarray],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``anchor generate CONDITION_DIR`` (the authors' %06d.png layout) finds the faces,
    logs the detection rate and enhances them."""
    folder = tmp_path / "conditions"
    folder.mkdir()
    for index, render in enumerate(clip_renders[0][:4]):
        array = (render.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{index + 1:06d}.png")
    settings = ["model.preset=tiny", "model.image_size=128", "face.size=32", "face.steps=1"]
    overrides = [item for setting in settings for item in ("--set", setting)]
    run = ["generate", str(folder), "--steps", "1"]
    with caplog.at_level(logging.INFO, logger="anchor.face"):
        assert main([*overrides, *run, "--out", str(tmp_path / "face")]) == 0
    assert "face detection: 4 of 4 condition images (100%)" in caplog.text
    off = [*overrides, "--set", "face.enabled=false"]
    assert main([*off, *run, "--out", str(tmp_path / "plain")]) == 0
    names = sorted(path.name for path in (tmp_path / "face").iterdir())
    assert names == ["000001.png", "000002.png", "000003.png", "000004.png"]
    changed = 0
    for name in names:
        face = np.asarray(Image.open(tmp_path / "face" / name), dtype=np.int16)
        plain = np.asarray(Image.open(tmp_path / "plain" / name), dtype=np.int16)
        assert face.shape == plain.shape == (128, 128, 3)
        changed += int(np.abs(face - plain).max() > 0)
    assert changed == 4  # every frame's face was enhanced


def test_generate_with_the_authors_face_options(
    clip_renders: tuple[torch.Tensor, np.ndarray], tmp_path: Path
) -> None:
    """BiSeNet mask (a tiny random network in the published layout), sampled masked
    latent, the authors' blend and crops aligned at twice the face size run through the
    face stage on a condition folder."""
    folder = tmp_path / "conditions"
    folder.mkdir()
    for index, render in enumerate(clip_renders[0][:2]):
        array = (render.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{index:06d}.png")
    torch.manual_seed(0)
    weights = tmp_path / "parsing.pth"
    torch.save(BiSeNet(base=8).state_dict(), weights)
    base = ["model.preset=tiny", "model.image_size=128", "face.size=32", "face.steps=1"]
    authors = [f"face.parsing_weights={weights}", "face.masked_latent=sample",
               "face.blend=authors", "face.align_size=64"]  # fmt: skip
    outputs = {}
    for name, settings in (("default", base), ("authors", base + authors)):
        overrides = [item for setting in settings for item in ("--set", setting)]
        out = tmp_path / name
        assert main([*overrides, "generate", str(folder), "--steps", "1", "--out", str(out)]) == 0
        outputs[name] = np.asarray(Image.open(out / "000000.png"), dtype=np.int16)
    assert np.abs(outputs["default"] - outputs["authors"]).max() > 0


def test_a_face_missed_on_the_render_is_searched_on_the_generated_frame(
    clip_renders: tuple[torch.Tensor, np.ndarray],
) -> None:
    """DeferredFace frames: found on the generated image -> enhanced; not found -> the
    frame passes unchanged; every frame comes out, in order."""
    from model.components import build_components
    from model.config import ModelConfig, SamplerConfig

    face = FaceConfig(size=64, steps=1)
    model = ModelConfig(preset="tiny", device="cpu", image_size=64)
    enhancer = build_components(model, SamplerConfig(steps=1), face).face
    assert enhancer is not None
    stage = FaceStage(enhancer, face)
    render = clip_renders[0][0]
    blank = torch.zeros_like(render)
    frames = [
        CommittedFrame(
            seq=seq,
            pts=seq / 30,
            epoch=0,
            position=seq,
            latent=torch.zeros(4, 8, 8),
            image=image.clone(),
            face=DeferredFace(render),
        )
        for seq, image in enumerate((render, blank))
    ]
    out = stage.enhance(frames)
    assert [frame.seq for frame in out] == [0, 1]
    assert isinstance(out[0].face, FaceGeometry) and stage.fallback_found == 1
    assert out[0].image is not None and (out[0].image - render).abs().max() > 0
    assert out[1].face is None and out[1].image is not None
    assert torch.equal(out[1].image, blank)
