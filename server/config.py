"""One typed configuration for the whole application.

Loaded once, in this order (later wins): built-in defaults, a TOML file, environment
variables (``ANCHOR_<SECTION>__<FIELD>``, e.g. ``ANCHOR_SAMPLER__STEPS=4``), then
command-line overrides (``section.field=value``). Each component receives only its
own section.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from model.config import FaceConfig, ModelConfig, RenderConfig, SamplerConfig, Section
from model.errors import AnchorError

ENV_PREFIX = "ANCHOR_"


class ServerConfig(Section):
    """Network edge settings (used from the server issue on)."""

    host: str = "127.0.0.1"
    port: int = 8765


class AppConfig(Section):
    """The whole configuration: one section per component."""

    model: ModelConfig = ModelConfig()
    sampler: SamplerConfig = SamplerConfig()
    face: FaceConfig = FaceConfig()
    render: RenderConfig = RenderConfig()
    server: ServerConfig = ServerConfig()


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
) -> AppConfig:
    """Build the AppConfig from a TOML file, the environment and ``section.field=value`` overrides.

    Raises ConfigError naming the offending file, variable or field.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            tree = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as err:
            raise ConfigError(f"config file not found: {path}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    tree = _merge(tree, _env_overrides(os.environ if environ is None else environ))
    cli_tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        _set_dotted(cli_tree, dotted.strip(), _parse_scalar(raw), f"--set {item}")
    tree = _merge(tree, cli_tree)
    try:
        return AppConfig.model_validate(tree)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from err
