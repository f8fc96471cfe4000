"""Tiny feature networks, pose estimators and videos shared by the evaluation tests.

The real pretrained files (LPIPS AlexNet, the Inception of FID, the I3D of FVD, DWPose)
cannot be downloaded in the tests; these stand-ins have the same interfaces (state-dict
keys, TorchScript call signatures, ONNX inputs and outputs) with random or hand-set
weights, so every code path that loads and runs the real files runs here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.evaluation.lpips import LAYOUTS


def tiny_lpips_state(net: str = "alex", seed: int = 0) -> dict[str, torch.Tensor]:
    """A random LPIPS state dict of ``net``'s layout with narrow channels."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    channels = 3
    for tap, stage in enumerate(LAYOUTS[net]):
        for operation in stage:
            if operation[0] != "conv":
                continue
            kernel = 11 if (net, operation[1]) == ("alex", 0) else 5 if operation[1] == 3 else 3
            width = 4 + 2 * tap
            fan_in = channels * kernel * kernel
            state[f"features.{operation[1]}.weight"] = (
                torch.randn(width, channels, kernel, kernel, generator=generator)
                * (2.0 / fan_in) ** 0.5
            )
            state[f"features.{operation[1]}.bias"] = 0.01 * torch.randn(width, generator=generator)
            channels = width
        state[f"lin{tap}.model.1.weight"] = torch.rand(1, channels, 1, 1, generator=generator)
    return state


class TinyImageFeatures(nn.Module):
    """FID interface: ``(N, 3, H, W)`` uint8 -> ``(N, 16)`` features (resized to 32 inside)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 16, 3, stride=2)

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = F.interpolate(images.float() / 255.0, size=(32, 32), mode="bilinear")
        features = F.relu(self.conv(x)).mean(dim=(2, 3))
        return features if return_features else features.softmax(dim=1)


class TinyVideoFeatures(nn.Module):
    """FVD interface: ``(N, 3, L, S, S)`` in [-1, 1] -> ``(N, 12)`` features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv3d(3, 12, 3, stride=(1, 2, 2))

    def forward(
        self,
        videos: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        features = F.relu(self.conv(videos)).mean(dim=(2, 3, 4))
        return features if return_features else features.softmax(dim=1)


class SpotPose(nn.Module):
    """A pose estimator that puts every keypoint on the brightest spot of input channel 0.

    simcc: each axis scores ``r`` bins per input pixel with the channel's maximum across the
    other axis (nearest upsampling), so the best bin is the spot's column (row); the
    confidence is the spot's normalised value. heatmap: the channel max-pooled by
    ``stride``.
    """

    def __init__(self, keypoints: int, kind: str, ratio: int = 2, stride: int = 4) -> None:
        super().__init__()
        self.keypoints, self.kind, self.ratio, self.stride = keypoints, kind, ratio, stride

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        channel = image[:, :1]
        if self.kind == "heatmap":
            pooled = F.max_pool2d(channel, self.stride)
            return (pooled.repeat(1, self.keypoints, 1, 1),)
        columns = channel.amax(dim=2)  # (1, 1, W)
        rows = channel.amax(dim=3)  # (1, 1, H)
        simcc_x = columns.repeat_interleave(self.ratio, dim=2).repeat(1, self.keypoints, 1)
        simcc_y = rows.repeat_interleave(self.ratio, dim=2).repeat(1, self.keypoints, 1)
        return simcc_x, simcc_y


def export_pose(path: Path, keypoints: int = 133, kind: str = "simcc") -> Path:
    """Writes a ``SpotPose`` as ONNX with DWPose's input (1, 3, 256, 192) and output names."""
    names = ["simcc_x", "simcc_y"] if kind == "simcc" else ["heatmaps"]
    torch.onnx.export(
        SpotPose(keypoints, kind),
        (torch.zeros(1, 3, 256, 192),),
        str(path),
        input_names=["input"],
        output_names=names,
        dynamo=False,
    )
    return path


def noisy(video: np.ndarray, level: float, seed: int = 0) -> np.ndarray:
    """``video`` plus uniform noise of +-level (0..255 scale), clipped."""
    generator = np.random.default_rng(seed)
    noise = generator.uniform(-level, level, video.shape)
    return np.clip(video.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)


def smooth_video(frames: int = 20, size: int = 64, seed: int = 0) -> np.ndarray:
    """A moving colour gradient with a square: ``(frames, size, size, 3)`` uint8."""
    generator = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) / size
    base = generator.uniform(0.2, 0.8, 3)
    video = np.empty((frames, size, size, 3), dtype=np.float64)
    for index in range(frames):
        phase = index / frames
        for channel in range(3):
            video[index, ..., channel] = base[channel] + 0.2 * np.sin(
                2 * np.pi * (xs * (channel + 1) + ys + phase)
            )
        left = int(size * (0.2 + 0.4 * phase))
        video[index, size // 3 : size // 3 + size // 5, left : left + size // 5] = 0.95
    return (np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8)
