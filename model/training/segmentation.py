"""Foreground segmentation plug-ins for stage-1 data (``anchor prepare --segmenter SPEC``).

The paper trains stage 1 on frames whose background is removed. Masks come from a folder
(``--foreground``) or from a segmenter run on the cropped frames while preparing:

- ``onnx:PATH``: a local ONNX person-segmentation / matting model run with onnxruntime
  (CPU here; CUDA when onnxruntime-gpu provides it). Input contract: one float32 image
  ``(1, 3, H, W)``, RGB in [0, 1] (optionally normalized with ``mean``/``std`` given as
  ``onnx:PATH?mean=0.485,0.456,0.406&std=0.229,0.224,0.225``), at the model's fixed input
  size when it has one, else at the frame size. Output: the first output, ``(1, 1, h, w)``
  or ``(1, h, w)`` foreground probability/alpha in [0, 1], or ``(1, 2, h, w)`` background /
  person scores (softmax taken); resized back to the frame.
- ``module:function`` or ``path/to/file.py:function``: a Python callable taking
  ``(N, H, W, 3)`` uint8 RGB frames and returning ``(N, H, W)`` masks, uint8 (255 = person)
  or float in [0, 1].

Every segmenter returns ``(N, H, W)`` uint8 masks, 255 = person.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model.errors import AnchorError

Segmenter = Callable[[NDArray[np.uint8]], NDArray[np.uint8]]


def load_segmenter(spec: str) -> Segmenter:
    """The segmenter named by ``spec`` (see the module docstring); errors name the spec."""
    if spec.startswith("onnx:"):
        path, _, query = spec[len("onnx:") :].partition("?")
        options = {key: values[-1] for key, values in parse_qs(query).items()}
        return OnnxSegmenter(Path(path), **_normalization(options, spec))
    module_name, sep, function_name = spec.rpartition(":")
    if not sep or not module_name or not function_name:
        raise AnchorError(
            f"--segmenter {spec!r}: expected onnx:PATH, module:function or file.py:function"
        )
    module = _import(module_name, spec)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise AnchorError(f"--segmenter {spec!r}: {module_name} has no callable {function_name}")
    return _checked(function, spec)


def _import(name: str, spec: str) -> Any:
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise AnchorError(f"--segmenter {spec!r}: file {path} not found")
        loader = importlib.util.spec_from_file_location(f"anchor_segmenter_{path.stem}", path)
        if loader is None or loader.loader is None:
            raise AnchorError(f"--segmenter {spec!r}: cannot load {path}")
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise AnchorError(f"--segmenter {spec!r}: cannot import {name} ({err})") from err


def _normalization(options: dict[str, str], spec: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in ("mean", "std"):
        if key in options:
            try:
                triple = tuple(float(part) for part in options[key].split(","))
            except ValueError as err:
                raise AnchorError(f"--segmenter {spec!r}: {key} must be 3 numbers") from err
            if len(triple) != 3:
                raise AnchorError(f"--segmenter {spec!r}: {key} must be 3 numbers")
            values[key] = triple
    unknown = set(options) - {"mean", "std"}
    if unknown:
        raise AnchorError(f"--segmenter {spec!r}: unknown option(s) {sorted(unknown)}")
    return values


def to_mask_uint8(masks: Any, frames: NDArray[np.uint8], source: str) -> NDArray[np.uint8]:
    """A segmenter's answer as ``(N, H, W)`` uint8 (255 = person); errors name ``source``."""
    array = np.asarray(masks)
    expected = frames.shape[:3]
    if array.shape != expected:
        raise AnchorError(f"{source}: returned masks of shape {array.shape}, expected {expected}")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float32)
    if not np.isfinite(values).all() or values.min() < -1e-3 or values.max() > 1.0 + 1e-3:
        raise AnchorError(f"{source}: float masks must be finite and in [0, 1]")
    return np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _checked(function: Callable[..., Any], spec: str) -> Segmenter:
    def segment(frames: NDArray[np.uint8]) -> NDArray[np.uint8]:
        return to_mask_uint8(function(frames), frames, f"--segmenter {spec}")

    return segment


class OnnxSegmenter:
    """A person-segmentation ONNX model run with onnxruntime; see the module docstring."""

    def __init__(
        self,
        path: Path,
        mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
        std: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        if not path.is_file():
            raise AnchorError(f"--segmenter onnx:{path}: file not found")
        import onnxruntime as ort

        self.path = path
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider",) if p in available]
        try:
            self.session = ort.InferenceSession(
                str(path), providers=[*providers, "CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types
            raise AnchorError(
                f"--segmenter onnx:{path}: not a loadable ONNX model ({err})"
            ) from err
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise AnchorError(
                f"--segmenter onnx:{path}: expected one (1, 3, H, W) input, "
                f"got {[(i.name, i.shape) for i in inputs]}"
            )
        self.input_name = inputs[0].name
        height, width = inputs[0].shape[2], inputs[0].shape[3]
        fixed = isinstance(height, int) and isinstance(width, int)
        self.input_size = (int(height), int(width)) if fixed else None
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)

    def __call__(self, frames: NDArray[np.uint8]) -> NDArray[np.uint8]:
        height, width = frames.shape[1:3]
        masks = np.empty(frames.shape[:3], dtype=np.float32)
        for index, frame in enumerate(frames):
            image = Image.fromarray(frame)
            if self.input_size is not None and self.input_size != (height, width):
                size = (self.input_size[1], self.input_size[0])
                image = image.resize(size, Image.Resampling.BILINEAR)
            tensor = np.asarray(image, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
            tensor = (tensor - self.mean) / self.std
            output = np.asarray(self.session.run(None, {self.input_name: tensor})[0])
            masks[index] = self._resize(self._probability(output), width, height)
        return to_mask_uint8(masks, frames, f"--segmenter onnx:{self.path}")

    def _probability(self, output: NDArray[Any]) -> NDArray[np.float32]:
        if output.ndim == 4 and output.shape[:2] == (1, 2):
            scores = output[0].astype(np.float64)
            scores = np.exp(scores - scores.max(0, keepdims=True))
            return (scores[1] / scores.sum(0)).astype(np.float32)
        if output.ndim == 4 and output.shape[:2] == (1, 1):
            return output[0, 0].astype(np.float32)
        if output.ndim == 3 and output.shape[0] == 1:
            return output[0].astype(np.float32)
        raise AnchorError(
            f"--segmenter onnx:{self.path}: output of shape {output.shape}; expected "
            "(1, 1, h, w), (1, h, w) or (1, 2, h, w)"
        )

    @staticmethod
    def _resize(mask: NDArray[np.float32], width: int, height: int) -> NDArray[np.float32]:
        if mask.shape == (height, width):
            return np.clip(mask, 0.0, 1.0)
        image = Image.fromarray(mask.astype(np.float32), mode="F")
        resized = image.resize((width, height), Image.Resampling.BILINEAR)
        return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
