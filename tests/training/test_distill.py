"""``anchor distill``: latent consistency distillation of a trained teacher into a student.

Real networks at tiny size (no pretrained weights exist here): a tiny body model is
trained on the synthetic anchor for a few hundred steps, then distilled for a hundred.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers.schedulers.scheduling_lcm import LCMScheduler

from model.bundle import bundle_meta, load_bundle
from model.config import ModelConfig, SamplerConfig
from model.offline import offline_sample
from model.presets import SD15_SCHEDULER_CONFIG
from model.scheduling import LCMFrameScheduler
from model.training.config import TrainConfig
from model.training.consistency import (
    ConsistencySchedule,
    Denoiser,
    DistillBatch,
    consistency_output,
    teacher_step,
)
from model.training.data import TrainingSamples
from model.training.networks import initial_networks
from model.training.student import Distiller, DistillRun
from model.training.trainer import Trainer, TrainRun
from streaming.frames import ConditionFrame
from streaming.sampler import WindowSampler

MODEL = ModelConfig()
TEACHER_STEPS = 240
STUDENT_STEPS = 120


def _config(steps: int, learning_rate: float) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=4,
        learning_rate=learning_rate,
        checkpoint_every=10_000,
        validate_every=10_000,
        perturbation_probability=0.0,
        foreground_only=False,
    )


@pytest.fixture(scope="module")
def teacher(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny body model trained on the synthetic anchor (DDPM, condition dropout 0.1)."""
    out = tmp_path_factory.mktemp("teacher")
    torch.set_num_threads(1)
    run = TrainRun("body", [synth_root / "train"], out)
    result = Trainer(run, _config(TEACHER_STEPS, 1e-3), MODEL).train()
    assert result.final is not None
    return result.final


