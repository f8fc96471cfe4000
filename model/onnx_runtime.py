"""``model.backend = "onnxruntime"``: the body SGDM run from ``anchor export-onnx`` graphs.

``load_onnx_denoiser`` reads ``model.onnx_dir`` (see model/onnx_export.py for what it
holds), checks its manifest against the config and returns Components whose denoiser,
an ``OnnxDenoiser``, runs the graphs with ONNX Runtime. onnxruntime is imported here only,
inside functions, so the torch backend never loads it.

Providers: ``model.onnx_providers`` when set (each must be available), else TensorRT and
CUDA when the installed onnxruntime has them (onnxruntime-gpu), then the CPU.
Tensors cross the boundary as float32 CPU arrays; the graphs run float32.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from model.config import ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.guided import GuidedPrediction

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

log = logging.getLogger("anchor.model.onnx")

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# Model fields the exported graphs depend on: a runtime config must agree on each.
GRAPH_FIELDS = (
    "preset",
    "tiny_seed",
    "sd_path",
    "clip_path",
    "checkpoint_path",
    "reference_image",
    "attention",
    "window_groupnorm",
    "cache_conditioning",
)
DECODE_CHUNK = 16
ENCODE_CHUNK = 32


def choose_providers(requested: list[str] | None) -> list[str]:
    """Execution providers in priority order (see the module docstring)."""
    import onnxruntime

    available = list(onnxruntime.get_available_providers())
    if requested is not None:
        missing = [name for name in requested if name not in available]
        if not requested or missing:
            raise AnchorError(
                f"model.onnx_providers: {missing or requested} not available in this "
                f"onnxruntime {onnxruntime.__version__} (available: {available})"
            )
        return list(requested)
    return [*(name for name in GPU_PROVIDERS if name in available), "CPUExecutionProvider"]


def read_manifest(folder: Path | None) -> tuple[Path, dict[str, Any]]:
    """``folder/manifest.json`` parsed, with every file it names present."""
    if folder is None:
        raise AnchorError(
            "model.onnx_dir is not set: name the folder written by anchor export-onnx --out DIR"
        )
    if not folder.is_dir():
        raise AnchorError(f"model.onnx_dir {folder} is not a folder (anchor export-onnx --out)")
    path = folder / MANIFEST
    if not path.is_file():
        raise AnchorError(f"model.onnx_dir: {path} is missing (write it with anchor export-onnx)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnchorError(f"model.onnx_dir: {path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise AnchorError(f"model.onnx_dir: {path} is not a format {MANIFEST_FORMAT} manifest")
    needed = [manifest["appearance"], manifest["null_embedding"]]
    for graph in manifest["graphs"].values():
        needed += [graph["file"]] + ([graph["external_data"]] if graph["external_data"] else [])
    for name in needed:
        if not (folder / name).is_file():
            raise AnchorError(f"model.onnx_dir: {folder / name} is missing (named in {path})")
    return folder, manifest


def check_manifest(manifest: dict[str, Any], model: ModelConfig, sampler: SamplerConfig) -> None:
    """Raise AnchorError naming the first config field the exported graphs disagree with.

    ``model.image_size`` None means the exported size.
    """
    exported_model = manifest["source_config"]["model"]
    current = model.model_dump(mode="json")
    for field in GRAPH_FIELDS:
        if exported_model.get(field) != current[field]:
            raise AnchorError(
                f"model.{field} is {current[field]!r} but the graphs in model.onnx_dir were "
                f"exported with {exported_model.get(field)!r}: set it or re-export"
            )
    # Graphs exported before the field existed ran diffusers' residuals.
    exported_residuals = manifest.get("controlnet_residuals", "diffusers")
    if exported_residuals != model.resolved_controlnet_residuals():
        raise AnchorError(
            f"model.controlnet_residuals resolves to {model.resolved_controlnet_residuals()!r} "
            f"but the graphs in model.onnx_dir were exported with {exported_residuals!r}: set "
            "it or re-export"
        )
    if model.image_size is not None and manifest["image_size"] != model.image_size:
        raise AnchorError(
            f"model.image_size is {model.image_size} but the graphs in model.onnx_dir were "
            f"exported at {manifest['image_size']}: set it or re-export"
        )
    if manifest["window_size"] != sampler.window_size:
        raise AnchorError(
            f"sampler.window_size is {sampler.window_size} but the graphs in model.onnx_dir "
            f"were exported for {manifest['window_size']}: set it or re-export"
        )


def open_session(path: Path, providers: list[str]) -> InferenceSession:
    """An ONNX Runtime session on ``path`` with torch's intra-op thread count."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: provider fallbacks are logged below
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    log.info("%s on %s", path.name, ", ".join(session.get_providers()))
    return session


