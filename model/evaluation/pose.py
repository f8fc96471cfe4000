"""A top-down pose estimator given as an ONNX file, run with onnxruntime.

Contract of the file (``eval.pose_onnx``), the one of DWPose / RTMPose exports:
- one input ``(1, 3, H, W)`` float32 (DWPose: 256 x 192): the person crop, channels
  normalised with the ImageNet mean (123.675, 116.28, 103.53) and standard deviation
  (58.395, 57.12, 57.375) on the 0..255 scale, in RGB order (``eval.pose_channel_order``
  switches to BGR);
- outputs ``simcc_x (1, K, W * r)`` and ``simcc_y (1, K, H * r)``: per keypoint, scores
  over ``r`` bins per input pixel (DWPose r = 2); the location is the best bin's centre
  and the confidence the smaller of the two best scores (as mmpose decodes SimCC);
- or, instead, one heatmap output ``(1, K, h, w)``: the location is the best cell's
  centre scaled to the input, the confidence that cell's value.
K = 133 (COCO-WholeBody) or 17 (COCO body).

The crop is a box around the person (from the reference projection: the estimator is
not asked to find the person, only its keypoints), grown by ``eval.pose_box_padding``
and widened or heightened to the input's aspect ratio; pixels outside the frame are
black. Coordinates are continuous pixels (pixel i covers [i, i+1)).
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

MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
SUPPORTED_KEYPOINTS = (133, 17)


@dataclass(frozen=True, slots=True)
class CropTransform:
    """Axis-aligned crop: ``image = centre + (crop - input_size / 2) / scale`` per axis."""

    centre: NDArray[np.float64]  # (2,) x, y in image pixels
    scale: float  # input pixels per image pixel
    input_width: int
    input_height: int

    def to_image(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(..., 2)`` input-pixel coordinates -> image-pixel coordinates."""
        half = np.array([self.input_width, self.input_height], dtype=np.float64) / 2.0
        return self.centre + (points - half) / self.scale

    def to_crop(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """``(..., 2)`` image-pixel coordinates -> input-pixel coordinates."""
        half = np.array([self.input_width, self.input_height], dtype=np.float64) / 2.0
        return (points - self.centre) * self.scale + half


def crop_transform(
    box: NDArray[np.floating[Any]], input_width: int, input_height: int, padding: float
) -> CropTransform:
    """The crop of ``box`` (x0, y0, x1, y1), grown by ``padding``, at the input's aspect ratio."""
    x0, y0, x1, y1 = (float(value) for value in box)
    width, height = max(x1 - x0, 1.0) * padding, max(y1 - y0, 1.0) * padding
    aspect = input_width / input_height
    if width > height * aspect:
        height = width / aspect
    else:
        width = height * aspect
    centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0], dtype=np.float64)
    return CropTransform(centre, input_width / width, input_width, input_height)


