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
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from model.audio2motion.config import Audio2MotionConfig
from model.config import FaceConfig, ModelConfig, RenderConfig, SamplerConfig, Section
from model.errors import AnchorError
from model.evaluation.config import EvalConfig
from model.training.config import TrainConfig

ENV_PREFIX = "ANCHOR_"


class IdentityConfig(Section):
    """One avatar identity a session can ``start`` with (server issue)."""

    # Make-Your-Anchor checkpoint folder of this identity; None = model.checkpoint_path.
    checkpoint_path: Path | None = None
    # Reference appearance image; None = model.reference_image (or the preset's own).
    reference_image: Path | None = None


class ServerConfig(Section):
    """Network edge settings (server issue)."""

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    # HMAC secret for session tokens; empty = tokens cannot be minted or verified (serve refuses).
    token_secret: str = ""
    # Lifetime of tokens minted by `anchor token` / `anchor demo`.
    token_ttl_s: float = Field(3600.0, gt=0.0)
    # Session ids that exist at startup; a producer with a valid token may create others by `start`.
    sessions: list[str] = Field(default_factory=list)
    # Upper bound of concurrent sessions (each holds sampler state and a recording).
    max_sessions: int = Field(4, ge=1)
    # Identities a producer may name in `start`; "default" always exists (the model section's).
    identities: dict[str, IdentityConfig] = Field(default_factory=dict)
    # Largest WebSocket message accepted (bytes); bigger ones close nothing, they get an error.
    max_message_bytes: int = Field(1 << 20, ge=1024)
    # Per-connection token bucket: sustained messages/s and burst size.
    rate_limit_per_s: float = Field(200.0, gt=0.0)
    rate_limit_burst: int = Field(400, ge=1)
    # Origins allowed for browser (Origin-carrying) connections besides the server's own.
    allowed_origins: list[str] = Field(default_factory=list)
    # TLS: serve https/wss when both are set.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # ICE servers as URLs (stun:host:port, turn:host:port?transport=udp); none by default.
    ice_servers: list[str] = Field(default_factory=list)
    ice_username: str | None = None
    ice_credential: str | None = None
    # Offer 127.0.0.1 as a host candidate (aioice skips it) so same-machine viewers connect.
    ice_loopback: bool = True
    # Frames a producer may have in flight (sent, not yet committed and recorded);
    # 0 = automatic: the sampler's latency plus one second of frames.
    max_in_flight: int = Field(0, ge=0)
    # Where per-session recordings (mp4 + motion .npz) go; None = no recording.
    recordings_dir: Path | None = Path("recordings")
    # Producer audio: PCM16 mono at this rate.
    audio_sample_rate: int = Field(16000, ge=8000, le=48000)
    # Stamp each frame's seq as a pixel barcode (glass-to-glass benchmark and tests).
    stamp_seq: bool = False
    # Live video plays each frame at its pts plus this many frame periods, so the bursts the
    # sampler commits play out smoothly; None = one window stride (sampler ws - os).
    playout_delay_frames: int | None = Field(None, ge=0)
    # Live rate control (server/live_rate.py). None: every accepted frame is rendered; a
    # pipeline slower than its producer builds a backlog (latency) until the producer waits
    # for credits. A number: the backlog may exceed one window stride by this many seconds of
    # frames; beyond it, incoming frames are skipped, evenly spread (acked with "skipped":
    # true, never rendered, recorded or charged a credit), so latency stays bounded and the
    # frame rate drops to what the machine sustains: what a live mocap broadcast wants.
    max_lag_s: float | None = Field(None, ge=0.0)
    # Render-stage threads per session.
    render_threads: int = Field(1, ge=1)
    # Streaming sampler mode of live sessions (sampler.mode is for `anchor generate`):
    # low = one window of latency, exact = identical to offline, more latency.
    sampler_mode: Literal["low", "exact"] = "low"


