"""``anchor export-onnx``: the body SGDM as ONNX graphs for the onnxruntime backend.

Written to one folder, next to a ``manifest.json`` (model/onnx_runtime.py reads it back):

- ``denoiser.onnx``: ControlNet + UNet as one graph, unguided noise for a batch of
  windows, with the configured window attention (all-frame grouping, sparse or per-frame),
  window GroupNorm and ControlNet residual mode traced in. Inputs ``latents`` (W, F, 4, h,
  w) float32, ``timesteps`` (W,) int64, ``tokens`` (W, T, D) float32 (appearance or null tokens),
  ``conditions`` (W, F, C0, h, w) float32 conditioning embedding (cached conditioning) or
  (W, F, 3, H, W) images, ``controlnet_scale`` () float32; output ``noise`` like
  ``latents``. W and F are dynamic axes: one graph serves every stream batch, both CFG
  halves and the shorter tail windows.
- ``conditioning.onnx`` (cached conditioning only): ControlNet conditioning embedding,
  ``images`` (N, 3, H, W) [0, 1] -> ``embedding`` (N, C0, h, w).
- ``vae_decoder.onnx``: ``latents`` (N, 4, h, w) scaled -> ``images`` (N, 3, H, W) [0, 1].
- ``appearance.npy`` / ``null_embedding.npy``: (T, D) float32 CLIP tokens of the
  configured reference image and the unconditional embedding (graph inputs, computed once
  here so the runtime needs no CLIP model).

Graphs are traced in float32 on the CPU with the TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``). A graph whose weights exceed what one protobuf
file can hold (2 GiB; SD1.5's UNet + ControlNet is about 5 GB in float32) is written with
its weights in one external data file, ``<name>.onnx.data``, beside it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.guided import controlnet_unet_noise
from model.onnx_runtime import MANIFEST, MANIFEST_FORMAT
from model.sgdm import SGDMDenoiser, conditioning_embedding

log = logging.getLogger("anchor.model.onnx")

OPSET = 17
# Below protobuf's 2 GiB hard limit with room for the graph itself.
EXTERNAL_DATA_BYTES = 1_800_000_000


class WindowNoiseGraph(nn.Module):
    """ControlNet + UNet for W windows of F frames: what ``denoiser.onnx`` computes.

    ``SGDMDenoiser.denoise_windows``'s ControlNet + UNet call (model/guided.py), with the
    batch flattened by shapes read from the inputs (traced as graph dimensions) instead of
    Python integers, and the conditioning scale a graph input.
    """

    def __init__(self, denoiser: SGDMDenoiser) -> None:
        super().__init__()
        self.unet = denoiser.unet
        self.controlnet = denoiser.controlnet
        self.context = denoiser.context
        self.cache_conditioning = denoiser.cache_conditioning
        self.controlnet_residuals = denoiser.controlnet_residuals

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        tokens: torch.Tensor,
        conditions: torch.Tensor,
        controlnet_scale: torch.Tensor,
    ) -> torch.Tensor:
        windows, frames = latents.shape[0], latents.shape[1]
        sample = latents.flatten(0, 1)
        per_frame_t = timesteps[:, None].expand(windows, frames).flatten()
        per_frame_tokens = tokens[:, None].expand(-1, frames, -1, -1).flatten(0, 1)
        cond = conditions.flatten(0, 1)
        with self.context.traced_frames(frames):
            noise = controlnet_unet_noise(
                self.unet,
                self.controlnet,
                sample,
                sample,
                per_frame_t,
                per_frame_tokens,
                cond,
                controlnet_scale,
                precomputed=self.cache_conditioning,
                residuals=self.controlnet_residuals,
            )
        return noise.reshape(latents.shape)


class ConditioningGraph(nn.Module):
    """``conditioning.onnx``: (N, 3, H, W) [0, 1] -> (N, C0, H/8, W/8) embedding."""

    def __init__(self, denoiser: SGDMDenoiser) -> None:
        super().__init__()
        self.controlnet = denoiser.controlnet

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return conditioning_embedding(self.controlnet, images)


class DecoderGraph(nn.Module):
    """``vae_decoder.onnx``: (N, 4, h, w) scaled latents -> (N, 3, 8h, 8w) [0, 1] images."""

    def __init__(self, denoiser: SGDMDenoiser) -> None:
        super().__init__()
        self.vae = denoiser.vae
        self.scaling_factor = float(denoiser.vae.config["scaling_factor"])

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        decoded = self.vae.decode(latents / self.scaling_factor).sample  # type: ignore[union-attr]
        return ((decoded + 1.0) / 2.0).clamp(0.0, 1.0)


def _export_graph(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    names: tuple[list[str], list[str]],
    dynamic: dict[str, dict[int, str]],
    target: Path,
    external_data: bool | None,
) -> str | None:
    """Trace ``module`` to ``target``; returns the external data file name, if any."""
    inputs, outputs = names
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        traced = Path(scratch) / target.name
        with torch.no_grad(), warnings.catch_warnings():
            # TracerWarnings: diffusers' shape tests (upsample size, contiguity) fold into
            # constants, right for the fixed latent height and width of the graph.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript")
            warnings.filterwarnings("ignore", "The feature will be removed")
            torch.onnx.export(
                module,
                example,
                str(traced),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        # Large graphs come out of the exporter with one file per tensor: gather them.
        written = sum(path.stat().st_size for path in Path(scratch).iterdir())
        external = written > EXTERNAL_DATA_BYTES if external_data is None else external_data
        if not external and written == traced.stat().st_size:
            shutil.move(traced, target)
            return None
        proto = onnx.load(str(traced))
        data_name = f"{target.name}.data" if external else None
        onnx.save_model(
            proto,
            str(target),
            save_as_external_data=external,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=0,
        )
        return data_name


def _dims(tensor: torch.Tensor, dynamic: dict[int, str]) -> list[int | str]:
    return [dynamic.get(axis, int(size)) for axis, size in enumerate(tensor.shape)]


def _clear_previous(out: Path) -> None:
    """Remove an earlier export's files (only the names this exporter writes)."""
    for pattern in ("*.onnx", "*.onnx.data", "*.npy", MANIFEST):
        for path in out.glob(pattern):
            path.unlink()


