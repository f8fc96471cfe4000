"""Frame-synchronous speech features: one record per video frame from a carried window.

``FrameAnalyzer`` turns 16 kHz audio pushed in chunks of any size into one
``SpeechFeatures`` per video frame. Frame ``k`` covers samples
``[frame_boundary(k), frame_boundary(k + 1))`` and is analysed as soon as its last sample
arrived, over the ``WINDOW`` samples that end there (zeros before the stream start). The
analysis depends only on absolute sample positions, never on how the audio was chunked:
whole-file and chunked input give bit-identical features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.audio2motion.audio import SAMPLE_RATE, FloatAudio, as_float, frame_boundary

WINDOW = 1024  # 64 ms at 16 kHz: two pitch periods of a low voice, a few of the hop
SILENCE_DB = -90.0


@dataclass(slots=True)
class SpeechFeatures:
    """Per-frame measurements of the audio that ends at the frame's last sample.

    loudness_db: Hann-weighted power in dBFS (>= SILENCE_DB).
    centroid_hz: spectral centroid over 80 Hz - 8 kHz.
    flatness: spectral flatness in [0, 1] over 300 Hz - 5 kHz (noise-like -> 1, voiced -> 0).
    flux: positive change of the log spectrum since the previous frame (onset strength).
    """

    index: int
    loudness_db: float
    centroid_hz: float
    flatness: float
    flux: float


class FrameAnalyzer:
    """Chunked audio in, one ``SpeechFeatures`` per completed video frame out.

    State carried between chunks: the last ``WINDOW`` samples and the previous log spectrum.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, fps: float = 30.0) -> None:
        self.sample_rate = sample_rate
        self.fps = fps
        self._taper = np.hanning(WINDOW).astype(np.float32)
        self._taper_power = float(np.sum(self._taper.astype(np.float64) ** 2))
        frequencies = np.fft.rfftfreq(WINDOW, 1.0 / sample_rate)
        self._centroid_band = (frequencies >= 80.0) & (frequencies <= 8000.0)
        self._flatness_band = (frequencies >= 300.0) & (frequencies <= 5000.0)
        self._frequencies = frequencies[self._centroid_band]
        self.reset()

    def reset(self) -> None:
        """Forget all audio: the next frame index is 0 and the history is silence."""
        self._history: FloatAudio = np.zeros(WINDOW, dtype=np.float32)
        self._pending: FloatAudio = np.zeros(0, dtype=np.float32)
        self._consumed = 0  # absolute index of the first sample in _pending
        self._previous_log = np.full(int(self._centroid_band.sum()), np.log(1e-10))
        self.next_index = 0

    def silence_history(self) -> None:
        """Barge-in: the samples already heard no longer count (the window becomes silence)."""
        self._history = np.zeros(WINDOW, dtype=np.float32)
        self._previous_log = np.full_like(self._previous_log, np.log(1e-10))

    @property
    def samples_pushed(self) -> int:
        return self._consumed + len(self._pending)

    def push(self, samples: np.ndarray) -> list[SpeechFeatures]:
        """Append (N,) int16 or float samples; return the features of every completed frame."""
        audio = as_float(samples)
        self._pending = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        out: list[SpeechFeatures] = []
        while True:
            end = frame_boundary(self.next_index + 1, self.sample_rate, self.fps)
            take = end - self._consumed
            if take > len(self._pending):
                break
            frame_samples = self._pending[:take]
            self._pending = self._pending[take:]
            self._consumed = end
            self._history = np.concatenate([self._history, frame_samples])[-WINDOW:]
            out.append(self._analyse(self.next_index, self._history))
            self.next_index += 1
        return out

    def samples_to_complete_frame(self) -> int:
        """Zero samples to push so that the partial frame in progress completes (0 if none)."""
        if not len(self._pending):
            return 0
        end = frame_boundary(self.next_index + 1, self.sample_rate, self.fps)
        return end - self.samples_pushed

    def _analyse(self, index: int, window: FloatAudio) -> SpeechFeatures:
        tapered = window * self._taper
        power = float(np.dot(tapered, tapered)) / self._taper_power
        loudness = max(SILENCE_DB, 10.0 * np.log10(power + 1e-12))
        spectrum = np.abs(np.fft.rfft(tapered)) ** 2
        band = spectrum[self._centroid_band] + 1e-10
        centroid = float(np.dot(self._frequencies, band) / band.sum())
        flat = spectrum[self._flatness_band] + 1e-10
        flatness = float(np.exp(np.mean(np.log(flat))) / np.mean(flat))
        log_band = np.log(band)
        flux = float(np.mean(np.maximum(log_band - self._previous_log, 0.0)))
        self._previous_log = log_band
        return SpeechFeatures(index, float(loudness), centroid, flatness, flux)
