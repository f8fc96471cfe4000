"""The bundled demo clip: a few seconds of TalkSHOW-format motion, made deterministically.

``python -m model.motion.samples clients/samples/wave_talkshow.npy`` regenerates it:
the right arm waves, the head nods, the jaw opens and closes. Like TalkSHOW output the
global orientation is about pi around x (OpenCV camera convention).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from model.motion.frame import DEFAULT_FPS
from model.motion.readers import TALKSHOW_COLUMNS, TALKSHOW_WIDTH


def _body(joint: int) -> slice:
    """Columns of SMPL-X body joint ``joint`` (1..21) in the TalkSHOW layout."""
    start = TALKSHOW_COLUMNS["body_pose"].start + 3 * (joint - 1)
    return slice(start, start + 3)


def wave_clip(seconds: float = 4.0, fps: float = DEFAULT_FPS) -> np.ndarray:
    """``(T, 265)`` float32 TalkSHOW motion."""
    count = round(seconds * fps)
    time = np.arange(count, dtype=np.float64) / fps
    table = np.zeros((count, TALKSHOW_WIDTH), dtype=np.float64)
    table[:, TALKSHOW_COLUMNS["global_orient"]] = (np.pi, 0.0, 0.0)
    # Arms down from the T-pose (rotation about z of the shoulders).
    table[:, _body(16)] = (0.0, 0.0, -1.2)  # left shoulder
    wave = np.sin(2.0 * np.pi * 1.2 * time)
    table[:, _body(17).start + 2] = 0.9  # right upper arm down by the side
    table[:, _body(19).start + 2] = -2.0 + 0.4 * wave  # forearm up, swinging: the wave
    table[:, _body(18).start + 1] = -0.3  # left elbow slightly bent
    table[:, _body(15).start + 0] = 0.15 * np.sin(2.0 * np.pi * 0.8 * time)  # head nods
    table[:, _body(12).start + 0] = 0.05 * np.sin(2.0 * np.pi * 0.4 * time)  # neck
    jaw = TALKSHOW_COLUMNS["jaw_pose"].start
    table[:, jaw] = 0.12 * (1.0 + np.sin(2.0 * np.pi * 3.0 * time))  # talking
    expression = TALKSHOW_COLUMNS["expression"].start
    table[:, expression + 1] = 0.5 * (1.0 + np.sin(2.0 * np.pi * 0.3 * time))  # smile
    return table.astype(np.float32)


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path("clients/samples/wave_talkshow.npy")
    target.parent.mkdir(parents=True, exist_ok=True)
    np.save(target, wave_clip())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
