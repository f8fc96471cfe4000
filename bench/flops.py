"""``anchor bench flops``: FLOPs per committed frame of each preset, counted, not timed.

The networks are built on the ``meta`` device (shapes only: no weights, no memory) and run
once each under ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix
multiplies, convolutions and attention (a multiply-add is 2 FLOPs; norms, activations and
element-wise ops are not counted). On meta, ``scaled_dot_product_attention`` runs its math
decomposition, so the attention cores are counted as the ``bmm`` they are made of.

Architecture: with ``model.preset = "sd15"`` the configured folders' ``config.json``
(diffusers ``from_config``); otherwise SD1.5's architecture from code at 512 px and the
SD-inpainting face model (9-channel UNet, 4-channel ControlNet) at the face size. The
cpu-tiny preset counts its own demo bundle (``clients/models/demo``) from its config files.

Per committed frame, with k = steps x CFG branches (2 when guidance_scale > 1) x windows
per frame ws / (ws - os):

- unet, controlnet: k x one per-frame evaluation (the ControlNet without its conditioning
  embedding);
- attention_extra: k x (the UNet over one window in the preset's attention mode / ws - the
  per-frame UNet): what all-frame (or sparse) self-attention adds;
- conditioning: the ControlNet conditioning embedding, once per window (ws / (ws - os)) with
  ``model.cache_conditioning``, else k times;
- decode: the VAE decoder, once;
- face: face steps x its CFG branches x (face UNet + ControlNet) + its conditioning
  embedding + the VAE encode of the masked crop + its decode (0 when the face stage is off).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from app.config import AppConfig, load_config
from app.presets import PRESETS
from model.attention import WindowContext, install_attention
from model.config import AttentionMode
from model.errors import AnchorError
from model.guided import precomputed_conditioning
from model.presets import SD15_IMAGE_SIZE, controlnet_from_unet

STAGES = ("unet", "controlnet", "attention_extra", "conditioning", "decode", "face")
# Vendor datasheet peaks, dense FP16/BF16 tensor throughput (no structured sparsity), TF/s.
PEAK_TFLOPS = {"A100": 312.0, "H100 SXM": 989.0}
PEAK_SOURCE = "vendor datasheet, dense FP16/BF16 tensor"
METHOD = (
    "torch.utils.flop_counter.FlopCounterMode on meta tensors: every network run once; "
    "attention_extra by running the UNet with the preset's attention processors "
    "(model.attention.install_attention) over one window of window_size frames"
)

# SD1.5's UNet (runwayml/stable-diffusion-v1-5 unet/config.json; the rest are diffusers'
# defaults, which are SD1.5's).
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
# SD1.5's VAE (vae/config.json).
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SD15_CONDITIONING = (16, 32, 96, 256)  # ControlNet's conditioning embedding widths
CLIP_B32_TOKENS = (50, 768)  # ViT-B/32 at 224: 7 x 7 patches + class token, width 768


@dataclass
class Networks:
    """One architecture on the meta device: body and face networks and their sizes."""

    name: str
    image_size: int
    unet: UNet2DConditionModel
    controlnet: ControlNetModel
    vae: AutoencoderKL
    face_unet: UNet2DConditionModel | None
    face_controlnet: ControlNetModel | None
    face_vae: AutoencoderKL | None
    tokens: tuple[int, int]  # cross-attention tokens (count, width)


def count_flops(call: Callable[[], Any]) -> int:
    """FLOPs of ``call()`` as FlopCounterMode counts them (multiply-add = 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call()
    return int(counter.get_total_flops())


def sd15_networks(face_size: int | None) -> Networks:
    """SD1.5's body networks at 512 px and the SD-inpainting face networks (9-channel UNet,
    4-channel ControlNet) when ``face_size`` is given, on the meta device."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
        controlnet = controlnet_from_unet(unet, SD15_CONDITIONING)
        vae = AutoencoderKL(**SD15_VAE)
        face_unet = face_controlnet = face_vae = None
        if face_size is not None:
            face_unet = UNet2DConditionModel(**{**SD15_UNET, "in_channels": 9})
            face_controlnet = controlnet_from_unet(face_unet, SD15_CONDITIONING, in_channels=4)
            face_vae = AutoencoderKL(**SD15_VAE)
    return Networks(
        "sd15 (diffusers classes with SD1.5's config, built from code)",
        SD15_IMAGE_SIZE,
        unet,
        controlnet,
        vae,
        face_unet,
        face_controlnet,
        face_vae,
        CLIP_B32_TOKENS,
    )


def _from_folder(cls: Any, folder: Path) -> Any:
    if not (folder / "config.json").is_file():
        raise AnchorError(f"no config.json in {folder}")
    with torch.device("meta"):
        return cls.from_config(cls.load_config(folder))


def _clip_tokens(folder: Path | None) -> tuple[int, int]:
    if folder is None:
        return CLIP_B32_TOKENS
    from transformers import CLIPVisionConfig

    config = CLIPVisionConfig.from_pretrained(folder, local_files_only=True)
    image_size, patch_size = cast(int, config.image_size), cast(int, config.patch_size)
    return ((image_size // patch_size) ** 2 + 1, int(config.hidden_size))


def folder_networks(
    name: str,
    image_size: int,
    body: Path,
    vae: Path,
    face: Path | None,
    face_vae: Path | None,
    clip: Path | None,
) -> Networks:
    """Networks built on meta from config.json files: ``body``/{unet,controlnet}, ``vae``,
    ``face``/{unet,controlnet} and ``face_vae`` (face ones None when the stage is off)."""
    return Networks(
        name,
        image_size,
        _from_folder(UNet2DConditionModel, body / "unet"),
        _from_folder(ControlNetModel, body / "controlnet"),
        _from_folder(AutoencoderKL, vae),
        None if face is None else _from_folder(UNet2DConditionModel, face / "unet"),
        None if face is None else _from_folder(ControlNetModel, face / "controlnet"),
        None if face_vae is None else _from_folder(AutoencoderKL, face_vae),
        _clip_tokens(clip),
    )


def networks_for(config: AppConfig, sd15_folders: bool) -> Networks:
    """The architecture ``config`` runs: its bundle's config.json files, its sd15 folders'
    (``sd15_folders``) or, for sd15 without them, SD1.5's architecture from code."""
    model = config.model
    face = config.face.enabled
    if model.preset == "bundle":
        if model.checkpoint_path is None:
            raise AnchorError("model.checkpoint_path: the bundle folder is not set")
        root = model.checkpoint_path
        return folder_networks(
            f"bundle {root} (config.json files)",
            int(config.render.width) if model.image_size is None else model.image_size,
            root / "body",
            root / "vae",
            root / "head" if face else None,
            root / "head" / "vae" if face else None,
            root / "clip",
        )
    if model.preset == "sd15" and sd15_folders:
        if model.checkpoint_path is None or model.sd_path is None:
            raise AnchorError("model.checkpoint_path and model.sd_path must be set for sd15")
        if face and model.sd_inpainting_path is None:
            raise AnchorError("model.sd_inpainting_path must be set for the face stage")
        inpainting = model.sd_inpainting_path
        return folder_networks(
            f"sd15 {model.checkpoint_path} (config.json files)",
            model.image_size or SD15_IMAGE_SIZE,
            model.checkpoint_path / "body",
            model.sd_path / "vae",
            model.checkpoint_path / "head" if face else None,
            inpainting / "vae" if face and inpainting is not None else None,
            model.clip_path,
        )
    return sd15_networks(config.face.size if face else None)


def _meta(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, device="meta")


def _unet_flops(
    unet: UNet2DConditionModel, frames: int, latent: int, tokens: tuple[int, int], channels: int
) -> int:
    sample = _meta(frames, channels, latent, latent)
    timesteps = torch.full((frames,), 500, device="meta")
    hidden = _meta(frames, *tokens)
    return count_flops(lambda: unet(sample, timesteps, encoder_hidden_states=hidden))


def _window_unet_flops(
    unet: UNet2DConditionModel,
    mode: AttentionMode,
    frames: int,
    latent: int,
    tokens: tuple[int, int],
) -> int:
    """The UNet over one window of ``frames`` frames with ``mode`` self-attention."""
    context = WindowContext()
    install_attention(unet, mode, context)
    try:
        with context.frames(frames):
            return _unet_flops(unet, frames, latent, tokens, int(unet.config["in_channels"]))
    finally:
        install_attention(unet, "per-frame", WindowContext())


def _controlnet_flops(
    controlnet: ControlNetModel, latent: int, tokens: tuple[int, int]
) -> tuple[int, int]:
    """(ControlNet on a precomputed embedding, its conditioning embedding), one frame."""
    image = _meta(1, int(controlnet.config["conditioning_channels"]), latent * 8, latent * 8)
    embedding_module: nn.Module = controlnet.controlnet_cond_embedding
    embedding_flops = count_flops(lambda: embedding_module(image))
    embedding = embedding_module(image)
    sample = _meta(1, int(controlnet.config["in_channels"]), latent, latent)
    timesteps = torch.full((1,), 500, device="meta")
    hidden = _meta(1, *tokens)
    with precomputed_conditioning(controlnet):
        network_flops = count_flops(
            lambda: controlnet(
                sample, timesteps, encoder_hidden_states=hidden, controlnet_cond=embedding
            )
        )
    return network_flops, embedding_flops


def _vae_flops(vae: AutoencoderKL, size: int) -> tuple[int, int]:
    """(encode, decode) of one ``size`` x ``size`` image."""
    channels = int(vae.config["latent_channels"])
    image = _meta(1, int(vae.config["in_channels"]), size, size)
    latents = _meta(1, channels, size // 8, size // 8)
    return count_flops(lambda: vae.encode(image)), count_flops(lambda: vae.decode(latents))


def network_costs(
    networks: Networks, face_size: int, window: int, mode: AttentionMode
) -> dict[str, float]:
    """FLOPs of one evaluation of each network (one frame) and of the window attention."""
    latent = networks.image_size // 8
    unet = _unet_flops(networks.unet, 1, latent, networks.tokens, 4)
    window_unet = unet * window
    if mode != "per-frame" and window > 1:
        window_unet = _window_unet_flops(networks.unet, mode, window, latent, networks.tokens)
    controlnet, embedding = _controlnet_flops(networks.controlnet, latent, networks.tokens)
    _, decode = _vae_flops(networks.vae, networks.image_size)
    costs: dict[str, float] = {
        "unet": unet,
        "controlnet": controlnet,
        "conditioning": embedding,
        "attention_extra": window_unet / window - unet,
        "decode": decode,
        "face_unet": 0,
        "face_controlnet": 0,
        "face_conditioning": 0,
        "face_encode": 0,
        "face_decode": 0,
    }
    if networks.face_unet is not None and networks.face_controlnet is not None:
        assert networks.face_vae is not None
        face_latent = face_size // 8
        channels = int(networks.face_unet.config["in_channels"])
        costs["face_unet"] = _unet_flops(
            networks.face_unet, 1, face_latent, networks.tokens, channels
        )
        costs["face_controlnet"], costs["face_conditioning"] = _controlnet_flops(
            networks.face_controlnet, face_latent, networks.tokens
        )
        costs["face_encode"], costs["face_decode"] = _vae_flops(networks.face_vae, face_size)
    return costs


def preset_config(name: str, base: AppConfig) -> AppConfig:
    """Preset ``name``'s fields over the architecture counted (environment ignored).

    quality and live: ``model.preset`` and folders of ``base`` when it names sd15 weights,
    else sd15 at 512 (the architecture is then built from code). cpu-tiny: its own bundle.
    """
    if name == "cpu-tiny":
        return load_config(None, [], preset=name, environ={})
    model = base.model
    overrides = ["model.preset=sd15"]
    if model.preset == "sd15":
        for field in ("sd_path", "sd_inpainting_path", "clip_path", "checkpoint_path"):
            value = getattr(model, field)
            if value is not None:
                overrides.append(f"model.{field}={value}")
    overrides.append(f"model.image_size={model.image_size or SD15_IMAGE_SIZE}")
    return load_config(None, overrides, preset=name, environ={})


def frame_stages(config: AppConfig, costs: dict[str, float]) -> dict[str, float]:
    """FLOPs per committed frame by stage (see the module docstring)."""
    sampler, face = config.sampler, config.face
    windows_per_frame = sampler.window_size / (sampler.window_size - sampler.overlap)
    branches = 2 if sampler.guidance_scale > 1.0 else 1
    evaluations = sampler.steps * branches * windows_per_frame
    conditioning_runs = windows_per_frame if config.model.cache_conditioning else evaluations
    face_branches = 2 if face.guidance_scale > 1.0 else 1
    face_flops = 0.0
    if face.enabled:
        face_flops = (
            face.steps * face_branches * (costs["face_unet"] + costs["face_controlnet"])
            + costs["face_conditioning"]
            + costs["face_encode"]
            + costs["face_decode"]
        )
    return {
        "unet": evaluations * costs["unet"],
        "controlnet": evaluations * costs["controlnet"],
        "attention_extra": evaluations * costs["attention_extra"],
        "conditioning": conditioning_runs * costs["conditioning"],
        "decode": costs["decode"],
        "face": face_flops,
    }


def _tera(value: float) -> float:
    """TFLOPs to 6 significant digits (cpu-tiny's figures are a few GFLOPs)."""
    return float(f"{value / 1e12:.6g}")


def bench_flops(base: AppConfig, utilization: float = 0.4) -> dict[str, Any]:
    """TFLOPs per committed frame of every preset by stage, and the frames/s they imply at
    ``utilization`` of each GPU's peak."""
    if not 0.0 < utilization <= 1.0:
        raise AnchorError(f"--utilization must be in (0, 1], got {utilization}")
    presets: dict[str, Any] = {}
    architecture = ""
    resolution = SD15_IMAGE_SIZE
    for name in PRESETS:
        config = preset_config(name, base)
        networks = networks_for(config, base.model.preset == "sd15")
        if name == "quality":
            architecture, resolution = networks.name, networks.image_size
        sampler, model = config.sampler, config.model
        costs = network_costs(networks, config.face.size, sampler.window_size, model.attention)
        stages = frame_stages(config, costs)
        total = sum(stages.values())
        presets[name] = {
            "tflops_per_frame": _tera(total),
            "stages": {stage: _tera(stages[stage]) for stage in STAGES},
            "fps": {
                gpu: round(peak * 1e12 * utilization / total, 2)
                for gpu, peak in PEAK_TFLOPS.items()
            },
            "architecture": networks.name,
            "resolution": networks.image_size,
            "settings": {
                "steps": sampler.steps,
                "guidance_scale": sampler.guidance_scale,
                "window_size": sampler.window_size,
                "overlap": sampler.overlap,
                "attention": model.attention,
                "cache_conditioning": model.cache_conditioning,
                "face": config.face.enabled,
                "face_size": config.face.size,
                "face_steps": config.face.steps,
                "face_guidance_scale": config.face.guidance_scale,
            },
            "per_evaluation_tflops": {key: _tera(value) for key, value in costs.items()},
        }
    return {
        "architecture": architecture,
        "resolution": resolution,
        "face_stage": face_stage_costs(base),
        "method": METHOD,
        "counted": "matmul, convolution and attention FLOPs (multiply-add = 2); norms, "
        "activations and element-wise ops are not counted",
        "utilization": utilization,
        "peak_tflops": PEAK_TFLOPS,
        "peak_source": PEAK_SOURCE,
        "presets": presets,
    }


def face_stage_costs(base: AppConfig, student_steps: int = 2) -> dict[str, Any]:
    """TFLOPs per frame of the face stage alone at SD1.5 scale (the quality preset's face
    size, 256): the paper's sampling (the quality preset: 20 steps, CFG 3.5), the live
    preset's 4 steps, and a consistency student (``anchor distill face``) at
    ``student_steps`` LCM steps without CFG."""
    config = preset_config("quality", base)
    networks = networks_for(config, base.model.preset == "sd15")
    costs = network_costs(networks, config.face.size, config.sampler.window_size,
                          config.model.attention)  # fmt: skip
    rows = {"quality": (config.face.steps, config.face.guidance_scale), "live": (4, 1.0),
            f"student {student_steps} steps": (student_steps, 1.0)}  # fmt: skip
    figures = {}
    for name, (steps, guidance) in rows.items():
        face = config.face.model_copy(update={"steps": steps, "guidance_scale": guidance})
        stages = frame_stages(config.model_copy(update={"face": face}), costs)
        figures[name] = _tera(stages["face"])
    return {"face_size": config.face.size, "tflops_per_frame": figures}


def format_report(report: dict[str, Any]) -> str:
    """Human-readable table of ``bench_flops``'s result."""
    gpus = list(report["peak_tflops"])
    peaks = ", ".join(f"{gpu} {peak:g} TF/s" for gpu, peak in report["peak_tflops"].items())
    lines = [
        f"TFLOPs per committed frame ({report['method']})",
        f"{'preset':>9} {'res':>4} "
        + " ".join(f"{stage:>15}" for stage in STAGES)
        + f" {'total':>9} "
        + " ".join(f"{'fps ' + gpu:>12}" for gpu in gpus),
    ]
    for name, row in report["presets"].items():
        lines.append(
            f"{name:>9} {row['resolution']:>4} "
            + " ".join(f"{row['stages'][stage]:>15.4g}" for stage in STAGES)
            + f" {row['tflops_per_frame']:>9.4g} "
            + " ".join(f"{row['fps'][gpu]:>12.6g}" for gpu in gpus)
        )
    lines.append(
        f"frames/s at {report['utilization']:g} of peak ({peaks}; {report['peak_source']})"
    )
    lines.append(f"quality/live architecture: {report['architecture']}")
    face = report["face_stage"]
    lines.append(
        f"face stage alone at {face['face_size']} px: "
        + ", ".join(f"{name} {value:.4g} TF" for name, value in face["tflops_per_frame"].items())
    )
    return "\n".join(lines)
