"""Training on tiny real networks: the loss falls, resume is exact, stage 2 loads stage 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from model.config import ModelConfig
from model.errors import AnchorError, WeightsError
from model.training.bundle import save_part
from model.training.checkpoints import latest_checkpoint
from model.training.config import TrainConfig
from model.training.data import TrainingSamples
from model.training.dataset import read_png
from model.training.losses import appearance_tokens
from model.training.networks import initial_networks
from model.training.trainer import Trainer, TrainRun

MODEL = ModelConfig()


def _config(**update: object) -> TrainConfig:
    values: dict[str, object] = {"batch_size": 2, "learning_rate": 1e-3, "steps": 4,
                                 "checkpoint_every": 2, "validate_every": 1000}  # fmt: skip
    values.update(update)
    return TrainConfig(**values)  # type: ignore[arg-type]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    weights = {}
    for part in ("unet", "controlnet"):
        state = load_file(str(folder / "body" / part / "diffusion_pytorch_model.safetensors"))
        weights.update({f"{part}.{key}": value for key, value in state.items()})
    return weights


def test_training_steps_lower_the_loss_on_a_fixed_batch(synth_root: Path, tmp_path: Path) -> None:
    trainer = Trainer(TrainRun("body", [synth_root / "train"], tmp_path), _config(), MODEL)
    batch = next(iter(trainer.loader(0, 1)))

    def fixed_loss() -> float:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(123)
            return float(trainer._loss(batch, generator))

    before = fixed_loss()
    for step in range(12):
        trainer.step(step, batch)
    assert fixed_loss() < 0.8 * before


def test_resume_continues_exactly_like_an_uninterrupted_run(
    synth_root: Path, tmp_path: Path
) -> None:
    config = _config(ema=True, ema_decay=0.9)
    data = [synth_root / "train"]
    straight = Trainer(TrainRun("body", data, tmp_path / "straight"), config, MODEL).train()
    interrupted = Trainer(TrainRun("body", data, tmp_path / "resumed"), config, MODEL)
    interrupted.train(steps=2)
    assert latest_checkpoint(tmp_path / "resumed") == tmp_path / "resumed" / "checkpoint-000002"
    resumed = Trainer(TrainRun("body", data, tmp_path / "resumed", resume="latest"), config, MODEL)
    assert resumed.counter.step == 2
    result = resumed.train()
    assert result.step == straight.step == 4
    assert result.losses == straight.losses[2:]
    for name in ("checkpoint-000004", "final"):  # live weights, then EMA weights
        expected = _weights(tmp_path / "straight" / name)
        actual = _weights(tmp_path / "resumed" / name)
        assert expected.keys() == actual.keys()
        for key, value in expected.items():
            torch.testing.assert_close(actual[key], value, rtol=0, atol=1e-6, msg=key)


def test_published_layout_loads_into_stage_two(synth_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    published = initial_networks("tiny", "body", ModelConfig(tiny_seed=7))
    save_part(published, tmp_path / "published", "body")
    run = TrainRun("body", [synth_root / "train"], tmp_path / "out", init=str(tmp_path /
                   "published"), stage="finetune")  # fmt: skip
    trainer = Trainer(run, _config(steps=1, checkpoint_every=1), MODEL)
    unet = trainer.accelerator.unwrap_model(trainer.trained[0])
    for key, value in published.unet.state_dict().items():
        assert torch.equal(unet.state_dict()[key], value), key
    result = trainer.train()
    assert result.step == 1 and (tmp_path / "out" / "final" / "body" / "unet").is_dir()


def test_stage_two_needs_stage_one_weights(synth_root: Path, tmp_path: Path) -> None:
    run = TrainRun("body", [synth_root / "train"], tmp_path, init="tiny", stage="finetune")
    with pytest.raises(AnchorError, match="--init"):
        Trainer(run, _config(), MODEL)
    missing = TrainRun("body", [synth_root / "train"], tmp_path, init=str(tmp_path / "none"),
                       stage="finetune")  # fmt: skip
    with pytest.raises(AnchorError, match="none"):
        Trainer(missing, _config(), MODEL)


def test_stage_two_rejects_a_checkpoint_with_a_missing_key(
    synth_root: Path, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    published = initial_networks("tiny", "body", MODEL)
    save_part(published, tmp_path / "published", "body")
    weights = tmp_path / "published" / "body" / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    del state["conv_out.bias"]
    save_file(state, str(weights))
    run = TrainRun("body", [synth_root / "train"], tmp_path / "out",
                   init=str(tmp_path / "published"), stage="finetune")  # fmt: skip
    with pytest.raises(WeightsError, match=r"conv_out\.bias"):
        Trainer(run, _config(), MODEL)


def test_condition_dropout_uses_the_null_embedding(synth_root: Path) -> None:
    always = TrainingSamples([synth_root / "train"], "body", 64, 0, 1.0, 0.0)
    never = TrainingSamples([synth_root / "train"], "body", 64, 0, 0.0, 0.0)
    assert all(bool(always[i]["drop"]) for i in range(6))
    assert not any(bool(never[i]["drop"]) for i in range(6))
    from model.presets import tiny_clip_vision

    clip = tiny_clip_vision().eval()
    references = torch.stack([always[0]["reference"], always[1]["reference"]])
    null = torch.full((17, 32), 0.5)
    tokens = appearance_tokens(clip, references, torch.tensor([True, False]), null)
    assert torch.equal(tokens[0], null)
    assert not torch.equal(tokens[1], null)


def test_samples_are_a_function_of_seed_and_position(synth_root: Path) -> None:
    first = TrainingSamples([synth_root / "train"], "body", 64, 5, 0.1, 0.5)
    second = TrainingSamples([synth_root / "train"], "body", 64, 5, 0.1, 0.5)
    for position in (0, 7, 40):
        a, b = first[position], second[position]
        for key in a:
            assert torch.equal(a[key], b[key]), key
    # Every frame once per epoch.
    assert sorted(first.frame_at(p) for p in range(len(first))) == list(range(len(first)))


def test_face_and_autoencoder_training_run(synth_root: Path, tmp_path: Path) -> None:
    face = Trainer(TrainRun("face", [synth_root / "train"], tmp_path / "face"),
                   _config(steps=2), MODEL).train()  # fmt: skip
    assert face.step == 2 and all(torch.isfinite(torch.tensor(face.losses)))
    assert (tmp_path / "face" / "final" / "head" / "unet").is_dir()
    # The face appearance image a bundle's face model defaults to: a face crop.
    with Image.open(tmp_path / "face" / "final" / "head" / "reference.png") as reference:
        assert reference.size == (32, 32)
    vae = Trainer(TrainRun("vae", [synth_root / "train"], tmp_path / "vae"),
                  _config(steps=2), MODEL).train()  # fmt: skip
    assert vae.final is not None
    config = json.loads((vae.final / "vae" / "config.json").read_text())
    assert config["scaling_factor"] != 0.18215  # calibrated to unit-variance latents


def test_validation_render_is_written(synth_root: Path, tmp_path: Path) -> None:
    config = _config(steps=1, validate_every=1, validation_samples=2, validation_steps=2)
    Trainer(TrainRun("body", [synth_root / "train"], tmp_path), config, MODEL).train()
    from PIL import Image

    with Image.open(tmp_path / "validation" / "step-000001.png") as image:
        assert image.size == (3 * 64, 2 * 64)  # condition | target | sample, two rows


def test_stage_one_trains_on_the_foreground_but_the_autoencoder_on_whole_frames(
    synth_root: Path, tmp_path: Path
) -> None:
    data = [synth_root / "train"]
    masked = TrainingSamples(data, "body", 64, 0, 0.0, 0.0, foreground_only=True)
    whole = TrainingSamples(data, "body", 64, 0, 0.0, 0.0, foreground_only=False)
    corner = (slice(None), slice(0, 4), slice(0, 4))  # background in every synthetic frame
    assert masked[0]["target"][corner].abs().max() == 0
    assert whole[0]["target"][corner].mean() > 0.2
    body = Trainer(TrainRun("body", data, tmp_path / "b"), _config(), MODEL)
    assert body.samples.foreground_only
    vae = Trainer(TrainRun("vae", data, tmp_path / "v"), _config(), MODEL)
    assert not vae.samples.foreground_only


def test_face_autoencoder_trains_on_the_face_crops(synth_root: Path) -> None:
    train = synth_root / "train"
    samples = TrainingSamples([train], "vae", None, 0, 0.0, 0.0, faces=True)
    target = samples[0]["target"]
    face = read_png(train / samples.frames[samples.frame_at(0)].entry.face)
    assert target.shape == (3, 32, 32)
    assert torch.equal((target * 255).round().byte().permute(1, 2, 0), torch.from_numpy(face))


def test_decoder_only_autoencoder_training_keeps_the_latent_space(
    synth_root: Path, tmp_path: Path
) -> None:
    data = [synth_root / "train"]
    first = Trainer(TrainRun("vae", data, tmp_path / "first"), _config(steps=2), MODEL).train()
    assert first.final is not None
    run = TrainRun("vae", data, tmp_path / "decoder", init=str(first.final), decoder_only=True)
    trainer = Trainer(run, _config(steps=3), MODEL)
    trained_names = {id(p) for p in trainer.parameters}
    assert not any(id(p) in trained_names for p in trainer.vae.encoder.parameters())
    result = trainer.train()
    assert result.final is not None

    def state(folder: Path) -> dict[str, torch.Tensor]:
        return load_file(str(folder / "vae" / "diffusion_pytorch_model.safetensors"))

    before, after = state(first.final), state(result.final)
    frozen = [key for key in before if key.startswith(("encoder.", "quant_conv."))]
    decoder = [key for key in before if key.startswith(("decoder.", "post_quant_conv."))]
    assert frozen and decoder
    assert all(torch.equal(before[key], after[key]) for key in frozen)
    assert any(not torch.equal(before[key], after[key]) for key in decoder)
    scale = [
        json.loads((folder / "vae" / "config.json").read_text())["scaling_factor"]
        for folder in (first.final, result.final)
    ]
    assert scale[0] == scale[1]  # not recalibrated: the body model's latents stay valid
