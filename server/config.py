"""Configuration sections owned by the server layer (torch-free pydantic).

``ServerSettings`` is what the server receives from the composition root: its own
``server`` and ``broadcast`` sections plus the stream format of the pipelines it serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from model.config import Section
from streaming.config import IdentityConfig
from streaming.pipeline import StreamFormat


class ServerConfig(Section):
    """The network edge: listening, auth, limits, ICE, recording, playout, rate control."""

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
    # 0 = automatic: the sampler's latency plus one second of frames, plus another second
    # when recording (a frame's credit returns once its fragment is on disk).
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
    # WebSocket keepalive of every connection: a ping every keepalive_interval_s; one whose
    # pong has not come back keepalive_timeout_s later is closed with 1011. A viewer is
    # first sent {"type": "error", "fatal": true, "reason": "stalled", ...} (server.viewer),
    # which it reads when it resumes; the close reason names the stall too.
    keepalive_interval_s: float = Field(20.0, gt=0.0)
    keepalive_timeout_s: float = Field(20.0, gt=0.0)


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


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything the server layer is configured with."""

    server: ServerConfig
    stream: StreamFormat
    broadcast: BroadcastConfig
