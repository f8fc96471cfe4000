"""The built-in generator on real synthesized speech: lips follow loudness, silence is closed,
chunking never changes the motion, behaviours happen, barge-in returns to idle."""

from __future__ import annotations

import numpy as np
import pytest
from a2m_helpers import frame_loudness_db

from model.audio2motion import BuiltinAudioToMotion, to_pcm16
from model.audio2motion.audio import SAMPLE_RATE, frame_boundary
from model.audio2motion.pose import (
    EXPRESSION_CHANNELS,
    LEFT_ELBOW,
    RIGHT_ELBOW,
    SPINE3,
    joint,
    rest_body_pose,
)
from model.motion.frame import MotionFrame, validate_frame

FIELDS = ("body_pose", "jaw_pose", "leye_pose", "expression", "left_hand_pose", "global_orient")


def run_whole(audio: np.ndarray, seed: int = 0) -> list[MotionFrame]:
    generator = BuiltinAudioToMotion(seed=seed)
    return generator.push(audio) + generator.flush()


def run_chunked(audio: np.ndarray, sizes: np.ndarray, seed: int = 0) -> list[MotionFrame]:
    generator = BuiltinAudioToMotion(seed=seed)
    frames: list[MotionFrame] = []
    position = 0
    for size in sizes:
        frames += generator.push(audio[position : position + int(size)])
        position += int(size)
    frames += generator.push(audio[position:])
    return frames + generator.flush()


def stacked(frames: list[MotionFrame], name: str) -> np.ndarray:
    return np.stack([getattr(frame, name) for frame in frames])


def test_jaw_follows_loudness_and_closes_in_silence(speech: np.ndarray) -> None:
    frames = run_whole(speech)
    jaw = stacked(frames, "jaw_pose")[:, 0]
    loudness = frame_loudness_db(speech, len(frames))
    assert np.corrcoef(jaw, loudness)[0, 1] > 0.5
    lead, tail = round(0.5 * 30), round(1.0 * 30)
    assert jaw[: lead - 2].max() < 0.01  # before speech (the window reaches 64 ms ahead)
    assert jaw[-tail + 10 :].max() < 0.01  # after the release
    assert jaw.max() > 0.15  # and it really opens while speaking


def test_frames_are_valid_and_timed(speech: np.ndarray) -> None:
    frames = run_whole(speech[: SAMPLE_RATE * 2])
    assert len(frames) == 60
    for index, frame in enumerate(frames):
        validate_frame(frame)
        assert frame.seq == index
        assert frame.pts == pytest.approx(index / 30.0)


@pytest.mark.parametrize("max_chunk", [1, 160, 533, 4096])
def test_chunked_equals_whole_file(speech: np.ndarray, max_chunk: int) -> None:
    audio = speech[: SAMPLE_RATE * 3]
    sizes = np.random.default_rng(max_chunk).integers(0, max_chunk + 1, size=len(audio))
    whole = run_whole(audio)
    chunked = run_chunked(audio, sizes[: np.searchsorted(np.cumsum(sizes), len(audio))])
    assert len(chunked) == len(whole) == 90
    for name in FIELDS:
        assert np.array_equal(stacked(chunked, name), stacked(whole, name)), name


def test_pcm16_chunks_equal_pcm16_whole(speech: np.ndarray) -> None:
    pcm = to_pcm16(speech[: SAMPLE_RATE * 2])
    whole = run_whole(pcm)
    chunked = run_chunked(pcm, np.full(200, 320))
    for name in FIELDS:
        assert np.array_equal(stacked(chunked, name), stacked(whole, name)), name


def test_frame_hop_is_exact() -> None:
    boundaries = [frame_boundary(index, SAMPLE_RATE, 30.0) for index in range(4)]
    assert boundaries == [0, 533, 1066, 1600]


def test_deterministic_given_seed(speech: np.ndarray) -> None:
    audio = speech[: SAMPLE_RATE * 4]
    first, again, other = run_whole(audio, 3), run_whole(audio, 3), run_whole(audio, 4)
    assert np.array_equal(stacked(first, "body_pose"), stacked(again, "body_pose"))
    assert not np.array_equal(stacked(first, "body_pose"), stacked(other, "body_pose"))


def test_speech_drives_gestures_nods_and_mouth_shape(speech: np.ndarray) -> None:
    frames = run_whole(speech)
    body = stacked(frames, "body_pose")
    rest = rest_body_pose()
    elbows = np.abs(body[:, joint(LEFT_ELBOW)] - rest[joint(LEFT_ELBOW)]).max(axis=1) + np.abs(
        body[:, joint(RIGHT_ELBOW)] - rest[joint(RIGHT_ELBOW)]
    ).max(axis=1)
    speaking = slice(20, len(frames) - 30)
    assert elbows[speaking].max() > 0.3  # beat gestures while speaking
    assert elbows[:10].max() < 0.01  # arms at rest before the first word
    head = body[:, joint(15)][:, 0]
    assert np.ptp(head[speaking]) > 0.03  # nods on prosodic peaks
    expression = stacked(frames, "expression")
    assert expression[:, EXPRESSION_CHANNELS["lip_round"]].max() > 0.05
    assert expression[:, EXPRESSION_CHANNELS["lip_spread"]].max() > 0.05
    steps = np.abs(np.diff(body, axis=0)).max()
    assert steps < 0.2  # no jumps between consecutive frames


def test_idle_breathes_blinks_and_looks_around() -> None:
    silence = np.zeros(SAMPLE_RATE * 10, dtype=np.float32)
    frames = run_whole(silence)
    body = stacked(frames, "body_pose")
    expression = stacked(frames, "expression")
    assert np.ptp(body[:, joint(SPINE3)][:, 0]) > 0.02  # breathing
    assert (expression[:, EXPRESSION_CHANNELS["blink"]] > 1.0).sum() >= 4  # a few blinks
    assert np.ptp(stacked(frames, "leye_pose")[:, 1]) > 0.05  # saccades
    assert stacked(frames, "jaw_pose").max() == 0.0


def test_interrupt_returns_to_idle_within_fade(speech: np.ndarray) -> None:
    generator = BuiltinAudioToMotion()
    frames = generator.push(speech[: round(SAMPLE_RATE * 1.6)])
    assert frames[-1].jaw_pose[0] > 0.0 or frames[-5].jaw_pose[0] > 0.05
    generator.interrupt()
    fade = generator.settings.interrupt_fade_frames
    after = generator.push(np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    rest = rest_body_pose()
    for frame in after[fade - 1 :]:
        assert frame.jaw_pose[0] == 0.0
        for elbow in (LEFT_ELBOW, RIGHT_ELBOW):
            assert np.allclose(frame.body_pose[joint(elbow)], rest[joint(elbow)], atol=1e-6)


def test_real_time_factor_is_measured_not_asserted(speech: np.ndarray) -> None:
    """The generator runs on any chunk size without error (speed is ``anchor bench``'s job)."""
    frames = run_chunked(speech, np.full(10_000, 320))
    assert len(frames) == -(-len(speech) * 30 // SAMPLE_RATE)
