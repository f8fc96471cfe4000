"""``model.threads`` sets the model process's torch thread budget once, at start-up."""

from __future__ import annotations

from pathlib import Path

import torch

from app.config import load_config
from streaming.config import PipelineConfig
from streaming.worker import WorkerPipelineFactory


def test_worker_factory_applies_the_thread_budget(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    config = load_config(None, ["model.threads=1", "face.enabled=false"], environ={})
    try:
        factory = WorkerPipelineFactory(config.pipeline)
        try:
            assert torch.get_num_threads() == 1
        finally:
            factory.close()
    finally:
        torch.set_num_threads(before)


def test_no_thread_budget_leaves_torch_alone() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        factory = WorkerPipelineFactory(PipelineConfig())  # model.threads unset
        factory.close()
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
