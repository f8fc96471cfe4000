"""The whole configuration, and its loading: the composition root's one typed Config.

Loaded once, in this order (later wins): the embedded defaults, a TOML file, a speed
preset (``app.presets``), environment variables (``ANCHOR_<SECTION>__<FIELD>``, e.g.
``ANCHOR_SAMPLER__STEPS=4``), then command-line overrides (``section.field=value``).

The embedded default model is the committed trained demo bundle (``app.demo``): with no
source choosing ``model.preset``, every command runs the demo anchor. Each layer receives
only its own sections (``pipeline`` for streaming, ``edge`` for the server).
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.defaults import demo_defaults
from model.audio2motion.config import Audio2MotionConfig
from model.errors import AnchorError
from model.evaluation.config import EvalConfig
from model.training.config import TrainConfig
from server.config import BroadcastConfig, ServerConfig, ServerSettings
from streaming.config import PipelineConfig
from streaming.pipeline import stream_format

ENV_PREFIX = "ANCHOR_"
log = logging.getLogger("anchor.config")


class AppConfig(PipelineConfig):
    """The whole configuration: one section per component (the pipeline's sections, then
    the server's, audio-to-motion, training and evaluation)."""

    server: ServerConfig = ServerConfig()
    broadcast: BroadcastConfig = BroadcastConfig()
    audio2motion: Audio2MotionConfig = Audio2MotionConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @property
    def pipeline(self) -> PipelineConfig:
        """The streaming layer's sections alone (what a Ray actor receives: no secret of the
        network edge)."""
        return PipelineConfig(**{name: getattr(self, name) for name in PipelineConfig.model_fields})

    @property
    def edge(self) -> ServerSettings:
        """The server layer's sections and the stream format it serves."""
        return ServerSettings(self.server, stream_format(self.pipeline), self.broadcast)


class ConfigError(AnchorError):
    """A configuration source could not be read or does not validate."""


def _parse_scalar(text: str) -> Any:
    """Interpret an env/CLI value: JSON when it parses (numbers, bools, null), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"{source}: expected 'section.field', got {dotted!r}")
    section, field = parts
    node = tree.setdefault(section, {})
    if not isinstance(node, dict):
        raise ConfigError(f"{source}: {section!r} is not a section")
    node[field] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
        _set_dotted(tree, dotted, _parse_scalar(raw), f"environment variable {key}")
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: Path | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    preset: str | None = None,
) -> AppConfig:
    """Build the AppConfig from the embedded defaults, a TOML file, a preset
    (``app.presets``), the environment and ``section.field=value`` overrides, each layer
    over the previous one.

    The embedded default model is the trained demo bundle; it applies only when no other
    source sets ``model.preset`` (so a file naming real weights never inherits the demo's
    sampler settings). Raises ConfigError naming the offending file, preset, variable or
    field.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as err:
            raise ConfigError(f"config file not found: {path}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    env_tree = _env_overrides(os.environ if environ is None else environ)
    cli_tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        _set_dotted(cli_tree, dotted.strip(), _parse_scalar(raw), f"--set {item}")
    if preset is not None:
        from app.presets import PRESETS, preset_fields

        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r}: unknown (choose from {', '.join(PRESETS)})")
        # The preset sees every layer (its choices may depend on the resolution) but sits
        # under the environment and --set.
        final = _merge(_merge(tree, env_tree), cli_tree)
        tree = _merge(tree, preset_fields(preset, final))
    tree = _merge(_merge(tree, env_tree), cli_tree)
    if "preset" not in tree.get("model", {}):
        tree = _merge(demo_defaults(), tree)
    elif tree["model"]["preset"] == "tiny":
        log.warning("model.preset = 'tiny': seeded random weights (tests and benches), not a model")
    try:
        return AppConfig.model_validate(tree)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from err
