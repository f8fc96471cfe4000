"""The ``[eval]`` configuration section: where the metrics' feature networks live.

No torch import: the server loads and validates every section. Nothing is ever
downloaded; each network is a local file whose contract is documented in the module
that loads it (``model.evaluation.lpips``, ``model.evaluation.frechet``,
``model.evaluation.pose``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from model.config import Section

LandmarkGroup = Literal["face", "body", "hands"]


def _hands() -> list[LandmarkGroup]:
    return ["hands"]


class EvalConfig(Section):
    """Settings of ``anchor eval`` and of the quality benchmarks built on it."""

    # LPIPS: a torch state dict of the trunk (torchvision key names) and the linear heads
    # (lpips-package key names); see model/evaluation/lpips.py for the keys.
    lpips_weights: Path | None = None
    lpips_net: Literal["alex", "vgg"] = "alex"
    # FID: a TorchScript image feature network, called module(images, return_features=True)
    # on (N, 3, H, W) uint8 frames (the StyleGAN/clean-fid Inception file takes exactly this).
    fid_weights: Path | None = None
    # FVD: a TorchScript video feature network, called module(videos, rescale=False,
    # resize=False, return_features=True) on (N, 3, T, S, S) float32 in [-1, 1] (the public
    # i3d_torchscript.pt takes exactly this).
    fvd_weights: Path | None = None
    # FVD clips: frames per clip, first frames of consecutive clips this far apart, and the
    # square size the frames are resized to (224 for I3D).
    fvd_clip_length: int = Field(16, ge=1)
    fvd_clip_stride: int = Field(16, ge=1)
    fvd_size: int = Field(224, ge=8)
    # LMD: a top-down whole-body pose estimator as ONNX (DWPose / RTMPose: one input
    # (1, 3, H, W), outputs simcc_x (1, K, W*r) and simcc_y (1, K, H*r); or one heatmap
    # output (1, K, h, w)). K = 133 (COCO-WholeBody) or 17 (COCO body only).
    pose_onnx: Path | None = None
    # Channel order the estimator was trained on (mmpose models convert BGR to RGB inside
    # their preprocessor, so their exported graphs expect RGB).
    pose_channel_order: Literal["rgb", "bgr"] = "rgb"
    # Person box: the box around the projected reference body, grown by this factor (mmpose's
    # top-down padding), then widened or heightened to the estimator's aspect ratio.
    pose_box_padding: float = Field(1.25, gt=0.0)
    # Predicted keypoints below this confidence are not counted (DWPose draws above 0.3).
    pose_min_confidence: float = 0.3
    # Outliers (the paper ignores them for hands): in each frame, a keypoint of these groups
    # farther from its reference than lmd_outlier_factor x the reference group's extent
    # (the larger side of its bounding box) is a detection failure and is not counted.
    lmd_outlier_groups: list[LandmarkGroup] = Field(default_factory=lambda: _hands())
    lmd_outlier_factor: float = Field(1.0, gt=0.0)
    # "auto": CUDA when available, else the CPU.
    device: str = "auto"
    # Images (or clips) per feature-network call.
    batch_size: int = Field(16, ge=1)
