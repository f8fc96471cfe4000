"""The committed demo bundle (clients/models/demo) loads strictly and runs the live chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.bundle import bundle_meta, load_bundle
from model.config import ModelConfig, SamplerConfig
from model.sgdm import SGDMDenoiser

DEMO = Path(__file__).resolve().parents[2] / "clients" / "models" / "demo"


def test_demo_bundle_is_small_and_loads_strictly() -> None:
    total = sum(path.stat().st_size for path in DEMO.rglob("*") if path.is_file())
    assert total <= 25 * 1024 * 1024
    meta = bundle_meta(DEMO)
    assert meta["image_size"] >= 128 and meta["guidance_scale"] == 1.0
    components = load_bundle(DEMO, ModelConfig(), SamplerConfig(steps=meta["steps"]))
    assert components.image_size == meta["image_size"]
    assert components.denoiser.latent_height == meta["image_size"] // 8


@pytest.mark.slow
def test_demo_figures_on_synthetic_heldout_motion(synth_root: Path) -> None:
    from app.config import AppConfig
    from bench.heldout import demo_figures

    report = demo_figures(DEMO, synth_root / "heldout", AppConfig(), frames=12)
    assert report["frames"] == 12 and report["size"] == 128 and report["mode"] == "low"
    # The demo anchor was trained on this figure and scene: far from noise.
    assert report["ssim"] > 0.5 and report["psnr"] > 18.0
    assert 0.0 <= report["arm_adherence"] <= 1.0
    # The bundle has a face model: the clip also ran with the face stage on held-out geometry.
    face = report["face_on"]
    assert face is not None and face["face_size"] == bundle_meta(DEMO)["face"]["size"]
    # (this fixture is 64 px with 32 px faces, upsampled to the bundle's 128/64: low bars)
    assert face["ssim"] > 0.5 and face["face_crop_ssim"] > 0.25
    # The face stage changed the face crops (it regenerates them), not the rest of the frame.
    assert face["face_crop_psnr"] != face["face_off_face_crop_psnr"]


def test_demo_config_runs_the_bundles_face_model() -> None:
    from app.config import load_config
    from model.components import build_components

    config = load_config(DEMO.parents[2] / "configs" / "demo.toml", environ={})
    assert config.face.enabled and config.face.size == bundle_meta(DEMO)["face"]["size"]
    model = config.model.model_copy(update={"checkpoint_path": DEMO})
    components = build_components(model, config.sampler, config.face)
    assert components.face is not None and components.face.size == config.face.size
    # The face model runs on its own autoencoder (head/vae), not the scene's.
    assert isinstance(components.denoiser, SGDMDenoiser)
    assert components.face.vae is not components.denoiser.vae


def test_arm_adherence_tells_drawn_limbs_from_faded_ones(synth_root: Path) -> None:
    """The truth itself scores 1; frames showing only the background where the limbs move
    score 0 (what a model that fades the arms does)."""
    from bench.heldout import arm_adherence, load_heldout

    clip = load_heldout(synth_root / "heldout", 64, None, 12)
    assert clip.foreground is not None and clip.foreground.shape == (12, 1, 64, 64)
    assert arm_adherence(clip.targets, clip) == 1.0
    masks = clip.foreground
    uncovered = 1.0 - masks
    background = (clip.targets * uncovered).sum(0, keepdim=True) / uncovered.sum(
        0, keepdim=True
    ).clamp_min(1.0)
    faded = clip.targets * (1 - masks) + background * masks
    assert arm_adherence(faded, clip) == 0.0
