"""``anchor distill body|face``: a 1-4 step consistency student of a trained bundle.

The run is ``anchor train``'s (model/training/trainer.py: accelerate, AdamW, gradient
clipping, checkpoints every ``checkpoint_every`` steps, ``--resume``, the progress bar,
data order and noise as functions of (seed, step)) with the loss of
model/training/consistency.py:

- the student starts as a copy of the teacher's part (``body`` or ``head``) and is
  trained; the teacher is frozen; the target network is an EMA of the student
  (``target_decay``, LCM's 0.95), saved in every checkpoint (``state/``), so a resumed run
  continues exactly;
- the teacher's CFG scale is baked in (the student samples without CFG);
- the student always sees the appearance tokens (no condition dropout) and whole frames
  (the teacher's own latents, background included).

``OUT/final`` is the teacher's bundle with the part replaced by the student, its LCM
scheduler config in ``<part>/scheduler/`` and ``bundle.json`` naming the sampler it needs
(``scheduler: lcm``, its steps, guidance 1) and what it was distilled from. It loads
wherever a bundle loads (``model.preset = "bundle"``, ``anchor train --init``,
``bench``); the checkpoints hold the student in the official layout as ``anchor train``'s.
"""

from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from model.bundle import FACE_PART, bundle_meta, load_null_embedding
from model.config import ModelConfig
from model.errors import AnchorError
from model.training.bundle import save_part, write_meta
from model.training.config import TrainConfig
from model.training.consistency import (
    ConsistencySchedule,
    Denoiser,
    DistillBatch,
    consistency_loss,
    update_target,
)
from model.training.networks import PartNetworks, initial_networks
from model.training.trainer import Trainer, TrainRun

log = logging.getLogger("anchor.distill")

SCHEDULER_FOLDER = "scheduler"


@dataclass
class DistillRun:
    """What ``anchor distill`` was asked for.

    teacher: a bundle (``anchor train``'s ``OUT/final``, or clients/models/demo) holding the
    part to distil; guidance_scale: the teacher's CFG scale, baked into the student;
    solver_steps: the DDIM solver grid (50: LCM's); student_steps: the steps
    ``bundle.json`` suggests for sampling the student.
    """

    kind: Literal["body", "face"]
    teacher: Path
    data: list[Path]
    out: Path
    guidance_scale: float = 1.0
    solver_steps: int = 50
    target_decay: float = 0.95
    student_steps: int = 2
    # The share of the schedule trained and sampled (diffusers' LCM strength): 1 starts
    # the student at 999, 0.5 at 499.
    strength: float = 1.0
    image_size: int | None = None
    resume: str | None = None

    @property
    def part(self) -> str:
        return "body" if self.kind == "body" else FACE_PART


def teacher_vae_folder(teacher: Path, kind: str) -> Path:
    """The autoencoder the teacher part was trained on: ``head/vae`` for a face model that
    has its own, else the bundle's ``vae/``."""
    own = teacher / FACE_PART / "vae"
    return own if kind == "face" and own.is_dir() else teacher / "vae"


