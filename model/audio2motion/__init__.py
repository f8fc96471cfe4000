"""Speech to SMPL-X motion, streaming: 16 kHz mono audio chunks in, 30 fps ``MotionFrame``s out.

Pure synchronous numpy (no torch needed, no asyncio). ``create_generator`` builds the one
named in an ``Audio2MotionConfig``: the built-in signal-driven generator (default, no
weights) or an adapter running TalkSHOW/EMAGE from a local install.
"""

from model.audio2motion.audio import SAMPLE_RATE, as_float, read_wav, to_pcm16, write_wav
from model.audio2motion.builtin import BuiltinAudioToMotion, BuiltinSettings
from model.audio2motion.config import Audio2MotionConfig, create_generator
from model.audio2motion.external import ExternalAudioToMotion, ExternalModelConfig
from model.audio2motion.interface import AudioToMotion

__all__ = [
    "SAMPLE_RATE",
    "Audio2MotionConfig",
    "AudioToMotion",
    "BuiltinAudioToMotion",
    "BuiltinSettings",
    "ExternalAudioToMotion",
    "ExternalModelConfig",
    "as_float",
    "create_generator",
    "read_wav",
    "to_pcm16",
    "write_wav",
]