@pytest.fixture(scope="module")
def student(teacher: Path, synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("student")
    torch.set_num_threads(1)
    run = DistillRun("body", teacher, [synth_root / "train"], out, guidance_scale=1.5,
                     solver_steps=10, student_steps=2, strength=0.5)  # fmt: skip
    final = Distiller(run, _config(STUDENT_STEPS, 1e-3), MODEL).train().final
    assert final is not None
    return final


def test_boundary_scalings_are_the_lcm_schedulers() -> None:
    schedule = ConsistencySchedule.sd15(50)
    reference = LCMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    timesteps = torch.tensor([0, 19, 499, 999])
    c_skip, c_out = schedule.boundary(timesteps)
    for row, timestep in enumerate(timesteps.tolist()):
        expected = reference.get_scalings_for_boundary_condition_discrete(timestep)
        assert (float(c_skip[row]), float(c_out[row])) == pytest.approx(expected)
    assert schedule.grid.tolist()[:3] == [19, 39, 59] and int(schedule.grid[-1]) == 999
    # At t = 0 the consistency output is its input, whatever the network predicts.
    latents = torch.randn(1, 4, 8, 8)
    output = consistency_output(schedule, latents, torch.randn(1, 4, 8, 8), torch.tensor([0]))
    assert torch.allclose(output, latents)
    with pytest.raises(ValueError, match="divide"):
        ConsistencySchedule.sd15(7)


def test_student_bundle_names_its_sampler_and_teacher(student: Path, teacher: Path) -> None:
    meta = bundle_meta(student)
    assert meta["scheduler"] == "lcm" and meta["steps"] == 2 and meta["guidance_scale"] == 1.0
    assert meta["lcm_strength"] == 0.5
    assert meta["distilled"]["teacher"] == str(teacher)
    assert meta["distilled"]["guidance_scale_baked"] == 1.5
    assert meta["distilled"]["trained_steps"] == STUDENT_STEPS
    scheduler = json.loads((student / "body" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "LCMScheduler"
    assert scheduler["original_inference_steps"] == 10
    # Everything but the body is the teacher's: same autoencoder, CLIP, null embedding.
    for name in ("vae/diffusion_pytorch_model.safetensors", "null_embedding.safetensors"):
        assert (student / name).read_bytes() == (teacher / name).read_bytes()
    assert (student / "body" / "unet").is_dir()
    teacher_weights = (teacher / "body/unet/diffusion_pytorch_model.safetensors").read_bytes()
    assert (student / "body/unet/diffusion_pytorch_model.safetensors").read_bytes() != (
        teacher_weights
    )


def test_student_loads_and_samples_with_its_scheduler(student: Path, teacher: Path) -> None:
    """Loaded as any bundle, the student samples with the LCM scheduler of its folder."""
    sampler = SamplerConfig(steps=2, scheduler="lcm", lcm_strength=0.5, mode="offline",
                            window_size=4, overlap=1)  # fmt: skip
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sampled = {}
    for folder in (student, teacher):
        model = ModelConfig(preset="bundle", checkpoint_path=folder, device="cpu")
        components = load_bundle(folder, model, sampler)
        assert isinstance(components.scheduler, LCMFrameScheduler)
        # The student's grid has 10 timesteps (its scheduler/), the teacher's SD1.5's 50.
        expected = [499, 299] if folder == student else [499, 259]
        assert components.scheduler.timesteps.tolist() == expected
        conditions = components.denoiser.encode_conditions(images)
        sampled[folder] = offline_sample(
            components.denoiser, components.scheduler, conditions, sampler, 0
        )
    assert torch.isfinite(sampled[student]).all()
    assert not torch.allclose(sampled[student], sampled[teacher])


def test_student_step_beats_the_teachers_step_on_a_fixed_batch(
    student: Path, teacher: Path, synth_root: Path, tmp_path: Path
) -> None:
    """The distillation's claim on a fixed batch of training frames: from the same noisy
    latents, ONE student evaluation lands closer to the teacher's multi-step (guided) DDIM
    solution than ONE guided teacher step does, at every grid timestep checked."""
    teacher_run = DistillRun("body", teacher, [synth_root / "train"], tmp_path,
                             guidance_scale=1.5, solver_steps=10, strength=0.5)  # fmt: skip
    reference = Distiller(teacher_run, _config(1, 1e-3), MODEL)
    trained = initial_networks(str(student), "body", MODEL)
    distilled = Denoiser(trained.unet.eval(), trained.controlnet.eval())
    samples = TrainingSamples([synth_root / "train"], "body", None, 0, 0.0, 0.0,
                              foreground_only=False)  # fmt: skip
    batch = {k: torch.stack([samples[i][k] for i in range(8)]) for k in samples[0]}
    latents, condition, tokens, _ = reference._inputs(batch, torch.Generator().manual_seed(1))
    inputs = DistillBatch(latents, condition, tokens, reference.frozen.null_embedding)  # type: ignore[union-attr]
    schedule = reference.schedule
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
    for timestep in (199, 299, 499):
        start = torch.full((8,), timestep)
        alpha = schedule.alpha(start, latents.device)
        noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
        solution = noisy
        for t in range(timestep, -1, -schedule.skip):
            here, there = torch.full((8,), t), torch.full((8,), max(t - schedule.skip, 0))
            solution = teacher_step(reference.teacher, schedule, inputs, solution, here, there, 1.5)
        one_step = teacher_step(
            reference.teacher,
            schedule,
            inputs,
            noisy,
            start,
            torch.zeros(8, dtype=torch.int64),
            1.5,
        )
        with torch.no_grad():
            predicted = distilled.noise(noisy, start, tokens, condition, None)
            student_output = consistency_output(schedule, noisy, predicted, start)
        student_error = float(((student_output - solution) ** 2).mean())
        teacher_error = float(((one_step - solution) ** 2).mean())
        assert student_error < teacher_error, (timestep, student_error, teacher_error)


def test_distillation_resumes_exactly(teacher: Path, synth_root: Path, tmp_path: Path) -> None:
    """A run resumed from a checkpoint (student, optimizer and EMA target in its state)
    ends with the weights of an uninterrupted run."""
    run = DistillRun("body", teacher, [synth_root / "train"], tmp_path / "a", solver_steps=10)
    config = _config(4, 1e-3).model_copy(update={"checkpoint_every": 2})
    whole = Distiller(run, config, MODEL)
    whole.train()
    split = DistillRun("body", teacher, [synth_root / "train"], tmp_path / "b", solver_steps=10)
    first = Distiller(split, config, MODEL)
    first.train(steps=2)
    split.resume = "latest"
    second = Distiller(split, config, MODEL)
    second.train()
    for ours, theirs in zip(
        second.target.unet.parameters(), whole.target.unet.parameters(), strict=True
    ):
        assert torch.equal(ours, theirs)
    for ours, theirs in zip(second._student().unet.parameters(),
                            whole._student().unet.parameters(), strict=True):  # fmt: skip
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize("max_batch", [1, 4])
def test_exact_streaming_with_the_student_equals_offline(student: Path, max_batch: int) -> None:
    """Mode exact with the student (LCM, its strength) is the paper's Algorithm 1, frames
    pushed one at a time (conditioning computed inside the model call, as the streaming
    LCM tests explain). One window per model call: bit-identical. Stream-batched (windows
    at different steps in one call): the CPU kernels round a batch of 4 differently from
    offline's batches, by ~1e-6."""
    config = SamplerConfig(mode="exact", scheduler="lcm", steps=2, lcm_strength=0.5,
                           guidance_scale=1.0, window_size=8, overlap=2, seed=5,
                           max_batch=max_batch)  # fmt: skip
    model = ModelConfig(preset="bundle", checkpoint_path=student, device="cpu",
                        cache_conditioning=False)  # fmt: skip
    components = load_bundle(student, model, config)
    assert components.scheduler.timesteps.tolist() == [499, 299]
    images = torch.rand(21, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    conditions = components.denoiser.encode_conditions(images)
    expected = offline_sample(components.denoiser, components.scheduler, conditions, config, 5)
    sampler = WindowSampler(components.denoiser, components.scheduler, config)
    committed = []
    for index, image in enumerate(images):
        committed += sampler.push([ConditionFrame(seq=index, pts=index / 30, condition=image)])
    committed += sampler.flush()
    assert [frame.position for frame in committed] == list(range(21))
    streamed = torch.stack([frame.latent for frame in committed])
    if max_batch == 1:
        assert torch.equal(streamed, expected)
    else:
        assert (streamed - expected).abs().max().item() <= 1e-5
        assert sampler.stats.predict_calls < sampler.stats.window_evaluations
    # Two LCM steps at ws/os 8/2: the wavefront's latency is 19 frames, 0.63 s at 30 fps.
    assert sampler.latency_frames == 19


def test_lcm_strength_is_diffusers_lcm_strength() -> None:
    ours = LCMFrameScheduler.from_config(
        {**SD15_SCHEDULER_CONFIG, "original_inference_steps": 10}, 2, strength=0.5
    )
    reference = LCMScheduler.from_config(SD15_SCHEDULER_CONFIG, original_inference_steps=10)
    reference.set_timesteps(2, strength=0.5)
    assert ours.timesteps.tolist() == reference.timesteps.tolist() == [499, 299]
    assert ours.with_steps(4).timesteps.tolist() == [499, 399, 299, 199]
    assert ConsistencySchedule.sd15(10, 0.5).grid.tolist() == [99, 199, 299, 399, 499]


def test_bench_distill_prints_the_side_by_side_table(
    student: Path, teacher: Path, synth_root: Path
) -> None:
    from app.config import load_config
    from bench.distill import bench_distill, format_report

    config = load_config(None, ["model.preset=tiny", "model.device=cpu"], environ={})
    report = bench_distill(config, teacher, student, synth_root / "heldout", frames=6,
                           steps=(1,), reference_steps=2)  # fmt: skip
    rows = report["rows"]
    assert [(r["model"], r["scheduler"], r["steps"]) for r in rows] == [
        ("teacher", "ddim", 2), ("teacher", "ddim", 1),
        ("student", "lcm", 1), ("teacher", "lcm", 1),
    ]  # fmt: skip
    keys = {"model", "steps", "guidance_scale", "ssim_gt", "psnr_gt", "ssim_vs_teacher20",
            "flicker", "face_ssim", "ms_per_frame", "tflops_per_frame_512"}  # fmt: skip
    for row in rows:
        assert keys <= set(row)
        assert row["ms_per_frame"] > 0.0 and 0.0 <= row["flicker"] <= 1.0
        assert -1.0 <= row["ssim_gt"] <= 1.0 and -1.0 <= row["face_ssim"] <= 1.0
    assert rows[0]["ssim_vs_teacher20"] == 1.0 and rows[0]["guidance_scale"] == 1.5
    assert rows[2]["guidance_scale"] == 1.0 and rows[2]["lcm_strength"] == 0.5
    # Cost at SD1.5 / 512: proportional to the steps, halved without CFG.
    reference, teacher_1, student_1 = rows[0], rows[1], rows[2]
    assert student_1["tflops_per_frame_512"] < teacher_1["tflops_per_frame_512"]
    assert teacher_1["tflops_per_frame_512"] < reference["tflops_per_frame_512"]
    assert "student" in format_report(report)
