"""Every metric of a predicted video against its ground truth, in one call.

::

    evaluator = Evaluator(config.eval, config.render)          # networks load once, lazily
    report = evaluator.evaluate(pred, gt, motion="clip.npz")   # (T, H, W, 3) uint8 each
    report["metrics"]["ssim"], report["metrics"]["lmd_hands"], report["skipped"]

``metrics=None`` computes every metric it can and lists the others under ``skipped``
with the reason (weights not configured, no motion, too few frames); naming metrics
makes each of them required: one that cannot be computed is an error naming the
config field or input it lacks. A configured weights file that does not exist is
always an error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.config import RenderConfig
from model.errors import AnchorError
from model.evaluation.config import EvalConfig
from model.evaluation.lmd import landmark_mean_distance
from model.evaluation.pixels import flicker_report, l1, mse_per_frame, psnr_from_mse, ssim
from model.evaluation.video import check_pair
from model.motion.clip import MotionClip
from model.motion.frame import BodyModelSettings, MotionFrame

METRICS = ("ssim", "psnr", "l1", "flicker", "lpips", "fid", "fvd", "lmd")
LMD_GROUPS = ("face", "body", "hands")

MotionSource = str | Path | MotionClip | Sequence[MotionFrame]


class Unavailable(AnchorError):
    """A metric cannot be computed with this configuration or input (the message says why)."""


def parse_metrics(text: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``"ssim,psnr"`` or a list of names -> checked metric names; None stays None (all)."""
    if text is None:
        return None
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise AnchorError(
            f"--metrics: unknown {unknown or names}; choose from {', '.join(METRICS)}"
        )
    return tuple(dict.fromkeys(names))


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


