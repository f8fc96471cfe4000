"""External-model adapters, exercised with a small fake "TalkSHOW" written by the test.

The real TalkSHOW/EMAGE (their code, environments and checkpoints) cannot exist here; the
fake script stands in for the subprocess boundary only: it reads the WAV the adapter wrote
and saves a valid TalkSHOW ``.npy`` (T, 265) whose jaw column is each frame's RMS level,
so the test can check which audio each streamed frame came from.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from model.audio2motion import (
    Audio2MotionConfig,
    ExternalAudioToMotion,
    ExternalModelConfig,
    create_generator,
)
from model.audio2motion.audio import SAMPLE_RATE, frame_boundary
from model.errors import AnchorError

FAKE_TALKSHOW = """
import sys, wave
import numpy as np

audio_path, output_path = sys.argv[1], sys.argv[2]
with wave.open(audio_path, "rb") as reader:
    samples = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2") / 32768.0
count = int(np.ceil(len(samples) * 30 / 16000))
table = np.zeros((count, 265), dtype=np.float32)
table[:, 9] = np.pi  # global_orient, OpenCV convention
for index in range(count):
    chunk = samples[index * 16000 // 30 : (index + 1) * 16000 // 30]
    table[index, 0] = np.sqrt(np.mean(chunk ** 2)) if len(chunk) else 0.0
np.save(output_path, table)
"""


def make_install(tmp_path: Path, script: str = FAKE_TALKSHOW) -> ExternalModelConfig:
    repo = tmp_path / "TalkSHOW"
    repo.mkdir()
    (repo / "fake_demo.py").write_text(script)
    return ExternalModelConfig(
        kind="talkshow",
        repo=repo,
        python=Path(sys.executable),
        command=["{python}", "fake_demo.py", "{audio}", "{output}"],
        segment_seconds=1.0,
        context_seconds=0.5,
        blend_frames=4,
    )


def tone(seconds: float) -> np.ndarray:
    """A tone whose loudness ramps up then down: each frame's RMS is distinct."""
    time = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = 0.05 + 0.4 * np.sin(np.pi * time / seconds)
    return (envelope * np.sin(2 * np.pi * 220 * time)).astype(np.float32)


def frame_rms(audio: np.ndarray, index: int) -> float:
    start = frame_boundary(index, SAMPLE_RATE, 30.0)
    stop = frame_boundary(index + 1, SAMPLE_RATE, 30.0)
    return float(np.sqrt(np.mean(audio[start:stop].astype(np.float64) ** 2)))


def test_streams_segments_in_order_with_the_right_audio(tmp_path: Path) -> None:
    audio = tone(3.3)
    generator = ExternalAudioToMotion(make_install(tmp_path), start_seq=100)
    frames = []
    for start in range(0, len(audio), 1000):
        frames += generator.push(audio[start : start + 1000])
    frames += generator.flush()
    generator.close()
    assert [frame.seq for frame in frames] == list(range(100, 100 + 99))
    assert frames[-1].pts == pytest.approx(98 / 30)
    assert generator.runs == 4  # three whole 1 s segments and the 0.3 s tail
    jaw = np.array([frame.jaw_pose[0] for frame in frames])
    expected = np.array([frame_rms(audio, index) for index in range(99)])
    # Frames away from the cross-fades come straight from the model's output for their audio.
    boundaries = {30, 60, 90}
    plain = [i for i in range(99) if all(not (b - 4 <= i < b) for b in boundaries)]
    np.testing.assert_allclose(jaw[plain], expected[plain], atol=2e-3)
    # Cross-faded frames stay between the two runs' values (smooth seams).
    assert np.abs(np.diff(jaw)).max() < 0.05


def test_created_from_config(tmp_path: Path) -> None:
    external = make_install(tmp_path)
    config = Audio2MotionConfig(generator="talkshow", external=external)
    generator = create_generator(config)
    assert isinstance(generator, ExternalAudioToMotion)
    assert generator.latency_frames == 30 + 4
    with pytest.raises(ValueError, match=r"external\.kind"):
        Audio2MotionConfig(generator="emage", external=external)


def test_failing_model_is_reported(tmp_path: Path) -> None:
    config = make_install(tmp_path, "import sys\nsys.exit('checkpoint not found')\n")
    generator = ExternalAudioToMotion(config)
    with pytest.raises(AnchorError, match="exited with 1: checkpoint not found"):
        generator.push(tone(1.1))


def test_model_that_writes_nothing_is_reported(tmp_path: Path) -> None:
    generator = ExternalAudioToMotion(make_install(tmp_path, "pass\n"))
    with pytest.raises(AnchorError, match=r"wrote no segment-1\.npy"):
        generator.push(tone(1.1))


def test_missing_install_names_the_field(tmp_path: Path) -> None:
    config = make_install(tmp_path)
    config.repo = tmp_path / "nowhere"
    with pytest.raises(AnchorError, match=r"external\.repo"):
        ExternalAudioToMotion(config)
