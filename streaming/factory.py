"""The configured ``PipelineFactory``: the in-process model worker or Ray session actors."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streaming.config import PipelineConfig
    from streaming.pipeline import PipelineFactory


def load_pipeline_factory(config: PipelineConfig) -> PipelineFactory:
    """The configured factory: with ``cluster.ray_address`` set, session workers run as Ray
    actors (``streaming.ray_pipeline``, torch-free here); otherwise the in-process model
    worker thread starts (imports torch)."""
    if config.cluster.ray_address is not None:
        from streaming.ray_pipeline import RayPipelineFactory

        return RayPipelineFactory(config)
    from streaming.worker import WorkerPipelineFactory

    return WorkerPipelineFactory(config)
