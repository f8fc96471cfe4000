"""Adapters that run an external audio-to-motion model (TalkSHOW, EMAGE) from a local install.

The model runs in its own Python (its own environment, usually with its own torch) as a
subprocess: ``command`` is an argument list with placeholders ``{python}``, ``{repo}``,
``{checkpoint}``, ``{audio}`` (a 16 kHz mono PCM16 WAV this adapter writes) and ``{output}``
(where the model must write its result: TalkSHOW ``.npy`` (T, 265) or EMAGE ``.npz``). Their
demo scripts write to folders of their own, so ``command`` usually names a small wrapper
script in the install that calls the model and saves to ``{output}``. The result is read
with ``model.motion.readers.open_motion``, which checks the layout.

Streaming through the ``AudioToMotion`` interface: audio is cut into segments of
``segment_seconds``; each segment runs with ``context_seconds`` of the previous audio in
front (the model's continuity, as TalkSHOW's and EMAGE's carried frames), and the first
``blend_frames`` frames of a segment are cross-faded with the last frames of the previous
segment, which are held back for that. Latency: one segment plus ``blend_frames``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from model.audio2motion.audio import SAMPLE_RATE, FloatAudio, as_float, frame_boundary, write_wav
from model.errors import AnchorError
from model.motion.frame import MotionFrame
from model.motion.readers import open_motion

PLACEHOLDERS = ("{python}", "{repo}", "{checkpoint}", "{audio}", "{output}")
# Frames an external model may produce beyond or short of duration * fps (rounding of its
# own audio framing); more than this is an error, never padded silently.
LENGTH_TOLERANCE_FRAMES = 2


class ExternalModelConfig(BaseModel):
    """How to run one external audio-to-motion model."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["talkshow", "emage"]
    repo: Path  # the model's checkout (working directory of the command)
    python: Path  # the interpreter of the model's environment
    checkpoint: Path | None = None
    command: list[str] = Field(min_length=1)
    segment_seconds: float = Field(4.0, gt=0.0)
    context_seconds: float = Field(1.0, ge=0.0)
    blend_frames: int = Field(4, ge=0)
    timeout_s: float = Field(600.0, gt=0.0)