def _run(session: InferenceSession, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
    arrays = {name: np.ascontiguousarray(value.cpu().numpy()) for name, value in feeds.items()}
    return torch.from_numpy(session.run(None, arrays)[0])


class OnnxDenoiser(GuidedPrediction):
    """Body SGDM on ONNX Runtime behind the ``WindowDenoiser`` contract (model/denoiser.py).

    Both CFG halves of a call go through ``denoiser.onnx`` in one run (its window axis is
    dynamic), then are combined by ``model.guided.guide`` as in ``SGDMDenoiser``:
    uncond + g * (cond - uncond) when guidance_scale > 1. Inputs and outputs are float32
    CPU tensors.
    """

    def __init__(
        self,
        folder: Path,
        manifest: dict[str, Any],
        providers: list[str],
        *,
        guidance_scale: float,
        controlnet_scale: float,
    ) -> None:
        graphs = manifest["graphs"]
        self.denoiser_session = open_session(folder / graphs["denoiser"]["file"], providers)
        self.decoder_session = open_session(folder / graphs["vae_decoder"]["file"], providers)
        self.conditioning_session = (
            open_session(folder / graphs["conditioning"]["file"], providers)
            if "conditioning" in graphs
            else None
        )
        self.providers = list(self.denoiser_session.get_providers())
        self.appearance = torch.from_numpy(np.load(folder / manifest["appearance"]))
        self.null_embedding = torch.from_numpy(np.load(folder / manifest["null_embedding"]))
        self.guidance_scale = guidance_scale
        self.controlnet_scale = controlnet_scale
        self.cache_conditioning = bool(manifest["cache_conditioning"])
        self.attention = str(manifest["attention"])
        self.image_height = self.image_width = int(manifest["image_size"])
        self.latent_channels = int(manifest["latent_channels"])
        self.latent_height = self.latent_width = int(manifest["latent_size"])

    def encode_conditions(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float32 [0, 1] -> (N, C0, H/8, W/8) embedding (cached
        conditioning) or the images themselves, float32 on the CPU."""
        expected = (3, self.image_height, self.image_width)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"condition images must be (N, {expected}), got {tuple(images.shape)}")
        images = images.float().cpu()
        if self.conditioning_session is None:
            return images
        parts = [
            _run(self.conditioning_session, {"images": images[start : start + ENCODE_CHUNK]})
            for start in range(0, images.shape[0], ENCODE_CHUNK)
        ]
        return torch.cat(parts)

    def denoise_windows(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        hidden_states: torch.Tensor,
        conditions: torch.Tensor,
    ) -> torch.Tensor:
        """Unguided noise (B, F, C, h, w) float32 for B windows: one ``denoiser.onnx`` run.

        latents: (B, F, C, h, w); timesteps: (B,); hidden_states: (B, T, D);
        conditions: (B, F, ...) from ``encode_conditions``.
        """
        return _run(
            self.denoiser_session,
            {
                "latents": latents.float(),
                "timesteps": timesteps.long(),
                "tokens": hidden_states.float(),
                "conditions": conditions.float(),
                "controlnet_scale": torch.tensor(self.controlnet_scale, dtype=torch.float32),
            },
        )

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) latents -> (N, 3, H, W) float32 images in [0, 1] on the CPU."""
        if latents.shape[0] == 0:
            return latents.new_zeros((0, 3, self.image_height, self.image_width))
        parts = [
            _run(self.decoder_session, {"latents": latents[start : start + DECODE_CHUNK].float()})
            for start in range(0, latents.shape[0], DECODE_CHUNK)
        ]
        return torch.cat(parts)


def load_onnx_denoiser(model: ModelConfig, sampler: SamplerConfig) -> OnnxDenoiser:
    """The ``OnnxDenoiser`` of ``model.onnx_dir``, checked against the config."""
    folder, manifest = read_manifest(model.onnx_dir)
    check_manifest(manifest, model, sampler)
    providers = choose_providers(model.onnx_providers)
    return OnnxDenoiser(
        folder,
        manifest,
        providers,
        guidance_scale=sampler.guidance_scale,
        controlnet_scale=sampler.controlnet_scale,
    )
