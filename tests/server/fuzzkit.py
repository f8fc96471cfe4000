"""Malformed producer and viewer messages for the fuzz test, by kind.

Each kind is a function of an index returning one message (text or bytes) that the server
must refuse with an ``error`` naming a field. Producer kinds marked ``in_run`` need the run
that the fuzz producer starts with one valid frame (seq 0, pts 10 s, no camera).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from model.motion.demo_loop import demo_frame
from model.motion.wire import HEADER, MAGIC, encode_binary, frame_to_dict
from server.protocol import AUDIO_MAGIC, encode_audio

Message = str | bytes
MESSAGE_LIMIT = 64 * 1024  # server.max_message_bytes in the fuzz test


def frame(index: int, **changes: Any) -> str:
    record = frame_to_dict(demo_frame(index))
    record.update(changes, type="frame")
    return json.dumps(record)


def _pca(seq: int) -> str:
    return frame(seq, hand_pca_count=6, left_hand_pose=[0.0] * 6, right_hand_pose=[0.0] * 6)


def _camera(seq: int) -> str:
    camera = {"focal": [100.0, 100.0], "principal": [32.0, 32.0], "translation": [0.0, 0.0, 0.0]}
    return frame(seq, camera={**camera, "width": 64, "height": 64})


def _binary_header(seq: int, version: int = 1) -> bytes:
    return HEADER.pack(MAGIC, version, 0, seq, 1.0, 0, 0, 0, 0)


def _binary_seq(seq: int) -> bytes:
    data = bytearray(encode_binary(demo_frame(seq)))
    struct.pack_into("<Q", data, 8, 2**64 - 1 - seq)
    return bytes(data)


def _audio(**fields: Any) -> str:
    message = {"type": "audio", "pts": 1.0, "sample_rate": 16000, "data": "AAAA"}
    message.update(fields)
    return json.dumps(message)


def _json(value: Any) -> str:
    return json.dumps(value)


PRODUCER_KINDS: dict[str, Callable[[int], Message]] = {
    "not json": lambda i: "{" * (1 + i % 3),
    "deep nesting": lambda i: "[" * (1000 + i) + "]" * (1000 + i),
    "deep object": lambda i: '{"a":' * 40 + "1" + "}" * 40,
    "huge int": lambda i: '{"type":"frame","seq":' + "9" * (4301 + i) + "}",
    "array": lambda i: _json([i]),
    "string": lambda i: _json(f"frame {i}"),
    "unknown type": lambda i: _json({"type": f"x{i}"}),
    "no type": lambda i: _json({"seq": i}),
    "frame no seq": lambda i: _json({"type": "frame", "pts": 1.0}),
    "frame negative seq": lambda i: frame(1, seq=-1 - i),
    "frame seq 2**63": lambda i: frame(1, seq=2**63 + i),
    "frame pts NaN": lambda i: frame(1 + i, pts=float("nan")),
    "frame pts 1e15": lambda i: frame(1 + i, pts=1e15),
    "frame pts negative": lambda i: frame(1 + i, pts=-1.0),
    "frame pts string": lambda i: frame(1 + i, pts="soon"),
    "frame unknown field": lambda i: frame(1 + i, colour=1),
    "frame short body_pose": lambda i: frame(1 + i, body_pose=[0.0] * 5),
    "frame body_pose strings": lambda i: frame(1 + i, body_pose=["a"] * 63),
    "audio no data": lambda i: _audio(data=None),
    "audio bad base64": lambda i: _audio(data="@@@@"),
    "audio odd bytes": lambda i: _audio(data=base64.b64encode(b"\x01").decode()),
    "audio sample rate": lambda i: _audio(sample_rate=8000 + i),
    "audio pts string": lambda i: _audio(pts="x"),
    "start bad identity": lambda i: _json({"type": "start", "identity": i}),
    "binary garbage": lambda i: bytes([i % 256]) * 16,
    "binary truncated": lambda i: MAGIC + b"\x01",
    "binary bad version": lambda i: _binary_header(1, version=7),
    "binary seq 2**64": _binary_seq,
    "binary audio truncated": lambda i: AUDIO_MAGIC + b"\x00",
    "binary audio pts inf": lambda i: encode_audio(float("inf"), 16000, np.zeros(4, np.int16)),
    "oversized": lambda i: _json({"type": "frame", "pad": "x" * (MESSAGE_LIMIT + 10)}),
}

# Need the fuzz run (first frame: seq 0, pts 10, no camera, no betas).
IN_RUN_KINDS: dict[str, Callable[[int], Message]] = {
    "seq repeated": lambda i: frame(0),
    "pts decreasing": lambda i: frame(1 + i, pts=5.0),
    "hand pca 6": lambda i: _pca(1 + i),
    "camera appears": lambda i: _camera(1 + i),
    "betas change": lambda i: frame(1 + i, pts=11.0, betas=[0.1] * 10),
    "audio pts 1e15": lambda i: _audio(pts=1e15),
    "start again": lambda i: _json({"type": "start"}),
}

VIEWER_KINDS: dict[str, Callable[[int], Message]] = {
    "not json": lambda i: "{]",
    "deep nesting": lambda i: "[" * (1000 + i) + "]" * (1000 + i),
    "huge int": lambda i: '{"type":"offer","sdp":' + "7" * 5000 + "}",
    "array": lambda i: _json([]),
    "unknown type": lambda i: _json({"type": "answer", "sdp": "v=0"}),
    "offer sdp int": lambda i: _json({"type": "offer", "sdp": i}),
    "offer sdp list": lambda i: _json({"type": "offer", "sdp": ["v=0"]}),
    "offer no sdp": lambda i: _json({"type": "offer"}),
    "offer garbage sdp": lambda i: _json({"type": "offer", "sdp": f"garbage {i}"}),
    "candidate int": lambda i: _json({"type": "candidate", "candidate": i + 1}),
    "candidate garbage": lambda i: _json({"type": "candidate", "candidate": "candidate:x y"}),
    "candidate bad index": lambda i: _json(
        {
            "type": "candidate",
            "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host",
            "sdpMLineIndex": "zero",
        }
    ),
    "candidate before offer": lambda i: _json(
        {"type": "candidate", "candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host"}
    ),
}
