"""The streaming audio-to-motion interface shared by the built-in generator and the adapters.

16 kHz mono audio goes in as chunks of any size (float32 in [-1, 1] or int16 PCM); SMPL-X
``MotionFrame``s come out at ``fps``, in order, frame ``k`` with ``seq = start_seq + k`` and
``pts = k / fps`` seconds, i.e. aligned with the audio sample ``floor(k * rate / fps)``.
Context is carried between chunks: the same audio cut differently gives the same frames.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from model.motion.frame import MotionFrame


class AudioToMotion(Protocol):
    """A streaming speech-to-motion generator (synchronous; one caller at a time)."""

    sample_rate: int
    fps: float
    # Frames of audio that must be pushed beyond frame k before frame k comes out.
    latency_frames: int

    def push(self, samples: np.ndarray) -> list[MotionFrame]:
        """Append (N,) samples; return the frames completed by them (possibly none)."""
        ...

    def flush(self) -> list[MotionFrame]:
        """End of speech: complete the partial frame (zero padding) and the held-back tail."""
        ...

    def interrupt(self) -> None:
        """Barge-in: forget the speech heard so far; the motion returns to idle quickly."""
        ...

    def close(self) -> None:
        """Release external resources (processes, temporary files)."""
        ...
