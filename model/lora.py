"""LoRA adapters (e.g. an SD1.5 LCM-LoRA) on a diffusers UNet, loaded strictly with peft.

``apply_lora`` reads a safetensors file in either published layout:

- kohya: ``lora_unet_<module path with "_" for ".">.lora_down.weight`` / ``.lora_up.weight``
  / ``.alpha`` (the LCM-LoRA release uses this with diffusers module names);
- diffusers/peft: ``[unet.]<module path>.lora_A.weight`` / ``.lora_B.weight`` (and the older
  ``.lora.down.weight`` / ``.lora.up.weight``), alpha = rank unless an ``.alpha`` key is
  given.

Every key must name a Linear or Conv2d of the UNet with matching shapes; anything else
(an unknown module, a text-encoder key, a stray suffix, a wrong shape) is a
``WeightsError`` naming the key. The adapter is injected with peft through diffusers'
``add_adapter`` + ``set_peft_model_state_dict``; ``scale`` multiplies the update
(alpha * scale / rank); ``fuse`` merges it into the base weights (``fuse_lora``) and
removes the adapter layers, so inference costs what the plain UNet costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from model.config import ModelConfig
from model.errors import AnchorError, WeightsError

ADAPTER_NAME = "anchor_lora"
_KOHYA_PREFIX = "lora_unet_"
# suffix -> which part of the low-rank pair it is
_SUFFIXES = {
    ".lora_down.weight": "down",
    ".lora_up.weight": "up",
    ".lora_A.weight": "down",
    ".lora_B.weight": "up",
    ".lora.down.weight": "down",
    ".lora.up.weight": "up",
    ".alpha": "alpha",
}


@dataclass
class _Pair:
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    alpha: float | None = None
    key: str = ""


def _split(key: str) -> tuple[str, str]:
    for suffix, part in _SUFFIXES.items():
        if key.endswith(suffix):
            return key[: -len(suffix)], part
    raise WeightsError(f"LoRA key {key!r}: not a LoRA weight (expected one of {list(_SUFFIXES)})")


def _module_name(stem: str, key: str, kohya_names: dict[str, str], modules: set[str]) -> str:
    if stem.startswith(_KOHYA_PREFIX):
        name = kohya_names.get(stem[len(_KOHYA_PREFIX) :])
    else:
        name = stem.removeprefix("unet.")
    if name is None or name not in modules:
        raise WeightsError(f"LoRA key {key!r} matches no Linear or Conv2d of the UNet")
    return name


def lora_pairs(
    state: dict[str, torch.Tensor], unet: torch.nn.Module
) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """UNet module name -> (down (r, in[, kh, kw]), up (out, r[, 1, 1]), alpha), checked
    against ``unet``'s Linear/Conv2d layers; raises WeightsError naming a bad key."""
    layers = {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d)
    }
    kohya_names = {name.replace(".", "_"): name for name in layers}
    pairs: dict[str, _Pair] = {}
    for key, tensor in state.items():
        stem, part = _split(key)
        name = _module_name(stem, key, kohya_names, set(layers))
        pair = pairs.setdefault(name, _Pair(key=key))
        if part == "alpha":
            pair.alpha = float(tensor)
        else:
            setattr(pair, part, tensor)
    result = {}
    for name, pair in pairs.items():
        if pair.down is None or pair.up is None:
            raise WeightsError(
                f"LoRA key {pair.key!r}: its down/up (lora_A/lora_B) pair is incomplete"
            )
        _check_shapes(name, pair, layers[name])
        rank = pair.down.shape[0]
        result[name] = (pair.down, pair.up, float(rank) if pair.alpha is None else pair.alpha)
    return result


def _check_shapes(name: str, pair: _Pair, layer: torch.nn.Module) -> None:
    assert pair.down is not None and pair.up is not None
    if isinstance(layer, torch.nn.Linear):
        fits = (
            pair.down.ndim == 2
            and pair.down.shape[1] == layer.in_features
            and tuple(pair.up.shape) == (layer.out_features, pair.down.shape[0])
        )
    else:
        assert isinstance(layer, torch.nn.Conv2d)
        fits = (
            pair.down.ndim == 4
            and pair.down.shape[1] == layer.in_channels
            and tuple(pair.up.shape[:2]) == (layer.out_channels, pair.down.shape[0])
        )
    if not fits:
        raise WeightsError(
            f"LoRA key {pair.key!r}: shapes down {tuple(pair.down.shape)} / up "
            f"{tuple(pair.up.shape)} do not fit UNet layer {name} ({layer})"
        )


def apply_lora(
    unet: UNet2DConditionModel, path: Path, field: str, scale: float = 1.0, fuse: bool = False
) -> None:
    """Load the LoRA file ``path`` onto ``unet`` (in place, before it is placed/compiled).

    field: the config field named in errors (``model.lora_path``). Raises AnchorError when
    the file is missing, WeightsError when a key does not match the UNet.
    """
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise AnchorError(f"{field}: file {path} not found")
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise WeightsError(f"{field}: cannot read {path}: {err}") from err
    try:
        pairs = lora_pairs(state, unet)
    except WeightsError as err:
        raise WeightsError(f"{field} {path}: {err}") from err
    if not pairs:
        raise WeightsError(f"{field} {path}: no LoRA weights in the file")
    names = sorted(pairs)
    ranks = {name: int(pairs[name][0].shape[0]) for name in names}
    alphas = {name: pairs[name][2] * scale for name in names}
    first = names[0]
    config = LoraConfig(
        r=ranks[first],
        # peft types alpha as int but scales by alpha / r in float; the scale folds in here.
        lora_alpha=alphas[first],  # type: ignore[arg-type]
        target_modules=names,
        rank_pattern=ranks,
        alpha_pattern=alphas,
    )
    unet.add_adapter(config, adapter_name=ADAPTER_NAME)
    peft_state = {}
    for name, (down, up, _) in pairs.items():
        peft_state[f"{name}.lora_A.weight"] = down
        peft_state[f"{name}.lora_B.weight"] = up
    outcome = set_peft_model_state_dict(unet, peft_state, adapter_name=ADAPTER_NAME)
    unexpected = list(getattr(outcome, "unexpected_keys", None) or ())
    if unexpected:
        raise WeightsError(f"{field} {path}: LoRA keys not loaded: {unexpected[:8]}")
    if fuse:
        unet.fuse_lora(lora_scale=1.0)
        unet.unload_lora()


def apply_model_loras(
    model: ModelConfig,
    unet: UNet2DConditionModel | None,
    face_unet: UNet2DConditionModel | None,
) -> None:
    """``model.lora_path`` onto the body UNet and ``model.face_lora_path`` onto the face
    UNet (each when given and loaded), scaled and fused as configured."""
    if model.lora_path is not None and unet is not None:
        apply_lora(unet, model.lora_path, "model.lora_path", model.lora_scale, model.lora_fuse)
    if model.face_lora_path is not None and face_unet is not None:
        apply_lora(
            face_unet,
            model.face_lora_path,
            "model.face_lora_path",
            model.face_lora_scale,
            model.lora_fuse,
        )
