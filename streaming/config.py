"""Configuration sections owned by the streaming layer (torch-free pydantic).

``PipelineConfig`` is everything a session pipeline needs: the model layer's sections
(model, sampler, face, render) plus streaming's own ``worker`` and ``cluster``. The
composition root (``app.config``) builds it from the whole configuration and hands it
down; nothing here knows about the network edge.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from model.config import FaceConfig, ModelConfig, RenderConfig, SamplerConfig, Section


class WorkerConfig(Section):
    """The live model worker of each server process."""

    # Render-stage threads per session (mesh renders are independent per frame).
    render_threads: int = Field(1, ge=1)


class ClusterConfig(Section):
    """Session workers on a Ray cluster (``streaming.ray_pipeline``).

    With ``ray_address`` set, each session's model worker (render, sampler, decode, face)
    runs in its own Ray actor holding ``num_gpus`` and ``num_cpus``; the server keeps the
    network edges and streams frames to and from the actor.
    """

    # None = the in-process model worker (default); "local" = start a Ray instance in this
    # process for a try-out; "auto", "HOST:PORT" or "ray://HOST:PORT" = join that cluster.
    ray_address: str | None = None
    # Ray namespace of the session actors.
    namespace: str = "anchor"
    # Resources each session's actor requests: a whole or fractional GPU, and CPUs.
    num_gpus: float = Field(0.0, ge=0.0)
    num_cpus: float = Field(1.0, ge=0.0)
    # Session workers this server runs at once; 0 = as many as the cluster's free resources allow.
    max_workers: int = Field(0, ge=0)
    # A session whose actor is not placed and loaded within this many seconds fails.
    placement_timeout_s: float = Field(120.0, gt=0.0)
    # Environment variables set in every session actor (Ray runtime_env; no code upload:
    # the workers must have the project installed).
    env: dict[str, str] = Field(default_factory=dict)


class IdentityConfig(Section):
    """One avatar identity a session can ``start`` with; None fields = the model section's."""

    # Make-Your-Anchor checkpoint folder of this identity; None = model.checkpoint_path.
    checkpoint_path: Path | None = None
    # Reference appearance image; None = model.reference_image (or the preset's own).
    reference_image: Path | None = None


class PipelineConfig(Section):
    """What a session pipeline is built from: the model sections plus the worker's."""

    model: ModelConfig = ModelConfig()
    sampler: SamplerConfig = SamplerConfig()
    face: FaceConfig = FaceConfig()
    render: RenderConfig = RenderConfig()
    worker: WorkerConfig = WorkerConfig()
    cluster: ClusterConfig = ClusterConfig()

    def identity_model(self, identity: IdentityConfig | None) -> ModelConfig:
        """The model section with ``identity``'s checkpoint and reference image over it."""
        if identity is None:
            return self.model
        updates = {
            name: value
            for name, value in (
                ("checkpoint_path", identity.checkpoint_path),
                ("reference_image", identity.reference_image),
            )
            if value is not None
        }
        return self.model.model_copy(update=updates)
