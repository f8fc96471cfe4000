"""``anchor bench model``: milliseconds per UNet + ControlNet call on one 16-frame window."""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

import torch

from model.attention import ATTENTION_MODES
from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.sgdm import SGDMDenoiser

WINDOW_FRAMES = 16


def _window_call(
    denoiser: SGDMDenoiser,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    tokens: torch.Tensor,
    conditions: torch.Tensor,
) -> None:
    denoiser.denoise_windows(latents, timesteps, tokens, conditions)
    if denoiser.device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(call: Any, repeats: int) -> float:
    call()  # warm-up: allocator and kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def bench_model(
    model: ModelConfig, latent_sizes: tuple[int, ...] = (16, 32), repeats: int = 3
) -> dict[str, Any]:
    """Median ms of one unguided UNet + ControlNet call on a 16-frame window, for every
    attention mode, with and without the cached conditioning embedding, per latent size."""
    if model.backend != "torch":
        raise AnchorError(
            "model.backend: anchor bench model times the torch networks (anchor bench onnx "
            "compares the two backends)"
        )
    results = []
    device = dtype = None
    for latent_size in latent_sizes:
        config = model.model_copy(update={"image_size": latent_size * 8})
        components = build_components(config, SamplerConfig(), FaceConfig(enabled=False))
        denoiser = components.denoiser
        assert isinstance(denoiser, SGDMDenoiser)
        device, dtype = components.device, components.dtype
        generator = torch.Generator().manual_seed(0)
        shape = (1, WINDOW_FRAMES, denoiser.latent_channels, latent_size, latent_size)
        latents = torch.randn(shape, generator=generator)
        images = torch.rand(
            (WINDOW_FRAMES, 3, latent_size * 8, latent_size * 8), generator=generator
        )
        timesteps = torch.tensor([500])
        tokens = denoiser.appearance[None]
        for cached in (True, False):
            denoiser.cache_conditioning = cached
            conditions = denoiser.encode_conditions(images)[None]
            for mode in ATTENTION_MODES:
                denoiser.set_attention(mode)

                call = functools.partial(
                    _window_call, denoiser, latents, timesteps, tokens, conditions
                )
                results.append(
                    {
                        "latent_size": latent_size,
                        "attention": mode,
                        "cached_conditioning": cached,
                        "ms_per_call": round(_median_ms(call, repeats), 2),
                    }
                )
    return {
        "preset": model.preset,
        "device": str(device),
        "dtype": str(dtype),
        "frames_per_window": WINDOW_FRAMES,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "results": results,
    }


def format_report(report: dict[str, Any]) -> str:
    """Human-readable table of ``bench_model``'s result."""
    lines = [
        f"UNet+ControlNet, one {report['frames_per_window']}-frame window, preset "
        f"{report['preset']}, {report['device']} {report['dtype']}, median of {report['repeats']}",
        f"{'latent':>7} {'attention':>10} {'cached':>7} {'ms/call':>9}",
    ]
    for row in report["results"]:
        lines.append(
            f"{row['latent_size']:>7} {row['attention']:>10} "
            f"{'yes' if row['cached_conditioning'] else 'no':>7} {row['ms_per_call']:>9.1f}"
        )
    return "\n".join(lines)
