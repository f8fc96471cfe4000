"""A bundle with a face model (head/) loads a FaceEnhancer; without one face stays refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from model.bundle import load_bundle
from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.face_sgdm import FaceEnhancer
from model.presets import tiny_vae
from model.sgdm import SGDMDenoiser
from model.training.bundle import save_bundle, save_part
from model.training.networks import frozen_networks, initial_networks

MODEL = ModelConfig()
FACE_SIZE = 32
DEMO = Path(__file__).resolve().parents[2] / "clients" / "models" / "demo"


def _write_image(path: Path, size: int, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value // 2, 200)).save(path)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """Tiny body + face networks written as ``anchor train`` writes a bundle."""
    folder = tmp_path / "bundle"
    save_part(initial_networks("tiny", "body", MODEL), folder, "body")
    save_part(initial_networks("tiny", "head", MODEL), folder, "head")
    save_bundle(folder, frozen_networks("tiny", MODEL, None))
    _write_image(folder / "reference.png", 64, 180)
    _write_image(folder / "head" / "reference.png", FACE_SIZE, 90)
    meta = {"image_size": 64, "face": {"size": FACE_SIZE}}
    (folder / "bundle.json").write_text(json.dumps(meta))
    return folder


def _face(**update: object) -> FaceConfig:
    values: dict[str, object] = {"size": FACE_SIZE, "steps": 2, "guidance_scale": 1.0}
    values.update(update)
    return FaceConfig(**values)  # type: ignore[arg-type]


def test_bundle_with_head_loads_a_face_enhancer(bundle: Path) -> None:
    model = ModelConfig(preset="bundle", checkpoint_path=bundle, device="cpu")
    components = build_components(model, SamplerConfig(steps=2), _face())
    enhancer = components.face
    assert isinstance(enhancer, FaceEnhancer)
    assert enhancer.size == FACE_SIZE and enhancer.unet.config["in_channels"] == 9
    # Without head/vae the face model works on the bundle's own autoencoder.
    assert isinstance(components.denoiser, SGDMDenoiser)
    assert enhancer.vae is components.denoiser.vae
    generator = torch.Generator().manual_seed(0)
    crops = torch.rand(2, 3, FACE_SIZE, FACE_SIZE, generator=generator)
    masks = torch.ones(2, 1, FACE_SIZE, FACE_SIZE)
    masks[:, :, 8:24, 8:24] = 0.0
    enhanced = enhancer.enhance(crops, crops, masks)
    assert enhanced.shape == crops.shape and torch.isfinite(enhanced).all()


def test_head_vae_is_the_face_models_autoencoder(bundle: Path) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        tiny_vae().save_pretrained(bundle / "head" / "vae")
    components = load_bundle(bundle, MODEL, SamplerConfig(steps=1), face=_face())
    assert isinstance(components.denoiser, SGDMDenoiser)
    assert components.face is not None and components.face.vae is not components.denoiser.vae
    face_weights = dict(components.face.vae.named_parameters())
    body_weights = dict(components.denoiser.vae.named_parameters())
    name = "encoder.conv_in.weight"
    assert not torch.equal(face_weights[name], body_weights[name])


def test_face_appearance_comes_from_the_head_reference(bundle: Path, tmp_path: Path) -> None:
    sampler = SamplerConfig(steps=1)
    default = load_bundle(bundle, MODEL, sampler, face=_face()).face
    other = tmp_path / "other.png"
    _write_image(other, FACE_SIZE, 20)
    chosen = load_bundle(bundle, MODEL, sampler, face=_face(reference_image=other)).face
    assert default is not None and chosen is not None
    assert not torch.allclose(default.appearance, chosen.appearance)
    (bundle / "head" / "reference.png").unlink()
    with pytest.raises(AnchorError, match=r"face\.reference_image"):
        load_bundle(bundle, MODEL, sampler, face=_face())


def test_face_disabled_or_absent(bundle: Path) -> None:
    components = load_bundle(bundle, MODEL, SamplerConfig(steps=1), face=_face(enabled=False))
    assert components.face is None
    shutil.rmtree(bundle / "head")
    model = ModelConfig(preset="bundle", checkpoint_path=bundle)
    with pytest.raises(AnchorError, match=r"no face model.*face\.enabled = false"):
        build_components(model, SamplerConfig(steps=1), _face())
    with pytest.raises(AnchorError, match=r"no face model"):
        load_bundle(bundle, MODEL, SamplerConfig(steps=1), face=_face())


def test_face_size_must_match_the_trained_crop_size(bundle: Path) -> None:
    with pytest.raises(AnchorError, match=r"face\.size 64 != 32"):
        load_bundle(bundle, MODEL, SamplerConfig(steps=1), face=_face(size=64))
