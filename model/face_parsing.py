"""BiSeNet face parsing: the authors' face-region mask, from the user's weights file.

The architecture is BiSeNet as the face-parsing network the authors use (ResNet-18 context
path with attention refinement, feature fusion, 19 classes; its published weights file is
``79999_iter.pth``), written here with that file's parameter names so it loads strictly.
``base`` scales every width (64 = the published network; tests build tiny ones).

``FaceParser.keep_masks`` turns aligned face crops into the Face SGDM's inpainting masks as
the authors do: parse at 512 (ImageNet mean/std), mark the face classes, dilate 3x3 and
invert, so 1 marks the pixels kept and 0 the face region that is regenerated.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.errors import AnchorError, WeightsError

CLASSES = 19
# Face classes of the 19 (skin, brows, eyes, glasses, ears, earring, nose, mouth, lips);
# neck, cloth, hair, hat and background are kept.
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
PARSE_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, inputs: int, outputs: int, kernel: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inputs, outputs, kernel, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.downsample: nn.Sequential | None = None
        if inputs != outputs or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _layer(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(inputs, outputs, stride), BasicBlock(outputs, outputs))


class Resnet18(nn.Module):
    """(N, 3, H, W) -> features at 1/8, 1/16, 1/32 with 2, 4, 8 x base channels."""

    def __init__(self, base: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.layer1 = _layer(base, base, 1)
        self.layer2 = _layer(base, 2 * base, 2)
        self.layer3 = _layer(2 * base, 4 * base, 2)
        self.layer4 = _layer(4 * base, 8 * base, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinementModule(nn.Module):
    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(inputs, outputs)
        self.conv_atten = nn.Conv2d(outputs, outputs, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))
        return feat * attention


class ContextPath(nn.Module):
    def __init__(self, base: int) -> None:
        super().__init__()
        self.resnet = Resnet18(base)
        self.arm16 = AttentionRefinementModule(4 * base, 2 * base)
        self.arm32 = AttentionRefinementModule(8 * base, 2 * base)
        self.conv_head32 = ConvBNReLU(2 * base, 2 * base)
        self.conv_head16 = ConvBNReLU(2 * base, 2 * base)
        self.conv_avg = ConvBNReLU(8 * base, 2 * base, kernel=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        average = self.conv_avg(feat32.mean((2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + F.interpolate(average, feat32.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up


class FeatureFusionModule(nn.Module):
    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(inputs, outputs, kernel=1, padding=0)
        self.conv1 = nn.Conv2d(outputs, outputs // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(outputs // 4, outputs, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat * attention + feat


class BiSeNetOutput(nn.Module):
    def __init__(self, inputs: int, middle: int, classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(inputs, middle)
        self.conv_out = nn.Conv2d(middle, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))  # type: ignore[no-any-return]


class BiSeNet(nn.Module):
    """(N, 3, H, W) ImageNet-normalised -> (N, classes, H, W) logits. The auxiliary heads
    (``conv_out16``, ``conv_out32``) are part of the weights file; inference uses the main
    head only."""

    def __init__(self, classes: int = CLASSES, base: int = 64) -> None:
        super().__init__()
        self.cp = ContextPath(base)
        self.ffm = FeatureFusionModule(4 * base, 4 * base)
        self.conv_out = BiSeNetOutput(4 * base, 4 * base, classes)
        self.conv_out16 = BiSeNetOutput(2 * base, base, classes)
        self.conv_out32 = BiSeNetOutput(2 * base, base, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat8, context8 = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(path: Path) -> BiSeNet:
    """BiSeNet with the weights of ``path`` (``79999_iter.pth``), loaded strictly: a
    missing, unexpected or misshapen key is an error naming it (face.parsing_weights).
    The width (``base``) is read from the file's first convolution."""
    if not path.is_file():
        raise AnchorError(f"face.parsing_weights: {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise WeightsError(f"face.parsing_weights: cannot read {path}: {err}") from err
    state = {key.removeprefix("module."): value for key, value in state.items()}
    first = state.get("cp.resnet.conv1.weight")
    if first is None:
        raise WeightsError(f"face.parsing_weights: {path} has no cp.resnet.conv1.weight")
    network = BiSeNet(base=int(first.shape[0]))
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise WeightsError(f"face.parsing_weights: {path} does not fit BiSeNet: {err}") from err
    return network.eval()


class FaceParser:
    """Face-region inpainting masks of aligned face crops with a BiSeNet."""

    def __init__(self, network: BiSeNet) -> None:
        self.network = network

    @torch.no_grad()
    def keep_masks(self, crops: torch.Tensor) -> torch.Tensor:
        """crops (N, 3, S, S) float [0, 1] -> (N, 1, S, S) float32 masks: 0 on the face
        classes dilated by 3x3, 1 elsewhere (kept), on the CPU."""
        parameter = next(self.network.parameters())
        size = crops.shape[-1]
        pixels = F.interpolate(crops.float(), size=(PARSE_SIZE, PARSE_SIZE), mode="bilinear")
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        pixels = ((pixels.cpu() - mean) / std).to(parameter.device, parameter.dtype)
        labels = self.network(pixels).argmax(dim=1, keepdim=True)
        keep = keep_mask_from_labels(labels.cpu())
        return F.interpolate(keep, size=(size, size), mode="nearest")


def keep_mask_from_labels(labels: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) int64 parsing labels -> (N, 1, H, W) float32 keep mask: the face
    classes dilated by a 3x3 square, inverted (0 = regenerate, 1 = keep)."""
    face = torch.zeros(labels.shape, dtype=torch.float32)
    for label in FACE_CLASSES:
        face = torch.maximum(face, (labels == label).float())
    return 1.0 - F.max_pool2d(face, 3, stride=1, padding=1)
