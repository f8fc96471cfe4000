"""Stream batch: every window evaluation due at one event in as few model calls as possible.

Windows of one ``WindowDenoiser.predict`` call must have the same number of frames, so
requests are grouped by length (shorter tail windows get their own call) and each group
is split into calls of at most ``max_batch`` windows. Windows of one call may be at
different denoising steps: each carries its own timestep. Attention stays grouped per
window and the CFG halves stay apart inside the denoiser, so a batched call gives the
same predictions as one call per window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from model.denoiser import WindowDenoiser


@dataclass(slots=True)
class WindowRequest:
    """One window evaluation: its frames' latents at ``step_index`` and their conditions.

    latents: (F, C, h, w); conditions: (F, ...) from ``encode_conditions``;
    timestep: the scheduler timestep of ``step_index``.
    """

    window_index: int
    step_index: int
    timestep: int
    latents: torch.Tensor
    conditions: torch.Tensor


@dataclass(slots=True)
class SamplerStats:
    """What the sampler asked of the model, for benchmarks and cost checks.

    frame_evaluations counts frames passed through ``predict`` (a window of F frames at
    one step counts F); model_seconds is wall time spent inside ``predict`` and
    ``encode_conditions``.
    """

    predict_calls: int = 0
    window_evaluations: int = 0
    frame_evaluations: int = 0
    encoded_frames: int = 0
    model_seconds: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)


def evaluate_windows(
    denoiser: WindowDenoiser,
    requests: list[WindowRequest],
    max_batch: int,
    stats: SamplerStats,
) -> list[torch.Tensor]:
    """Guided noise for each request, in request order: a list of (F_r, C, h, w).

    Requests with equal frame counts share calls of up to ``max_batch`` windows, in
    request order; the result does not depend on how they were grouped.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    results: list[torch.Tensor | None] = [None] * len(requests)
    by_length: dict[int, list[int]] = {}
    for index, request in enumerate(requests):
        by_length.setdefault(request.latents.shape[0], []).append(index)
    for indices in by_length.values():
        for first in range(0, len(indices), max_batch):
            chunk = indices[first : first + max_batch]
            latents = torch.stack([requests[i].latents for i in chunk])
            conditions = torch.stack([requests[i].conditions for i in chunk])
            timesteps = torch.tensor([requests[i].timestep for i in chunk], dtype=torch.int64)
            started = time.perf_counter()
            noise = denoiser.predict(latents, timesteps, conditions)
            stats.model_seconds += time.perf_counter() - started
            stats.predict_calls += 1
            stats.window_evaluations += len(chunk)
            stats.frame_evaluations += len(chunk) * latents.shape[1]
            stats.batch_sizes.append(len(chunk))
            for row, request_index in enumerate(chunk):
                results[request_index] = noise[row]
    return [result for result in results if result is not None]
