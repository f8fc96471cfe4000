"""Fixtures of the client tests: the server tests' tiny in-process server and espeak speech.

Reuses ``tests/server/serverkit.py`` and ``tests/audio2motion/a2m_helpers.py`` (test folders
are not packages, so their folders go on sys.path here).
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _folder in ("server", "audio2motion"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))
