"""LPIPS (Zhang et al., 2018): a learned perceptual distance between two images.

The network is defined here in plain torch (no torchvision): the AlexNet or VGG16
convolution trunk, five feature taps, each tap unit-normalised over channels, squared
differences weighted per channel by a 1x1 linear head, averaged over space and summed
over the taps. Images enter in [-1, 1] through LPIPS's fixed scaling layer.

Weights file (``eval.lpips_weights``): one torch state dict (``torch.save``) holding
- the trunk under torchvision's key names: AlexNet ``features.{0,3,6,8,10}.{weight,bias}``,
  VGG16 ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}.{weight,bias}``;
- the linear heads under the lpips package's names ``lin{0..4}.model.1.weight``, each
  ``(1, C, 1, 1)`` with C the channels of its tap (AlexNet 64, 192, 384, 256, 256;
  VGG16 64, 128, 256, 512, 512).
Merging torchvision's ``alexnet`` state dict with the lpips package's ``alex.pth`` gives
this file; torchvision's ``classifier.*`` keys may stay in it (they are not used). The
channel widths are read from the weights, so smaller trunks of the same layout load too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.errors import AnchorError, WeightsError

# LPIPS's scaling layer: (x - shift) / scale, on images in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPSILON = 1e-10  # added to the channel norm before dividing (as LPIPS does)
MIN_SIZE = 32  # smallest frame side the trunks keep a spatial extent for

# Trunk layouts: per tap, the operations from the previous tap. ("conv", key index,
# stride, padding) is a convolution followed by ReLU; ("pool", kernel, stride) a max-pool.
Operation = tuple[str, int, int, int] | tuple[str, int, int]
LAYOUTS: dict[str, tuple[tuple[Operation, ...], ...]] = {
    "alex": (
        (("conv", 0, 4, 2),),
        (("pool", 3, 2), ("conv", 3, 1, 2)),
        (("pool", 3, 2), ("conv", 6, 1, 1)),
        (("conv", 8, 1, 1),),
        (("conv", 10, 1, 1),),
    ),
    "vgg": (
        (("conv", 0, 1, 1), ("conv", 2, 1, 1)),
        (("pool", 2, 2), ("conv", 5, 1, 1), ("conv", 7, 1, 1)),
        (("pool", 2, 2), ("conv", 10, 1, 1), ("conv", 12, 1, 1), ("conv", 14, 1, 1)),
        (("pool", 2, 2), ("conv", 17, 1, 1), ("conv", 19, 1, 1), ("conv", 21, 1, 1)),
        (("pool", 2, 2), ("conv", 24, 1, 1), ("conv", 26, 1, 1), ("conv", 28, 1, 1)),
    ),
}
IGNORED_PREFIXES = ("classifier.",)  # torchvision's classifier: in the file, never used


def expected_keys(net: str) -> list[str]:
    """The state-dict keys an LPIPS weights file of ``net`` must hold."""
    keys = []
    for stage in LAYOUTS[net]:
        for operation in stage:
            if operation[0] == "conv":
                keys += [f"features.{operation[1]}.weight", f"features.{operation[1]}.bias"]
    keys += [f"lin{tap}.model.1.weight" for tap in range(len(LAYOUTS[net]))]
    return keys


class LPIPS(nn.Module):
    """The LPIPS distance; build it with ``from_state_dict`` or ``load``."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, net: str, state: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self.layout = LAYOUTS[net]
        self.features = nn.ModuleDict()
        for stage in self.layout:
            for operation in stage:
                if operation[0] == "conv":
                    _, index, stride, padding = operation  # type: ignore[misc]
                    weight = state[f"features.{index}.weight"]
                    conv = nn.Conv2d(
                        weight.shape[1], weight.shape[0], weight.shape[2], stride, padding
                    )
                    conv.weight.data.copy_(weight)
                    assert conv.bias is not None
                    conv.bias.data.copy_(state[f"features.{index}.bias"])
                    self.features[str(index)] = conv
        self.heads = nn.ParameterList(
            nn.Parameter(state[f"lin{tap}.model.1.weight"].clone(), requires_grad=False)
            for tap in range(len(self.layout))
        )
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def load(cls, path: Path, net: str, field: str = "eval.lpips_weights") -> LPIPS:
        """Reads and checks a weights file (see the module docstring for its keys)."""
        if not Path(path).is_file():
            raise WeightsError(f"{field}: {path} not found (an LPIPS {net} state dict)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several unrelated types for a bad file
            raise WeightsError(f"{field}: {path} is not a torch state dict ({err})") from err
        if not isinstance(state, Mapping):
            raise WeightsError(f"{field}: {path} holds a {type(state).__name__}, not a state dict")
        return cls.from_state_dict(state, net, f"{field} ({path})")

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, torch.Tensor], net: str, source: str = "LPIPS weights"
    ) -> LPIPS:
        """An LPIPS of ``net`` ("alex" or "vgg") from its state dict, every shape checked."""
        if net not in LAYOUTS:
            raise WeightsError(f"{source}: unknown LPIPS trunk {net!r} (alex or vgg)")
        wanted = expected_keys(net)
        missing = [key for key in wanted if key not in state]
        if missing:
            raise WeightsError(f"{source}: missing keys for the LPIPS {net} trunk: {missing}")
        unexpected = sorted(
            key for key in state if key not in wanted and not key.startswith(IGNORED_PREFIXES)
        )
        if unexpected:
            raise WeightsError(f"{source}: unexpected keys {unexpected}")
        _check_shapes(state, net, source)
        return cls(net, {key: state[key].float() for key in wanted})

    def tap_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The five tap activations of ``(N, 3, H, W)`` images in [-1, 1]."""
        hidden = (images - self.shift) / self.scale
        taps = []
        for stage in self.layout:
            for operation in stage:
                if operation[0] == "pool":
                    hidden = F.max_pool2d(hidden, operation[1], operation[2])
                else:
                    hidden = F.relu(self.features[str(operation[1])](hidden))
            taps.append(hidden)
        return taps

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """``(N,)`` distances between ``(N, 3, H, W)`` images in [-1, 1] (0 for identical)."""
        total = torch.zeros(first.shape[0], dtype=first.dtype, device=first.device)
        for head, one, other in zip(
            self.heads, self.tap_features(first), self.tap_features(second), strict=True
        ):
            one = one / (one.pow(2).sum(dim=1, keepdim=True).sqrt() + EPSILON)
            other = other / (other.pow(2).sum(dim=1, keepdim=True).sqrt() + EPSILON)
            total += F.conv2d((one - other).pow(2), head).mean(dim=(1, 2, 3))
        return total


def _check_shapes(state: Mapping[str, torch.Tensor], net: str, source: str) -> None:
    channels = 3
    for tap, stage in enumerate(LAYOUTS[net]):
        for operation in stage:
            if operation[0] != "conv":
                continue
            key = f"features.{operation[1]}"
            weight, bias = state[f"{key}.weight"], state[f"{key}.bias"]
            if weight.ndim != 4 or weight.shape[1] != channels:
                raise WeightsError(
                    f"{source}: {key}.weight has shape {tuple(weight.shape)}, expected "
                    f"(C, {channels}, k, k)"
                )
            if tuple(bias.shape) != (weight.shape[0],):
                raise WeightsError(
                    f"{source}: {key}.bias has shape {tuple(bias.shape)}, expected "
                    f"({weight.shape[0]},)"
                )
            channels = weight.shape[0]
        head = state[f"lin{tap}.model.1.weight"]
        if tuple(head.shape) != (1, channels, 1, 1):
            raise WeightsError(
                f"{source}: lin{tap}.model.1.weight has shape {tuple(head.shape)}, expected "
                f"(1, {channels}, 1, 1)"
            )


def lpips_per_frame(
    network: LPIPS,
    pred: np.ndarray,
    gt: np.ndarray,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> np.ndarray:
    """``(T,)`` LPIPS of each pair of ``(T, H, W, 3)`` uint8 frames, at their own size."""
    height, width = pred.shape[1:3]
    if min(height, width) < MIN_SIZE:
        raise AnchorError(
            f"LPIPS needs frames of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {width}x{height}"
        )
    network = network.to(device)
    values = []
    with torch.inference_mode():
        for start in range(0, len(pred), batch_size):
            first = _to_signed(pred[start : start + batch_size], device)
            second = _to_signed(gt[start : start + batch_size], device)
            values.append(network(first, second).double().cpu())
    return torch.cat(values).numpy()


def _to_signed(frames: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32 in [-1, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return tensor.permute(0, 3, 1, 2).float() / 127.5 - 1.0