def export_onnx(
    model: ModelConfig,
    sampler: SamplerConfig,
    out: Path,
    *,
    external_data: bool | None = None,
) -> dict[str, Any]:
    """Export the body SGDM of ``model`` (float32, CPU) to ``out``; returns the manifest.

    The traced example is ``sampler.max_batch`` windows of ``sampler.window_size`` frames;
    windows and frames are dynamic axes. external_data: None = only graphs above
    ``EXTERNAL_DATA_BYTES``; True/False force it (tests).
    """
    if model.backend != "torch":
        raise AnchorError("model.backend: export-onnx traces the torch model; set it to 'torch'")
    # Traced from the plain modules: a torch.compile wrapper is no ONNX graph.
    source = model.model_copy(update={"device": "cpu", "precision": "float32", "compile": "off"})
    components = build_components(source, sampler, FaceConfig(enabled=False))
    denoiser = components.denoiser
    if not isinstance(denoiser, SGDMDenoiser):
        raise AnchorError("model.backend: export-onnx needs the torch denoiser")
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)

    size, latent = denoiser.image_height, denoiser.latent_height
    windows, frames = max(2, sampler.max_batch), sampler.window_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand((windows * frames, 3, size, size), generator=generator)
    embedding = denoiser.encode_conditions(images)
    latents = torch.randn((windows, frames, denoiser.latent_channels, latent, latent))
    window_axes = {0: "windows", 1: "frames"}
    denoiser_inputs = (
        latents,
        torch.full((windows,), 500, dtype=torch.int64),
        denoiser.appearance.expand(windows, -1, -1).contiguous(),
        embedding.reshape(windows, frames, *embedding.shape[1:]),
        torch.tensor(float(sampler.controlnet_scale)),
    )
    denoiser_names = ["latents", "timesteps", "tokens", "conditions", "controlnet_scale"]
    denoiser_dynamic = {
        "latents": window_axes,
        "timesteps": {0: "windows"},
        "tokens": {0: "windows"},
        "conditions": window_axes,
        "noise": window_axes,
    }
    graphs: list[tuple[str, nn.Module, tuple[torch.Tensor, ...], list[str], list[str], Any]] = [
        (
            "denoiser",
            WindowNoiseGraph(denoiser),
            denoiser_inputs,
            denoiser_names,
            ["noise"],
            denoiser_dynamic,
        ),
        (
            "vae_decoder",
            DecoderGraph(denoiser),
            (latents[0],),
            ["latents"],
            ["images"],
            {"latents": {0: "frames"}, "images": {0: "frames"}},
        ),
    ]
    if denoiser.cache_conditioning:
        graphs.append(
            (
                "conditioning",
                ConditioningGraph(denoiser),
                (images[:frames],),
                ["images"],
                ["embedding"],
                {"images": {0: "frames"}, "embedding": {0: "frames"}},
            )
        )
    manifest_graphs: dict[str, Any] = {}
    for name, module, example, inputs, outputs, dynamic in graphs:
        log.info("exporting %s.onnx", name)
        module.eval()
        with torch.no_grad():
            result = module(*example)
        data = _export_graph(
            module, example, (inputs, outputs), dynamic, out / f"{name}.onnx", external_data
        )
        manifest_graphs[name] = {
            "file": f"{name}.onnx",
            "external_data": data,
            "inputs": {
                key: _dims(value, dynamic.get(key, {}))
                for key, value in zip(inputs, example, strict=True)
            },
            "outputs": {outputs[0]: _dims(result, dynamic.get(outputs[0], {}))},
        }
    np.save(out / "appearance.npy", denoiser.appearance.numpy())
    np.save(out / "null_embedding.npy", denoiser.null_embedding.numpy())
    manifest = {
        "format": MANIFEST_FORMAT,
        "preset": model.preset,
        "image_size": size,
        "latent_size": latent,
        "latent_channels": denoiser.latent_channels,
        "window_size": sampler.window_size,
        "export_windows": windows,
        "dynamic_axes": ["windows", "frames"],
        "attention": denoiser.attention,
        "window_groupnorm": denoiser.window_groupnorm,
        "controlnet_residuals": denoiser.controlnet_residuals,
        "cache_conditioning": denoiser.cache_conditioning,
        "dtype": "float32",
        "opset": OPSET,
        "versions": {name: version(name) for name in ("torch", "onnx", "diffusers")},
        "graphs": manifest_graphs,
        "appearance": "appearance.npy",
        "null_embedding": "null_embedding.npy",
        "source_config": {
            "model": model.model_dump(mode="json"),
            "sampler": sampler.model_dump(mode="json"),
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