class Evaluator:
    """Computes the metrics; the feature networks and the pose estimator load on first use."""

    def __init__(self, config: EvalConfig, render: RenderConfig | None = None) -> None:
        self.config = config
        self.render = render or RenderConfig()
        self.device = _device(config.device)
        self._networks: dict[str, Any] = {}

    # -- networks -----------------------------------------------------------------------

    def _configured(self, field: str, what: str) -> Path:
        path = getattr(self.config, field)
        if path is None:
            raise Unavailable(f"eval.{field} is not set ({what})")
        if not Path(path).is_file():
            raise AnchorError(f"eval.{field}: {path} not found ({what})")
        return Path(path)

    def lpips_network(self) -> Any:
        """The LPIPS network of ``eval.lpips_weights`` (``model.evaluation.lpips.LPIPS``)."""
        if "lpips" not in self._networks:
            from model.evaluation.lpips import LPIPS

            path = self._configured("lpips_weights", f"LPIPS {self.config.lpips_net} weights")
            self._networks["lpips"] = LPIPS.load(path, self.config.lpips_net)
        return self._networks["lpips"]

    def fid_network(self) -> Any:
        """The FID feature network of ``eval.fid_weights`` (``ImageFeatures``)."""
        if "fid" not in self._networks:
            from model.evaluation.frechet import ImageFeatures

            path = self._configured("fid_weights", "a TorchScript image feature network")
            self._networks["fid"] = ImageFeatures.load(path)
        return self._networks["fid"]

    def fvd_network(self) -> Any:
        """The FVD feature network of ``eval.fvd_weights`` (``VideoFeatures``)."""
        if "fvd" not in self._networks:
            from model.evaluation.frechet import VideoFeatures

            path = self._configured("fvd_weights", "a TorchScript video feature network")
            self._networks["fvd"] = VideoFeatures.load(path, self.config.fvd_size)
        return self._networks["fvd"]

    def pose_estimator(self) -> Any:
        """The pose estimator of ``eval.pose_onnx`` (``PoseEstimator``)."""
        if "pose" not in self._networks:
            from model.evaluation.pose import PoseEstimator

            path = self._configured("pose_onnx", "a pose estimator ONNX file")
            self._networks["pose"] = PoseEstimator(
                path, self.config.pose_channel_order, self.config.pose_box_padding
            )
        return self._networks["pose"]

    # -- metrics ------------------------------------------------------------------------

    def reference(
        self,
        motion: MotionSource,
        frames: int,
        width: int,
        height: int,
        camera_frames: int = 16,
        settings: BodyModelSettings | None = None,
    ) -> Any:
        """Reference keypoints (``ReferenceKeypoints``) of the first ``frames`` motion frames,
        in a ``width x height`` video. ``settings``: the body-model settings of bare frames
        (a motion file or clip carries its own); default TalkSHOW's."""
        from model.evaluation.landmarks import reference_keypoints
        from model.motion.readers import open_motion

        if isinstance(motion, str | Path):
            motion = open_motion(motion, fps=self.render.fps)
        if isinstance(motion, MotionClip):
            settings = motion.settings
            if len(motion) < frames:
                raise AnchorError(
                    f"--motion {motion.path} has {len(motion)} frames, the videos have {frames}"
                )
            motion_frames = list(motion.frames(0, frames))
        else:
            settings = settings or BodyModelSettings()
            motion_frames = list(motion)
            if len(motion_frames) < frames:
                raise AnchorError(
                    f"the motion has {len(motion_frames)} frames, the videos have {frames}"
                )
            motion_frames = motion_frames[:frames]
        keypoints = reference_keypoints(motion_frames, self.render, settings, camera_frames)
        return keypoints.resized(width, height)

    def lmd(
        self, pred: np.ndarray, reference: Any
    ) -> tuple[dict[str, float | None], dict[str, Any]]:
        """LMD per group (pixels of ``pred``) and its details (counts, rule)."""
        estimator = self.pose_estimator()
        points, scores = estimator.predict(pred, reference.boxes)
        groups = landmark_mean_distance(
            points,
            scores,
            reference,
            self.config.pose_min_confidence,
            self.config.lmd_outlier_groups,
            self.config.lmd_outlier_factor,
        )
        details: dict[str, Any] = {
            "keypoints": int(points.shape[1]),
            "units": f"pixels of the {pred.shape[2]}x{pred.shape[1]} video",
            "min_confidence": self.config.pose_min_confidence,
            "outlier_groups": list(self.config.lmd_outlier_groups),
            "outlier_factor": self.config.lmd_outlier_factor,
        }
        values: dict[str, float | None] = {}
        for group in LMD_GROUPS:
            if group in groups:
                values[group] = groups[group].value
                details[group] = groups[group].as_dict()
            else:
                values[group] = None
                details[group] = {"skipped": f"the estimator has {points.shape[1]} keypoints"}
        return values, details

    def evaluate(
        self,
        pred: np.ndarray,
        gt: np.ndarray,
        motion: MotionSource | None = None,
        metrics: Iterable[str] | None = None,
        camera_frames: int = 16,
        reference: Any = None,
    ) -> dict[str, Any]:
        """Metrics of ``pred`` against ``gt``, both ``(T, H, W, 3)`` uint8 RGB.

        motion: the driving motion (file, ``MotionClip`` or frames) for LMD, rendered with
        this evaluator's render config; its first T frames are used. ``camera_frames``:
        see ``reference_keypoints``. ``reference``: precomputed ``ReferenceKeypoints``
        in the videos' size (instead of ``motion``).
        Returns ``{"frames", "width", "height", "metrics": {name: float | None},
        "details": {...}, "skipped": {metric: reason}}``.
        """
        pred, gt = check_pair(pred, gt)
        requested = parse_metrics(metrics)
        wanted = requested or METRICS
        count, height, width = pred.shape[:3]
        report: dict[str, Any] = {
            "frames": count,
            "width": width,
            "height": height,
            "metrics": {},
            "details": {},
            "skipped": {},
        }
        values: dict[str, float | None] = report["metrics"]
        details: dict[str, Any] = report["details"]
        device, batch = self.device, self.config.batch_size
        for name in wanted:
            try:
                if name == "ssim":
                    values["ssim"] = ssim(pred, gt)
                elif name == "psnr":
                    mse = mse_per_frame(pred, gt)
                    values["psnr"] = float(np.mean([psnr_from_mse(float(v)) for v in mse]))
                    details["psnr"] = {"identical_frames": int((mse == 0).sum())}
                elif name == "l1":
                    values["l1"] = l1(pred, gt)
                elif name == "flicker":
                    if count < 2:
                        raise Unavailable("flicker needs at least 2 frames")
                    for key, value in flicker_report(pred, gt).items():
                        values[f"flicker_{key}"] = value
                elif name == "lpips":
                    from model.evaluation.lpips import lpips_per_frame

                    network = self.lpips_network()
                    per_frame = lpips_per_frame(network, pred, gt, device, batch)
                    values["lpips"] = float(per_frame.mean())
                    details["lpips"] = {"net": self.config.lpips_net}
                elif name == "fid":
                    from model.evaluation.frechet import fid

                    result = fid(self.fid_network(), pred, gt, device, batch)
                    values["fid"] = result.value
                    details["fid"] = result.as_dict()
                elif name == "fvd":
                    from model.evaluation.frechet import fvd

                    length = self.config.fvd_clip_length
                    if count < length:
                        raise Unavailable(
                            f"FVD needs eval.fvd_clip_length = {length} frames, the videos "
                            f"have {count}"
                        )
                    result = fvd(
                        self.fvd_network(),
                        pred,
                        gt,
                        length,
                        self.config.fvd_clip_stride,
                        device,
                        batch,
                    )
                    values["fvd"] = result.value
                    details["fvd"] = {
                        **result.as_dict(),
                        "clip_length": length,
                        "clip_stride": self.config.fvd_clip_stride,
                    }
                elif name == "lmd":
                    if reference is None:
                        if motion is None:
                            raise Unavailable("LMD needs the driving motion (--motion)")
                        self.pose_estimator()  # a missing estimator fails before the projection
                        reference = self.reference(motion, count, width, height, camera_frames)
                    group_values, details["lmd"] = self.lmd(pred, reference)
                    for group, group_value in group_values.items():
                        values[f"lmd_{group}"] = group_value
            except Unavailable as err:
                if requested is not None:
                    raise AnchorError(f"{name}: {err}") from err
                report["skipped"][name] = str(err)
        return report


