"""Five face points from images with MTCNN, for frames that come without a mesh.

The network is MTCNN (Zhang et al. 2016): a proposal, a refine and an output net run over
an image pyramid. The three nets are written here with the layer names of facenet-pytorch
(MIT), and their weights are that package's ``data/pnet.pt``, ``rnet.pt`` and ``onet.pt``,
which ship inside its wheel: nothing is downloaded. The package itself is never imported
(its detection code needs an old torchvision); only its data files are read, strictly.

``FaceDetector.detect`` returns, for each image, the best face's five points in FFHQ order
(left eye, right eye, nose tip, left and right mouth corner, image pixels) and its score.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from model.errors import AnchorError, WeightsError

WEIGHT_FILES = {"pnet": "pnet.pt", "rnet": "rnet.pt", "onet": "onet.pt"}
MIN_FACE = 20  # pixels: the smallest face the pyramid looks for
PYRAMID_FACTOR = 0.709


def _block(specs: list[tuple[int, int, int, int]]) -> list[tuple[str, nn.Module]]:
    """conv k -> PReLU (-> max pool p, stride s) for each (in, out, kernel, pool) spec."""
    layers: list[tuple[str, nn.Module]] = []
    for index, (inputs, outputs, kernel, pool) in enumerate(specs, start=1):
        layers.append((f"conv{index}", nn.Conv2d(inputs, outputs, kernel_size=kernel)))
        layers.append((f"prelu{index}", nn.PReLU(outputs)))
        if pool:
            stride_kernel = 2 if pool == 2 else 3
            layers.append((f"pool{index}", nn.MaxPool2d(stride_kernel, 2, ceil_mode=True)))
    return layers


class PNet(nn.Module):
    """Proposal net: (N, 3, H, W) -> box offsets (N, 4, h, w), face probability (N, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        for name, layer in _block([(3, 10, 3, 2), (10, 16, 3, 0), (16, 32, 3, 0)]):
            self.add_module(name, layer)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for name in ("conv1", "prelu1", "pool1", "conv2", "prelu2", "conv3", "prelu3"):
            x = self.get_submodule(name)(x)
        return self.conv4_2(x), self.conv4_1(x).softmax(dim=1)[:, 1]


class _DenseNet(nn.Module):
    """RNet (24 px input) and ONet (48 px): conv trunk, dense layer, heads."""

    def __init__(self, trunk: list[tuple[int, int, int, int]]) -> None:
        super().__init__()
        self.trunk_names: list[str] = []
        for name, layer in _block(trunk):
            self.add_module(name, layer)
            self.trunk_names.append(name)
        self.dense_index = len(trunk) + 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.trunk_names:
            x = self.get_submodule(name)(x)
        # facenet-pytorch flattens (N, W, H, C): its dense weights expect that order.
        x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
        dense = self.get_submodule(f"dense{self.dense_index}")
        return self.get_submodule(f"prelu{self.dense_index}")(dense(x))  # type: ignore[no-any-return]


class RNet(_DenseNet):
    """Refine net: (N, 3, 24, 24) -> box offsets (N, 4), face probability (N,)."""

    def __init__(self) -> None:
        super().__init__([(3, 28, 3, 3), (28, 48, 3, 3), (48, 64, 2, 0)])
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(x)
        return self.dense5_2(x), self.dense5_1(x).softmax(dim=1)[:, 1]


class ONet(_DenseNet):
    """Output net: (N, 3, 48, 48) -> box offsets (N, 4), five points (N, 10) relative to
    the box (x0..x4, y0..y4), face probability (N,)."""

    def __init__(self) -> None:
        trunk = [(3, 32, 3, 3), (32, 64, 3, 3), (64, 64, 3, 2), (64, 128, 2, 0)]
        super().__init__(trunk)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.features(x)
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(dim=1)[:, 1]


def packaged_weights() -> Path:
    """The folder of MTCNN weights inside the installed facenet-pytorch wheel (found
    without importing the package)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise AnchorError(
            "the face detector needs the facenet-pytorch wheel's MTCNN weights: install it "
            "with pip install --no-deps facenet-pytorch==2.6.0 (make bootstrap does), or set "
            "face.detector_weights to a folder holding pnet.pt, rnet.pt and onet.pt"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _load(network: nn.Module, path: Path) -> nn.Module:
    if not path.is_file():
        raise AnchorError(f"face detector weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    result = network.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path}: missing keys {result.missing_keys}, unexpected {result.unexpected_keys}"
        )
    return network.eval()


def nms(
    boxes: torch.Tensor, scores: torch.Tensor, threshold: float, by_min: bool = False
) -> torch.Tensor:
    """Indices of boxes (K, >= 4) kept by greedy non-maximum suppression, best first.

    Overlap is intersection over union of continuous boxes (torchvision's ``nms``, which
    MTCNN's first two stages use) or, with ``by_min``, over the smaller box in inclusive
    pixel counts (its last stage).
    """
    pixel = 1.0 if by_min else 0.0
    areas = (boxes[:, 2] - boxes[:, 0] + pixel) * (boxes[:, 3] - boxes[:, 1] + pixel)
    order = scores.argsort(descending=True)
    keep: list[int] = []
    while order.numel():
        best, rest = order[0], order[1:]
        keep.append(int(best))
        low = torch.maximum(boxes[best, :2], boxes[rest, :2])
        high = torch.minimum(boxes[best, 2:4], boxes[rest, 2:4])
        inter = (high - low + pixel).clamp(min=0).prod(dim=1)
        if by_min:
            base = torch.minimum(areas[best], areas[rest])
        else:
            base = areas[best] + areas[rest] - inter
        order = rest[inter / base <= threshold]
    return torch.tensor(keep, dtype=torch.long)


def _regress(boxes: torch.Tensor, offsets: torch.Tensor, pixel: float = 1.0) -> torch.Tensor:
    """Boxes moved by the nets' offsets, in units of the box size (+ ``pixel``)."""
    size = (boxes[:, 2:4] - boxes[:, :2] + pixel).repeat(1, 2)
    return torch.cat([boxes[:, :4] + offsets * size, boxes[:, 4:]], dim=1)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    sides = (boxes[:, 2:4] - boxes[:, :2]).max(dim=1).values[:, None]
    corner = (boxes[:, :2] + boxes[:, 2:4]) / 2 - sides / 2
    return torch.cat([corner, corner + sides, boxes[:, 4:]], dim=1)


def _patches(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(K, 3, size, size) area-resampled crops of the boxes (clipped to the image)."""
    height, width = image.shape[-2:]
    out = []
    for x0, y0, x1, y1 in boxes[:, :4].trunc().int().tolist():
        x0, y0, x1, y1 = max(x0, 1), max(y0, 1), min(x1, width), min(y1, height)
        patch = image[None, :, y0 - 1 : y1, x0 - 1 : x1]
        if patch.shape[-1] < 1 or patch.shape[-2] < 1:
            patch = image.new_zeros((1, 3, 1, 1))
        out.append(F.interpolate(patch, size=(size, size), mode="area"))
    return (torch.cat(out) - 127.5) * 0.0078125


class FaceDetector:
    """MTCNN over RGB frames; ``thresholds`` are the three nets' face-probability cut-offs
    (facenet-pytorch's default 0.6, 0.7, 0.7; lower finds stylised faces such as mesh
    renders)."""

    def __init__(
        self, weights: Path | None = None, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    ) -> None:
        folder = packaged_weights() if weights is None else weights
        self.pnet = _load(PNet(), folder / WEIGHT_FILES["pnet"])
        self.rnet = _load(RNet(), folder / WEIGHT_FILES["rnet"])
        self.onet = _load(ONet(), folder / WEIGHT_FILES["onet"])
        self.thresholds = thresholds

    @torch.no_grad()
    def detect(self, images: torch.Tensor) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """images (N, 3, H, W) float [0, 1] -> (points (N, 5, 2) float32 image pixels, NaN
        where no face was found; scores (N,) float32, 0 where none). The best-scoring face
        of each image is returned."""
        points = np.full((images.shape[0], 5, 2), np.nan, dtype=np.float32)
        scores = np.zeros(images.shape[0], dtype=np.float32)
        for row, image in enumerate(images):
            found = self._detect_one(image.float().cpu() * 255.0)
            if found is not None:
                points[row], scores[row] = found
        return points, scores

    def _detect_one(self, image: torch.Tensor) -> tuple[NDArray[np.float32], float] | None:
        boxes = self._proposals(image)
        for net, size, threshold in (
            (self.rnet, 24, self.thresholds[1]),
            (self.onet, 48, self.thresholds[2]),
        ):
            if not len(boxes):
                return None
            outputs = net(_patches(image, boxes, size))
            score = outputs[-1]
            passed = score > threshold
            boxes = torch.cat([boxes[passed, :4], score[passed, None]], dim=1)
            offsets = outputs[0][passed]
            if net is self.rnet:
                keep = nms(boxes, boxes[:, 4], 0.7)
                boxes = _square(_regress(boxes[keep], offsets[keep]))
            else:
                relative = outputs[1][passed]
        if not len(boxes):
            return None
        sizes = boxes[:, 2:4] - boxes[:, :2] + 1
        xs = sizes[:, :1] * relative[:, :5] + boxes[:, :1] - 1
        ys = sizes[:, 1:2] * relative[:, 5:] + boxes[:, 1:2] - 1
        boxes = _regress(boxes, offsets)
        kept = nms(boxes, boxes[:, 4], 0.7, by_min=True)
        # The largest face (facenet-pytorch's select_largest): a render holds one person,
        # and stray detections are small.
        areas = (boxes[kept, 2] - boxes[kept, 0]) * (boxes[kept, 3] - boxes[kept, 1])
        best = kept[int(areas.argmax())]
        five = torch.stack([xs[best], ys[best]], dim=1).numpy().astype(np.float32)
        return five, float(boxes[best, 4])

    def _proposals(self, image: torch.Tensor) -> torch.Tensor:
        """Stage 1 over the pyramid: (K, 5) squared boxes x0, y0, x1, y1, score."""
        height, width = image.shape[-2:]
        scale = 12.0 / MIN_FACE
        side = min(height, width) * scale
        found = []
        while side >= 12:
            resized = F.interpolate(
                image[None], size=(int(height * scale + 1), int(width * scale + 1)), mode="area"
            )
            offsets, probability = self.pnet((resized - 127.5) * 0.0078125)
            mask = probability[0] >= self.thresholds[0]
            cells = mask.nonzero().flip(1).float()  # (x, y)
            if len(cells):
                corner = ((2 * cells + 1) / scale).floor()
                far = ((2 * cells + 12) / scale).floor()
                candidates = torch.cat(
                    [corner, far, probability[0][mask][:, None], offsets[0][:, mask].T], dim=1
                )
                found.append(candidates[nms(candidates, candidates[:, 4], 0.5)])
            scale *= PYRAMID_FACTOR
            side *= PYRAMID_FACTOR
        if not found:
            return torch.zeros((0, 5))
        boxes = torch.cat(found)
        boxes = boxes[nms(boxes, boxes[:, 4], 0.7)]
        return _square(_regress(boxes[:, :5], boxes[:, 5:9], pixel=0.0))
