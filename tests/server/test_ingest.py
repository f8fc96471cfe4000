"""Ingest checks: bounded JSON, per-run rules and malformed tokens, each naming its field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.motion.demo_loop import demo_frame
from model.motion.frame import Camera
from server.ingest import MAX_PTS_S, RunRules
from server.protocol import MAX_INT_DIGITS, MAX_JSON_DEPTH, ProtocolError, loads_bounded
from server.tokens import TokenError, mint_token, verify_token


@pytest.mark.parametrize(
    "text",
    [
        "[" * 2000 + "]" * 2000,
        '{"a":' + "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1) + "}",
        '{"seq":' + "9" * (MAX_INT_DIGITS + 1) + "}",
        '{"seq":-' + "9" * (MAX_INT_DIGITS + 1) + "}",
        "{",
        b"\xff\xfe",
    ],
)
def test_unbounded_json_is_a_protocol_error(text: str | bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        loads_bounded(text)
    assert caught.value.field == "message"


def test_bounded_json_still_parses_brackets_inside_strings() -> None:
    text = json.dumps({"a": "[" * 100, "b": [[1]], "n": int("9" * MAX_INT_DIGITS)})
    assert loads_bounded(text)["a"] == "[" * 100


def _rejected(rules: RunRules, frame: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        rules.check_frame(frame)  # type: ignore[arg-type]
    return caught.value


def test_run_rules_name_field_and_seq() -> None:
    rules = RunRules(hand_pca_count=0)
    first = demo_frame(5)
    rules.check_frame(first)
    rules.accept_frame(first)
    cases = {
        "seq": demo_frame(5),
        "pts": demo_frame(6),
        "hand_pca_count": demo_frame(7),
        "camera": demo_frame(8),
        "betas": demo_frame(9),
    }
    cases["pts"].pts = first.pts - 0.5
    pca = cases["hand_pca_count"]
    pca.hand_pca_count = 6
    pca.left_hand_pose = pca.right_hand_pose = np.zeros(6, np.float32)
    cases["camera"].camera = Camera(
        np.full(2, 100.0, np.float32), np.full(2, 32.0, np.float32), np.zeros(3, np.float32), 64, 64
    )
    cases["betas"].betas = np.zeros(first.betas.shape[0] + 1, np.float32)
    for field, frame in cases.items():
        error = _rejected(rules, frame)
        assert (error.field, error.seq) == (field, frame.seq), error
    huge = demo_frame(10)
    huge.seq = 2**63
    assert _rejected(rules, huge).field == "seq"
    late = demo_frame(11)
    late.pts = MAX_PTS_S * 10
    assert _rejected(rules, late).field == "pts"
    rules.clear()  # pts may restart after clear; seqs still increase
    restart = demo_frame(12)
    restart.pts = 0.0
    rules.check_frame(restart)
    rules.check_audio(1.0)
    rules.accept_audio(1.0)
    with pytest.raises(ProtocolError):
        rules.check_audio(0.5)
    with pytest.raises(ProtocolError):
        rules.check_audio(1.0e15)


@pytest.mark.parametrize("token", ["é.x", "tok\u00e9n.sig", "\U0001f600", "a.b\x00"])
def test_malformed_tokens_of_any_encoding_are_token_errors(token: str) -> None:
    with pytest.raises(TokenError):
        verify_token("secret", token, "s", "producer")


def test_valid_token_still_verifies() -> None:
    token = mint_token("secret", "s", "viewer", 60.0)
    assert verify_token("secret", token, "s", "viewer").session_id == "s"
