"""Fixtures for the evaluation tests: stand-in weight files and the SMPL-X stand-in.

The weight files are tiny networks made at test time (see eval_helpers): the real
pretrained ones cannot be downloaded here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import TinyImageFeatures, TinyVideoFeatures, export_pose, tiny_lpips_state

from model.config import RenderConfig


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("eval_weights")
    torch.save(tiny_lpips_state(), folder / "lpips_alex.pth")
    torch.jit.script(TinyImageFeatures()).save(str(folder / "fid.pt"))
    torch.jit.script(TinyVideoFeatures()).save(str(folder / "fvd.pt"))
    export_pose(folder / "pose_simcc.onnx", 133, "simcc")
    return folder


@pytest.fixture(scope="session")
def render_config(standin_cache: Path) -> RenderConfig:
    return RenderConfig(standin_path=standin_cache, framing="full", width=128, height=128)


@pytest.fixture(scope="session")
def wave_motion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-frame TalkSHOW clip (the bundled wave, shortened)."""
    from model.motion.samples import wave_clip

    path = tmp_path_factory.mktemp("motion") / "wave.npy"
    np.save(path, wave_clip(seconds=20 / 30.0))
    return path
