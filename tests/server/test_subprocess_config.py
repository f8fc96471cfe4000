"""The ``--set`` arguments that start benchmark/test servers reproduce a config exactly."""

from __future__ import annotations

from pathlib import Path

from app.config import load_config
from app.defaults import DEMO_MODEL
from app.demo import demo_config, with_demo_model
from bench.e2e import overrides


def test_overrides_reproduce_the_demo_model_config() -> None:
    config = with_demo_model(demo_config(load_config(None, []), "127.0.0.1", 12345))
    rebuilt = load_config(None, overrides(config)[1::2], environ={})
    assert rebuilt == config
    assert rebuilt.model.checkpoint_path == DEMO_MODEL
    assert rebuilt.server.recordings_dir is None
    assert rebuilt.face.enabled is True


def test_overrides_carry_only_changed_fields() -> None:
    fields = ["model.preset=tiny", "render.width=96", "server.recordings_dir=/tmp/r"]
    config = load_config(None, fields, environ={})
    args = overrides(config)
    assert args == [
        "--set",
        'model.preset="tiny"',
        "--set",
        "render.width=96",
        "--set",
        'server.recordings_dir="/tmp/r"',
    ]
    assert load_config(None, args[1::2], environ={}).server.recordings_dir == Path("/tmp/r")
