"""Strict loading from local folders (sd15 preset) on tiny real models saved to disk."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from sgdm_helpers import IMAGE_SIZE, random_images, random_latents, tiny_components
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from model.components import _tiny_networks, build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError, WeightsError
from model.loading import load_clip_vision, load_unet
from model.presets import SD15_SCHEDULER_CONFIG
from model.sgdm import SGDMDenoiser

WEIGHTS = "diffusion_pytorch_model.safetensors"


def _write_text_encoder(folder: Path) -> None:
    """A tiny CLIPTextModel (width 32) and a 4-token CLIPTokenizer in SD's layout."""
    torch.manual_seed(0)
    config = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=8,
        max_position_embeddings=77,
    )
    CLIPTextModel(config).save_pretrained(folder / "text_encoder")
    vocab = folder / "vocab.json"
    vocab.write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "a": 3}))
    merges = folder / "merges.txt"
    merges.write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(
        vocab_file=str(vocab),
        merges_file=str(merges),
        pad_token="<|endoftext|>",
        model_max_length=77,
    )
    tokenizer.save_pretrained(folder / "tokenizer")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(
            {"_class_name": "PNDMScheduler", **SD15_SCHEDULER_CONFIG, "skip_prk_steps": True}
        )
    )


@pytest.fixture(scope="module")
def sd15_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local folders in the official layouts, holding the tiny preset's weights."""
    root = tmp_path_factory.mktemp("weights")
    components = tiny_components(face=True)
    denoiser, face = components.denoiser, components.face
    assert face is not None
    checkpoints = root / "checkpoints"
    denoiser.unet.save_pretrained(checkpoints / "body" / "unet")
    denoiser.controlnet.save_pretrained(checkpoints / "body" / "controlnet")
    face.unet.save_pretrained(checkpoints / "head" / "unet")
    face.controlnet.save_pretrained(checkpoints / "head" / "controlnet")
    for name in ("sd", "inpainting"):
        denoiser.vae.save_pretrained(root / name / "vae")
        _write_text_encoder(root / name)
    # The same seeded CLIP tower the tiny preset builds.
    _tiny_networks(ModelConfig(), FaceConfig(enabled=False)).clip.save_pretrained(root / "clip")
    return {
        "checkpoint_path": checkpoints,
        "sd_path": root / "sd",
        "sd_inpainting_path": root / "inpainting",
        "clip_path": root / "clip",
    }


def _sd15(folders: dict[str, Path], **fields: object) -> ModelConfig:
    paths = {**folders, **fields}
    return ModelConfig(preset="sd15", device="cpu", image_size=IMAGE_SIZE, **paths)  # type: ignore[arg-type]


def test_sd15_preset_loads_the_same_networks(sd15_folders: dict[str, Path]) -> None:
    sampler = SamplerConfig(steps=2, guidance_scale=1.0)
    face = FaceConfig(size=64, steps=2)
    loaded = build_components(_sd15(sd15_folders), sampler, face)
    # The authors' checkpoints run with the authors' in-place ControlNet residuals.
    tiny = tiny_components(steps=2, guidance_scale=1.0, controlnet_residuals="authors")
    assert isinstance(loaded.denoiser, SGDMDenoiser)
    assert loaded.denoiser.controlnet_residuals == "authors"
    assert loaded.face is not None
    assert torch.equal(loaded.appearance, tiny.appearance)
    assert loaded.denoiser.null_embedding.shape == (17, 32)  # 77 text positions fitted to 17
    assert float(loaded.denoiser.null_embedding.abs().max()) > 0.0
    assert loaded.scheduler.timesteps.tolist() == tiny.scheduler.timesteps.tolist()
    latents, steps = random_latents(1, 3), torch.tensor([500])
    images = random_images(3)
    expected = tiny.denoiser.predict(latents, steps, tiny.denoiser.encode_conditions(images)[None])
    actual = loaded.denoiser.predict(
        latents, steps, loaded.denoiser.encode_conditions(images)[None]
    )
    assert torch.equal(actual, expected)


def _corrupt(source: Path, target: Path, drop: str | None, add: str | None) -> Path:
    target.mkdir(parents=True)
    (target / "config.json").write_text((source / "config.json").read_text())
    weights = load_file(source / WEIGHTS)
    if drop is not None:
        del weights[drop]
    if add is not None:
        weights[add] = torch.zeros(2)
    save_file(weights, target / WEIGHTS)
    return target


def test_missing_key_is_an_error_naming_it(sd15_folders: dict[str, Path], tmp_path: Path) -> None:
    source = sd15_folders["checkpoint_path"] / "body" / "unet"
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    folder = _corrupt(source, tmp_path / "unet", drop=key, add=None)
    with pytest.raises(WeightsError, match=f"missing key.*{re.escape(key)}"):
        load_unet(folder, "model.checkpoint_path")


def test_unexpected_key_is_an_error_naming_it(
    sd15_folders: dict[str, Path], tmp_path: Path
) -> None:
    source = sd15_folders["checkpoint_path"] / "body" / "unet"
    folder = _corrupt(source, tmp_path / "unet", drop=None, add="temporal_layer.weight")
    with pytest.raises(WeightsError, match=r"unexpected key.*temporal_layer\.weight"):
        load_unet(folder, "model.checkpoint_path")


def test_checkpoint_with_missing_key_fails_the_whole_build(
    sd15_folders: dict[str, Path], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    body = sd15_folders["checkpoint_path"] / "body"
    _corrupt(body / "unet", checkpoints / "body" / "unet", drop="conv_out.bias", add=None)
    _corrupt(body / "controlnet", checkpoints / "body" / "controlnet", drop=None, add=None)
    config = _sd15(sd15_folders, checkpoint_path=checkpoints)
    with pytest.raises(WeightsError, match=r"missing key.*conv_out\.bias"):
        build_components(config, SamplerConfig(), FaceConfig(enabled=False))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"checkpoint_path": None}, "model.checkpoint_path is not set"),
        ({"sd_path": None}, "model.sd_path is not set"),
        ({"clip_path": None}, "model.clip_path is not set"),
        ({"sd_inpainting_path": None}, "model.sd_inpainting_path is not set"),
        ({"checkpoint_path": Path("/nonexistent")}, "model.checkpoint_path: folder /nonexistent"),
    ],
)
def test_missing_folder_names_the_config_field(
    sd15_folders: dict[str, Path], fields: dict[str, object], message: str
) -> None:
    with pytest.raises(AnchorError, match=re.escape(message)):
        build_components(_sd15(sd15_folders, **fields), SamplerConfig(), FaceConfig(size=64))


def test_missing_subfolder_names_field_and_folder(
    sd15_folders: dict[str, Path], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "body").mkdir(parents=True)
    config = _sd15(sd15_folders, checkpoint_path=checkpoints)
    with pytest.raises(AnchorError, match=r"model.checkpoint_path: folder .*body/unet not found"):
        build_components(config, SamplerConfig(), FaceConfig(enabled=False))


def test_clip_vision_tower_of_a_full_clip_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tower = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 8,
    }
    full = CLIPModel(CLIPConfig(text_config=text, vision_config=tower, projection_dim=16))
    full.save_pretrained(tmp_path / "clip")
    vision = load_clip_vision(tmp_path / "clip", "model.clip_path")
    pixels = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = full.vision_model(pixel_values=pixels).last_hidden_state
        assert torch.equal(vision(pixel_values=pixels).last_hidden_state, expected)
