"""FID and FVD: Fréchet distances between feature distributions of pred and gt.

Both feature networks are TorchScript files (``torch.jit.load``), never fetched:

- FID (``eval.fid_weights``): called ``module(images, return_features=True)`` on
  ``(N, 3, H, W)`` uint8 frames at the video's own size, returning ``(N, D)`` features.
  The StyleGAN2-ADA / clean-fid Inception file (``inception-2015-12-05.pt``) has this
  interface: it resizes to 299x299 inside and returns D = 2048 pool features.
- FVD (``eval.fvd_weights``): called ``module(videos, rescale=False, resize=False,
  return_features=True)`` on ``(N, 3, L, S, S)`` float32 clips in [-1, 1] (L =
  ``eval.fvd_clip_length`` frames resized here to S = ``eval.fvd_size``), returning
  ``(N, D)`` features. The public ``i3d_torchscript.pt`` (StyleGAN-V) has this interface,
  with S = 224, L = 16 and D = 400 logits.

Each frame (FID) or each clip (FVD) of one video is one sample, so a short video gives
few samples: every result reports how many were used. With fewer samples than feature
dimensions the covariances are rank-deficient and the distance is biased upwards; such
values compare only with values from the same sample counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from model.errors import AnchorError, WeightsError


@dataclass(frozen=True, slots=True)
class FrechetResult:
    """A Fréchet distance and what it was computed from."""

    value: float
    pred_samples: int
    gt_samples: int
    feature_dim: int
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "pred_samples": self.pred_samples,
            "gt_samples": self.gt_samples,
            "feature_dim": self.feature_dim,
            "note": self.note,
        }


def _statistics(features: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)``; one sample has a zero covariance."""
    mean = features.mean(axis=0)
    if len(features) < 2:
        return mean, np.zeros((features.shape[1], features.shape[1]))
    return mean, np.atleast_2d(np.cov(features, rowvar=False))


def _symmetric_sqrt(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(first: NDArray[np.float64], second: NDArray[np.float64]) -> float:
    """``tr(sqrtm(first @ second))`` of two covariance matrices.

    Computed as the trace of ``sqrtm(A^1/2 B A^1/2)``, which has the same eigenvalues as
    ``A B`` but is symmetric: real and stable where ``scipy.linalg.sqrtm(A @ B)`` returns
    complex round-off or fails on the singular covariances of few samples (equal to it
    where that one is well conditioned; tested).
    """
    root = _symmetric_sqrt(first)
    inner = root @ second @ root
    values = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_distance(pred: np.ndarray, gt: np.ndarray) -> FrechetResult:
    """Fréchet distance between Gaussians fitted to ``(N, D)`` and ``(M, D)`` features.

    ``|mu_p - mu_g|^2 + tr(S_p) + tr(S_g) - 2 tr(sqrt(S_p S_g))``, clipped at 0 (round-off).
    """
    pred64, gt64 = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred64.ndim != 2 or gt64.ndim != 2 or pred64.shape[1] != gt64.shape[1]:
        raise AnchorError(f"features of shapes {pred64.shape} and {gt64.shape} do not compare")
    if not (np.isfinite(pred64).all() and np.isfinite(gt64).all()):
        raise AnchorError("the feature network returned NaN or infinite features")
    mean_pred, covariance_pred = _statistics(pred64)
    mean_gt, covariance_gt = _statistics(gt64)
    value = (
        float(((mean_pred - mean_gt) ** 2).sum())
        + float(np.trace(covariance_pred))
        + float(np.trace(covariance_gt))
        - 2.0 * trace_sqrt_product(covariance_pred, covariance_gt)
    )
    samples = min(len(pred64), len(gt64))
    dimension = pred64.shape[1]
    note = None
    if samples < 2:
        note = "one sample: no covariance, only the feature means are compared"
    elif samples <= dimension:
        note = (
            f"{samples} samples in {dimension} dimensions: rank-deficient covariances, the "
            "value is biased by the sample count (compare equal sample counts only)"
        )
    return FrechetResult(max(value, 0.0), len(pred64), len(gt64), dimension, note)


def load_torchscript(path: Path | None, field: str, what: str) -> torch.jit.ScriptModule:
    """A TorchScript file named by config ``field``, in eval mode on the CPU."""
    if path is None:
        raise WeightsError(f"{field} is not set (a TorchScript {what})")
    if not Path(path).is_file():
        raise WeightsError(f"{field}: {path} not found (a TorchScript {what})")
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # torch raises RuntimeError or its own types for a bad file
        raise WeightsError(f"{field}: {path} is not a TorchScript file ({err})") from err
    return module.eval()


def _check_features(features: Any, count: int, source: str) -> torch.Tensor:
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or len(features) != count:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features)
        raise WeightsError(f"{source}: expected ({count}, D) features, got {shape}")
    return features


