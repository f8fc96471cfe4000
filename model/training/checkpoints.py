"""Checkpoint folders of a training run: ``OUT/checkpoint-NNNNNN``.

Each holds the networks in the official ``save_pretrained`` layout, ``state/``
(accelerate: optimizer, LR schedule, RNG, EMA, the step counter) and ``training.json``.
``training.json`` is written last: a folder without it is incomplete and never resumed
from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_META = "training.json"


class StepCounter:
    """The resumable step counter (registered with accelerate's checkpointing)."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def checkpoint_folder(out: Path, step: int) -> Path:
    """``OUT/checkpoint-NNNNNN`` of ``step``."""
    return out / f"{CHECKPOINT_PREFIX}{step:06d}"


def is_complete(folder: Path) -> bool:
    """Whether the checkpoint's ``training.json`` was written (see the module docstring)."""
    return (folder / TRAINING_META).is_file()


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete ``OUT/checkpoint-*``."""
    found = sorted(p for p in out.glob(f"{CHECKPOINT_PREFIX}*") if is_complete(p))
    return found[-1] if found else None


def complete_checkpoint(folder: Path, meta: dict[str, Any]) -> None:
    """Writes ``training.json``: call once everything else of the checkpoint is written."""
    (folder / TRAINING_META).write_text(json.dumps(meta, indent=2) + "\n")


def prune_checkpoints(out: Path, kept: int) -> None:
    """Removes all but the ``kept`` newest ``OUT/checkpoint-*`` folders."""
    found = sorted(out.glob(f"{CHECKPOINT_PREFIX}*"))
    for old in found[:-kept]:
        shutil.rmtree(old, ignore_errors=True)