def evaluate(
    pred: np.ndarray,
    gt: np.ndarray,
    config: EvalConfig | None = None,
    motion: MotionSource | None = None,
    metrics: Iterable[str] | None = None,
    render: RenderConfig | None = None,
    camera_frames: int = 16,
    reference: Any = None,
) -> dict[str, Any]:
    """One-shot ``Evaluator(config, render).evaluate(...)`` (networks load on every call)."""
    return Evaluator(config or EvalConfig(), render).evaluate(
        pred, gt, motion, metrics, camera_frames, reference
    )


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats (an infinite PSNR) as None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


UNITS = {"psnr": "dB", "lmd_face": "px", "lmd_body": "px", "lmd_hands": "px"}


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table (one metric a line, then notes and skipped metrics)."""
    lines = [f"{report['frames']} frames, {report['width']}x{report['height']}"]
    lines.append(f"{'metric':<20}{'value':>12}")
    for name, value in report["metrics"].items():
        if value is None:
            shown = "n/a"
        else:
            shown = f"{value:.4f}" if value == 0 or abs(value) >= 0.01 else f"{value:.3e}"
        unit = UNITS.get(name, "")
        lines.append(f"{name:<20}{shown:>12} {unit}".rstrip())
    details = report["details"]
    for name in ("fid", "fvd"):
        if name in details:
            detail = details[name]
            line = (
                f"{name}: {detail['pred_samples']} pred / {detail['gt_samples']} gt samples, "
                f"{detail['feature_dim']} features"
            )
            lines.append(line + (f" ({detail['note']})" if detail["note"] else ""))
    if "lmd" in details:
        for group in LMD_GROUPS:
            detail = details["lmd"][group]
            if "counted" in detail:
                lines.append(
                    f"lmd_{group}: {detail['counted']} of {detail['reference']} keypoints "
                    f"counted ({detail['low_confidence']} low confidence, "
                    f"{detail['outliers']} outliers)"
                )
            else:
                lines.append(f"lmd_{group}: skipped, {detail['skipped']}")
    for name, reason in report["skipped"].items():
        lines.append(f"skipped {name}: {reason}")
    return "\n".join(lines)
