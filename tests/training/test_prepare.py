"""``anchor prepare``: manifest, resumption, and clear errors for bad inputs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from model.config import RenderConfig
from model.errors import AnchorError
from model.motion.readers import open_motion, write_motion
from model.training.dataset import MANIFEST, load_dataset, read_png
from model.training.prepare import PrepareOptions, parse_crop, prepare_dataset

OPTIONS = PrepareOptions(size=64, face_size=32)


@pytest.fixture(scope="module")
def prepared(
    synth_root: Path, render_config: RenderConfig, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "dataset"
    train = synth_root / "train"
    prepare_dataset(train / "video.mp4", train / "motion.npz", out, OPTIONS, render_config)
    return out


def test_prepare_writes_a_valid_manifest(prepared: Path, synth_root: Path) -> None:
    header, entries = load_dataset(prepared)
    assert header.frame_count == 18 == len(entries)
    assert header.size == 64 and header.face_size == 32 and header.crop == (0, 0, 64)
    assert [entry.index for entry in entries] == list(range(18))
    for entry in entries:
        for relative in (
            entry.frame,
            entry.condition,
            *entry.perturbed,
            entry.face,
            entry.face_condition,
            entry.face_mask,
        ):
            assert (prepared / relative).is_file(), relative
        assert entry.references and entry.index not in entry.references
        assert np.asarray(entry.face_matrix).shape == (2, 3)
    # The frames are the video's (H.264 at 64 px: small differences).
    ours = read_png(prepared / entries[9].frame).astype(np.float32)
    truth = read_png(synth_root / "train" / "frames" / "000009.png").astype(np.float32)
    assert np.abs(ours - truth).mean() < 8.0
    # The condition shows the mesh where the ground-truth figure is.
    condition = read_png(prepared / entries[9].condition).sum(-1) > 30
    figure = read_png(synth_root / "train" / "foreground" / "000009.png") > 127
    assert (condition & figure).sum() > 0.8 * condition.sum()


def test_prepare_resumes_only_missing_frames(
    prepared: Path, synth_root: Path, render_config: RenderConfig, tmp_path: Path
) -> None:
    copy = tmp_path / "dataset"
    shutil.copytree(prepared, copy)
    lines = (copy / MANIFEST).read_text().splitlines(keepends=True)
    (copy / MANIFEST).write_text("".join(lines[:5]))
    (copy / "frames" / "000002.png").unlink()  # listed, but a file is gone
    train = synth_root / "train"
    written = prepare_dataset(
        train / "video.mp4", train / "motion.npz", copy, OPTIONS, render_config
    )
    assert written == 18 - 4
    _, entries = load_dataset(copy)
    assert len(entries) == 18
    again = prepare_dataset(train / "video.mp4", train / "motion.npz", copy, OPTIONS, render_config)
    assert again == 0


def test_mismatched_lengths_name_both_files(
    synth_root: Path, render_config: RenderConfig, tmp_path: Path
) -> None:
    train = synth_root / "train"
    short = tmp_path / "short.npz"
    write_motion(short, list(open_motion(train / "motion.npz"))[:15])
    with pytest.raises(AnchorError) as error:
        prepare_dataset(train / "video.mp4", short, tmp_path / "out", OPTIONS, render_config)
    message = str(error.value)
    assert "video.mp4" in message and "18 frames" in message
    assert "short.npz" in message and "15 frames" in message


def test_missing_and_corrupt_inputs_are_named(
    synth_root: Path, render_config: RenderConfig, tmp_path: Path
) -> None:
    motion = synth_root / "train" / "motion.npz"
    missing = tmp_path / "missing.mp4"
    with pytest.raises(AnchorError, match=r"missing\.mp4"):
        prepare_dataset(missing, motion, tmp_path / "a", OPTIONS, render_config)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(AnchorError, match=r"corrupt\.mp4"):
        prepare_dataset(corrupt, motion, tmp_path / "b", OPTIONS, render_config)
    video = synth_root / "train" / "video.mp4"
    with pytest.raises(AnchorError, match=r"nothing\.npz"):
        prepare_dataset(video, tmp_path / "nothing.npz", tmp_path / "c", OPTIONS, render_config)
    with pytest.raises(AnchorError, match=r"dataset\.json"):
        load_dataset(tmp_path)


def test_missing_foreground_mask_is_named(
    synth_root: Path, render_config: RenderConfig, tmp_path: Path
) -> None:
    train = synth_root / "train"
    masks = tmp_path / "masks"
    masks.mkdir()
    options = PrepareOptions(size=64, face_size=32, foreground=masks)
    with pytest.raises(AnchorError, match=r"masks/000000\.png"):
        prepare_dataset(
            train / "video.mp4", train / "motion.npz", tmp_path / "out", options, render_config
        )


def test_short_finetuning_video_warns(
    prepared: Path,
    caplog: pytest.LogCaptureFixture,
    synth_root: Path,
    render_config: RenderConfig,
) -> None:
    train = synth_root / "train"
    with caplog.at_level(logging.WARNING, logger="anchor.training.prepare"):
        prepare_dataset(train / "video.mp4", train / "motion.npz", prepared, OPTIONS, render_config)
    assert any("at least 60 s" in record.getMessage() for record in caplog.records)


def test_crop_is_parsed_and_checked() -> None:
    assert parse_crop("10,20,300") == (10, 20, 300)
    with pytest.raises(AnchorError, match="--crop"):
        parse_crop("10,20")