class ExternalAudioToMotion:
    """``AudioToMotion`` over an external model run once per segment (see module docstring)."""

    def __init__(
        self,
        config: ExternalModelConfig,
        sample_rate: int = SAMPLE_RATE,
        fps: float = 30.0,
        start_seq: int = 0,
    ) -> None:
        if not config.repo.is_dir():
            raise AnchorError(f"audio2motion.external.repo: no such folder {config.repo}")
        if not config.python.is_file():
            raise AnchorError(f"audio2motion.external.python: no such interpreter {config.python}")
        if config.checkpoint is not None and not config.checkpoint.exists():
            raise AnchorError(f"audio2motion.external.checkpoint: {config.checkpoint} not found")
        if not any("{audio}" in part for part in config.command) or not any(
            "{output}" in part for part in config.command
        ):
            raise AnchorError("audio2motion.external.command must contain {audio} and {output}")
        self.config = config
        self.sample_rate = sample_rate
        self.fps = fps
        self.start_seq = start_seq
        self._segment_frames = max(1, round(config.segment_seconds * fps))
        self._context_frames = round(config.context_seconds * fps)
        self.latency_frames = self._segment_frames + config.blend_frames
        self._workdir = Path(tempfile.mkdtemp(prefix="anchor-a2m-"))
        self.runs = 0
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._audio: FloatAudio = np.zeros(0, dtype=np.float32)  # from absolute sample _origin
        self._origin = 0
        self._next_frame = 0  # first frame index not produced by a run yet
        self._held: list[MotionFrame] = []  # tail of the last run, waiting for its blend

    @property
    def _samples_end(self) -> int:
        return self._origin + len(self._audio)

    def push(self, samples: np.ndarray) -> list[MotionFrame]:
        audio = as_float(samples)
        self._audio = np.concatenate([self._audio, audio])
        out: list[MotionFrame] = []
        while (
            frame_boundary(self._next_frame + self._segment_frames, self.sample_rate, self.fps)
            <= self._samples_end
        ):
            out += self._run_segment(self._next_frame + self._segment_frames)
        return out

    def flush(self) -> list[MotionFrame]:
        out: list[MotionFrame] = []
        end_frame = self._frames_covering(self._samples_end)
        if end_frame > self._next_frame:
            padding = frame_boundary(end_frame, self.sample_rate, self.fps) - self._samples_end
            if padding > 0:
                self._audio = np.concatenate([self._audio, np.zeros(padding, dtype=np.float32)])
            out += self._run_segment(end_frame)
        out += self._held
        self._held = []
        return out

    def _frames_covering(self, samples: int) -> int:
        """The smallest frame count whose audio spans at least ``samples`` samples."""
        count = int(samples * self.fps // self.sample_rate)
        while frame_boundary(count, self.sample_rate, self.fps) < samples:
            count += 1
        return count

    def interrupt(self) -> None:
        """Drop the audio not yet turned into motion and the held tail; frames continue after
        the last one produced, from silence."""
        produced = frame_boundary(self._next_frame, self.sample_rate, self.fps)
        self._audio = np.zeros(max(0, produced - self._origin), dtype=np.float32)
        self._held = []

    def close(self) -> None:
        shutil.rmtree(self._workdir, ignore_errors=True)

    # one run --------------------------------------------------------------------------

    def _run_segment(self, end_frame: int) -> list[MotionFrame]:
        first = max(0, self._next_frame - self._context_frames - len(self._held))
        start_sample = frame_boundary(first, self.sample_rate, self.fps)
        end_sample = frame_boundary(end_frame, self.sample_rate, self.fps)
        audio = self._audio[start_sample - self._origin : end_sample - self._origin]
        motion = self._run_model(audio, end_frame - first)
        frames = [
            _copy(pose, self.start_seq + first + offset, (first + offset) / self.fps)
            for offset, pose in enumerate(motion)
        ]
        new = frames[self._next_frame - first :]
        overlap = frames[self._next_frame - first - len(self._held) : self._next_frame - first]
        out = [
            _blend(old, fresh, (index + 1) / (len(self._held) + 1))
            for index, (old, fresh) in enumerate(zip(self._held, overlap, strict=True))
        ]
        hold = min(self.config.blend_frames, len(new))
        out += new[: len(new) - hold]
        self._held = new[len(new) - hold :]
        self._next_frame = end_frame
        # Keep the audio the next run needs as context.
        keep_from = frame_boundary(
            max(0, end_frame - self._context_frames - hold), self.sample_rate, self.fps
        )
        if keep_from > self._origin:
            self._audio = self._audio[keep_from - self._origin :]
            self._origin = keep_from
        return out

    def _run_model(self, audio: FloatAudio, expected: int) -> list[MotionFrame]:
        self.runs += 1
        audio_path = self._workdir / f"segment-{self.runs}.wav"
        suffix = ".npy" if self.config.kind == "talkshow" else ".npz"
        output_path = self._workdir / f"segment-{self.runs}{suffix}"
        write_wav(audio_path, audio, self.sample_rate)
        values = {
            "{python}": str(self.config.python),
            "{repo}": str(self.config.repo),
            "{checkpoint}": str(self.config.checkpoint or ""),
            "{audio}": str(audio_path),
            "{output}": str(output_path),
        }
        command = [_substitute(part, values) for part in self.config.command]
        try:
            result = subprocess.run(
                command,
                cwd=self.config.repo,
                capture_output=True,
                text=True,
                timeout=self.config.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise AnchorError(
                f"audio2motion.external: {self.config.kind} run {self.runs} exceeded "
                f"timeout_s ({self.config.timeout_s:g} s)"
            ) from err
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip()[-500:]
            raise AnchorError(
                f"audio2motion.external: {self.config.kind} exited with {result.returncode}: {tail}"
            )
        if not output_path.is_file():
            raise AnchorError(
                f"audio2motion.external: {self.config.kind} wrote no {output_path.name} "
                "(the command must save to {output})"
            )
        clip = open_motion(output_path, fps=self.fps)
        if abs(len(clip) - expected) > LENGTH_TOLERANCE_FRAMES:
            raise AnchorError(
                f"audio2motion.external: {self.config.kind} gave {len(clip)} frames for "
                f"{expected} frames of audio (tolerance {LENGTH_TOLERANCE_FRAMES})"
            )
        frames = list(clip.frames(0, expected))
        while len(frames) < expected:  # within the tolerance above: hold the last pose
            frames.append(frames[-1])
        audio_path.unlink(missing_ok=True)
        output_path.unlink(missing_ok=True)
        return frames


def _substitute(part: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        part = part.replace(key, value)
    return part


def _copy(frame: MotionFrame, seq: int, pts: float) -> MotionFrame:
    return MotionFrame(
        seq=seq,
        pts=pts,
        betas=frame.betas,
        global_orient=frame.global_orient,
        body_pose=frame.body_pose,
        jaw_pose=frame.jaw_pose,
        leye_pose=frame.leye_pose,
        reye_pose=frame.reye_pose,
        left_hand_pose=frame.left_hand_pose,
        right_hand_pose=frame.right_hand_pose,
        expression=frame.expression,
        transl=frame.transl,
        hand_pca_count=frame.hand_pca_count,
        camera=frame.camera,
    )


def _blend(old: MotionFrame, new: MotionFrame, weight: float) -> MotionFrame:
    """``(1 - weight) * old + weight * new`` field by field (axis-angles differ little
    between overlapping runs, so a linear blend is smooth); keeps ``old``'s seq and pts."""
    mixed = _copy(new, old.seq, old.pts)
    for name in (
        "global_orient",
        "body_pose",
        "jaw_pose",
        "leye_pose",
        "reye_pose",
        "left_hand_pose",
        "right_hand_pose",
        "transl",
    ):
        a, b = getattr(old, name), getattr(new, name)
        setattr(mixed, name, ((1.0 - weight) * a + weight * b).astype(np.float32))
    size = max(len(old.expression), len(new.expression))
    a = np.pad(old.expression, (0, size - len(old.expression)))
    b = np.pad(new.expression, (0, size - len(new.expression)))
    mixed.expression = ((1.0 - weight) * a + weight * b).astype(np.float32)
    return mixed
