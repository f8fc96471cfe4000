"""``anchor bench gpu``: the paper's architecture at full scale on one CUDA GPU, one command.

Nothing is downloaded. Random weights with SD1.5's architecture are built on the GPU and
written in the layouts the sd15 preset loads (model/components.py): the authors'
checkpoint folder (``checkpoints/body/{unet,controlnet}``, ``checkpoints/head/{unet,
controlnet}``, ``save_pretrained``), an SD1.5 folder (``sd/vae``, ``sd/scheduler``,
``sd/text_encoder`` + ``sd/tokenizer``: a CLIPTextModel of SD's width over a 4-token
vocabulary, enough for the empty prompt), the same for SD-inpainting (``sd-inpainting/``)
and a CLIPVisionModel with ViT-B/32's shape (``clip/``). Then the ``quality`` and ``live``
presets run through the normal loader and the live stage chain (sampler, decode, face
stage) on a synthetic clip with fp16 and torch.compile, and each prints:

- ms per committed frame (after a warm-up clip that triggers compilation, timed apart);
- latency: the frames a frame waits in the sampler at the render fps, plus the compute of
  one window stride (as ``anchor bench presets``);
- peak GPU memory (``torch.cuda.max_memory_allocated``);
- TF/s: bench/flops.py's count of FLOPs per committed frame of the same configuration
  (counted on meta tensors from the written config.json files) over the measured time.

Where onnxruntime with the CUDA provider (TensorRT with ``--tensorrt``) is installed, the
live body denoiser is also exported and timed on it (bench/onnx.py). ``bench_gpu`` takes the
device and an architecture, so a CPU test runs the same code path with tiny networks
(fp16 and compile are CUDA-only and off there).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
)

from app.config import AppConfig, load_config
from bench.flops import (
    SD15_CONDITIONING,
    SD15_UNET,
    SD15_VAE,
    frame_stages,
    network_costs,
    networks_for,
)
from model.presets import SD15_SCHEDULER_CONFIG, controlnet_from_unet
from streaming.face_stage import FaceGeometry
from streaming.frames import ConditionFrame
from streaming.generate import generate_streaming
from streaming.sampler import latency_frames

NEEDS_CUDA = 2  # exit status of ``anchor bench gpu`` without a CUDA device
PRESETS = ("quality", "live")
FIGURES = ("ms_per_frame", "frames_per_s", "latency_frames", "latency_s", "compile_s",
           "peak_gpu_gib", "tflops_per_frame", "tflops_per_s")  # fmt: skip


@dataclass(frozen=True)
class Architecture:
    """Network configs (diffusers/transformers init arguments) and sizes to bench at."""

    name: str
    image_size: int
    face_size: int
    unet: dict[str, Any]
    vae: dict[str, Any]
    conditioning: tuple[int, ...]
    clip: dict[str, Any]
    text: dict[str, Any]
    frames: int = 48  # clip length per preset run


SD15 = Architecture(
    "sd15 (SD1.5 architecture, random weights)",
    512,
    256,
    SD15_UNET,
    SD15_VAE,
    SD15_CONDITIONING,
    # ViT-B/32 at 224: 50 tokens x 768, SD1.5's cross-attention width.
    clip={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
          "num_attention_heads": 12, "image_size": 224, "patch_size": 32},
    text={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
          "num_attention_heads": 12},
)  # fmt: skip


@dataclass
class WrittenWeights:
    """Folders written by ``write_weights`` and the ``--set`` fields that load them."""

    root: Path
    overrides: list[str] = field(default_factory=list)


def _write_text_encoder(folder: Path, text: dict[str, Any]) -> None:
    """A CLIPTextModel of ``text``'s shape and a 4-token CLIPTokenizer (SD's layout)."""
    config = CLIPTextConfig(**text, vocab_size=8, max_position_embeddings=77,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    CLIPTextModel(config).save_pretrained(folder / "text_encoder")
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = folder / "vocab.json", folder / "merges.txt"
    vocab.write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "a": 3}))
    merges.write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab_file=str(vocab), merges_file=str(merges),
                              pad_token="<|endoftext|>", model_max_length=77)  # fmt: skip
    tokenizer.save_pretrained(folder / "tokenizer")


def _save(network: Any, folder: Path, dtype: torch.dtype) -> None:
    # diffusers warns on every dtype cast, also a no-op one: cast only when it changes.
    if next(network.parameters()).dtype != dtype:
        network.to(dtype=dtype)
    network.save_pretrained(folder)


def write_weights(
    root: Path, architecture: Architecture, device: str, dtype: torch.dtype, seed: int = 0
) -> WrittenWeights:
    """Random weights of ``architecture`` in the sd15 preset's folder layouts under
    ``root`` (see the module docstring), built on ``device`` and saved in ``dtype``."""
    torch.manual_seed(seed)
    checkpoints = root / "checkpoints"
    with torch.device(device):
        for part, channels in (("body", 4), ("head", 9)):
            unet = UNet2DConditionModel(**{**architecture.unet, "in_channels": channels})
            controlnet = controlnet_from_unet(
                unet, architecture.conditioning, in_channels=None if channels == 4 else 4
            )
            _save(unet, checkpoints / part / "unet", dtype)
            _save(controlnet, checkpoints / part / "controlnet", dtype)
            del unet, controlnet
        vae = AutoencoderKL(**architecture.vae)
        for sd in ("sd", "sd-inpainting"):
            _save(vae, root / sd / "vae", dtype)
            DDIMScheduler.from_config(SD15_SCHEDULER_CONFIG).save_pretrained(
                root / sd / "scheduler"
            )
            _write_text_encoder(root / sd, architecture.text)
        clip = CLIPVisionModel(CLIPVisionConfig(**architecture.clip))
        _save(clip, root / "clip", dtype)
    overrides = [
        "model.preset=sd15",
        f"model.checkpoint_path={checkpoints}",
        f"model.sd_path={root / 'sd'}",
        f"model.sd_inpainting_path={root / 'sd-inpainting'}",
        f"model.clip_path={root / 'clip'}",
        f"model.image_size={architecture.image_size}",
        f"render.width={architecture.image_size}",
        f"render.height={architecture.image_size}",
        f"face.size={architecture.face_size}",
    ]
    return WrittenWeights(root, overrides)


def synthetic_clip(frames: int, size: int, face_size: int, seed: int = 0) -> list[ConditionFrame]:
    """``frames`` condition frames (random mesh-like images) with a face in the upper
    middle of each: its crop maps a size/4 square to ``face_size``; mask 0 on the face."""
    generator = torch.Generator().manual_seed(seed)
    side = size / 4
    scale = face_size / side
    left, top = (size - side) / 2, size / 8
    matrix = np.array([[scale, 0, -scale * left], [0, scale, -scale * top]], dtype=np.float32)
    keep = torch.ones(1, face_size, face_size)
    keep[:, face_size // 4 : 3 * face_size // 4, face_size // 4 : 3 * face_size // 4] = 0.0
    clip = []
    for index in range(frames):
        condition = torch.rand((3, size, size), generator=generator)
        mesh_crop = torch.rand((3, face_size, face_size), generator=generator)
        face = FaceGeometry(matrix=matrix, mesh_crop=mesh_crop, keep_mask=keep,
                            image_size=(size, size))  # fmt: skip
        clip.append(ConditionFrame(seq=index, pts=index / 30.0, condition=condition, face=face))
    return clip


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def preset_config(name: str, weights: WrittenWeights, device: str, fast: bool) -> AppConfig:
    """Preset ``name`` over the written weights; ``fast``: fp16 and torch.compile on."""
    overrides = [*weights.overrides, f"model.device={device}",
                 f"model.precision={'float16' if fast else 'float32'}",
                 f"model.compile={'on' if fast else 'off'}"]  # fmt: skip
    return load_config(None, overrides, environ={}, preset=name)


def counted_tflops(config: AppConfig) -> float:
    """bench/flops.py's TFLOPs per committed frame of ``config`` (its folders' configs)."""
    networks = networks_for(config, sd15_folders=True)
    sampler, model = config.sampler, config.model
    costs = network_costs(networks, config.face.size, sampler.window_size, model.attention)
    return sum(frame_stages(config, costs).values()) / 1e12


def run_preset(name: str, config: AppConfig, frames: int) -> dict[str, Any]:
    """One preset through the live stage chain: the figures of the module docstring."""
    from model.components import build_components

    device = config.model.device
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sampler, face = config.sampler, config.face
    components = build_components(config.model, sampler, face)
    size = components.image_size
    clip = synthetic_clip(frames, size, face.size)
    started = time.perf_counter()
    generate_streaming(clip[: sampler.window_size], components, sampler, face)  # warm-up
    _synchronize(device)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    committed = generate_streaming(clip, components, sampler, face)
    _synchronize(device)
    seconds = time.perf_counter() - started
    if len(committed) != frames:
        raise RuntimeError(f"{name}: {len(committed)} of {frames} frames committed")
    ms_per_frame = 1000.0 * seconds / frames
    hold = latency_frames(sampler)
    waited = hold if hold is not None else frames - 1
    stride = sampler.window_size - sampler.overlap
    tflops = counted_tflops(config)
    return {
        "preset": name,
        "device": str(components.device),
        "dtype": str(components.dtype).removeprefix("torch."),
        "compile": config.model.compile,
        "mode": sampler.mode,
        "scheduler": sampler.scheduler,
        "steps": sampler.steps,
        "guidance_scale": sampler.guidance_scale,
        "attention": config.model.attention,
        "window_size": sampler.window_size,
        "overlap": sampler.overlap,
        "size": size,
        "face_steps": face.steps if face.enabled else None,
        "frames": frames,
        "ms_per_frame": round(ms_per_frame, 2),
        "frames_per_s": round(1000.0 / ms_per_frame, 3),
        "latency_frames": waited,
        "latency_s": round(waited / config.render.fps + stride * ms_per_frame / 1000.0, 3),
        "compile_s": round(compile_s, 1),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "tflops_per_frame": _significant(tflops),
        "tflops_per_s": _significant(tflops * frames / seconds),
    }


def _significant(value: float) -> float:
    """6 significant digits (tiny architectures' figures are a few GFLOPs)."""
    return float(f"{value:.6g}")


def onnx_figures(config: AppConfig, tensorrt: bool = False) -> dict[str, Any]:
    """bench/onnx.py on the live body denoiser when onnxruntime has a GPU provider: CUDA,
    or TensorRT with ``tensorrt`` (its engine build for an SD1.5 UNet takes many minutes,
    more than this bench's budget)."""
    try:
        import onnxruntime
    except ImportError:
        return {"skipped": "onnxruntime is not installed"}
    wanted = "TensorrtExecutionProvider" if tensorrt else "CUDAExecutionProvider"
    available = onnxruntime.get_available_providers()
    if wanted not in available:
        return {"skipped": f"no {wanted} (have {sorted(available)})"}
    from bench.onnx import bench_onnx

    model = config.model.model_copy(update={"onnx_providers": [wanted, "CPUExecutionProvider"]})
    try:
        return bench_onnx(model, config.sampler, latent_sizes=(None,), repeats=3)
    except Exception as err:  # an export or provider failure is a figure, not a crash
        return {"error": f"{type(err).__name__}: {err}"}


def bench_gpu(
    device: str = "cuda",
    architecture: Architecture = SD15,
    presets: tuple[str, ...] = PRESETS,
    root: Path | None = None,
    onnx: bool = True,
    tensorrt: bool = False,
) -> dict[str, Any]:
    """Write the weights (under ``root``, else a temporary folder), run ``presets``; a
    report. On a CUDA device fp16 and compile are on, on the CPU both off."""
    fast = device.startswith("cuda")
    with tempfile.TemporaryDirectory(prefix="anchor-gpu-") as temporary:
        folder = Path(root or temporary)
        started = time.perf_counter()
        weights = write_weights(folder, architecture, device,
                                torch.float16 if fast else torch.float32)  # fmt: skip
        write_s = time.perf_counter() - started
        rows = [run_preset(name, preset_config(name, weights, device, fast), architecture.frames)
                for name in presets]  # fmt: skip
        report: dict[str, Any] = {
            "architecture": architecture.name,
            "device": torch.cuda.get_device_name(device) if fast else device,
            "weights_write_s": round(write_s, 1),
            "rows": rows,
        }
        if onnx:
            live = preset_config("live", weights, device, False)
            report["onnxruntime"] = onnx_figures(live, tensorrt)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['architecture']} on {report['device']} "
        f"(weights written in {report['weights_write_s']} s)",
        "preset  | dtype   | steps | cfg | attention | ms/frame | fps    | latency (frames, s) "
        "| compile s | peak GiB | TF/frame | TF/s",
    ]
    for row in report["rows"]:
        peak = "-" if row["peak_gpu_gib"] is None else f"{row['peak_gpu_gib']:.2f}"
        lines.append(
            f"{row['preset']:<7} | {row['dtype']:<7} | {row['steps']:>5} | "
            f"{row['guidance_scale']:>3g} | {row['attention']:<9} | {row['ms_per_frame']:>8.1f} | "
            f"{row['frames_per_s']:>6.2f} | {row['latency_frames']:>6}, {row['latency_s']:>6.2f} s"
            f"     | {row['compile_s']:>9.1f} | {peak:>8} | {row['tflops_per_frame']:>8.4g} | "
            f"{row['tflops_per_s']:.4g}"
        )
    if "onnxruntime" in report:
        lines.append(f"onnxruntime: {json.dumps(report['onnxruntime'])}")
    return "\n".join(lines)
