"""Load a trained bundle (``OUT/final`` of ``anchor train``, or clients/models/demo).

model/training/bundle.py writes bundles; this module reads them. A bundle folder holds
``body/{unet,controlnet}``, ``vae/``, ``clip/``, ``null_embedding.safetensors`` and, for
a shipped model, ``bundle.json`` (image size, suggested sampler settings) and
``reference.png`` (the appearance image). Everything is loaded strictly
(model/loading.py). ``load_bundle`` returns the same ``Components`` as
``model.components.build_components`` (``model.preset = "bundle"`` comes here), so every
sampler runs it unchanged.

A bundle may also carry a face model (``anchor train face``): ``head/{unet,controlnet}``,
``head/reference.png`` (an aligned face crop: the face appearance image) and, when it was
trained on another autoencoder than the body (``anchor train vae --faces``: a small
autoencoder trained on the scene's whole frames does not reconstruct face crops),
``head/vae/``; otherwise it shares the bundle's ``vae/``. It always shares ``clip/`` and
the null embedding (``anchor train face --clip BUNDLE/clip``), and ``bundle.json``'s
``face.size`` names the crop size it was trained at.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from transformers import CLIPVisionModel

from model.appearance import clip_processor, encode_appearance
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.face_sgdm import FaceEnhancer
from model.loading import load_clip_vision, load_controlnet, load_unet, load_vae, require_folder
from model.lora import apply_model_loras
from model.placement import Components, place, resolve_placement
from model.presets import SD15_SCHEDULER_CONFIG
from model.scheduling import frame_scheduler
from model.sgdm import SGDMDenoiser
from model.tiny_vae import with_tiny_vae
from model.video_io import read_image

log = logging.getLogger("anchor.bundle")

BUNDLE_META = "bundle.json"
REFERENCE = "reference.png"
FACE_PART = "head"
NULL_EMBEDDING = "null_embedding.safetensors"


def bundle_meta(folder: Path) -> dict[str, Any]:
    """``bundle.json`` (empty when absent)."""
    path = folder / BUNDLE_META
    return json.loads(path.read_text()) if path.is_file() else {}


def part_scheduler_config(folder: Path, part: str, kind: str) -> dict[str, Any]:
    """The scheduler config a part samples with: ``<part>/scheduler/scheduler_config.json``
    when the bundle carries one (a consistency student, ``anchor distill``), else SD1.5's.

    A student sampled with DDIM (``kind`` "ddim") still runs, but is logged: it was
    distilled for the LCM sampler."""
    path = folder / part / "scheduler" / "scheduler_config.json"
    if not path.is_file():
        return dict(SD15_SCHEDULER_CONFIG)
    config: dict[str, Any] = json.loads(path.read_text())
    if config.get("_class_name") == "LCMScheduler" and kind != "lcm":
        log.warning(
            "bundle %s: %s is a consistency-distilled student; sample it with scheduler = "
            "'lcm' (sampler.scheduler / face.scheduler), not %r",
            folder,
            part,
            kind,
        )
    return config


def has_face_model(folder: Path) -> bool:
    """Whether the bundle carries a face model (``head/unet``)."""
    return (folder / FACE_PART / "unet").is_dir()


def load_null_embedding(folder: Path) -> torch.Tensor:
    """``(T, D)`` float32 from a bundle's ``null_embedding.safetensors``."""
    from safetensors.torch import load_file

    path = folder / NULL_EMBEDDING
    if not path.is_file():
        raise AnchorError(f"bundle {folder}: {NULL_EMBEDDING} not found")
    return load_file(str(path))["null_embedding"].float()