class ImageFeatures:
    """The FID feature network: ``(N, H, W, 3)`` uint8 frames -> ``(N, D)`` float64."""

    def __init__(self, module: torch.jit.ScriptModule, source: str = "eval.fid_weights") -> None:
        self.module = module
        self.source = source

    @classmethod
    def load(cls, path: Path | None, field: str = "eval.fid_weights") -> ImageFeatures:
        return cls(load_torchscript(path, field, "image feature network (FID)"), field)

    def __call__(
        self, frames: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 16
    ) -> NDArray[np.float64]:
        self.module.to(device)
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size]))
                images = chunk.to(device).permute(0, 3, 1, 2).contiguous()
                features = self.module(images, return_features=True)
                out.append(_check_features(features, len(chunk), self.source).double().cpu())
        return torch.cat(out).numpy()


def video_clips(video: np.ndarray, length: int, stride: int) -> np.ndarray:
    """``(N, length, H, W, 3)`` clips starting at frames 0, stride, 2 stride, ... (whole clips)."""
    if len(video) < length:
        raise AnchorError(
            f"FVD needs clips of eval.fvd_clip_length = {length} frames, the video has {len(video)}"
        )
    starts = range(0, len(video) - length + 1, stride)
    return np.stack([video[start : start + length] for start in starts])


class VideoFeatures:
    """The FVD feature network: ``(N, L, H, W, 3)`` uint8 clips -> ``(N, D)`` float64."""

    def __init__(
        self, module: torch.jit.ScriptModule, size: int, source: str = "eval.fvd_weights"
    ) -> None:
        self.module = module
        self.size = size
        self.source = source

    @classmethod
    def load(cls, path: Path | None, size: int, field: str = "eval.fvd_weights") -> VideoFeatures:
        return cls(load_torchscript(path, field, "video feature network (FVD)"), size, field)

    def prepare(self, clips: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """``(N, L, H, W, 3)`` uint8 -> ``(N, 3, L, S, S)`` float32 in [-1, 1] (bilinear)."""
        count, length, height, width = clips.shape[:4]
        frames = torch.from_numpy(np.ascontiguousarray(clips)).to(device)
        frames = frames.reshape(count * length, height, width, 3).permute(0, 3, 1, 2).float()
        if (height, width) != (self.size, self.size):
            frames = F.interpolate(
                frames, size=(self.size, self.size), mode="bilinear", antialias=True
            )
        frames = (frames / 127.5 - 1.0).clamp(-1.0, 1.0)
        return frames.reshape(count, length, 3, self.size, self.size).permute(0, 2, 1, 3, 4)

    def __call__(
        self, clips: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 16
    ) -> NDArray[np.float64]:
        self.module.to(device)
        out = []
        with torch.inference_mode():
            for start in range(0, len(clips), batch_size):
                videos = self.prepare(clips[start : start + batch_size], device)
                features = self.module(videos, rescale=False, resize=False, return_features=True)
                out.append(_check_features(features, len(videos), self.source).double().cpu())
        return torch.cat(out).numpy()


def fid(
    network: ImageFeatures,
    pred: np.ndarray,
    gt: np.ndarray,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> FrechetResult:
    """FID between the frames of two ``(T, H, W, 3)`` uint8 videos (one sample per frame)."""
    return frechet_distance(network(pred, device, batch_size), network(gt, device, batch_size))


def fvd(
    network: VideoFeatures,
    pred: np.ndarray,
    gt: np.ndarray,
    clip_length: int = 16,
    clip_stride: int = 16,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
) -> FrechetResult:
    """FVD between the clips of two ``(T, H, W, 3)`` uint8 videos (one sample per clip)."""
    pred_clips = video_clips(pred, clip_length, clip_stride)
    gt_clips = video_clips(gt, clip_length, clip_stride)
    return frechet_distance(
        network(pred_clips, device, batch_size), network(gt_clips, device, batch_size)
    )
