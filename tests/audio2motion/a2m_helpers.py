"""Speech for the audio-to-motion and bot tests: espeak-ng (Debian package ``espeak-ng``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from model.audio2motion.audio import SAMPLE_RATE, read_wav

SENTENCE = (
    "Hello there. This is the anchor speaking, with a short pause. And then, some more words!"
)


def synthesize(
    path: Path, text: str = SENTENCE, lead_s: float = 0.5, tail_s: float = 1.0
) -> np.ndarray:
    """Speak ``text`` with espeak-ng; returns (N,) float32 16 kHz with silence around it.

    Fails (never skips) when espeak-ng is missing: the Makefile installs it.
    """
    executable = shutil.which("espeak-ng")
    assert executable is not None, "espeak-ng is required (apt-get install espeak-ng)"
    raw = path.with_suffix(".espeak.wav")
    subprocess.run([executable, "-s", "160", "-w", str(raw), text], check=True)
    speech = read_wav(raw, SAMPLE_RATE)
    lead = np.zeros(round(lead_s * SAMPLE_RATE), dtype=np.float32)
    tail = np.zeros(round(tail_s * SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([lead, speech, tail])


def frame_loudness_db(audio: np.ndarray, frames: int, fps: float = 30.0) -> np.ndarray:
    """(frames,) RMS level in dBFS of each frame's own samples, floored at -60 dB."""
    levels = []
    for index in range(frames):
        start = int(index * SAMPLE_RATE // fps)
        stop = int((index + 1) * SAMPLE_RATE // fps)
        chunk = audio[start:stop].astype(np.float64)
        levels.append(10.0 * np.log10(np.mean(chunk**2) + 1e-12) if len(chunk) else -120.0)
    return np.maximum(np.array(levels), -60.0)
