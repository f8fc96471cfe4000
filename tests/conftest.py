"""Fixtures every test package shares.

The SMPL-X stand-in (``model.standin``) is generated once per test run into a tmp
folder: the licensed SMPL-X model cannot be part of the repository or of CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def standin_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.standin import ensure_standin

    cache = tmp_path_factory.mktemp("standin")
    ensure_standin(cache)
    return cache
