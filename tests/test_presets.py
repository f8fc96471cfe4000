"""Speed/quality presets: what each sets, and the order of the config layers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import build_parser
from app.config import ConfigError, load_config
from app.defaults import DEMO_MODEL
from app.demo import demo_config, with_demo_model


def test_quality_is_the_paper() -> None:
    config = load_config(None, [], environ={}, preset="quality")
    sampler = config.sampler
    assert (sampler.steps, sampler.guidance_scale, sampler.window_size, sampler.overlap) == (
        20,
        7.5,
        16,
        4,
    )
    assert config.model.attention == "all-frame" and config.sampler.mode == "exact"
    # The face stage at the paper's 20 steps, CFG 3.5 (the demo's face model is a consistency
    # student, which keeps its own sampler: test_quality_keeps_a_distilled_face...).
    sd15 = load_config(None, ["model.preset=sd15"], environ={}, preset="quality").face
    assert sd15.enabled and sd15.steps == 20 and sd15.guidance_scale == 3.5
    assert config.server.max_lag_s is None
    assert config.sampler.same_frame_noise and config.sampler.noise_device == "authors"
    # The demo bundle keeps how it was trained: per-frame GroupNorm, diffusers' residuals.
    assert config.model.preset == "bundle" and not config.model.window_groupnorm
    assert config.model.resolved_controlnet_residuals() == "diffusers"
    assert config.face.masked_latent == "mode" and config.face.blend == "feathered"
    assert config.face.align_size is None


@pytest.mark.parametrize("preset", ["sd15", "tiny"])
def test_quality_runs_other_weights_as_the_authors_did(preset: str) -> None:
    config = load_config(None, [f"model.preset={preset}"], environ={}, preset="quality")
    assert config.model.window_groupnorm and config.model.controlnet_residuals == "authors"
    assert config.face.masked_latent == "sample" and config.face.blend == "authors"
    assert config.face.align_size == 512
    assert config.sampler.controlnet_scale == 2.0 and config.sampler.noise_device == "authors"
    # Any single field still overrides the preset.
    overridden = load_config(
        None,
        [f"model.preset={preset}", "model.controlnet_residuals=diffusers"],
        environ={},
        preset="quality",
    )
    assert overridden.model.controlnet_residuals == "diffusers"


@pytest.mark.parametrize(
    ("size", "attention"), [(128, "all-frame"), (256, "all-frame"), (512, "sparse")]
)
def test_live_picks_attention_by_resolution(size: int, attention: str) -> None:
    # Tiny weights: the embedded demo bundle's LCM body would turn on the student settings.
    overrides = ["model.preset=tiny", f"render.width={size}"]
    config = load_config(None, overrides, environ={}, preset="live")
    assert config.model.attention == attention
    assert config.sampler.guidance_scale == 1.0 and config.sampler.steps == 4
    assert config.sampler.mode == "low" and config.server.max_lag_s is not None
    assert config.model.cache_conditioning and config.model.compile == "auto"
    assert config.model.precision == "auto"  # fp16 on CUDA, float32 on the CPU


def test_cpu_tiny_is_the_demo() -> None:
    config = load_config(None, [], environ={}, preset="cpu-tiny")
    demo = with_demo_model(demo_config(load_config(None, [], environ={}), "127.0.0.1", 8765))
    assert config.model.checkpoint_path == DEMO_MODEL and config.model.preset == "bundle"
    assert config.sampler.model_dump(exclude={"mode"}) == demo.sampler.model_dump(exclude={"mode"})
    assert config.face == demo.face and config.render.width == demo.render.width
    assert config.model.threads == 1 and config.server.max_lag_s == demo.server.max_lag_s


def test_layers_toml_then_preset_then_env_then_set(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[sampler]\nsteps = 9\nseed = 7\n[model]\npreset = "sd15"\nsd_path = "/weights/sd15"\n'
    )
    config = load_config(toml, [], environ={}, preset="live")
    assert config.sampler.steps == 4  # the preset over the file
    assert config.sampler.seed == 7 and config.model.sd_path == Path("/weights/sd15")
    env = {"ANCHOR_SAMPLER__STEPS": "6"}
    assert load_config(toml, [], environ=env, preset="live").sampler.steps == 6
    assert load_config(toml, ["sampler.steps=3"], environ=env, preset="live").sampler.steps == 3
    # --set of the resolution reaches the live preset's attention choice
    assert (
        load_config(toml, ["model.image_size=512"], environ={}, preset="live").model.attention
        == "sparse"
    )


def test_unknown_preset_is_named() -> None:
    with pytest.raises(ConfigError, match=r"--preset 'fast': unknown \(choose from quality"):
        load_config(None, [], environ={}, preset="fast")
    args = build_parser().parse_args(["--preset", "live", "bench", "presets"])
    assert args.preset == "live"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--preset", "fast", "serve"])


def test_live_keeps_a_configured_tiny_decoder_lora_and_scheduler(tmp_path: Path) -> None:
    toml = tmp_path / "fast.toml"
    toml.write_text(
        '[model]\npreset = "sd15"\ntiny_vae_path = "taesd"\n'
        'lora_path = "lcm.safetensors"\nlora_fuse = true\n'
        '[sampler]\nscheduler = "lcm"\n[face]\ntiny_vae_path = "taesd-face"\n'
    )
    config = load_config(toml, [], environ={}, preset="live")
    assert config.model.tiny_vae_path is not None and config.model.tiny_vae_path.name == "taesd"
    assert config.face.tiny_vae_path is not None
    assert config.model.lora_path is not None and config.model.lora_fuse
    assert config.sampler.scheduler == "lcm" and config.sampler.steps == 4


def test_live_runs_a_distilled_student_in_exact_mode(tmp_path: Path) -> None:
    """A bundle whose bundle.json names the LCM student (anchor distill) gets the paper's
    exact temporal denoising at the student's steps: 19 frames (0.63 s) of latency."""
    from streaming.sampler import latency_frames

    bundle = tmp_path / "student"
    bundle.mkdir()
    meta = {"image_size": 128, "scheduler": "lcm", "steps": 2, "lcm_strength": 0.5,
            "face": {"size": 64, "scheduler": "lcm", "steps": 1, "lcm_strength": 0.5}}  # fmt: skip
    (bundle / "bundle.json").write_text(json.dumps(meta))
    overrides = ["model.preset=bundle", f"model.checkpoint_path={bundle}"]
    config = load_config(None, overrides, environ={}, preset="live")
    sampler, face = config.sampler, config.face
    assert (sampler.mode, sampler.scheduler, sampler.steps, sampler.lcm_strength) == (
        "exact", "lcm", 2, 0.5)  # fmt: skip
    assert (face.scheduler, face.steps, face.lcm_strength) == ("lcm", 1, 0.5)
    latency = latency_frames(sampler)
    assert latency == 19 and latency / 30 <= 1.0
    # low stays available, and a source choosing DDIM is not overridden.
    low = load_config(None, [*overrides, "sampler.mode=low"], environ={}, preset="live")
    assert low.sampler.mode == "low"
    ddim = load_config(None, [*overrides, "sampler.scheduler=ddim"], environ={}, preset="live")
    assert (ddim.sampler.mode, ddim.sampler.steps) == ("low", 4)


def test_quality_keeps_a_distilled_face_students_own_sampler() -> None:
    """The demo's face model is a consistency student: quality samples it with its LCM
    steps and no CFG (it has no DDIM sampling), and the body with the paper's 20 DDIM steps."""
    config = load_config(None, [], environ={}, preset="quality")
    assert (config.sampler.scheduler, config.sampler.steps, config.sampler.lcm_strength) == (
        "ddim", 20, 1.0)  # fmt: skip
    face = config.face
    assert (face.scheduler, face.steps, face.guidance_scale, face.lcm_strength) == (
        "lcm", 2, 1.0, 0.5)  # fmt: skip
