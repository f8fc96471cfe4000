"""Producer messages on ``WS /sessions/{id}/motion`` and the server's answers.

Producer -> server:
- text, JSON objects with a ``type``:
  ``{"type": "start", "identity": "default"}``, ``{"type": "end"}``, ``{"type": "clear"}``,
  ``{"type": "frame", ...}`` (a motion frame in the motion layer's JSON form),
  ``{"type": "audio", "pts": 1.5, "sample_rate": 16000, "data": "<base64 PCM16 LE mono>"}``;
- binary: an audio chunk (``AUDIO_MAGIC``, then float64 pts seconds, uint32 sample rate,
  then PCM16 LE mono samples) or otherwise a motion frame in the motion layer's binary form.

Server -> producer (JSON): ``started`` (credits, ``last_seq``: the last seq that earlier runs
of this session accepted, or null), ``ack`` (seq, credits; ``skipped: true`` when live
rate control, ``server.max_lag_s``, accepted the frame without rendering it because the
pipeline lags), ``credit`` (a frame
was committed and recorded: seq, credits), ``cleared`` (``dropped``: the acked seqs it
discarded), ``ended`` (summary; ``dropped``: acked seqs never committed, e.g. at shutdown;
``reason`` end, producer disconnected, shutdown or error), ``error`` (``field``, ``seq`` when
known, ``message``; ``fatal`` when the run is over). Every producer message gets exactly one
answer (``ack``, ``started``, ``cleared``, ``error``; ``end`` gets ``ended``).

Beyond a well-formed frame, a run checks what would fail later (``server/ingest.py``), and
``start`` is refused (field ``token``) once the connection's token has expired.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.errors import AnchorError

AUDIO_MAGIC = b"ANAU"
_AUDIO_HEADER = struct.Struct("<4sdI")
CONTROL_TYPES = ("start", "end", "clear")
# Bounds of a JSON message, checked while parsing: deeper nesting would exhaust the
# parser's recursion, longer integers Python's int conversion (its own 4300-digit limit).
MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 4300
# Brackets outside strings (a string token is matched whole, so its brackets are skipped).
_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class ProtocolError(AnchorError):
    """A producer message that cannot be accepted; ``field`` and ``seq`` locate the problem."""

    def __init__(self, message: str, field: str | None = None, seq: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.seq = seq

    def to_message(self) -> dict[str, Any]:
        return {"type": "error", "field": self.field, "seq": self.seq, "message": str(self)}


@dataclass(slots=True)
class Control:
    kind: str
    identity: str = "default"


@dataclass(slots=True)
class AudioChunk:
    """PCM16 mono samples (N,) int16 starting at ``pts`` seconds."""

    pts: float
    sample_rate: int
    samples: np.ndarray


def encode_audio(pts: float, sample_rate: int, samples: np.ndarray) -> bytes:
    """The binary form of an audio chunk (what a producer sends)."""
    pcm = np.asarray(samples, dtype="<i2").tobytes()
    return _AUDIO_HEADER.pack(AUDIO_MAGIC, pts, sample_rate) + pcm


def _audio_checked(pts: Any, sample_rate: Any, pcm: bytes, expected_rate: int) -> AudioChunk:
    if not isinstance(pts, int | float) or not np.isfinite(pts) or pts < 0:
        raise ProtocolError("audio pts must be a finite number >= 0", field="pts")
    if sample_rate != expected_rate:
        raise ProtocolError(
            f"audio sample_rate must be {expected_rate} (server.audio_sample_rate)",
            field="sample_rate",
        )
    if len(pcm) % 2 or not pcm:
        raise ProtocolError("audio data must be non-empty PCM16 (even byte count)", field="data")
    return AudioChunk(float(pts), int(sample_rate), np.frombuffer(pcm, dtype="<i2").copy())


def decode_binary_audio(payload: bytes, expected_rate: int) -> AudioChunk:
    if len(payload) < _AUDIO_HEADER.size:
        raise ProtocolError("audio header truncated", field="data")
    _, pts, rate = _AUDIO_HEADER.unpack_from(payload)
    return _audio_checked(pts, rate, payload[_AUDIO_HEADER.size :], expected_rate)


def decode_json_audio(message: dict[str, Any], expected_rate: int) -> AudioChunk:
    data = message.get("data")
    if not isinstance(data, str):
        raise ProtocolError("audio data must be a base64 string", field="data")
    try:
        pcm = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ProtocolError("audio data is not valid base64", field="data") from err
    return _audio_checked(message.get("pts"), message.get("sample_rate"), pcm, expected_rate)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(
            f"an integer of {len(text)} digits exceeds {MAX_INT_DIGITS} digits", field="message"
        )
    return int(text)


def _depth(text: str) -> int:
    depth = deepest = 0
    for token in _NESTING.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "]}":
            depth -= 1
    return deepest


def loads_bounded(text: str | bytes) -> Any:
    """``json.loads`` with nesting at most ``MAX_JSON_DEPTH`` and integers of at most
    ``MAX_INT_DIGITS`` digits; ProtocolError (field ``message``) for anything else."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ProtocolError("not valid UTF-8", field="message") from err
    # Counting brackets is cheap; the exact scan runs only when there are enough of them.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _depth(text) > MAX_JSON_DEPTH:
        raise ProtocolError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", field="message")
    try:
        return json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as err:
        raise ProtocolError(f"not valid JSON: {err.msg} at {err.pos}", field="message") from err
    except (RecursionError, ValueError) as err:  # depth or number size beyond the scanner's
        raise ProtocolError(f"not acceptable JSON: {err}", field="message") from err


def parse_text(text: str) -> dict[str, Any]:
    """A JSON object with a known ``type``; ProtocolError otherwise."""
    message = loads_bounded(text)
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object", field="message")
    kind = message.get("type")
    if kind not in (*CONTROL_TYPES, "frame", "audio"):
        raise ProtocolError(
            f"type must be one of start, end, clear, frame, audio; got {kind!r}", field="type"
        )
    return message


def parse_control(message: dict[str, Any]) -> Control:
    identity = message.get("identity", "default")
    if not isinstance(identity, str) or not identity:
        raise ProtocolError("identity must be a non-empty string", field="identity")
    return Control(kind=str(message["type"]), identity=identity)
