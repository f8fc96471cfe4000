"""``anchor bench sampler``: cost and latency of the sampling modes on one clip.

Every mode sees the same condition frames, pushed one at a time as a live session
would, then flushed. Figures per mode: ms per committed frame (wall), time inside model
calls, sampler overhead (wall / model time), model calls and their mean batch, window
evaluations per frame, and latency in frames (measured worst case and the bound of
``streaming.sampler.latency_frames``). Across modes: exact / offline cost ratio,
stream-batch speedup (exact with ``max_batch`` vs one window per call) and the
distance of mode low from offline.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.placement import Components
from streaming.exact import ExactSchedule
from streaming.frames import ConditionFrame
from streaming.sampler import WindowSampler, latency_frames

RUNS: tuple[tuple[str, str, ExactSchedule, int | None], ...] = (
    # (name, mode, exact schedule, max_batch override)
    ("offline", "offline", "batched", None),
    ("exact", "exact", "batched", None),
    ("exact_unbatched", "exact", "batched", 1),
    ("exact_eager", "exact", "eager", None),
    ("low", "low", "batched", None),
)


def _clip(length: int, size: int) -> list[ConditionFrame]:
    """A seeded clip of condition images (3, size, size) with a drifting blob."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand((3, size, size), generator=generator)
    coords = torch.linspace(0.0, 1.0, size)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    frames = []
    for index in range(length):
        blob = torch.exp(-((x - 0.3 - 0.4 * index / length) ** 2 + (y - 0.5) ** 2) / 0.03)
        image = (0.7 * blob + 0.3 * noise).clamp(0.0, 1.0)
        frames.append(ConditionFrame(seq=index, pts=index / 30.0, condition=image))
    return frames


def _run(
    components: Components,
    config: SamplerConfig,
    schedule: ExactSchedule,
    frames: list[ConditionFrame],
) -> dict[str, Any]:
    sampler = WindowSampler(components.denoiser, components.scheduler, config, schedule)
    committed = []
    worst = 0
    started = time.perf_counter()
    for received, frame in enumerate(frames):
        for out in sampler.push([frame]):
            worst = max(worst, received - out.position)
            committed.append(out)
    tail = sampler.flush()
    wall = time.perf_counter() - started
    # Frames committed by the flush waited for the end of the clip.
    for out in tail:
        worst = max(worst, len(frames) - 1 - out.position)
    committed += tail
    stats = sampler.stats
    count = len(committed)
    bound = latency_frames(config, sampler.exact_schedule)
    return {
        "latents": torch.stack([frame.latent for frame in committed]),
        "figures": {
            "ms_per_frame": 1000.0 * wall / count,
            "model_ms_per_frame": 1000.0 * stats.model_seconds / count,
            "overhead": wall / stats.model_seconds if stats.model_seconds else None,
            "predict_calls": stats.predict_calls,
            "mean_batch": stats.window_evaluations / max(1, stats.predict_calls),
            "frame_evaluations_per_frame": stats.frame_evaluations / count,
            # Frames a committed frame waited for (capped by the clip for short clips).
            "latency_frames_measured": worst,
            "latency_frames_bound": count - 1 if bound is None else bound,
        },
    }


def bench_sampler(
    model: ModelConfig, sampler: SamplerConfig, frames: int, threads: int | None = None
) -> dict[str, Any]:
    """Runs every mode on the same clip; returns the figures (JSON-ready)."""
    if threads is not None:
        torch.set_num_threads(threads)
    components = build_components(model, sampler, FaceConfig(enabled=False))
    clip = _clip(frames, components.image_size)
    # Warm-up: first calls allocate and pick kernels.
    _run(
        components,
        sampler.model_copy(update={"mode": "low"}),
        "batched",
        clip[: sampler.window_size],
    )
    results: dict[str, dict[str, Any]] = {}
    latents: dict[str, torch.Tensor] = {}
    for name, mode, schedule, max_batch in RUNS:
        update: dict[str, Any] = {"mode": mode}
        if max_batch is not None:
            update["max_batch"] = max_batch
        run = _run(components, sampler.model_copy(update=update), schedule, clip)
        results[name] = run["figures"]
        latents[name] = run["latents"]
    offline = latents["offline"]
    scale = offline.abs().mean().item()
    return {
        "clip": {
            "frames": frames,
            "image_size": components.image_size,
            "preset": model.preset,
            "device": str(components.device),
            "threads": torch.get_num_threads(),
        },
        "sampler": {
            "steps": sampler.steps,
            "window_size": sampler.window_size,
            "overlap": sampler.overlap,
            "max_batch": sampler.max_batch,
            "guidance_scale": sampler.guidance_scale,
        },
        "modes": results,
        "exact_over_offline": results["exact"]["ms_per_frame"] / results["offline"]["ms_per_frame"],
        "stream_batch_speedup": results["exact_unbatched"]["ms_per_frame"]
        / results["exact"]["ms_per_frame"],
        "exact_max_abs_diff_vs_offline": (latents["exact"] - offline).abs().max().item(),
        "low_mean_abs_diff_vs_offline_relative": (latents["low"] - offline).abs().mean().item()
        / scale,
    }


def format_report(report: dict[str, Any]) -> str:
    """Human-readable lines of ``bench_sampler``'s figures."""
    clip, sampler = report["clip"], report["sampler"]
    lines = [
        f"clip: {clip['frames']} frames at {clip['image_size']}px ({clip['preset']}, "
        f"{clip['device']}, {clip['threads']} threads); {sampler['steps']} steps, "
        f"ws {sampler['window_size']} os {sampler['overlap']}, max_batch {sampler['max_batch']}",
        f"{'mode':<16}{'ms/frame':>10}{'model ms':>10}{'overhead':>10}{'calls':>7}"
        f"{'batch':>7}{'latency':>9}{'bound':>7}",
    ]
    for name, figures in report["modes"].items():
        overhead = figures["overhead"]
        lines.append(
            f"{name:<16}{figures['ms_per_frame']:>10.1f}{figures['model_ms_per_frame']:>10.1f}"
            f"{overhead if overhead is not None else float('nan'):>10.3f}"
            f"{figures['predict_calls']:>7}{figures['mean_batch']:>7.2f}"
            f"{figures['latency_frames_measured']:>9}{figures['latency_frames_bound']:>7}"
        )
    lines += [
        f"exact / offline: {report['exact_over_offline']:.3f} (goal <= 1.05)",
        f"stream-batch speedup (exact, max_batch vs 1): {report['stream_batch_speedup']:.2f}x",
        f"exact vs offline max abs latent diff: {report['exact_max_abs_diff_vs_offline']:.2e}",
        f"low vs offline mean abs latent diff (relative): "
        f"{report['low_mean_abs_diff_vs_offline_relative']:.2e}",
    ]
    return "\n".join(lines)
