"""``anchor train body|face|vae``: accelerate-based training (one CPU, one or many GPUs).

The loop, per step: read the step's batch (model/training/data.py), encode targets with
the frozen VAE and references with the frozen CLIP (null embedding where the condition is
dropped), add DDPM noise at uniform timesteps, predict it with ControlNet + UNet, MSE,
backward, clip the gradient norm over every trained parameter, AdamW step, EMA update.
Every ``checkpoint_every`` steps: ``OUT/checkpoint-NNNNNN/`` with the networks in the
official ``save_pretrained`` layout (``body/{unet,controlnet}``, ``head/...``, ``vae/``)
and ``state/`` (accelerate: optimizer, LR schedule, RNG, EMA, step; see
model/training/checkpoints.py). ``--resume`` restores it; data order and per-step noise
are functions of (seed, step), so a resumed run continues exactly as an uninterrupted
one. Every ``validate_every`` steps, a PNG of condition | target | sample rows goes to
``OUT/validation/`` (model/training/validation.py). At the end, ``OUT/final/`` is a
self-contained bundle (model/training/bundle.py: networks, vae/, clip/, null embedding,
reference image).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from model.bundle import FACE_PART
from model.config import ModelConfig
from model.errors import AnchorError
from model.presets import SD15_SCHEDULER_CONFIG
from model.training.bundle import save_bundle, save_part, write_meta, write_reference
from model.training.checkpoints import (
    StepCounter,
    checkpoint_folder,
    complete_checkpoint,
    is_complete,
    latest_checkpoint,
    prune_checkpoints,
)
from model.training.config import TrainConfig
from model.training.data import SampleKind, StepBatches, TrainingSamples
from model.training.losses import (
    appearance_tokens,
    diffusion_loss,
    encode_latents,
    inpainting_channels,
    vae_loss,
)
from model.training.networks import (
    FrozenNetworks,
    PartNetworks,
    check_compatible,
    frozen_networks,
    initial_networks,
    initial_vae,
    place_frozen,
)
from model.training.validation import validation_grid, write_validation

log = logging.getLogger("anchor.training")

Stage = Literal["pretrain", "finetune"]


@dataclass
class TrainRun:
    """What to train, from what, on what, and where to write it."""

    kind: SampleKind
    data: list[Path]
    out: Path
    init: str = "tiny"
    stage: Stage = "pretrain"
    vae: Path | None = None
    clip: Path | None = None
    image_size: int | None = None
    resume: str | None = None  # "latest" or a checkpoint folder
    validation: list[Path] = field(default_factory=list)
    # vae only: train on the face crops (the face model's autoencoder) instead of frames.
    faces: bool = False
    # vae only: train the decoder (and post_quant_conv) only. The encoder, quant_conv and
    # scaling factor stay as they are, so a body model trained on this autoencoder's
    # latents stays valid.
    decoder_only: bool = False

    @property
    def part(self) -> str:
        return {"body": "body", "face": "head", "vae": "vae"}[self.kind]


@dataclass
class TrainResult:
    step: int
    loss: float
    final: Path | None
    losses: list[float]


def _mixed_precision(config: TrainConfig) -> str:
    if config.mixed_precision == "auto":
        return "fp16" if torch.cuda.is_available() else "no"
    return config.mixed_precision


def _step_generator(seed: int, step: int, process: int) -> torch.Generator:
    """CPU generator for a step's noise and timesteps (same on resume)."""
    mixed = np.random.SeedSequence([seed, step, process]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(mixed))


