"""``anchor generate`` end to end on the tiny preset: condition folders and motion files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from app.cli import main
from model.video_io import read_condition_folder, to_uint8

# The tiny random networks: these tests check the command, not a model's output.
TINY = ["--set", "model.preset=tiny"]


@pytest.fixture
def condition_folder(tmp_path: Path) -> Path:
    """Six 48x48 condition images named %06d.png from 000001 (resized to 64 by generate)."""
    folder = tmp_path / "conditions"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(1, 7):
        array = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        Image.fromarray(array).save(folder / f"{index:06d}.png")
    (folder / "notes.txt").write_text("ignored: not a frame")
    return folder


def test_generate_writes_a_playable_mp4(condition_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "video.mp4"
    code = main(
        [*TINY, "generate", str(condition_folder), "--out", str(out), "--steps", "2", "--seed", "3"]
    )
    assert code == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3)


def test_generate_writes_lossless_png_frames(condition_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    args = [
        *TINY,
        "generate",
        str(condition_folder),
        "--out",
        str(out),
        "--steps",
        "1",
        "--frames",
        "4",
    ]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    # The input's frame names (numbered from 000001 there) are kept.
    assert names == ["000001.png", "000002.png", "000003.png", "000004.png"]
    assert np.asarray(Image.open(out / "000001.png")).shape == (64, 64, 3)
    again = tmp_path / "again"
    assert main([*args[:5], str(again), *args[6:]]) == 0
    for name in names:  # same seed, same frames
        assert np.array_equal(
            np.asarray(Image.open(out / name)), np.asarray(Image.open(again / name))
        )


def test_condition_images_are_resized_with_lanczos(condition_folder: Path) -> None:
    images = read_condition_folder(condition_folder, 64, frames=2)
    source = Image.open(condition_folder / "000002.png").convert("RGB")
    expected = np.asarray(source.resize((64, 64), Image.Resampling.LANCZOS))
    assert images.shape == (2, 3, 64, 64)
    assert np.array_equal(to_uint8(images)[1], expected)


def test_generate_errors_name_the_problem(
    condition_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main([*TINY, "generate", str(tmp_path / "missing"), "--out", str(tmp_path / "x.mp4")]) == 1
    )
    assert "input folder not found" in capsys.readouterr().err
    args = [
        *TINY,
        "generate",
        str(condition_folder),
        "--out",
        str(tmp_path / "x.mp4"),
        "--frames",
        "9",
    ]
    assert main(args) == 1
    assert "--frames 9" in capsys.readouterr().err


def test_generate_reference_image_sets_the_appearance(
    condition_folder: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.png"
    Image.fromarray(np.full((80, 60, 3), (200, 40, 40), dtype=np.uint8)).save(reference)
    base = [*TINY, "generate", str(condition_folder), "--steps", "1", "--frames", "2"]
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    assert main([*base, "--out", str(tmp_path / "red"), "--reference", str(reference)]) == 0
    default = np.asarray(Image.open(tmp_path / "default" / "000001.png"), dtype=np.int16)
    red = np.asarray(Image.open(tmp_path / "red" / "000001.png"), dtype=np.int16)
    assert np.abs(default - red).max() > 0


@pytest.mark.parametrize("mode", ["offline", "low"])
def test_generate_from_a_motion_file_renders_and_enhances_faces(
    standin_cache: Path, tmp_path: Path, mode: str
) -> None:
    motion = Path(__file__).resolve().parents[2] / "clients" / "samples" / "wave_talkshow.npy"
    out = tmp_path / "frames"
    settings = [
        "model.preset=tiny",
        f"render.standin_path={standin_cache}",
        "render.width=96",
        "render.height=96",
        "face.size=32",
        "face.steps=1",
    ]
    overrides = [item for setting in settings for item in ("--set", setting)]
    args = ["generate", str(motion), "--out", str(out), "--steps", "1", "--frames", "5"]
    assert main([*overrides, *args, "--mode", mode]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{index:06d}.png" for index in range(5)]
    without_face = tmp_path / "plain"
    plain_args = [*args[:3], str(without_face), *args[4:]]
    assert main([*overrides, "--set", "face.enabled=false", *plain_args, "--mode", mode]) == 0
    enhanced = np.asarray(Image.open(out / "000002.png"), dtype=np.int16)
    plain = np.asarray(Image.open(without_face / "000002.png"), dtype=np.int16)
    changed = np.abs(enhanced - plain).max(axis=2) > 2
    # The face stage repainted the face region only, not the whole frame.
    assert changed.any() and changed.mean() < 0.5


def test_generate_without_config_runs_the_demo_bundle(standin_cache: Path, tmp_path: Path) -> None:
    """A fresh clone's `anchor generate SAMPLE --out OUT` renders the demo anchor: the same
    frames as with configs/demo.toml, at the bundle's 128 px (not tiny random noise)."""
    root = Path(__file__).resolve().parents[2]
    motion = root / "clients" / "samples" / "wave_talkshow.npy"
    standin = ["--set", f"render.standin_path={standin_cache}"]
    args = ["generate", str(motion), "--frames", "6", "--steps", "1"]
    assert main([*standin, *args, "--out", str(tmp_path / "default")]) == 0
    demo = ["--config", str(root / "configs" / "demo.toml"), *standin]
    assert main([*demo, *args, "--out", str(tmp_path / "demo")]) == 0
    names = sorted(p.name for p in (tmp_path / "default").iterdir())
    assert len(names) == 6
    for name in names:
        default = np.asarray(Image.open(tmp_path / "default" / name))
        assert default.shape == (128, 128, 3)
        assert np.array_equal(default, np.asarray(Image.open(tmp_path / "demo" / name)))
