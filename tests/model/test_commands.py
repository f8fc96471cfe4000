"""``anchor generate`` and ``anchor bench model`` end to end on the tiny preset."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from server.cli import main


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
        ["generate", str(condition_folder), "--out", str(out), "--steps", "2", "--seed", "3"]
    )
    assert code == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3)


def test_generate_writes_lossless_png_frames(condition_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    args = ["generate", str(condition_folder), "--out", str(out), "--steps", "1", "--frames", "4"]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["000000.png", "000001.png", "000002.png", "000003.png"]
    assert np.asarray(Image.open(out / "000000.png")).shape == (64, 64, 3)
    again = tmp_path / "again"
    assert main([*args[:3], str(again), *args[4:]]) == 0
    for name in names:  # same seed, same frames
        assert np.array_equal(
            np.asarray(Image.open(out / name)), np.asarray(Image.open(again / name))
        )


def test_generate_errors_name_the_problem(
    condition_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", str(tmp_path / "missing"), "--out", str(tmp_path / "x.mp4")]) == 1
    assert "input folder not found" in capsys.readouterr().err
    args = ["generate", str(condition_folder), "--out", str(tmp_path / "x.mp4"), "--frames", "9"]
    assert main(args) == 1
    assert "--frames 9" in capsys.readouterr().err


def test_bench_model_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "model", "--json", "--latent-sizes", "2", "--repeats", "1"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["results"]
    assert {(r["attention"], r["cached_conditioning"]) for r in rows} == {
        (mode, cached) for mode in ("all-frame", "per-frame", "sparse") for cached in (True, False)
    }
    assert all(r["latent_size"] == 2 and r["ms_per_call"] > 0 for r in rows)


def test_generate_reference_image_sets_the_appearance(
    condition_folder: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.png"
    Image.fromarray(np.full((80, 60, 3), (200, 40, 40), dtype=np.uint8)).save(reference)
    base = ["generate", str(condition_folder), "--steps", "1", "--frames", "2"]
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    assert main([*base, "--out", str(tmp_path / "red"), "--reference", str(reference)]) == 0
    default = np.asarray(Image.open(tmp_path / "default" / "000000.png"), dtype=np.int16)
    red = np.asarray(Image.open(tmp_path / "red" / "000000.png"), dtype=np.int16)
    assert np.abs(default - red).max() > 0
