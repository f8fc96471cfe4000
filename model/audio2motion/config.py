"""Configuration of the audio-to-motion stage (a section the lead may mount in AppConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from model.audio2motion.audio import SAMPLE_RATE
from model.audio2motion.builtin import BuiltinAudioToMotion
from model.audio2motion.external import ExternalAudioToMotion, ExternalModelConfig
from model.audio2motion.interface import AudioToMotion
from model.errors import AnchorError


class Audio2MotionConfig(BaseModel):
    """Which generator turns speech into motion."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # builtin: signal-driven, no weights; talkshow/emage: the external model in ``external``.
    generator: Literal["builtin", "talkshow", "emage"] = "builtin"
    seed: int = 0
    external: ExternalModelConfig | None = None

    @model_validator(mode="after")
    def _external_matches(self) -> Audio2MotionConfig:
        if self.generator != "builtin":
            if self.external is None:
                raise ValueError(f"generator {self.generator!r} needs the external section")
            if self.external.kind != self.generator:
                raise ValueError(
                    f"external.kind ({self.external.kind}) must match generator ({self.generator})"
                )
        return self


def create_generator(
    config: Audio2MotionConfig, fps: float = 30.0, start_seq: int = 0
) -> AudioToMotion:
    """The configured generator at 16 kHz in, ``fps`` out."""
    if config.generator == "builtin":
        return BuiltinAudioToMotion(seed=config.seed, fps=fps, start_seq=start_seq)
    if config.external is None:
        raise AnchorError(f"audio2motion.external: required for generator {config.generator!r}")
    return ExternalAudioToMotion(config.external, SAMPLE_RATE, fps, start_seq)
