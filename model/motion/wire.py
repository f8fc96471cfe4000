"""Wire formats of a motion frame: JSON with named fields and a compact binary record.

Both decode to the same ``MotionFrame`` and validate it. Lengths read from the wire
are checked against ``MotionLimits`` before anything is allocated or parsed.

Binary layout (little-endian)::

    magic    4s   b"AMF1"
    version  u16  1
    flags    u16  bit 0: camera present
    seq      u64
    pts      f64  seconds
    betas    u16  count (<= max_betas)
    express. u16  count (<= max_expression)
    hand_pca u16  PCA coefficients per hand (0 = 45 axis-angle values)
    reserved u16  0
    then float32 values in ``VECTOR_FIELDS`` order, then (with a camera)
    fx fy cx cy tx ty tz as float32 and width height as u32.

Only numpy and the standard library (the server imports this module).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from model.motion.frame import (
    BODY_POSE,
    DEFAULT_LIMITS,
    HAND_AXIS_ANGLE,
    VECTOR_FIELDS,
    Camera,
    MotionFormatError,
    MotionFrame,
    MotionLimits,
    validate_frame,
)

MAGIC = b"AMF1"
VERSION = 1
FLAG_CAMERA = 1
HEADER = struct.Struct("<4sHHQdHHHH")
CAMERA_FLOATS = struct.Struct("<7f")
CAMERA_SIZE = struct.Struct("<II")

JSON_FIELDS = frozenset(("seq", "pts", "hand_pca_count", "camera", *VECTOR_FIELDS))
CAMERA_FIELDS = frozenset(("focal", "principal", "translation", "width", "height"))


def _field_sizes(betas: int, expression: int, hand: int) -> list[tuple[str, int]]:
    sizes = {
        "betas": betas,
        "global_orient": 3,
        "body_pose": BODY_POSE,
        "jaw_pose": 3,
        "leye_pose": 3,
        "reye_pose": 3,
        "left_hand_pose": hand,
        "right_hand_pose": hand,
        "expression": expression,
        "transl": 3,
    }
    return [(name, sizes[name]) for name in VECTOR_FIELDS]


def encode_binary(frame: MotionFrame) -> bytes:
    """Packs ``frame`` into the binary record described in the module docstring."""
    flags = FLAG_CAMERA if frame.camera is not None else 0
    header = HEADER.pack(
        MAGIC,
        VERSION,
        flags,
        frame.seq,
        float(frame.pts),
        frame.betas.shape[0],
        frame.expression.shape[0],
        frame.hand_pca_count,
        0,
    )
    values = np.concatenate([getattr(frame, name) for name in VECTOR_FIELDS]).astype("<f4")
    parts = [header, values.tobytes()]
    if frame.camera is not None:
        camera = frame.camera
        floats = np.concatenate([camera.focal, camera.principal, camera.translation])
        parts.append(CAMERA_FLOATS.pack(*floats.tolist()))
        parts.append(CAMERA_SIZE.pack(camera.width, camera.height))
    return b"".join(parts)


def decode_binary(data: bytes, limits: MotionLimits = DEFAULT_LIMITS) -> MotionFrame:
    """Unpacks and validates one binary record; raises ``MotionFormatError``."""
    if len(data) > limits.max_payload_bytes:
        raise MotionFormatError(
            f"{len(data)} bytes exceed the limit of {limits.max_payload_bytes}", "payload"
        )
    if len(data) < HEADER.size:
        raise MotionFormatError(f"{len(data)} bytes, shorter than the header", "header")
    magic, version, flags, seq, pts, betas, expression, hand_pca, _ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise MotionFormatError(f"bad magic {magic!r}, expected {MAGIC!r}", "magic")
    if version != VERSION:
        raise MotionFormatError(f"unsupported version {version}", "version", seq)
    if flags & ~FLAG_CAMERA:
        raise MotionFormatError(f"unknown flag bits {flags:#x}", "flags", seq)
    for name, count, maximum in (
        ("betas", betas, limits.max_betas),
        ("expression", expression, limits.max_expression),
        ("hand_pca_count", hand_pca, limits.max_hand_pca),
    ):
        if count > maximum:
            raise MotionFormatError(f"count {count} exceeds the limit of {maximum}", name, seq)
    hand = hand_pca or HAND_AXIS_ANGLE
    sizes = _field_sizes(betas, expression, hand)
    value_count = sum(size for _, size in sizes)
    expected = HEADER.size + 4 * value_count
    if flags & FLAG_CAMERA:
        expected += CAMERA_FLOATS.size + CAMERA_SIZE.size
    if len(data) != expected:
        raise MotionFormatError(
            f"{len(data)} bytes, the header announces {expected}", "payload", seq
        )
    values = np.frombuffer(data, dtype="<f4", count=value_count, offset=HEADER.size)
    values = values.astype(np.float32)
    fields: dict[str, Any] = {}
    offset = 0
    for name, size in sizes:
        fields[name] = values[offset : offset + size]
        offset += size
    camera = None
    if flags & FLAG_CAMERA:
        start = HEADER.size + 4 * value_count
        floats = np.asarray(CAMERA_FLOATS.unpack_from(data, start), dtype=np.float32)
        width, height = CAMERA_SIZE.unpack_from(data, start + CAMERA_FLOATS.size)
        camera = Camera(floats[0:2], floats[2:4], floats[4:7], int(width), int(height))
    frame = MotionFrame(
        seq=int(seq), pts=float(pts), hand_pca_count=hand_pca, camera=camera, **fields
    )
    validate_frame(frame, limits)
    return frame


def frame_to_dict(frame: MotionFrame) -> dict[str, Any]:
    """Named fields as plain Python values (lists of floats)."""
    record: dict[str, Any] = {"seq": frame.seq, "pts": frame.pts}
    for name in VECTOR_FIELDS:
        record[name] = getattr(frame, name).tolist()
    if frame.hand_pca_count:
        record["hand_pca_count"] = frame.hand_pca_count
    if frame.camera is not None:
        camera = frame.camera
        record["camera"] = {
            "focal": camera.focal.tolist(),
            "principal": camera.principal.tolist(),
            "translation": camera.translation.tolist(),
            "width": camera.width,
            "height": camera.height,
        }
    return record


def encode_json(frame: MotionFrame) -> str:
    """The frame as a JSON object with named fields."""
    return json.dumps(frame_to_dict(frame), separators=(",", ":"))


def _number(value: Any, name: str, seq: int | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MotionFormatError(f"expected a number, got {type(value).__name__}", name, seq)
    return float(value)


def _integer(value: Any, name: str, seq: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MotionFormatError(f"expected an integer, got {value!r}", name, seq)
    return value


def _vector(value: Any, name: str, seq: int | None, maximum: int) -> np.ndarray:
    if not isinstance(value, list):
        raise MotionFormatError(
            f"expected a list of numbers, got {type(value).__name__}", name, seq
        )
    if len(value) > maximum:
        raise MotionFormatError(f"{len(value)} values exceed the limit of {maximum}", name, seq)
    return np.asarray([_number(item, name, seq) for item in value], dtype=np.float32)


def frame_from_dict(record: Any, limits: MotionLimits = DEFAULT_LIMITS) -> MotionFrame:
    """Builds and validates a frame from named fields (``seq`` and ``pts`` required)."""
    if not isinstance(record, dict):
        raise MotionFormatError("expected a JSON object", "frame")
    raw_seq = record.get("seq")
    seq = raw_seq if isinstance(raw_seq, int) and not isinstance(raw_seq, bool) else None
    for name in record:
        if name not in JSON_FIELDS:
            raise MotionFormatError("unknown field", str(name), seq)
    for required in ("seq", "pts"):
        if required not in record:
            raise MotionFormatError("missing", required, seq)
    seq = _integer(record["seq"], "seq", None)
    pts = _number(record["pts"], "pts", seq)
    if not math.isfinite(pts):
        raise MotionFormatError("must be finite", "pts", seq)
    hand_pca = _integer(record.get("hand_pca_count", 0), "hand_pca_count", seq)
    # Generous bound before validation; validate_frame then checks exact sizes.
    longest = max(limits.max_betas, limits.max_expression, BODY_POSE, HAND_AXIS_ANGLE)
    fields = {
        name: _vector(record[name], name, seq, longest) for name in VECTOR_FIELDS if name in record
    }
    camera = _camera_from_dict(record["camera"], seq) if record.get("camera") is not None else None
    frame = MotionFrame(seq=seq, pts=pts, hand_pca_count=hand_pca, camera=camera, **fields)
    validate_frame(frame, limits)
    return frame


def _camera_from_dict(record: Any, seq: int) -> Camera:
    if not isinstance(record, dict):
        raise MotionFormatError("expected an object", "camera", seq)
    for name in record:
        if name not in CAMERA_FIELDS:
            raise MotionFormatError("unknown field", f"camera.{name}", seq)
    for name in CAMERA_FIELDS:
        if name not in record:
            raise MotionFormatError("missing", f"camera.{name}", seq)
    return Camera(
        focal=_vector(record["focal"], "camera.focal", seq, 2),
        principal=_vector(record["principal"], "camera.principal", seq, 2),
        translation=_vector(record["translation"], "camera.translation", seq, 3),
        width=_integer(record["width"], "camera.width", seq),
        height=_integer(record["height"], "camera.height", seq),
    )


def decode_json(data: str | bytes, limits: MotionLimits = DEFAULT_LIMITS) -> MotionFrame:
    """Parses and validates one JSON frame; raises ``MotionFormatError``."""
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limits.max_payload_bytes:
        raise MotionFormatError(
            f"{size} bytes exceed the limit of {limits.max_payload_bytes}", "payload"
        )
    try:
        # Non-finite constants (NaN, Infinity) parse to floats and are rejected by validation.
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MotionFormatError(f"not valid JSON ({err})", "payload") from None
    return frame_from_dict(record, limits)


def decode_frame(data: str | bytes, limits: MotionLimits = DEFAULT_LIMITS) -> MotionFrame:
    """Decodes either wire format: binary when it starts with the magic, else JSON."""
    if isinstance(data, bytes | bytearray | memoryview) and bytes(data[:4]) == MAGIC:
        return decode_binary(bytes(data), limits)
    return decode_json(bytes(data) if not isinstance(data, str) else data, limits)
