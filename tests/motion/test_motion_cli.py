"""The motion CLI commands end to end, and the torch-free layering of the wire modules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from app.cli import main
from model.motion.samples import wave_clip


def test_server_side_modules_do_not_import_torch() -> None:
    code = (
        "import sys, model.motion, model.motion.wire, model.motion.readers, "
        "app.commands.motion; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_standin_and_render_commands(tmp_path: Path, standin_cache: Path) -> None:
    assert main(["standin-smplx", "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "smplx" / "SMPLX_NEUTRAL.npz").is_file()
    np.save(tmp_path / "wave.npy", wave_clip(seconds=0.2))
    overrides = [
        "--set", f"render.standin_path={standin_cache}",
        "--set", "render.width=128", "--set", "render.height=128",
    ]  # fmt: skip
    out = tmp_path / "frames"
    assert main([*overrides, "render", str(tmp_path / "wave.npy"), "--out", str(out)]) == 0
    names = sorted(path.name for path in out.iterdir())
    assert names == [f"{index:06d}.png" for index in range(6)]
    image = np.asarray(Image.open(out / "000000.png"))
    assert image.shape == (128, 128, 3) and (image.max(axis=-1) > 10).mean() > 0.05


def test_bundled_sample_is_the_generated_clip() -> None:
    bundled = np.load(Path(__file__).parents[2] / "clients" / "samples" / "wave_talkshow.npy")
    np.testing.assert_array_equal(bundled, wave_clip())
