"""``anchor train vae --tiny``: an AutoencoderTiny distilled from the identity's VAE, and
``model.tiny_vae_path`` / ``face.tiny_vae_path`` decoding with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

from app.cli import main
from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import WeightsError
from model.tiny_vae import TINY_META, load_tiny_vae
from model.training.config import TrainConfig
from model.training.data import TrainingSamples
from model.training.distill import (
    TinyRun,
    distil_tiny_vae,
    reconstruction_figures,
    teacher_vae,
    tiny_for,
)

CHANNELS = (8, 8, 8, 8)
FIGURES = ("full_ssim", "full_psnr", "tiny_ssim", "tiny_psnr")


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory, synth_root: Path) -> dict[str, object]:
    """A tiny decoder + encoder distilled for 40 steps from the tiny preset's VAE."""
    out = tmp_path_factory.mktemp("tiny") / "taesd"
    run = TinyRun([synth_root / "train"], out, encoder=True, channels=CHANNELS,
                  evaluation_frames=6)  # fmt: skip
    config = TrainConfig(steps=40, batch_size=2, learning_rate=3e-3, seed=0)
    return distil_tiny_vae(run, config, ModelConfig(preset="tiny"))


def test_distillation_beats_the_untrained_decoder(
    distilled: dict[str, object], synth_root: Path
) -> None:
    assert set(FIGURES) | {"tiny_roundtrip_ssim", "tiny_roundtrip_psnr"} <= set(distilled)
    teacher = teacher_vae("tiny", False, ModelConfig(preset="tiny"))
    torch.manual_seed(0)
    untrained = tiny_for(teacher, CHANNELS).eval()
    samples = TrainingSamples([synth_root / "train"], "vae", None, 0, 0.0, 0.0)
    frames = torch.stack([samples[position]["target"] for position in range(6)])
    before = reconstruction_figures(teacher, untrained, frames, tiny_encodes=False)
    assert before["full_psnr"] == pytest.approx(distilled["full_psnr"])
    assert float(distilled["tiny_psnr"]) > before["tiny_psnr"] + 1.0  # type: ignore[arg-type]


def test_the_folder_loads_strictly_and_records_its_encoder(distilled: dict[str, object]) -> None:
    folder = Path(str(distilled["final"]))
    tiny = load_tiny_vae(folder, "model.tiny_vae_path")
    assert tiny.config["block_out_channels"] == list(CHANNELS)
    assert json.loads((folder / TINY_META).read_text())["encoder_trained"] is True
    (folder / "config.json").write_text(
        (folder / "config.json").read_text().replace('"latent_channels": 4', '"latent_channels": 3')
    )
    with pytest.raises(WeightsError, match=r"model\.tiny_vae_path"):
        load_tiny_vae(folder, "model.tiny_vae_path")
    (folder / "config.json").write_text(
        (folder / "config.json").read_text().replace('"latent_channels": 3', '"latent_channels": 4')
    )


def test_tiny_vae_path_decodes_body_and_face(distilled: dict[str, object]) -> None:
    folder = Path(str(distilled["final"]))
    sampler = SamplerConfig(steps=1)
    plain = build_components(
        ModelConfig(preset="tiny", device="cpu", image_size=16), sampler, FaceConfig(size=32)
    )
    model = ModelConfig(preset="tiny", device="cpu", image_size=16, tiny_vae_path=folder)
    components = build_components(model, sampler, FaceConfig(size=32, tiny_vae_path=folder))
    denoiser, face = components.denoiser, components.face
    assert isinstance(denoiser.vae, AutoencoderTiny)  # type: ignore[union-attr]
    assert face is not None and isinstance(face.vae, AutoencoderTiny)
    assert face.encoder_vae is face.vae  # trained encoder: it encodes the masked crops too
    latents = torch.randn((2, 4, 2, 2), generator=torch.Generator().manual_seed(0))
    image = denoiser.decode(latents)
    assert image.shape == (2, 3, 16, 16) and image.min() >= 0.0 and image.max() <= 1.0
    assert not torch.allclose(image, plain.denoiser.decode(latents))


def test_decoder_only_folder_keeps_the_full_encoder(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "decoder"
    code = main(["train", "vae", "--tiny", "--tiny-channels", "8", "--data",
                 str(synth_root / "train"), "--out", str(out), "--steps", "2",
                 "--batch-size", "2"])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(FIGURES) <= set(printed) and "tiny_roundtrip_psnr" not in printed
    assert json.loads((out / TINY_META).read_text())["encoder_trained"] is False
    model = ModelConfig(preset="tiny", device="cpu", image_size=16)
    components = build_components(
        model, SamplerConfig(steps=1), FaceConfig(size=32, tiny_vae_path=out)
    )
    assert components.face is not None
    assert isinstance(components.face.vae, AutoencoderTiny)
    assert isinstance(components.face.encoder_vae, AutoencoderKL)
