"""Fixtures for the training tests: a small synthetic anchor dataset, made once.

Training tests run torch on one thread: on a shared 2-core machine, OpenMP threads
that outnumber free cores make tiny models an order of magnitude slower.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model.config import RenderConfig


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def render_config(standin_cache: Path) -> RenderConfig:
    return RenderConfig(standin_path=standin_cache)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory, render_config: RenderConfig) -> Path:
    """``anchor synth-dataset`` output at 64 px: train (18 frames) and heldout (12)."""
    from model.training.synth import SynthOptions, synth_dataset

    root = tmp_path_factory.mktemp("synth")
    options = SynthOptions(seconds=0.6, heldout_seconds=0.4, size=64, face_size=32)
    synth_dataset(root, options, render_config)
    return root
