"""``anchor bench onnx``: ms per 16-frame denoiser call, torch vs ONNX Runtime.

For each latent size the model is built with the torch backend, exported to a temporary
folder (model/onnx_export.py) and loaded back with the onnxruntime backend; both then run
the same inputs: one unguided ControlNet + UNet call on one 16-frame window (what
``anchor bench model`` times) and one guided ``predict`` (both CFG halves in one call).
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.onnx_export import export_onnx
from model.onnx_runtime import OnnxDenoiser
from model.sgdm import SGDMDenoiser

WINDOW_FRAMES = 16

Denoiser = SGDMDenoiser | OnnxDenoiser


def _median_ms(call: Any, repeats: int) -> float:
    call()  # warm-up: allocator, kernel selection, ONNX Runtime's first-run planning
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _window_call(denoiser: Denoiser, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return denoiser.denoise_windows(
        inputs["latents"], inputs["timesteps"], inputs["tokens"], inputs["conditions"]
    )


def _predict_call(denoiser: Denoiser, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return denoiser.predict(inputs["latents"], inputs["timesteps"], inputs["conditions"])


def _inputs(denoiser: Denoiser, latent_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shape = (1, WINDOW_FRAMES, denoiser.latent_channels, latent_size, latent_size)
    images = torch.rand((WINDOW_FRAMES, 3, latent_size * 8, latent_size * 8), generator=generator)
    return {
        "latents": torch.randn(shape, generator=generator),
        "timesteps": torch.tensor([500]),
        "tokens": denoiser.appearance[None],
        "conditions": denoiser.encode_conditions(images)[None],
    }


def _backends(
    model: ModelConfig, sampler: SamplerConfig, folder: Path
) -> tuple[SGDMDenoiser, OnnxDenoiser, str]:
    no_face = FaceConfig(enabled=False)
    torch_components = build_components(model, sampler, no_face)
    export_onnx(model, sampler, folder)
    onnx_model = model.model_copy(update={"backend": "onnxruntime", "onnx_dir": folder})
    onnx_denoiser = build_components(onnx_model, sampler, no_face).denoiser
    torch_denoiser = torch_components.denoiser
    assert isinstance(torch_denoiser, SGDMDenoiser) and isinstance(onnx_denoiser, OnnxDenoiser)
    placement = f"{torch_components.device} {torch_components.dtype}"
    return torch_denoiser, onnx_denoiser, placement


def bench_onnx(
    model: ModelConfig,
    sampler: SamplerConfig,
    latent_sizes: tuple[int | None, ...] = (8, 16, 32),
    repeats: int = 5,
) -> dict[str, Any]:
    """Median ms per 16-frame call for both backends, per latent size (None: the model's
    own size), guided with ``sampler.guidance_scale`` (see module doc)."""
    if model.backend != "torch":
        raise AnchorError("model.backend: anchor bench onnx builds both backends; leave it 'torch'")
    sampler = sampler.model_copy(
        update={"window_size": WINDOW_FRAMES, "overlap": min(sampler.overlap, WINDOW_FRAMES - 1)}
    )
    results = []
    providers: list[str] = []
    torch_placement = ""
    for size in latent_sizes:
        config = model if size is None else model.model_copy(update={"image_size": size * 8})
        with tempfile.TemporaryDirectory(prefix="anchor-onnx-") as folder:
            torch_denoiser, onnx_denoiser, torch_placement = _backends(
                config, sampler, Path(folder)
            )
            providers = onnx_denoiser.providers
            latent_size = torch_denoiser.latent_height
            inputs = _inputs(torch_denoiser, latent_size)
            for name, call in (("window", _window_call), ("guided predict", _predict_call)):
                row: dict[str, Any] = {"latent_size": latent_size, "call": name}
                outputs = []
                for backend, denoiser in (
                    ("torch", torch_denoiser),
                    ("onnxruntime", onnx_denoiser),
                ):
                    timed = functools.partial(call, denoiser, inputs)
                    row[f"{backend}_ms"] = round(_median_ms(timed, repeats), 2)
                    outputs.append(timed().float().cpu())
                row["max_abs_diff"] = float((outputs[0] - outputs[1]).abs().max())
                results.append(row)
    return {
        "preset": model.preset,
        "attention": model.attention,
        "torch": torch_placement,
        "onnxruntime_providers": providers,
        "guidance_scale": sampler.guidance_scale,
        "frames_per_window": WINDOW_FRAMES,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "results": results,
    }


def format_report(report: dict[str, Any]) -> str:
    """Human-readable table of ``bench_onnx``'s result."""
    guidance = report["guidance_scale"]
    predict = (
        f"CFG {guidance}, both halves in one call"
        if guidance > 1.0
        else f"guidance_scale {guidance}: no CFG, same work as the window call"
    )
    lines = [
        f"one {report['frames_per_window']}-frame window, preset {report['preset']}, "
        f"attention {report['attention']}, median of {report['repeats']}, "
        f"{report['threads']} threads",
        f"torch on {report['torch']}; onnxruntime on {', '.join(report['onnxruntime_providers'])}"
        f" (float32); guided predict: {predict}",
        f"{'latent':>7} {'call':>15} {'torch ms':>9} {'ort ms':>9} {'ort/torch':>9} "
        f"{'max |diff|':>10}",
    ]
    for row in report["results"]:
        ratio = row["onnxruntime_ms"] / row["torch_ms"] if row["torch_ms"] else float("nan")
        lines.append(
            f"{row['latent_size']:>7} {row['call']:>15} {row['torch_ms']:>9.1f} "
            f"{row['onnxruntime_ms']:>9.1f} {ratio:>9.2f} {row['max_abs_diff']:>10.1e}"
        )
    return "\n".join(lines)
