"""Fixtures of the audio-to-motion tests (helpers live in a2m_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from a2m_helpers import synthesize


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 6 s of espeak-ng speech at 16 kHz with 0.5 s silence before and 1 s after."""
    return synthesize(Path(tmp_path_factory.mktemp("speech")) / "speech.wav")
