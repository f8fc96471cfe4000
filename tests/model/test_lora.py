"""LoRA files (kohya and diffusers/peft layouts) on the tiny UNet: strict, scaled, fusable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from safetensors.torch import save_file

from model.errors import WeightsError
from model.lora import apply_lora
from model.presets import tiny_unet

# Attention projections and a conv of the tiny UNet, as an LCM-LoRA targets them.
TARGETS = (
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
    "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2",
    "down_blocks.0.resnets.0.conv1",
)
RANK = 4


def _unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return tiny_unet().eval()


def _pairs(unet: UNet2DConditionModel) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    modules = dict(unet.named_modules())
    pairs = {}
    for name in TARGETS:
        layer = modules[name]
        if isinstance(layer, torch.nn.Conv2d):
            down_shape: tuple[int, ...] = (RANK, layer.in_channels, *layer.kernel_size)
            up_shape: tuple[int, ...] = (layer.out_channels, RANK, 1, 1)
        else:
            assert isinstance(layer, torch.nn.Linear)
            down_shape, up_shape = (RANK, layer.in_features), (layer.out_features, RANK)
        down = torch.randn(down_shape, generator=generator) * 0.3
        pairs[name] = (down, torch.randn(up_shape, generator=generator) * 0.3)
    return pairs


def _write_kohya(path: Path, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    state = {}
    for name, (down, up) in pairs.items():
        stem = "lora_unet_" + name.replace(".", "_")
        state[f"{stem}.lora_down.weight"] = down.contiguous()
        state[f"{stem}.lora_up.weight"] = up.contiguous()
        state[f"{stem}.alpha"] = torch.tensor(float(RANK) / 2)
    save_file(state, str(path))
    return path


def _write_peft(path: Path, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    state = {}
    for name, (down, up) in pairs.items():
        state[f"unet.{name}.lora_A.weight"] = down.contiguous()
        state[f"unet.{name}.lora_B.weight"] = up.contiguous()
    save_file(state, str(path))
    return path


def _output(unet: UNet2DConditionModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    sample = torch.randn((2, 4, 8, 8), generator=generator)
    tokens = torch.randn((2, 5, int(unet.config["cross_attention_dim"])), generator=generator)
    with torch.no_grad():
        return unet(sample, torch.tensor([500, 500]), tokens).sample  # type: ignore[no-any-return]


def _manual(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], scale: float) -> torch.Tensor:
    """The same update merged by hand: W += scale * up @ down."""
    unet = _unet()
    modules = dict(unet.named_modules())
    with torch.no_grad():
        for name, (down, up) in pairs.items():
            weight = modules[name].weight
            delta = (up.flatten(1) @ down.flatten(1)).reshape(weight.shape[0], *down.shape[1:])
            weight += scale * delta
    return _output(unet)


@pytest.mark.parametrize("layout", ["kohya", "peft"])
def test_lora_changes_the_output_by_its_update(tmp_path: Path, layout: str) -> None:
    base = _unet()
    pairs = _pairs(base)
    before = _output(base)
    path = (_write_kohya if layout == "kohya" else _write_peft)(
        tmp_path / "lora.safetensors", pairs
    )
    apply_lora(base, path, "model.lora_path", scale=0.5)
    after = _output(base)
    assert (after - before).abs().max().item() > 1e-3
    # kohya carries alpha = rank / 2 (factor 0.5); peft's alpha is the rank (factor 1).
    factor = 0.5 * (0.5 if layout == "kohya" else 1.0)
    assert torch.allclose(after, _manual(pairs, factor), atol=1e-5)


def test_fused_equals_unfused(tmp_path: Path) -> None:
    pairs = _pairs(_unet())
    path = _write_kohya(tmp_path / "lora.safetensors", pairs)
    unfused, fused = _unet(), _unet()
    apply_lora(unfused, path, "model.lora_path", scale=0.8)
    apply_lora(fused, path, "model.lora_path", scale=0.8, fuse=True)
    assert not any("lora" in name for name, _ in fused.named_modules())
    assert any("lora" in name for name, _ in unfused.named_modules())
    assert (_output(fused) - _output(unfused)).abs().max().item() <= 1e-5


def test_a_key_that_matches_no_layer_is_named(tmp_path: Path) -> None:
    unet = _unet()
    pairs = _pairs(unet)
    path = tmp_path / "bad.safetensors"
    state = {f"unet.{name}.lora_A.weight": down for name, (down, _) in pairs.items()}
    state.update({f"unet.{name}.lora_B.weight": up for name, (_, up) in pairs.items()})
    state["unet.mid_block.attentions.7.to_q.lora_A.weight"] = torch.zeros(RANK, 32)
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    with pytest.raises(WeightsError, match=r"mid_block\.attentions\.7\.to_q\.lora_A\.weight"):
        apply_lora(unet, path, "model.lora_path")


def test_a_wrong_shape_and_a_text_encoder_key_are_named(tmp_path: Path) -> None:
    unet = _unet()
    name = TARGETS[0]
    save_file(
        {
            f"{name}.lora_A.weight": torch.zeros(RANK, 7),
            f"{name}.lora_B.weight": torch.zeros(32, RANK),
        },
        str(tmp_path / "shape.safetensors"),
    )
    with pytest.raises(WeightsError, match=r"attn1\.to_q\.lora_A\.weight.*do not fit"):
        apply_lora(unet, tmp_path / "shape.safetensors", "model.lora_path")
    save_file({"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 2)},
              str(tmp_path / "te.safetensors"))  # fmt: skip
    with pytest.raises(WeightsError, match="lora_te_text_model_encoder_layers_0_mlp_fc1"):
        apply_lora(unet, tmp_path / "te.safetensors", "model.lora_path")


def test_model_lora_path_reaches_the_body_and_face_unets(tmp_path: Path) -> None:
    from model.components import build_components
    from model.config import FaceConfig, ModelConfig, SamplerConfig
    from model.sgdm import SGDMDenoiser

    path = _write_peft(tmp_path / "lora.safetensors", _pairs(_unet()))
    face_unet = tiny_unet(in_channels=9)
    face_name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v"
    face_path = tmp_path / "face.safetensors"
    layer = dict(face_unet.named_modules())[face_name]
    assert isinstance(layer, torch.nn.Linear)
    save_file(
        {f"{face_name}.lora_A.weight": torch.ones(2, layer.in_features),
         f"{face_name}.lora_B.weight": torch.ones(layer.out_features, 2)},
        str(face_path),
    )  # fmt: skip
    model = ModelConfig(preset="tiny", device="cpu", image_size=16, lora_path=path,
                        face_lora_path=face_path, lora_fuse=True)  # fmt: skip
    loaded = build_components(model, SamplerConfig(steps=1), FaceConfig(size=32))
    plain = build_components(
        ModelConfig(preset="tiny", device="cpu", image_size=16), SamplerConfig(steps=1),
        FaceConfig(size=32),
    )  # fmt: skip
    assert loaded.face is not None and plain.face is not None
    assert isinstance(loaded.denoiser, SGDMDenoiser) and isinstance(plain.denoiser, SGDMDenoiser)
    pairs = ((loaded.denoiser.unet, plain.denoiser.unet), (loaded.face.unet, plain.face.unet))
    for ours, theirs in pairs:
        mine = dict(ours.named_parameters())
        base = dict(theirs.named_parameters())
        changed = [name for name in base if not torch.equal(mine[name], base[name])]
        assert changed, "the fused LoRA changed no weight"
