"""``TrainConfig``: the ``[train]`` configuration section (torch-free, like model/config.py).

Defaults are the paper's (AdamW lr 1e-5, weight decay 1e-2, batch 4) plus this project's
additions: condition dropout (a trained null input for classifier-free guidance),
perturbed-condition probability, gradient clipping, EMA and mixed precision.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from model.config import Section

MixedPrecision = Literal["auto", "no", "fp16", "bf16"]


class TrainConfig(Section):
    """Training hyper-parameters shared by ``anchor train body|face|vae``."""

    learning_rate: float = Field(1e-5, gt=0.0)
    weight_decay: float = Field(1e-2, ge=0.0)
    batch_size: int = Field(4, ge=1)  # per process
    steps: int = Field(10_000, ge=1)
    warmup_steps: int = Field(0, ge=0)
    # Probability of replacing the appearance tokens with the null embedding.
    condition_dropout: float = Field(0.1, ge=0.0, le=1.0)
    # Probability of training on a perturbed-parameter render instead of the clean one.
    perturbation_probability: float = Field(0.5, ge=0.0, le=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    ema: bool = False
    ema_decay: float = Field(0.9999, gt=0.0, lt=1.0)
    # "auto": fp16 on CUDA, full precision on the CPU.
    mixed_precision: MixedPrecision = "auto"
    checkpoint_every: int = Field(500, ge=1)
    checkpoints_kept: int = Field(3, ge=1)
    validate_every: int = Field(500, ge=1)
    validation_samples: int = Field(4, ge=1)
    validation_steps: int = Field(10, ge=1)  # DDIM steps of the validation renders
    seed: int = 0
    workers: int = Field(0, ge=0)  # DataLoader worker processes
    # Stage 1 with foreground masks: train on the person only (the paper), background black.
    foreground_only: bool = True
    # Autoencoder training: KL weight of the latent regulariser.
    vae_kl_weight: float = Field(1e-6, ge=0.0)
