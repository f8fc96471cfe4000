"""Tiny real SGDM components shared by the streaming tests (built once per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from stream_helpers import tiny_components

from model.placement import Components


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread() -> Iterator[None]:
    """The tiny networks gain nothing from a second thread, and on a busy 2-core machine
    OpenMP's spinning threads make them 40x slower; restored after each module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def components() -> Components:
    """Tiny body denoiser + DDIM scheduler; the denoiser holds no state between calls."""
    return tiny_components()
