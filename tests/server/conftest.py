"""Fixtures of the server tests (helpers live in serverkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serverkit import tiny_config

from app.config import AppConfig


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return tiny_config(tmp_path)
