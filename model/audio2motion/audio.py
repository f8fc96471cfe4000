"""Audio helpers of the audio-to-motion stage: sample conversion, WAV files, resampling.

Only numpy, scipy and the standard library. Every generator consumes 16 kHz mono float32
in [-1, 1]; PCM16 (int16) input is converted with ``as_float``.
"""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from model.errors import AnchorError

SAMPLE_RATE = 16_000

FloatAudio = NDArray[np.float32]


def as_float(samples: np.ndarray) -> FloatAudio:
    """(N,) int16 PCM or float audio -> (N,) float32 in [-1, 1] (int16 scaled by 1/32768)."""
    array = np.asarray(samples)
    if array.ndim != 1:
        raise AnchorError(f"audio: expected mono samples of shape (N,), got {array.shape}")
    if array.dtype == np.int16:
        return array.astype(np.float32) / np.float32(32768.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise AnchorError(f"audio: samples must be int16 PCM or float, got {array.dtype}")
    return array.astype(np.float32, copy=False)


def to_pcm16(samples: np.ndarray) -> NDArray[np.int16]:
    """(N,) float audio in [-1, 1] -> (N,) int16 (clipped); int16 input is returned as is."""
    array = np.asarray(samples)
    if array.dtype == np.int16:
        return array
    scaled = np.clip(np.round(array.astype(np.float64) * 32767.0), -32768, 32767)
    return scaled.astype(np.int16)


def resample(samples: FloatAudio, source_rate: int, target_rate: int) -> FloatAudio:
    """Polyphase resampling (scipy), (N,) float32 -> (round(N * target / source),) float32."""
    if source_rate == target_rate:
        return samples
    from scipy.signal import resample_poly

    ratio = Fraction(target_rate, source_rate)
    out = resample_poly(samples.astype(np.float64), ratio.numerator, ratio.denominator)
    return out.astype(np.float32)


def read_wav(path: str | Path, sample_rate: int = SAMPLE_RATE) -> FloatAudio:
    """A PCM WAV file (8/16/32-bit, any channel count) as (N,) float32 mono at ``sample_rate``.

    Channels are averaged; other rates are resampled.
    """
    path = Path(path)
    if not path.is_file():
        raise AnchorError(f"audio: no such WAV file {path}")
    try:
        with wave.open(str(path), "rb") as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            raw = reader.readframes(reader.getnframes())
    except (wave.Error, EOFError) as err:
        raise AnchorError(f"audio: {path} is not a PCM WAV file ({err})") from err
    if width == 1:
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise AnchorError(f"audio: {path} has {8 * width}-bit samples (8, 16 or 32 supported)")
    mono = data.reshape(-1, channels).mean(axis=1).astype(np.float32)
    return resample(mono, rate, sample_rate)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write (N,) float or int16 mono audio as a 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(to_pcm16(samples).astype("<i2").tobytes())


def frame_boundary(index: int, sample_rate: int, fps: float) -> int:
    """First sample of video frame ``index``: floor(index * sample_rate / fps), exact.

    Integer arithmetic on the rational hop (16000 / 30 = 533 1/3 samples), so every caller,
    whatever its chunking, puts the same samples in the same frame.
    """
    hop = Fraction(sample_rate) / Fraction(fps).limit_denominator(1001)
    return (index * hop.numerator) // hop.denominator
