"""A whole clip through the live stage chain, in one process.

``generate_streaming`` is what ``anchor generate`` and the benches run: the frames are
pushed through ``streaming.stages.StageChain`` window by window as a live session pushes
them, so a clip comes out as a live session would produce it.
"""

from __future__ import annotations

from model.config import FaceConfig, SamplerConfig
from model.placement import Components
from streaming.frames import CommittedFrame, ConditionFrame
from streaming.stages import StageChain


def generate_streaming(
    conditions: list[ConditionFrame],
    components: Components,
    sampler: SamplerConfig,
    face: FaceConfig | None = None,
) -> list[CommittedFrame]:
    """Sample, decode and (with ``components.face`` and ``face.enabled``) enhance a clip.

    Mode from ``sampler.mode`` (offline, exact or low). Returns the committed frames in
    order with ``image`` (3, H, W) float32 [0, 1] set. Without a face model the face
    stage is skipped even when ``face.enabled``.
    """
    chain = StageChain(components, sampler, face if components.face is not None else None)
    out: list[CommittedFrame] = []
    step = sampler.window_size - sampler.overlap
    for start in range(0, len(conditions), step):
        out += chain.push(conditions[start : start + step]).frames
    out += chain.flush().frames
    return out
