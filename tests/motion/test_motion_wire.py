"""Wire formats: round trips and every rejection naming its field and frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
from motion_helpers import assert_frames_equal, random_frame

from model.errors import AnchorError
from model.motion.frame import FrameValidator, MotionFormatError, MotionLimits
from model.motion.wire import (
    HEADER,
    MAGIC,
    decode_binary,
    decode_frame,
    decode_json,
    encode_binary,
    encode_json,
    frame_to_dict,
)


@pytest.mark.parametrize("camera", [False, True])
def test_json_and_binary_round_trip_to_the_same_frame(camera: bool) -> None:
    frame = random_frame(7, np.random.default_rng(0), camera=camera)
    from_json = decode_json(encode_json(frame))
    from_binary = decode_binary(encode_binary(frame))
    assert_frames_equal(frame, from_json)
    assert_frames_equal(frame, from_binary)
    assert_frames_equal(decode_frame(encode_binary(frame)), decode_frame(encode_json(frame)))


def test_hand_pca_round_trip() -> None:
    frame = random_frame(1, np.random.default_rng(1))
    frame.hand_pca_count = 12
    frame.left_hand_pose = frame.left_hand_pose[:12].copy()
    frame.right_hand_pose = frame.right_hand_pose[:12].copy()
    assert_frames_equal(frame, decode_binary(encode_binary(frame)))
    assert_frames_equal(frame, decode_json(encode_json(frame)))


def _json_with(field: str, value: object) -> str:
    record = frame_to_dict(random_frame(5, np.random.default_rng(2)))
    record[field] = value
    return json.dumps(record)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("body_pose", [0.0] * 62, "expected 63"),
        ("transl", [0.0, float("nan"), 0.0], "NaN"),
        ("jaw_pose", [float("inf"), 0.0, 0.0], "NaN or infinity"),
        ("global_orient", [100.0, 0.0, 0.0], "exceeds"),
        ("transl", [1e6, 0.0, 0.0], "exceeds"),
        ("expression", [1e4] * 10, "exceeds"),
        ("betas", [0.0] * 301, "301"),
        ("bogus_field", [0.0], "unknown field"),
        ("left_hand_pose", "not a list", "expected a list"),
    ],
)
def test_json_rejections_name_field_and_seq(field: str, value: object, words: str) -> None:
    with pytest.raises(MotionFormatError) as caught:
        decode_json(_json_with(field, value))
    message = str(caught.value)
    assert field in message and "seq 5" in message and words in message
    assert caught.value.field == field and isinstance(caught.value, AnchorError)


def test_binary_rejects_nan_naming_field() -> None:
    frame = random_frame(9, np.random.default_rng(3))
    frame.body_pose[4] = np.nan
    with pytest.raises(MotionFormatError, match=r"'body_pose'.*seq 9"):
        decode_binary(encode_binary(frame))


def test_oversized_payloads_are_rejected_before_parsing() -> None:
    limits = MotionLimits(max_payload_bytes=1000)
    frame = random_frame(3, np.random.default_rng(4))
    with pytest.raises(MotionFormatError, match=r"'payload'.*exceed"):
        decode_binary(encode_binary(frame), limits)
    with pytest.raises(MotionFormatError, match=r"'payload'.*exceed"):
        decode_json(encode_json(frame), limits)


def test_binary_counts_beyond_limits_are_rejected_without_trusting_them() -> None:
    header = HEADER.pack(MAGIC, 1, 0, 4, 0.1, 60000, 0, 0, 0)
    with pytest.raises(MotionFormatError, match=r"'betas'.*seq 4.*60000"):
        decode_binary(header)
    frame = random_frame(4, np.random.default_rng(5))
    data = encode_binary(frame)
    with pytest.raises(MotionFormatError, match=r"'payload'.*announces"):
        decode_binary(data[:-4])
    with pytest.raises(MotionFormatError, match=r"'magic'"):
        decode_binary(b"XXXX" + data[4:])


def test_validator_requires_increasing_seq_and_keeps_state_after_a_rejection() -> None:
    generator = np.random.default_rng(6)
    validator = FrameValidator()
    validator.validate(random_frame(10, generator))
    with pytest.raises(MotionFormatError, match=r"'seq'.*seq 10.*greater than"):
        validator.validate(random_frame(10, generator))
    bad = random_frame(11, generator)
    bad.transl[0] = np.inf
    with pytest.raises(MotionFormatError, match=r"'transl'.*seq 11"):
        validator.validate(bad)
    assert validator.last_seq == 10
    assert validator.validate(random_frame(11, generator)).seq == 11
