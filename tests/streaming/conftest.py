"""Tiny real SGDM components shared by the streaming tests (built once per module)."""

from __future__ import annotations

import pytest
from stream_helpers import tiny_components

from model.components import Components


@pytest.fixture(scope="module")
def components() -> Components:
    """Tiny body denoiser + DDIM scheduler; the denoiser holds no state between calls."""
    return tiny_components()
