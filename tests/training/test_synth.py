"""The synthetic anchor: motion families and seeds, dataset contents, held-out split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.motion.readers import open_motion
from model.training.dataset import load_dataset, read_png
from model.training.synth_motion import (
    FAMILIES,
    HELDOUT_FAMILIES,
    heldout_seed,
    plan_motion,
    synth_motion,
)


def _poses(seconds: float, seed: int, heldout: bool = False) -> np.ndarray:
    frames = synth_motion(plan_motion(seconds, seed, heldout))
    return np.stack([frame.body_pose for frame in frames])


def test_motion_is_a_function_of_the_seed() -> None:
    assert np.array_equal(_poses(2.0, 3), _poses(2.0, 3))
    assert not np.allclose(_poses(2.0, 3), _poses(2.0, 4))


def test_heldout_plan_uses_a_family_training_never_sees() -> None:
    for seed in range(5):
        train = plan_motion(12.0, seed)
        heldout = plan_motion(12.0, heldout_seed(seed), heldout=True)
        assert set(train.families) <= set(FAMILIES)
        assert set(heldout.families) & set(HELDOUT_FAMILIES)
        assert heldout_seed(seed) != seed


def test_segments_cross_fade_without_jumps() -> None:
    poses = _poses(12.0, 1)  # three 4 s segments
    steps = np.abs(np.diff(poses, axis=0)).max()
    assert steps < 0.15  # radians per frame at 30 fps


def test_synth_dataset_has_both_splits_with_ground_truth(synth_root: Path) -> None:
    for split, count in (("train", 18), ("heldout", 12)):
        folder = synth_root / split
        header, entries = load_dataset(folder)
        assert header.frame_count == count == len(entries)
        assert header.extra["split"] == split
        assert len(open_motion(folder / "motion.npz")) == count
        assert (folder / "video.mp4").stat().st_size > 0
    train = json.loads((synth_root / "train" / "dataset.json").read_text())["extra"]
    heldout = json.loads((synth_root / "heldout" / "dataset.json").read_text())["extra"]
    assert train["motion_seed"] != heldout["motion_seed"]
    assert set(heldout["families"]) & set(HELDOUT_FAMILIES)
    assert not set(train["families"]) & set(HELDOUT_FAMILIES)


def test_synth_frame_is_the_dressed_figure_over_the_scene(synth_root: Path) -> None:
    folder = synth_root / "train"
    _, entries = load_dataset(folder)
    entry = entries[5]
    frame = read_png(folder / entry.frame).astype(np.float32)
    condition = read_png(folder / entry.condition).astype(np.float32)
    assert entry.foreground is not None
    foreground = read_png(folder / entry.foreground) > 127
    assert 0.05 < foreground.mean() < 0.6  # a figure, not an empty or full frame
    # Where the condition is black (no mesh), the frame shows the coloured scene.
    background = condition.sum(-1) == 0
    assert frame[background].mean() > 60
    # The figure is where the mesh is: coverage follows the condition render.
    mesh = condition.sum(-1) > 30
    assert (mesh & foreground).sum() > 0.8 * mesh.sum()
    # Colours differ from the uniform SHOW mesh colour: skin, shirt, trousers.
    assert frame[foreground].std(axis=0).mean() > 15


def test_synth_faces_and_masks(synth_root: Path) -> None:
    folder = synth_root / "train"
    _, entries = load_dataset(folder)
    face = read_png(folder / entries[0].face)
    mask = read_png(folder / entries[0].face_mask)
    assert face.shape == (32, 32, 3) and mask.shape == (32, 32)
    # Official convention: 255 keeps, 0 is the face region; the centre is regenerated.
    assert mask[16, 16] == 0 and mask[0, 0] == 255


def test_synth_refuses_to_mix_settings_in_one_folder(synth_root: Path, tmp_path: Path) -> None:
    import shutil

    import pytest

    from model.config import RenderConfig
    from model.errors import AnchorError
    from model.training.synth import SynthOptions, synth_dataset

    copy = tmp_path / "synth"
    shutil.copytree(synth_root, copy)
    options = SynthOptions(seconds=0.6, heldout_seconds=0.4, size=64, face_size=32, seed=9)
    with pytest.raises(AnchorError, match="other settings"):
        synth_dataset(copy, options, RenderConfig())