def load_bundle(
    folder: Path,
    model: ModelConfig,
    sampler: SamplerConfig,
    reference: Path | None = None,
    face: FaceConfig | None = None,
) -> Components:
    """The body model of a bundle as ``Components``, with its face enhancer when ``face``
    is given and enabled (``load_face_enhancer``).

    reference: appearance image; default ``model.reference_image``, else the bundle's
    ``reference.png``. Image size: ``model.image_size``, else ``bundle.json``'s, else the
    VAE's ``sample_size``.
    """
    field = "bundle"
    unet = load_unet(require_folder(folder, field, "body", "unet"), field)
    controlnet = load_controlnet(require_folder(folder, field, "body", "controlnet"), field)
    vae = load_vae(require_folder(folder, field, "vae"), field)
    clip = load_clip_vision(require_folder(folder, field, "clip"), field)
    null = load_null_embedding(folder)
    apply_model_loras(model, unet, None)
    device, dtype = resolve_placement(model)
    decoder_vae, encoder_vae = with_tiny_vae(vae, model.tiny_vae_path, "model.tiny_vae_path")
    networks: tuple[torch.nn.Module, ...] = (unet, controlnet, decoder_vae, encoder_vae, clip)
    for network in networks:
        place(network, device, dtype)
    meta = bundle_meta(folder)
    size = model.image_size or int(meta.get("image_size") or vae.config["sample_size"])
    image_path = reference or model.reference_image or folder / REFERENCE
    if not Path(image_path).is_file():
        raise AnchorError(f"bundle {folder}: no reference image (set model.reference_image)")
    processor = clip_processor(clip, folder / "clip")
    appearance = encode_appearance(clip, read_image(Path(image_path), size), processor)
    denoiser = SGDMDenoiser.configured(
        unet,
        controlnet,
        decoder_vae,
        appearance,
        null,
        image_size=size,
        model=model,
        sampler=sampler,
        encoder_vae=encoder_vae,
    )
    scheduler = frame_scheduler(
        sampler.scheduler,
        part_scheduler_config(folder, "body", sampler.scheduler),
        sampler.steps,
        sampler.seed,
        sampler.lcm_strength,
    )
    enhancer = None
    if face is not None and face.enabled:
        enhancer = load_face_enhancer(folder, face, vae, clip, null, device, dtype, model)
    return Components(denoiser, scheduler, enhancer, appearance, device, dtype)


def load_face_enhancer(
    folder: Path,
    face: FaceConfig,
    vae: AutoencoderKL,
    clip: CLIPVisionModel,
    null_embedding: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    model: ModelConfig | None = None,
) -> FaceEnhancer:
    """The bundle's face model (``head/``) as a ``FaceEnhancer`` over ``head/vae`` (else
    the bundle's VAE; ``face.tiny_vae_path`` decodes instead) and the bundle's CLIP (both
    already placed on ``device``/``dtype``),
    ``face.steps`` steps of ``face.scheduler``, with ``model.face_lora_path`` when given.

    Face appearance: ``face.reference_image``, else ``head/reference.png``. ``face.size``
    must be the crop size the model was trained at (``bundle.json`` ``face.size``).
    null_embedding: (T, D) float32.
    """
    field = "bundle"
    if not has_face_model(folder):
        raise AnchorError(
            f"bundle {folder}: no face model ({FACE_PART}/unet); set face.enabled = false"
        )
    trained_size = bundle_meta(folder).get("face", {}).get("size")
    if trained_size is not None and int(trained_size) != face.size:
        raise AnchorError(
            f"face.size {face.size} != {int(trained_size)}, the crop size of the face model "
            f"of bundle {folder} (bundle.json face.size)"
        )
    unet = load_unet(require_folder(folder, field, FACE_PART, "unet"), field)
    controlnet = load_controlnet(require_folder(folder, field, FACE_PART, "controlnet"), field)
    if model is not None:
        apply_model_loras(model, None, unet)
    if (folder / FACE_PART / "vae").is_dir():
        vae = load_vae(folder / FACE_PART / "vae", field)
    decoder_vae, encoder_vae = with_tiny_vae(vae, face.tiny_vae_path, "face.tiny_vae_path")
    face_networks: tuple[torch.nn.Module, ...] = (unet, controlnet, decoder_vae, encoder_vae)
    for network in face_networks:
        place(network, device, dtype)
    image_path = face.reference_image or folder / FACE_PART / REFERENCE
    if not Path(image_path).is_file():
        raise AnchorError(
            f"bundle {folder}: no face reference image ({FACE_PART}/{REFERENCE}; "
            "set face.reference_image)"
        )
    processor = clip_processor(clip, folder / "clip")
    appearance = encode_appearance(clip, read_image(Path(image_path), face.size), processor)
    return FaceEnhancer.configured(
        unet,
        controlnet,
        decoder_vae,
        appearance,
        null_embedding,
        frame_scheduler(
            face.scheduler,
            part_scheduler_config(folder, FACE_PART, face.scheduler),
            face.steps,
            face.seed,
            face.lcm_strength,
        ),
        face,
        encoder_vae=encoder_vae,
    )
