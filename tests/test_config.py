"""AppConfig loading: TOML, then environment, then CLI overrides, with precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import AppConfig, ConfigError, load_config


def test_section_defaults_follow_the_paper() -> None:
    config = AppConfig()
    assert config.sampler.steps == 20
    assert config.sampler.guidance_scale == 7.5
    assert config.sampler.controlnet_scale == 2.0
    assert (config.sampler.window_size, config.sampler.overlap) == (16, 4)
    assert config.sampler.same_frame_noise is True
    assert config.face.guidance_scale == 3.5
    assert config.face.size == 256
    assert config.model.attention == "all-frame"


def test_no_model_chosen_means_the_demo_bundle(caplog: pytest.LogCaptureFixture) -> None:
    from app.defaults import DEMO_MODEL

    config = load_config(environ={})
    assert config.model.preset == "bundle" and config.model.checkpoint_path == DEMO_MODEL
    assert config.sampler.mode == "exact" and config.render.width == 128  # the demo's own
    # A source that chooses a model gets none of the demo's settings under it.
    chosen = load_config(overrides=["model.preset=tiny"], environ={})
    assert chosen.model.checkpoint_path is None and chosen.sampler.steps == 20
    assert "random weights" in caplog.text
    from_env = load_config(environ={"ANCHOR_MODEL__PRESET": "sd15"})
    assert from_env.model.preset == "sd15" and from_env.render.width == 512


def test_precedence_file_then_env_then_cli(tmp_path: Path) -> None:
    path = tmp_path / "anchor.toml"
    path.write_text("[sampler]\nsteps = 10\nseed = 1\n[model]\nattention = 'sparse'\n")
    config = load_config(
        path,
        overrides=["sampler.seed=3"],
        environ={"ANCHOR_SAMPLER__SEED": "2", "ANCHOR_SAMPLER__GUIDANCE_SCALE": "1.0"},
    )
    assert config.sampler.steps == 10  # file
    assert config.model.attention == "sparse"  # file
    assert config.sampler.guidance_scale == 1.0  # environment
    assert config.sampler.seed == 3  # CLI beats environment


def test_unknown_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "anchor.toml"
    path.write_text("[sampler]\nstepz = 10\n")
    with pytest.raises(ConfigError, match=r"sampler\.stepz"):
        load_config(path, environ={})


def test_window_must_exceed_overlap() -> None:
    with pytest.raises(ConfigError, match="window_size"):
        load_config(overrides=["sampler.window_size=4", "sampler.overlap=4"], environ={})


def test_bad_override_syntax_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"section\.field=value"):
        load_config(overrides=["steps"], environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", environ={})
    with pytest.raises(ConfigError, match="ANCHOR_STEPS__X__Y"):
        load_config(environ={"ANCHOR_STEPS__X__Y": "1"})