class ClusterConfig(Section):
    """Session workers on a Ray cluster (scale-out issue, section 1).

    With ``ray_address`` set, each session's model worker (render, sampler, decode, face)
    runs in its own Ray actor holding ``num_gpus`` and ``num_cpus``; the server keeps the
    network edges and streams frames to and from the actor.
    """

    # None = the in-process model worker (default); "local" = start a Ray instance in this
    # process for a try-out; "auto", "HOST:PORT" or "ray://HOST:PORT" = join that cluster.
    ray_address: str | None = None
    # Ray namespace of the session actors.
    namespace: str = "anchor"
    # Resources each session's actor requests: a whole or fractional GPU, and CPUs.
    num_gpus: float = Field(0.0, ge=0.0)
    num_cpus: float = Field(1.0, ge=0.0)
    # Session workers this server runs at once; 0 = as many as the cluster's free resources allow.
    max_workers: int = Field(0, ge=0)
    # A session whose actor is not placed and loaded within this many seconds fails.
    placement_timeout_s: float = Field(120.0, gt=0.0)
    # Environment variables set in every session actor (Ray runtime_env; no code upload:
    # the workers must have the project installed).
    env: dict[str, str] = Field(default_factory=dict)


class BroadcastConfig(Section):
    """Viewer fan-out through a Janus SFU and RTMP/HLS egress of every session (scale-out
    issue). Each session publishes its live tracks once; Janus or the media server serves
    the audience."""

    # Janus WebSocket API (subprotocol janus-protocol), e.g. ws://127.0.0.1:8188; "" = off.
    janus_url: str = ""
    # VideoRoom the sessions publish into (participant display name = session id).
    janus_room: int = Field(1234, ge=1)
    janus_create_room: bool = True
    # Secret given to a room this server creates; pin needed to join a protected room.
    janus_room_secret: str = ""
    janus_room_pin: str = ""
    # Janus's own API secret (janus.jcfg general.api_secret), if it has one.
    janus_api_secret: str = ""
    # RTMP URL each session is pushed to (H.264 + AAC in FLV); "{session}" becomes the
    # session id, e.g. rtmp://127.0.0.1/live/{session}; "" = off.
    rtmp_url: str = ""
    rtmp_video_bitrate: int = Field(1_000_000, ge=10_000)
    rtmp_audio_bitrate: int = Field(64_000, ge=8_000)
    # Keyframe interval: HLS cuts segments only at keyframes, so a segment lasts a whole
    # number of these (keep it at or below the media server's fragment length).
    rtmp_keyframe_interval_s: float = Field(1.0, gt=0.0)
    # Wait before publishing/pushing again after Janus or the RTMP server failed.
    retry_s: float = Field(5.0, gt=0.0)

    @field_validator("janus_url")
    @classmethod
    def _janus_scheme(cls, url: str) -> str:
        if url and not url.startswith(("ws://", "wss://")):
            raise ValueError(f"must be a ws:// or wss:// URL (Janus WebSocket API), got {url!r}")
        return url

    @field_validator("rtmp_url")
    @classmethod
    def _rtmp_scheme(cls, url: str) -> str:
        if url and not url.startswith(("rtmp://", "rtmps://")):
            raise ValueError(f"must be an rtmp:// or rtmps:// URL, got {url!r}")
        return url


class AppConfig(Section):
    """The whole configuration: one section per component."""

    model: ModelConfig = ModelConfig()
    sampler: SamplerConfig = SamplerConfig()
    face: FaceConfig = FaceConfig()
    render: RenderConfig = RenderConfig()
    server: ServerConfig = ServerConfig()
    cluster: ClusterConfig = ClusterConfig()
    broadcast: BroadcastConfig = BroadcastConfig()
    audio2motion: Audio2MotionConfig = Audio2MotionConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


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
    """Build the AppConfig from a TOML file, a preset (``server.presets``), the environment
    and ``section.field=value`` overrides, each layer over the previous one.

    Raises ConfigError naming the offending file, preset, variable or field.
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
        from server.presets import PRESETS, preset_fields

        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r}: unknown (choose from {', '.join(PRESETS)})")
        # The preset sees every layer (its choices may depend on the resolution) but sits
        # under the environment and --set.
        final = _merge(_merge(tree, env_tree), cli_tree)
        tree = _merge(tree, preset_fields(preset, final))
    tree = _merge(_merge(tree, env_tree), cli_tree)
    try:
        return AppConfig.model_validate(tree)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from err