class Distiller(Trainer):
    """One distillation run (module docstring)."""

    label = "distill"

    def __init__(self, run: DistillRun, config: TrainConfig, model: ModelConfig) -> None:
        if not (run.teacher / run.part / "unet").is_dir():
            raise AnchorError(f"--teacher {run.teacher}: no {run.part}/unet to distil")
        if not 0.0 < run.target_decay < 1.0:
            raise AnchorError(f"--target-decay must be in (0, 1), got {run.target_decay}")
        if run.guidance_scale < 1.0:
            raise AnchorError(f"--guidance-scale must be >= 1, got {run.guidance_scale}")
        self.distill = run
        try:
            self.schedule = ConsistencySchedule.sd15(run.solver_steps, run.strength)
        except ValueError as err:
            raise AnchorError(f"--solver-steps/--strength: {err}") from None
        train_run = TrainRun(
            kind=run.kind,
            data=run.data,
            out=run.out,
            init=str(run.teacher),
            vae=teacher_vae_folder(run.teacher, run.kind),
            clip=run.teacher / "clip",
            image_size=run.image_size,
        )
        updates = {"condition_dropout": 0.0, "foreground_only": False}
        super().__init__(train_run, config.model_copy(update=updates), model)
        assert self.frozen is not None
        self.frozen.null_embedding = load_null_embedding(run.teacher)
        device = self.accelerator.device
        teacher = initial_networks(str(run.teacher), run.part, model)
        self.teacher = _frozen(teacher.unet, teacher.controlnet, device)
        student = self._student()
        self.target = _frozen(
            copy.deepcopy(student.unet), copy.deepcopy(student.controlnet), device
        )
        self.target_modules = torch.nn.ModuleDict(
            {"unet": self.target.unet, "controlnet": self.target.controlnet}
        )
        self.accelerator.register_for_checkpointing(self.target_modules)
        if run.resume is not None:
            self.run.resume = run.resume
            self._resume(run.resume)

    def _student(self) -> Denoiser:
        unet, controlnet = (self.accelerator.unwrap_model(n) for n in self.trained)
        return Denoiser(unet, controlnet)

    def _loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        device = self.accelerator.device
        batch = {name: value.to(device) for name, value in batch.items()}
        latents, condition, tokens, extra = self._inputs(batch, generator)
        assert self.frozen is not None
        inputs = DistillBatch(latents, condition, tokens, self.frozen.null_embedding, extra)
        unet, controlnet = self.trained
        return consistency_loss(
            Denoiser(unet, controlnet),
            self.target,
            self.teacher,
            self.schedule,
            inputs,
            self.distill.guidance_scale,
            generator,
        )

    def step(self, step: int, batch: dict[str, torch.Tensor]) -> float:
        loss = super().step(step, batch)
        student = self._student()
        update_target(self.target.unet, student.unet, self.distill.target_decay)
        update_target(self.target.controlnet, student.controlnet, self.distill.target_decay)
        return loss

    def validate(self) -> Path | None:
        """No DDIM validation grid: a student is sampled with LCM (``anchor bench distill``
        measures it)."""
        return None

    def save_final(self) -> Path:
        """``OUT/final``: the teacher bundle with the student part, its scheduler and meta."""
        folder = self.run.out / "final"
        if not self.accelerator.is_main_process:
            return folder
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(self.distill.teacher, folder)
        if self.ema is not None:
            self.ema.store(self.parameters)
            self.ema.copy_to(self.parameters)
        student = self._student()
        save_part(PartNetworks(student.unet, student.controlnet), folder, self.distill.part)
        if self.ema is not None:
            self.ema.restore(self.parameters)
        self.schedule.scheduler.save_pretrained(folder / self.distill.part / SCHEDULER_FOLDER)
        write_meta(folder, student_meta(bundle_meta(self.distill.teacher), self.distill,
                                        self.counter.step))  # fmt: skip
        return folder


def student_meta(teacher: dict[str, Any], run: DistillRun, trained_steps: int) -> dict[str, Any]:
    """The teacher's ``bundle.json`` with the student's sampler settings and provenance."""
    provenance = {
        "teacher": str(run.teacher),
        "teacher_steps": teacher.get("steps") if run.kind == "body" else
        teacher.get("face", {}).get("steps"),
        "guidance_scale_baked": run.guidance_scale,
        "solver": f"DDIM, {run.solver_steps} of 1000 timesteps",
        "strength": run.strength,
        "target_decay": run.target_decay,
        "trained_steps": trained_steps,
    }  # fmt: skip
    sampler = {"scheduler": "lcm", "lcm_strength": run.strength, "steps": run.student_steps,
               "guidance_scale": 1.0, "distilled": provenance}  # fmt: skip
    meta = copy.deepcopy(teacher)
    # Figures measured on the teacher do not describe the student (anchor bench distill and
    # anchor bench train measure it).
    meta.pop("heldout", None)
    if run.kind == "body":
        meta.update(sampler)
    else:
        meta.setdefault("face", {}).update(sampler)
    return meta


def _frozen(unet: Any, controlnet: Any, device: torch.device) -> Denoiser:
    for network in (unet, controlnet):
        network.to(device).eval().requires_grad_(False)
    return Denoiser(unet, controlnet)


def distil_student(run: DistillRun, config: TrainConfig, model: ModelConfig) -> Path | None:
    """Runs a distillation to ``config.steps``; ``OUT/final`` when it got there."""
    result = Distiller(run, config, model).train()
    return result.final
