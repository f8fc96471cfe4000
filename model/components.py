"""Build everything the samplers need from the config: ``build_components``.

``preset = "tiny"``: real diffusers/transformers classes at tiny size from ``tiny_seed``.
``preset = "sd15"``: real weights from local folders, loaded strictly (model/loading.py):

- ``model.checkpoint_path``: Make-Your-Anchor ``body/{unet,controlnet}`` and
  ``head/{unet,controlnet}`` (plain ``save_pretrained`` folders, loaded unchanged);
- ``model.sd_path``: SD1.5 ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``;
- ``model.sd_inpainting_path``: SD-inpainting ``vae/``, ``text_encoder/``, ``tokenizer/``
  (face model, only when ``face.enabled``);
- ``model.clip_path``: a CLIPVisionModel (or full CLIPModel) folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from transformers import CLIPVisionModel

from model.appearance import clip_processor, encode_appearance
from model.bundle import has_face_model, load_bundle
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.face_sgdm import FaceEnhancer
from model.loading import (
    empty_prompt_embedding,
    load_clip_vision,
    load_controlnet,
    load_ddim_scheduler,
    load_text_encoder,
    load_unet,
    load_vae,
    require_folder,
)
from model.lora import apply_model_loras
from model.placement import Components, place, resolve_placement
from model.presets import (
    SD15_IMAGE_SIZE,
    SD15_SCHEDULER_CONFIG,
    TINY_IMAGE_SIZE,
    default_reference_image,
    tiny_clip_vision,
    tiny_controlnet,
    tiny_unet,
    tiny_vae,
)
from model.scheduling import frame_scheduler
from model.sgdm import SGDMDenoiser
from model.tiny_vae import with_tiny_vae
from model.video_io import read_image

log = logging.getLogger("anchor.model")


@dataclass
class _Networks:
    unet: UNet2DConditionModel
    controlnet: ControlNetModel
    vae: AutoencoderKL
    clip: CLIPVisionModel
    null_embedding: torch.Tensor
    scheduler_config: dict[str, Any]  # diffusers scheduler config (SD1.5's noise tables)
    face_unet: UNet2DConditionModel | None
    face_controlnet: ControlNetModel | None
    face_vae: AutoencoderKL | None
    face_null_embedding: torch.Tensor | None
    face_scheduler_config: dict[str, Any] | None


def _stand_in_controlnet_weights(controlnet: ControlNetModel) -> None:
    """Tiny stand-ins for trained ControlNet weights.

    A fresh ControlNet's zero-initialised output convolutions would make the condition
    images irrelevant, and PyTorch's default conv init shrinks the signal through the
    7-layer conditioning embedding until every silhouette embeds alike. Variance-
    preserving (He) init keeps the condition visible in the output, as training would.
    """
    embedding = controlnet.controlnet_cond_embedding
    hidden = [embedding.conv_in, *embedding.blocks]
    for conv in hidden:
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
    outputs = [
        embedding.conv_out,
        *controlnet.controlnet_down_blocks,
        controlnet.controlnet_mid_block,
    ]
    for conv in outputs:
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="linear")
        torch.nn.init.zeros_(conv.bias)


def _clip_tokens(clip: CLIPVisionModel) -> int:
    image_size, patch_size = cast(int, clip.config.image_size), cast(int, clip.config.patch_size)
    return (image_size // patch_size) ** 2 + 1


def _tiny_networks(config: ModelConfig, face: FaceConfig) -> _Networks:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.tiny_seed)
        unet = tiny_unet()
        controlnet = tiny_controlnet(unet)
        _stand_in_controlnet_weights(controlnet)
        vae = tiny_vae()
        clip = tiny_clip_vision()
        face_unet = face_controlnet = None
        if face.enabled:
            face_unet = tiny_unet(in_channels=9)
            face_controlnet = tiny_controlnet(face_unet, in_channels=4)
            _stand_in_controlnet_weights(face_controlnet)
    # Tiny models have no text encoder: a zero null embedding stands in for the empty prompt.
    null = torch.zeros(_clip_tokens(clip), int(clip.config.hidden_size))
    scheduler = dict(SD15_SCHEDULER_CONFIG)
    return _Networks(
        unet,
        controlnet,
        vae,
        clip,
        null,
        scheduler,
        face_unet,
        face_controlnet,
        vae if face.enabled else None,
        null if face.enabled else None,
        scheduler if face.enabled else None,
    )


def _sd15_networks(config: ModelConfig, face: FaceConfig) -> _Networks:
    checkpoints = require_folder(config.checkpoint_path, "model.checkpoint_path")
    sd = require_folder(config.sd_path, "model.sd_path")
    field = "model.checkpoint_path"
    unet = load_unet(require_folder(checkpoints, field, "body", "unet"), field)
    controlnet = load_controlnet(require_folder(checkpoints, field, "body", "controlnet"), field)
    vae = load_vae(require_folder(sd, "model.sd_path", "vae"), "model.sd_path")
    clip = load_clip_vision(require_folder(config.clip_path, "model.clip_path"), "model.clip_path")
    encoder, tokenizer = load_text_encoder(sd, "model.sd_path")
    null = empty_prompt_embedding(encoder, tokenizer, _clip_tokens(clip))
    scheduler = dict(load_ddim_scheduler(sd, "model.sd_path").config)
    face_unet = face_controlnet = face_vae = face_null = face_scheduler = None
    if face.enabled:
        inpainting = require_folder(config.sd_inpainting_path, "model.sd_inpainting_path")
        inpaint_field = "model.sd_inpainting_path"
        face_unet = load_unet(require_folder(checkpoints, field, "head", "unet"), field)
        face_controlnet = load_controlnet(
            require_folder(checkpoints, field, "head", "controlnet"), field
        )
        face_vae = load_vae(require_folder(inpainting, inpaint_field, "vae"), inpaint_field)
        face_encoder, face_tokenizer = load_text_encoder(inpainting, inpaint_field)
        face_null = empty_prompt_embedding(face_encoder, face_tokenizer, _clip_tokens(clip))
        face_scheduler = dict(load_ddim_scheduler(inpainting, inpaint_field).config)
    return _Networks(
        unet,
        controlnet,
        vae,
        clip,
        null,
        scheduler,
        face_unet,
        face_controlnet,
        face_vae,
        face_null,
        face_scheduler,
    )


def _reference(path: Path | None, size: int) -> torch.Tensor:
    return default_reference_image(size) if path is None else read_image(path)


def build_components(model: ModelConfig, sampler: SamplerConfig, face: FaceConfig) -> Components:
    """Networks, scheduler (``sampler.steps`` steps of ``sampler.scheduler``), face enhancer (when
    ``face.enabled``) and appearance tokens, placed per ``model.device``/``model.precision``.

    Raises AnchorError naming the config field when a folder is missing, WeightsError
    when weights do not match their architecture.
    """
    if model.backend == "onnxruntime":
        return _onnx_components(model, sampler, face)
    if model.preset == "bundle":
        return compile_networks(_bundle_components(model, sampler, face), model)
    return compile_networks(_torch_components(model, sampler, face), model)


def compile_networks(components: Components, model: ModelConfig) -> Components:
    """``torch.compile`` the body UNet and ControlNet per ``model.compile`` (in place).

    Dynamic shapes: the stream batch changes the number of windows per call. The
    attention processors read their window grouping from a shared context, so a new
    grouping is a recompile, not a wrong result.
    """
    denoiser = components.denoiser
    wanted = model.compile == "on" or (model.compile == "auto" and components.device.type == "cuda")
    if not wanted or not isinstance(denoiser, SGDMDenoiser):
        return components
    log.info("torch.compile (%s) of the UNet and ControlNet", model.compile_backend)
    # The compiled wrappers forward attribute access to the modules they wrap.
    compiled: Any = torch.compile(denoiser.unet, backend=model.compile_backend, dynamic=True)
    denoiser.unet = compiled
    compiled = torch.compile(denoiser.controlnet, backend=model.compile_backend, dynamic=True)
    denoiser.controlnet = compiled
    return components


def _torch_components(model: ModelConfig, sampler: SamplerConfig, face: FaceConfig) -> Components:
    device, dtype = resolve_placement(model)
    networks = (
        _tiny_networks(model, face) if model.preset == "tiny" else _sd15_networks(model, face)
    )
    apply_model_loras(model, networks.unet, networks.face_unet)
    default_size = TINY_IMAGE_SIZE if model.preset == "tiny" else SD15_IMAGE_SIZE
    image_size = model.image_size or default_size
    decoder_vae, encoder_vae = with_tiny_vae(
        networks.vae, model.tiny_vae_path, "model.tiny_vae_path"
    )
    for network in (networks.unet, networks.controlnet, decoder_vae, encoder_vae, networks.clip):
        place(network, device, dtype)
    reference = _reference(model.reference_image, image_size)
    processor = clip_processor(networks.clip, model.clip_path if model.preset == "sd15" else None)
    appearance = encode_appearance(networks.clip, reference, processor)
    denoiser = SGDMDenoiser.configured(
        networks.unet,
        networks.controlnet,
        decoder_vae,
        appearance,
        networks.null_embedding,
        image_size=image_size,
        model=model,
        sampler=sampler,
        encoder_vae=encoder_vae,
    )
    enhancer = None
    if face.enabled:
        assert networks.face_unet is not None and networks.face_controlnet is not None
        assert networks.face_vae is not None and networks.face_null_embedding is not None
        assert networks.face_scheduler_config is not None
        face_decoder, face_encoder = with_tiny_vae(
            networks.face_vae, face.tiny_vae_path, "face.tiny_vae_path"
        )
        face_networks = (networks.face_unet, networks.face_controlnet, face_decoder, face_encoder)
        for network in face_networks:
            place(network, device, dtype)
        face_reference = (
            reference if face.reference_image is None else read_image(face.reference_image)
        )
        enhancer = FaceEnhancer.configured(
            networks.face_unet,
            networks.face_controlnet,
            face_decoder,
            encode_appearance(networks.clip, face_reference, processor),
            networks.face_null_embedding,
            frame_scheduler(
                face.scheduler,
                networks.face_scheduler_config,
                face.steps,
                face.seed,
                face.lcm_strength,
            ),
            face,
            encoder_vae=face_encoder,
        )
    log.info(
        "model ready: preset %s, %dx%d, %s %s, attention %s",
        model.preset,
        image_size,
        image_size,
        device,
        dtype,
        model.attention,
    )
    scheduler = frame_scheduler(
        sampler.scheduler,
        networks.scheduler_config,
        sampler.steps,
        sampler.seed,
        sampler.lcm_strength,
    )
    return Components(denoiser, scheduler, enhancer, appearance, device, dtype)


def _bundle_components(model: ModelConfig, sampler: SamplerConfig, face: FaceConfig) -> Components:
    """A trained bundle (``anchor train ... --out O`` then ``O/final``) as Components, with
    its face model (``head/``) when ``face.enabled`` (model/bundle.py)."""
    if model.checkpoint_path is None:
        raise AnchorError("model.checkpoint_path is not set: name the bundle folder")
    if face.enabled and not has_face_model(model.checkpoint_path):
        raise AnchorError(
            f"model.checkpoint_path {model.checkpoint_path}: this bundle holds no face model "
            "(head/unet; train one with anchor train face); set face.enabled = false"
        )
    return load_bundle(model.checkpoint_path, model, sampler, face=face)


def _onnx_components(model: ModelConfig, sampler: SamplerConfig, face: FaceConfig) -> Components:
    """The graphs of ``model.onnx_dir`` on ONNX Runtime (model/onnx_runtime.py); tensors
    cross as float32 on the CPU whatever the provider, so ``model.device`` and
    ``model.precision`` do not apply."""
    from model.onnx_runtime import load_onnx_denoiser

    if face.enabled:
        raise AnchorError(
            "face.enabled: the onnxruntime backend runs the body model only (anchor "
            "export-onnx exports no face model); set face.enabled = false or model.backend = "
            "'torch'"
        )
    denoiser = load_onnx_denoiser(model, sampler)
    scheduler_config = dict(SD15_SCHEDULER_CONFIG)
    if model.preset == "sd15":
        sd = require_folder(model.sd_path, "model.sd_path")
        scheduler_config = dict(load_ddim_scheduler(sd, "model.sd_path").config)
    scheduler = frame_scheduler(
        sampler.scheduler, scheduler_config, sampler.steps, sampler.seed, sampler.lcm_strength
    )
    log.info(
        "model ready: preset %s from %s, %dx%d, onnxruntime on %s, attention %s",
        model.preset,
        model.onnx_dir,
        denoiser.image_height,
        denoiser.image_width,
        ", ".join(denoiser.providers),
        denoiser.attention,
    )
    return Components(
        denoiser, scheduler, None, denoiser.appearance, torch.device("cpu"), torch.float32
    )
