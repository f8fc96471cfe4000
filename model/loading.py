"""Strict loading of real weights from local folders (nothing is ever fetched from a hub).

diffusers' and transformers' ``from_pretrained`` initialise missing weights randomly and
drop unexpected ones with a log line; here any missing, unexpected or mismatched key is a
``WeightsError`` naming the key(s), and a missing folder is an ``AnchorError`` naming the
config field to set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.controlnets.controlnet import ControlNetModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModel

from model.errors import AnchorError, WeightsError

log = logging.getLogger("anchor.model.loading")

ModelT = TypeVar("ModelT")

# A CLIPModel checkpoint holds both towers; the vision model takes ``vision_model.*`` only.
_CLIP_OTHER_TOWER = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")
_MAX_NAMED_KEYS = 8


def require_folder(root: Path | None, field: str, *parts: str) -> Path:
    """``root/parts...`` as an existing folder, else an error naming the config field."""
    if root is None:
        raise AnchorError(f"{field} is not set (a local folder is required for preset 'sd15')")
    folder = Path(root).joinpath(*parts)
    if not folder.is_dir():
        raise AnchorError(f"{field}: folder {folder} not found")
    return folder


def _describe(keys: Iterable[str]) -> str:
    ordered = sorted(keys)
    shown = ", ".join(ordered[:_MAX_NAMED_KEYS])
    more = len(ordered) - _MAX_NAMED_KEYS
    return shown + (f" (+{more} more)" if more > 0 else "")


def check_loading_info(
    folder: Path, info: dict[str, Any], ignore_unexpected: tuple[str, ...] = ()
) -> None:
    """Raise WeightsError when a load reported missing, unexpected or mismatched keys."""
    missing = set(info.get("missing_keys") or ())
    unexpected = {
        key
        for key in info.get("unexpected_keys") or ()
        if not (ignore_unexpected and key.startswith(ignore_unexpected))
    }
    mismatched = [
        str(item[0] if isinstance(item, tuple) else item)
        for item in info.get("mismatched_keys") or ()
    ]
    problems = []
    if missing:
        problems.append(f"missing key(s): {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {_describe(unexpected)}")
    if mismatched:
        problems.append(f"shape-mismatched key(s): {_describe(mismatched)}")
    errors = [str(e) for e in info.get("error_msgs") or ()]
    if errors:
        problems.append("; ".join(errors))
    if problems:
        raise WeightsError(f"weights in {folder}: " + "; ".join(problems))


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def load_diffusers_model(cls: type[ModelT], folder: Path, field: str) -> ModelT:
    """A diffusers model (UNet, ControlNet, VAE) from a ``save_pretrained`` folder, strictly."""
    if not (folder / "config.json").is_file():
        raise AnchorError(f"{field}: {folder / 'config.json'} not found")
    if not _has_weights(folder):
        raise WeightsError(f"{field}: no weights (*.safetensors / *.bin) in {folder}")
    try:
        model, info = cls.from_pretrained(  # type: ignore[attr-defined]
            folder, output_loading_info=True, low_cpu_mem_usage=False, local_files_only=True
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{field}: cannot load {folder}: {err}") from err
    check_loading_info(folder, info)
    model.eval()
    return model  # type: ignore[no-any-return]


def load_unet(folder: Path, field: str) -> UNet2DConditionModel:
    return load_diffusers_model(UNet2DConditionModel, folder, field)


def load_controlnet(folder: Path, field: str) -> ControlNetModel:
    return load_diffusers_model(ControlNetModel, folder, field)


def load_vae(folder: Path, field: str) -> AutoencoderKL:
    return load_diffusers_model(AutoencoderKL, folder, field)


def load_clip_vision(folder: Path, field: str) -> CLIPVisionModel:
    """A CLIPVisionModel from a vision-only or a full CLIPModel folder (vision tower only)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise AnchorError(f"{field}: {config_path} not found")
    model_type = json.loads(config_path.read_text()).get("model_type")
    ignore = _CLIP_OTHER_TOWER if model_type == "clip" else ()
    try:
        loaded: Any = CLIPVisionModel.from_pretrained(
            folder, output_loading_info=True, local_files_only=True
        )
        model, info = loaded
    except (OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{field}: cannot load {folder}: {err}") from err
    check_loading_info(folder, info, ignore_unexpected=ignore)
    model.eval()
    return model


def load_text_encoder(sd_folder: Path, field: str) -> tuple[CLIPTextModel, CLIPTokenizer]:
    """SD1.5's CLIPTextModel + CLIPTokenizer (``text_encoder/``, ``tokenizer/``), strictly."""
    encoder_folder = require_folder(sd_folder, field, "text_encoder")
    tokenizer_folder = require_folder(sd_folder, field, "tokenizer")
    try:
        loaded: Any = CLIPTextModel.from_pretrained(
            encoder_folder, output_loading_info=True, local_files_only=True
        )
        encoder, info = loaded
        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{field}: cannot load {encoder_folder}: {err}") from err
    check_loading_info(encoder_folder, info)
    encoder.eval()
    return encoder, tokenizer


def load_ddim_scheduler(sd_folder: Path, field: str) -> DDIMScheduler:
    """SD1.5's scheduler config (``scheduler/scheduler_config.json``) read as DDIM, eta 0."""
    folder = require_folder(sd_folder, field, "scheduler")
    config_path = folder / "scheduler_config.json"
    if not config_path.is_file():
        raise AnchorError(f"{field}: {config_path} not found")
    config = json.loads(config_path.read_text())
    return DDIMScheduler.from_config(config)  # type: ignore[no-any-return]


@torch.no_grad()
def empty_prompt_embedding(
    encoder: CLIPTextModel, tokenizer: CLIPTokenizer, tokens: int
) -> torch.Tensor:
    """The empty prompt's text embedding fitted to ``tokens`` rows: (tokens, D) float32.

    Truncated to the first ``tokens`` positions (77 -> 50 for ViT-B/32 appearance tokens);
    when more rows are needed, the remainder repeats the last (padding) position.
    """
    ids = tokenizer(
        "", padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    hidden = encoder(input_ids=ids.to(encoder.device)).last_hidden_state[0].float().cpu()
    if hidden.shape[0] >= tokens:
        return hidden[:tokens].clone()
    pad = hidden[-1:].expand(tokens - hidden.shape[0], -1)
    return torch.cat([hidden, pad], dim=0)
