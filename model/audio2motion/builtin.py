"""The built-in audio-to-motion generator: signal-driven SMPL-X motion, real time on a CPU.

No weights. Per video frame (``features.FrameAnalyzer``: loudness, spectral centroid,
flatness, flux over a 64 ms window ending at the frame's last sample):

- jaw opening and mouth expression follow the loudness (attack/release envelope, less
  opening on noise-like fricatives) and the spectral centroid (rounded vs spread lips);
- eyes blink at random intervals and make saccades between gaze targets;
- the head nods (and sometimes tilts), the brows rise on prosodic peaks (local maxima of
  the slow loudness above its running mean);
- arms and hands make beat gestures on syllable onsets (loudness rise with spectral flux),
  and hold a speaking posture while the voice is active;
- between utterances: breathing (spine and collars) and a slow sway.

Determinism: one ``numpy`` generator seeded by ``seed`` draws a fixed number of values per
frame, and each frame depends only on the features and the carried state, so the output
depends on the audio and the seed, never on the chunking. Latency: frame ``k`` comes out as
soon as its last audio sample was pushed (``latency_frames = 0``); peak detection looks
one frame back instead of ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from model.audio2motion.audio import SAMPLE_RATE
from model.audio2motion.features import FrameAnalyzer, SpeechFeatures
from model.audio2motion.pose import (
    EXPRESSION_CHANNELS,
    EXPRESSION_SIZE,
    HEAD,
    LEFT_COLLAR,
    LEFT_CURL,
    LEFT_ELBOW,
    LEFT_SHOULDER,
    LEFT_WRIST,
    NECK,
    REST_GLOBAL_ORIENT,
    RIGHT_COLLAR,
    RIGHT_CURL,
    RIGHT_ELBOW,
    RIGHT_SHOULDER,
    RIGHT_WRIST,
    SPINE1,
    SPINE2,
    SPINE3,
    joint,
    rest_body_pose,
    rest_hand_pose,
)
from model.motion.frame import MotionFrame


@dataclass(frozen=True, slots=True)
class BuiltinSettings:
    """Tuning of the built-in generator (angles in radians, times in seconds)."""

    max_jaw: float = 0.3
    jaw_attack_s: float = 0.02
    jaw_release_s: float = 0.06
    gate_floor_db: float = -50.0  # never voiced below this level
    gate_range_db: float = 30.0  # voiced within this range of the running peak
    peak_decay_db_per_s: float = 3.0
    onset_rise_db: float = 3.0
    onset_flux: float = 0.5
    beat_refractory_s: float = 0.25
    nod_refractory_s: float = 0.4
    prosody_margin_db: float = 3.0
    blink_mean_interval_s: float = 3.5
    blink_min_interval_s: float = 1.2
    saccade_interval_s: tuple[float, float] = (0.4, 2.5)
    breathing_hz: float = 0.25
    sway_time_constant_s: float = 2.0
    sway_std: float = 0.02
    interrupt_fade_frames: int = 3


# Blink eyelid closure over consecutive frames (about 170 ms at 30 fps).
_BLINK_SHAPE = (0.5, 1.0, 1.0, 0.6, 0.2)
_DRAWS_UNIFORM = 8
_DRAWS_NORMAL = 4


@dataclass(slots=True)
class _Spring:
    """A damped second-order channel driven by impulses (critically-ish damped, ~2 Hz)."""

    position: float = 0.0
    velocity: float = 0.0

    def step(self, dt: float, omega: float = 12.0, damping: float = 0.75) -> float:
        acceleration = -omega * omega * self.position - 2.0 * damping * omega * self.velocity
        self.velocity += dt * acceleration
        self.position += dt * self.velocity
        return self.position

    def kick(self, amount: float) -> None:
        self.velocity += amount

    def scale(self, factor: float) -> None:
        self.position *= factor
        self.velocity *= factor


@dataclass(slots=True)
class _State:
    """Everything carried from one frame to the next."""

    peak_db: float = -30.0
    mean_db: float = -40.0
    previous_db: float = -90.0
    slow_db: list[float] = field(default_factory=lambda: [-90.0, -90.0])  # S[k-2], S[k-1]
    jaw: float = 0.0
    lip_round: float = 0.0
    lip_spread: float = 0.0
    posture: float = 0.0
    smile: float = 0.0
    brow: _Spring = field(default_factory=_Spring)
    nod: _Spring = field(default_factory=_Spring)
    tilt: _Spring = field(default_factory=_Spring)
    beat_left: _Spring = field(default_factory=_Spring)
    beat_right: _Spring = field(default_factory=_Spring)
    frames_since_beat: int = 1000
    frames_since_nod: int = 1000
    blink_countdown: int = 45
    blink_phase: int = -1
    saccade_countdown: int = 20
    gaze_target: tuple[float, float] = (0.0, 0.0)
    gaze: tuple[float, float] = (0.0, 0.0)
    sway: tuple[float, float] = (0.0, 0.0)
    fade_left: int = 0


def _one_pole(current: float, target: float, seconds: float, dt: float) -> float:
    alpha = 1.0 - math.exp(-dt / seconds) if seconds > 0 else 1.0
    return current + alpha * (target - current)


class BuiltinAudioToMotion:
    """The embedded default generator (see the module docstring); ``AudioToMotion``."""

    latency_frames = 0

    def __init__(
        self,
        seed: int = 0,
        settings: BuiltinSettings | None = None,
        sample_rate: int = SAMPLE_RATE,
        fps: float = 30.0,
        start_seq: int = 0,
    ) -> None:
        self.seed = seed
        self.settings = settings or BuiltinSettings()
        self.sample_rate = sample_rate
        self.fps = fps
        self.start_seq = start_seq
        self._dt = 1.0 / fps
        self._analyzer = FrameAnalyzer(sample_rate, fps)
        self._rest_body = rest_body_pose()
        self._rest_hand = rest_hand_pose()
        self.reset()

    def reset(self) -> None:
        """Back to frame 0 with the initial state and the seed's first random draw."""
        self._analyzer.reset()
        self._rng = np.random.default_rng(self.seed)
        self._state = _State()

    @property
    def frames_out(self) -> int:
        """Frames produced so far (the index of the next one)."""
        return self._analyzer.next_index

    def push(self, samples: np.ndarray) -> list[MotionFrame]:
        return [self._frame(features) for features in self._analyzer.push(samples)]

    def flush(self) -> list[MotionFrame]:
        padding = self._analyzer.samples_to_complete_frame()
        if padding == 0:
            return []
        return self.push(np.zeros(padding, dtype=np.float32))

    def interrupt(self) -> None:
        self._analyzer.silence_history()
        self._state.fade_left = max(1, self.settings.interrupt_fade_frames)

    def close(self) -> None:
        """Nothing to release."""

    # one frame ------------------------------------------------------------------------

    def _frame(self, features: SpeechFeatures) -> MotionFrame:
        uniform = self._rng.random(_DRAWS_UNIFORM)
        normal = self._rng.standard_normal(_DRAWS_NORMAL)
        state = self._state
        voiced, level = self._loudness(features)
        self._mouth(features, voiced, level)
        self._prosody(features, voiced, uniform)
        self._beats(features, voiced, level, uniform)
        self._eyes(voiced, uniform)
        self._idle(normal)
        if state.fade_left > 0:
            self._fade()
        return self._compose(features.index)

    def _loudness(self, features: SpeechFeatures) -> tuple[bool, float]:
        settings, state, dt = self.settings, self._state, self._dt
        loud = features.loudness_db
        state.peak_db = max(loud, state.peak_db - settings.peak_decay_db_per_s * dt, -45.0)
        gate = max(settings.gate_floor_db, state.peak_db - settings.gate_range_db)
        voiced = loud > gate
        level = min(1.0, max(0.0, (loud - gate) / max(6.0, state.peak_db - gate)))
        return voiced, level

    def _mouth(self, features: SpeechFeatures, voiced: bool, level: float) -> None:
        settings, state, dt = self.settings, self._state, self._dt
        fricative = min(1.0, max(0.0, (features.flatness - 0.3) / 0.4))
        opening = level**0.8 * (1.0 - 0.5 * fricative) if voiced else 0.0
        seconds = settings.jaw_attack_s if opening > state.jaw else settings.jaw_release_s
        state.jaw = _one_pole(state.jaw, opening, seconds, dt)
        brightness = min(1.0, max(0.0, (features.centroid_hz - 1000.0) / 2000.0))
        state.lip_round = _one_pole(state.lip_round, opening * (1.0 - brightness), 0.05, dt)
        state.lip_spread = _one_pole(state.lip_spread, opening * brightness, 0.05, dt)
        state.posture = _one_pole(state.posture, 1.0 if voiced else 0.0, 0.6, dt)

    def _prosody(self, features: SpeechFeatures, voiced: bool, uniform: np.ndarray) -> None:
        settings, state, dt = self.settings, self._state, self._dt
        slow = _one_pole(state.slow_db[1], features.loudness_db, 0.15, dt)
        before, previous = state.slow_db
        state.slow_db = [previous, slow]
        if voiced:
            state.mean_db = _one_pole(state.mean_db, features.loudness_db, 1.5, dt)
        state.frames_since_nod += 1
        is_peak = previous > before and previous >= slow
        emphasis = previous - state.mean_db
        if (
            voiced
            and is_peak
            and emphasis > settings.prosody_margin_db
            and state.frames_since_nod * dt >= settings.nod_refractory_s
        ):
            strength = min(1.0, emphasis / 8.0)
            state.nod.kick(4.0 * strength)
            state.brow.kick(6.0 * strength)
            if uniform[0] < 0.5:
                state.tilt.kick((2.0 if uniform[1] < 0.5 else -2.0) * strength)
            state.frames_since_nod = 0
        state.nod.step(dt, omega=9.0)
        state.tilt.step(dt, omega=6.0)
        state.brow.step(dt, omega=8.0)
        state.smile = _one_pole(state.smile, 0.3 * state.posture, 2.0, dt)

    def _beats(
        self, features: SpeechFeatures, voiced: bool, level: float, uniform: np.ndarray
    ) -> None:
        settings, state, dt = self.settings, self._state, self._dt
        rise = features.loudness_db - state.previous_db
        state.previous_db = features.loudness_db
        state.frames_since_beat += 1
        if (
            voiced
            and rise > settings.onset_rise_db
            and features.flux > settings.onset_flux
            and state.frames_since_beat * dt >= settings.beat_refractory_s
        ):
            amount = 2.5 * (0.4 + 0.6 * level)
            choice = uniform[2]
            if choice < 0.45 or choice >= 0.85:
                state.beat_right.kick(amount)
            if choice >= 0.45:
                state.beat_left.kick(amount * (0.8 if choice >= 0.85 else 1.0))
            state.frames_since_beat = 0
        state.beat_left.step(dt, omega=10.0)
        state.beat_right.step(dt, omega=10.0)

    def _eyes(self, voiced: bool, uniform: np.ndarray) -> None:
        settings, state, dt = self.settings, self._state, self._dt
        if state.blink_phase >= 0:
            state.blink_phase += 1
            if state.blink_phase >= len(_BLINK_SHAPE):
                state.blink_phase = -1
        else:
            state.blink_countdown -= 1
            if state.blink_countdown <= 0:
                state.blink_phase = 0
                exponential = -math.log(max(1e-6, float(uniform[3])))
                mean, shortest = settings.blink_mean_interval_s, settings.blink_min_interval_s
                interval = shortest + mean * exponential
                state.blink_countdown = max(1, round(interval / dt))
        state.saccade_countdown -= 1
        if state.saccade_countdown <= 0:
            spread = 0.08 if voiced else 0.2  # a speaker mostly looks at the camera
            yaw_target = spread * (2.0 * float(uniform[4]) - 1.0)
            state.gaze_target = (yaw_target, 0.4 * spread * (2.0 * float(uniform[5]) - 1.0))
            low, high = settings.saccade_interval_s
            state.saccade_countdown = max(1, round((low + (high - low) * uniform[6]) / dt))
        yaw = state.gaze[0] + 0.6 * (state.gaze_target[0] - state.gaze[0])
        pitch = state.gaze[1] + 0.6 * (state.gaze_target[1] - state.gaze[1])
        state.gaze = (yaw, pitch)

    def _idle(self, normal: np.ndarray) -> None:
        settings, state, dt = self.settings, self._state, self._dt
        decay = math.exp(-dt / settings.sway_time_constant_s)
        noise = settings.sway_std * math.sqrt(1.0 - decay * decay)
        state.sway = (
            decay * state.sway[0] + noise * float(normal[0]),
            decay * state.sway[1] + noise * float(normal[1]),
        )

    def _fade(self) -> None:
        """Barge-in: scale every speech-driven channel linearly to zero over the fade frames."""
        state = self._state
        factor = (state.fade_left - 1) / state.fade_left
        state.jaw *= factor
        state.lip_round *= factor
        state.lip_spread *= factor
        state.posture *= factor
        for spring in (state.brow, state.nod, state.tilt, state.beat_left, state.beat_right):
            spring.scale(factor)
        state.fade_left -= 1
        if state.fade_left == 0:
            state.slow_db = [-90.0, -90.0]
            state.previous_db = -90.0

    def _compose(self, index: int) -> MotionFrame:
        state, settings = self._state, self.settings
        time = index * self._dt
        body = self._rest_body.copy()
        breath = math.sin(2.0 * math.pi * settings.breathing_hz * time)
        body[joint(SPINE3)][0] += 0.015 * breath
        body[joint(LEFT_COLLAR)][2] -= 0.01 * breath
        body[joint(RIGHT_COLLAR)][2] += 0.01 * breath
        body[joint(SPINE1)][1] += state.sway[0]
        body[joint(SPINE2)][2] += state.sway[1]
        body[joint(NECK)][0] += 0.4 * state.nod.position
        body[joint(HEAD)][0] += 0.6 * state.nod.position
        body[joint(HEAD)][2] += 0.5 * state.tilt.position
        body[joint(NECK)][1] += 0.5 * state.gaze[0]  # the head follows the eyes a little
        # Speaking posture: forearms come up into the gesture space; beats add to it.
        left = 0.25 * state.posture + state.beat_left.position
        right = 0.25 * state.posture + state.beat_right.position
        body[joint(LEFT_ELBOW)][1] -= 0.9 * left
        body[joint(RIGHT_ELBOW)][1] += 0.9 * right
        body[joint(LEFT_SHOULDER)][0] -= 0.25 * left
        body[joint(RIGHT_SHOULDER)][0] -= 0.25 * right
        body[joint(LEFT_WRIST)][2] -= 0.3 * state.beat_left.position
        body[joint(RIGHT_WRIST)][2] += 0.3 * state.beat_right.position
        left_hand = self._rest_hand + LEFT_CURL * np.float32(0.15 * left)
        right_hand = self._rest_hand + RIGHT_CURL * np.float32(0.15 * right)
        expression = np.zeros(EXPRESSION_SIZE, dtype=np.float32)
        expression[EXPRESSION_CHANNELS["mouth_open"]] = 1.5 * state.jaw
        expression[EXPRESSION_CHANNELS["smile"]] = state.smile
        expression[EXPRESSION_CHANNELS["lip_round"]] = 1.2 * state.lip_round
        expression[EXPRESSION_CHANNELS["lip_spread"]] = 1.2 * state.lip_spread
        expression[EXPRESSION_CHANNELS["brow_raise"]] = state.brow.position
        blink = _BLINK_SHAPE[state.blink_phase] if state.blink_phase >= 0 else 0.0
        expression[EXPRESSION_CHANNELS["blink"]] = 2.0 * blink
        eye = np.array([state.gaze[1] + 0.1 * blink, state.gaze[0], 0.0], dtype=np.float32)
        return MotionFrame(
            seq=self.start_seq + index,
            pts=time,
            global_orient=REST_GLOBAL_ORIENT.copy(),
            body_pose=body.astype(np.float32),
            jaw_pose=np.array([settings.max_jaw * state.jaw, 0.0, 0.0], dtype=np.float32),
            leye_pose=eye,
            reye_pose=eye.copy(),
            left_hand_pose=left_hand.astype(np.float32),
            right_hand_pose=right_hand.astype(np.float32),
            expression=expression,
        )
