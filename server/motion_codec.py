"""Motion frames on the producer socket, decoded and validated by ``model.motion.wire``
(numpy-only), with errors turned into protocol errors that name the field and seq."""

from __future__ import annotations

from typing import Any

from model.motion.frame import MotionFormatError, MotionFrame, MotionLimits
from model.motion.wire import MAGIC, decode_binary, frame_from_dict
from server.protocol import ProtocolError


def _limits(max_message_bytes: int) -> MotionLimits:
    return MotionLimits(max_payload_bytes=max_message_bytes)


def _protocol_error(err: MotionFormatError) -> ProtocolError:
    return ProtocolError(str(err), field=err.field, seq=err.seq)


def decode_binary_frame(payload: bytes, max_message_bytes: int) -> MotionFrame:
    """A binary motion record (``model.motion.wire`` layout, magic ``AMF1``)."""
    if payload[: len(MAGIC)] != MAGIC:
        raise ProtocolError(
            f"binary message starts with {payload[:4]!r}: expected a motion frame "
            f"({MAGIC!r}) or an audio chunk",
            field="message",
        )
    try:
        return decode_binary(payload, _limits(max_message_bytes))
    except MotionFormatError as err:
        raise _protocol_error(err) from err


def decode_json_frame(message: dict[str, Any], max_message_bytes: int = 1 << 20) -> MotionFrame:
    """A JSON ``{"type": "frame", ...named fields...}`` message."""
    record = {key: value for key, value in message.items() if key != "type"}
    try:
        return frame_from_dict(record, _limits(max_message_bytes))
    except MotionFormatError as err:
        raise _protocol_error(err) from err
