"""Fixtures with tiny real SGDM components (CPU, float32, seeded)."""

from __future__ import annotations

import pytest
from sgdm_helpers import tiny_components

from model.sgdm import SGDMDenoiser


@pytest.fixture
def denoiser() -> SGDMDenoiser:
    """A fresh tiny body denoiser: all-frame attention, CFG 7.5, cached conditioning."""
    return tiny_components().denoiser