def warp_crop(frame: NDArray[np.uint8], transform: CropTransform) -> torch.Tensor:
    """``(H, W, 3)`` uint8 frame -> ``(1, 3, h, w)`` float32 crop on the 0..255 scale (bilinear)."""
    height, width = frame.shape[:2]
    columns = torch.arange(transform.input_width, dtype=torch.float64) + 0.5
    rows = torch.arange(transform.input_height, dtype=torch.float64) + 0.5
    x = transform.centre[0] + (columns - transform.input_width / 2.0) / transform.scale
    y = transform.centre[1] + (rows - transform.input_height / 2.0) / transform.scale
    grid_y, grid_x = torch.meshgrid(2.0 * y / height - 1.0, 2.0 * x / width - 1.0, indexing="ij")
    grid = torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0).float()
    image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).unsqueeze(0).float()
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class PoseEstimator:
    """``eval.pose_onnx`` in an onnxruntime session; ``predict`` gives keypoints per frame."""

    def __init__(
        self,
        path: Path | None,
        channel_order: str = "rgb",
        box_padding: float = 1.25,
        field: str = "eval.pose_onnx",
    ) -> None:
        if path is None:
            raise WeightsError(f"{field} is not set (a pose estimator ONNX file)")
        if not Path(path).is_file():
            raise WeightsError(f"{field}: {path} not found (a pose estimator ONNX file)")
        import onnxruntime

        available = onnxruntime.get_available_providers()
        providers = [
            name for name in ("CUDAExecutionProvider", "CPUExecutionProvider") if name in available
        ]
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types
            raise WeightsError(f"{field}: {path} is not a loadable ONNX model ({err})") from err
        self.source = f"{field} ({path})"
        self.channel_order = channel_order
        self.box_padding = box_padding
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise WeightsError(f"{self.source}: expected one (1, 3, H, W) input")
        shape = inputs[0].shape
        if not (isinstance(shape[2], int) and isinstance(shape[3], int)) or shape[1] != 3:
            raise WeightsError(f"{self.source}: input shape {shape} is not (1, 3, H, W)")
        self.input_name = inputs[0].name
        self.input_height, self.input_width = int(shape[2]), int(shape[3])
        outputs = {output.name: output for output in self.session.get_outputs()}
        if "simcc_x" in outputs and "simcc_y" in outputs:
            self.kind = "simcc"
            self.output_names = ["simcc_x", "simcc_y"]
        elif len(outputs) == 1 and len(next(iter(outputs.values())).shape) == 4:
            self.kind = "heatmap"
            self.output_names = list(outputs)
        else:
            described = {name: output.shape for name, output in outputs.items()}
            raise WeightsError(
                f"{self.source}: outputs {described}; expected simcc_x and simcc_y, or one "
                "(1, K, h, w) heatmap"
            )
        self.keypoint_count: int | None = None  # known after the first frame

    def _normalise(self, crop: torch.Tensor) -> np.ndarray:
        mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
        std = torch.tensor(STD_RGB).view(1, 3, 1, 1)
        normalised = (crop - mean) / std
        if self.channel_order == "bgr":
            normalised = normalised.flip(1)
        return normalised.numpy().astype(np.float32)

    def _decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Network outputs -> ``(K, 2)`` input-pixel locations and ``(K,)`` confidences."""
        if self.kind == "simcc":
            simcc_x, simcc_y = (np.asarray(output, dtype=np.float64)[0] for output in outputs)
            if simcc_x.ndim != 2 or simcc_y.ndim != 2 or len(simcc_x) != len(simcc_y):
                raise WeightsError(
                    f"{self.source}: simcc outputs of shapes {simcc_x.shape}, {simcc_y.shape}"
                )
            bins_x, bins_y = simcc_x.argmax(axis=1), simcc_y.argmax(axis=1)
            ratio_x = simcc_x.shape[1] / self.input_width
            ratio_y = simcc_y.shape[1] / self.input_height
            locations = np.stack([(bins_x + 0.5) / ratio_x, (bins_y + 0.5) / ratio_y], axis=1)
            scores = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
            return locations, scores
        heatmaps = np.asarray(outputs[0], dtype=np.float64)[0]
        if heatmaps.ndim != 3:
            raise WeightsError(f"{self.source}: heatmap output of shape {heatmaps.shape}")
        count, rows, columns = heatmaps.shape
        flat = heatmaps.reshape(count, -1)
        best = flat.argmax(axis=1)
        locations = np.stack(
            [
                (best % columns + 0.5) * self.input_width / columns,
                (best // columns + 0.5) * self.input_height / rows,
            ],
            axis=1,
        )
        return locations, flat.max(axis=1)

    def predict(
        self, frames: np.ndarray, boxes: np.ndarray
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Keypoints ``(T, K, 2)`` in frame pixels and confidences ``(T, K)``.

        ``frames``: ``(T, H, W, 3)`` uint8 RGB; ``boxes``: ``(T, 4)`` person boxes
        (x0, y0, x1, y1) in frame pixels.
        """
        if len(boxes) != len(frames):
            raise AnchorError(f"{len(frames)} frames but {len(boxes)} person boxes")
        points, scores = [], []
        for frame, box in zip(frames, boxes, strict=True):
            transform = crop_transform(box, self.input_width, self.input_height, self.box_padding)
            crop = self._normalise(warp_crop(frame, transform))
            outputs = self.session.run(self.output_names, {self.input_name: crop})
            locations, confidence = self._decode(outputs)
            if len(locations) not in SUPPORTED_KEYPOINTS:
                raise WeightsError(
                    f"{self.source}: {len(locations)} keypoints; expected 133 (COCO-WholeBody) "
                    "or 17 (COCO body)"
                )
            points.append(transform.to_image(locations))
            scores.append(confidence)
        self.keypoint_count = len(points[0]) if points else None
        return np.stack(points), np.stack(scores)