class Trainer:
    """One training run (see the module docstring)."""

    # The progress bar's label: "<label> <kind>".
    label = "train"

    def __init__(self, run: TrainRun, config: TrainConfig, model: ModelConfig) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        if run.stage == "finetune" and run.kind != "vae" and run.init in ("tiny", "demo", "sd15"):
            raise AnchorError(
                "--stage finetune starts from stage-1 weights: --init must be a checkpoint "
                "folder holding body/{unet,controlnet} (or head/...)"
            )
        self.run, self.config = run, config
        self.accelerator = Accelerator(mixed_precision=_mixed_precision(config))
        set_seed(config.seed)
        self.samples = TrainingSamples(
            run.data,
            run.kind,
            run.image_size,
            config.seed,
            config.condition_dropout,
            config.perturbation_probability,
            # The autoencoder reconstructs whole frames; the diffusion models of stage 1
            # learn the person only (the paper), when the data carries foreground masks.
            foreground_only=config.foreground_only
            and run.stage == "pretrain"
            and run.kind != "vae",
            faces=run.faces,
        )
        self.frozen: FrozenNetworks | None = None
        self.networks: PartNetworks | None = None
        if run.kind == "vae":
            self.vae = initial_vae(run.init, model)
            trained: list[torch.nn.Module] = [self.vae]
        else:
            self.frozen = frozen_networks(run.init, model, run.vae, run.clip)
            self.networks = initial_networks(run.init, run.part, model)
            trained = [self.networks.unet, self.networks.controlnet]
            check_compatible(self.frozen, self.networks)
        for network in trained:
            network.train().requires_grad_(True)
        if run.kind == "vae" and run.decoder_only:
            self.vae.encoder.requires_grad_(False)
            if self.vae.quant_conv is not None:  # None: a VAE built with use_quant_conv=False
                self.vae.quant_conv.requires_grad_(False)
        self.parameters = [
            p for network in trained for p in network.parameters() if p.requires_grad
        ]
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=config.learning_rate, weight_decay=config.weight_decay
        )
        from diffusers.optimization import get_scheduler

        self.lr_schedule = get_scheduler(
            "constant_with_warmup", self.optimizer, num_warmup_steps=config.warmup_steps
        )
        self.ema = None
        if config.ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.parameters, decay=config.ema_decay)
        prepared = self.accelerator.prepare(*trained, self.optimizer, self.lr_schedule)
        self.trained = list(prepared[: len(trained)])
        self.optimizer, self.lr_schedule = prepared[len(trained) :]
        self.counter = StepCounter()
        self.accelerator.register_for_checkpointing(self.counter)
        if self.ema is not None:
            self.accelerator.register_for_checkpointing(self.ema)
        if self.frozen is not None:
            dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
                self.accelerator.mixed_precision, torch.float32
            )
            place_frozen(self.frozen, self.accelerator.device, dtype)
        from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

        self.noise_scheduler = DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG)
        if run.resume is not None:
            self._resume(run.resume)

    # ------------------------------------------------------------------ steps

    def _inputs(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A diffusion batch on the device: scaled target latents, condition images,
        appearance tokens (null where dropped) and the face model's inpainting channels."""
        assert self.frozen is not None
        latents = encode_latents(self.frozen.vae, batch["target"], generator)
        tokens = appearance_tokens(
            self.frozen.clip, batch["reference"], batch["drop"], self.frozen.null_embedding
        )
        extra = None
        if self.run.kind == "face":
            extra = inpainting_channels(self.frozen.vae, batch["target"], batch["mask"])
        return latents, batch["condition"], tokens, extra

    def _loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        device = self.accelerator.device
        batch = {name: value.to(device) for name, value in batch.items()}
        if self.run.kind == "vae":
            return vae_loss(self.trained[0], batch["target"], self.config.vae_kl_weight, generator)
        unet, controlnet = self.trained
        latents, condition, tokens, extra = self._inputs(batch, generator)
        return diffusion_loss(
            unet, controlnet, self.noise_scheduler, latents, condition, tokens, generator, extra
        )

    def step(self, step: int, batch: dict[str, torch.Tensor]) -> float:
        """One optimisation step; returns the loss (this process)."""
        generator = _step_generator(self.config.seed, step, self.accelerator.process_index)
        with self.accelerator.autocast():
            loss = self._loss(batch, generator)
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients:
            self.accelerator.clip_grad_norm_(self.parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.lr_schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.parameters)
        self.counter.step = step + 1
        return float(loss.detach().item())

    def loader(self, start: int, stop: int) -> torch.utils.data.DataLoader[Any]:
        sampler = StepBatches(
            start,
            stop,
            self.config.batch_size,
            self.accelerator.num_processes,
            self.accelerator.process_index,
        )
        return torch.utils.data.DataLoader(
            self.samples,
            batch_sampler=sampler,
            num_workers=self.config.workers,
            persistent_workers=self.config.workers > 0,
            # Its own generator: creating an iterator must not draw from the global RNG
            # (a resumed run creates one at another step than an uninterrupted run).
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def train(self, steps: int | None = None) -> TrainResult:
        """Runs until ``steps`` (default ``config.steps``); checkpoints, validates, saves."""
        from tqdm.auto import tqdm

        stop = self.config.steps if steps is None else steps
        start = self.counter.step
        losses: list[float] = []
        progress = tqdm(
            total=stop,
            initial=start,
            desc=f"{self.label} {self.run.kind}",
            disable=not self.accelerator.is_main_process,
            unit="step",
        )
        loss = float("nan")
        for step, batch in zip(range(start, stop), self.loader(start, stop), strict=True):
            loss = self.step(step, batch)
            losses.append(loss)
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{self.lr_schedule.get_last_lr()[0]:.2e}")
            done = step + 1
            if done % self.config.checkpoint_every == 0 or done == stop:
                self.save_checkpoint()
            if self.run.kind != "vae" and done % self.config.validate_every == 0:
                self.validate()
        progress.close()
        final = self.save_final() if self.counter.step >= self.config.steps else None
        return TrainResult(self.counter.step, loss, final, losses)

    # ------------------------------------------------------------ checkpoints

    def _save_networks(self, folder: Path) -> None:
        unwrap = self.accelerator.unwrap_model
        if self.run.kind == "vae":
            unwrap(self.trained[0]).save_pretrained(folder / "vae")
            return
        unet, controlnet = (unwrap(network) for network in self.trained)
        save_part(PartNetworks(unet, controlnet), folder, self.run.part)

    def save_checkpoint(self) -> Path:
        """``OUT/checkpoint-NNNNNN``: networks (official layout) + accelerate state."""
        folder = checkpoint_folder(self.run.out, self.counter.step)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(folder / "state"))
        if self.accelerator.is_main_process:
            self._save_networks(folder)
            meta = {"step": self.counter.step, "kind": self.run.kind, "init": self.run.init,
                    "data": [str(p) for p in self.run.data], "seed": self.config.seed}  # fmt: skip
            complete_checkpoint(folder, meta)
            prune_checkpoints(self.run.out, self.config.checkpoints_kept)
        return folder

    def _resume(self, resume: str) -> None:
        folder = latest_checkpoint(self.run.out) if resume == "latest" else Path(resume)
        if folder is None:
            log.info("no checkpoint in %s: starting from step 0", self.run.out)
            return
        if not is_complete(folder):
            raise AnchorError(f"--resume {folder}: not a complete checkpoint (training.json)")
        self.accelerator.load_state(str(folder / "state"))
        log.info("resumed from %s at step %d", folder, self.counter.step)

    def save_final(self) -> Path:
        """``OUT/final``: the trained networks (EMA weights when enabled) as a bundle."""
        folder = self.run.out / "final"
        if self.ema is not None:
            self.ema.store(self.parameters)
            self.ema.copy_to(self.parameters)
        if self.accelerator.is_main_process:
            if self.run.kind == "vae":
                if not self.run.decoder_only:
                    self._calibrate_vae_scale()
                self._save_networks(folder)
            else:
                assert self.frozen is not None
                self._save_networks(folder)
                save_bundle(folder, self.frozen)
                self._save_references(folder)
        if self.ema is not None:
            self.ema.restore(self.parameters)
        return folder

    def _save_references(self, folder: Path) -> None:
        """The bundle's default appearance: a training frame as ``reference.png`` with
        ``bundle.json`` (body), or that frame's face crop as ``head/reference.png`` (face)."""
        first = self.samples.frames[0]
        if self.run.kind == "face":
            face = self.samples._read(first, first.clip_entries[0], "face")
            write_reference(folder / FACE_PART, face)
            return
        write_reference(folder, self.samples._read(first, first.clip_entries[0], "frame"))
        # Trained with conditioning scale 1 and a null embedding (condition dropout).
        meta = {"image_size": self.samples.size, "controlnet_scale": 1.0,
                "trained_steps": self.counter.step, "init": self.run.init}  # fmt: skip
        write_meta(folder, meta)

    @torch.no_grad()
    def _calibrate_vae_scale(self, frames: int = 64) -> None:
        """Sets ``scaling_factor`` = 1 / std of the latents (SD's recipe), so diffusion
        training sees unit-variance latents."""
        vae = self.accelerator.unwrap_model(self.trained[0])
        vae.eval()
        picks = np.linspace(0, len(self.samples) - 1, min(frames, len(self.samples)))
        images = torch.stack([self.samples[int(i)]["target"] for i in picks.round()])
        device = self.accelerator.device
        latents = vae.encode((images * 2.0 - 1.0).to(device)).latent_dist.mode()
        scale = float(1.0 / latents.float().std().clamp_min(1e-6))
        vae.register_to_config(scaling_factor=scale)
        vae.train()
        log.info("autoencoder scaling_factor %.5f", scale)

    # ------------------------------------------------------------- validation

    def validate(self) -> Path | None:
        """Writes ``OUT/validation/step-NNNNNN.png`` (model/training/validation.py); body
        runs, main process only."""
        if not self.accelerator.is_main_process or self.run.kind != "body":
            return None
        assert self.frozen is not None
        folders = self.run.validation or self.run.data[:1]
        samples = TrainingSamples(folders, "body", self.samples.size, self.config.seed, 0.0, 0.0)
        unet, controlnet = (self.accelerator.unwrap_model(n) for n in self.trained)
        grid = validation_grid(
            unet,
            controlnet,
            self.frozen,
            samples,
            self.config.validation_samples,
            self.config.validation_steps,
        )
        return write_validation(self.run.out, self.counter.step, grid)


def train(run: TrainRun, config: TrainConfig, model: ModelConfig) -> TrainResult:
    """Builds a ``Trainer`` and runs it to ``config.steps``."""
    return Trainer(run, config, model).train()
