"""BiSeNet face parsing: strict loading of a weights file and the authors' mask."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.errors import WeightsError
from model.face_parsing import (
    FACE_CLASSES,
    BiSeNet,
    FaceParser,
    keep_mask_from_labels,
    load_bisenet,
)

TINY_BASE = 8


def _tiny_file(tmp_path: Path) -> tuple[BiSeNet, Path]:
    torch.manual_seed(0)
    network = BiSeNet(base=TINY_BASE).eval()
    path = tmp_path / "parsing.pth"
    torch.save(network.state_dict(), path)
    return network, path


def test_published_network_has_the_weights_file_layout() -> None:
    state = BiSeNet().state_dict()
    # 79999_iter.pth: 19 classes, ResNet-18 context path, 256-wide fusion (13.3 M weights).
    assert state["conv_out.conv_out.weight"].shape == (19, 256, 1, 1)
    assert state["cp.arm32.conv.conv.weight"].shape == (128, 512, 3, 3)
    assert state["conv_out16.conv.conv.weight"].shape == (64, 128, 3, 3)
    assert "cp.resnet.layer4.1.bn2.running_var" in state
    assert sum(value.numel() for key, value in state.items() if "running" not in key
               and "num_batches" not in key) == 13_300_416  # fmt: skip


def test_weights_load_strictly(tmp_path: Path) -> None:
    network, path = _tiny_file(tmp_path)
    loaded = load_bisenet(path)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(images), network(images))
    state = network.state_dict()
    state.pop("ffm.conv2.weight")
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"ffm\.conv2\.weight"):
        load_bisenet(tmp_path / "missing.pth")
    state = {"module." + key: value for key, value in network.state_dict().items()}
    torch.save(state, tmp_path / "parallel.pth")  # a DataParallel checkpoint's prefix
    assert isinstance(load_bisenet(tmp_path / "parallel.pth"), BiSeNet)


def test_keep_mask_is_the_inverted_dilated_face_classes(tmp_path: Path) -> None:
    """Face classes -> 0 (regenerated), grown by one pixel (3x3 dilation at 512); the rest
    -> 1 (kept)."""
    network, _ = _tiny_file(tmp_path)
    conv_out = network.conv_out.conv_out
    with torch.no_grad():
        conv_out.weight.zero_()
    parser = FaceParser(network)

    def force(label: int) -> None:
        with torch.no_grad():
            conv_out.weight.zero_()
            conv_out.weight[label] = 1.0  # this class wins everywhere (features are ReLU'd)

    crops = torch.rand(1, 3, 32, 32)
    force(FACE_CLASSES[0])  # skin
    assert torch.equal(parser.keep_masks(crops), torch.zeros(1, 1, 32, 32))
    force(17)  # hair: kept
    assert torch.equal(parser.keep_masks(crops), torch.ones(1, 1, 32, 32))


def test_face_labels_are_dilated_3x3_and_inverted() -> None:
    labels = torch.full((1, 1, 7, 7), 17)  # hair everywhere
    labels[0, 0, 3, 3] = 10  # one nose pixel
    labels[0, 0, 0, 6] = 14  # neck is kept
    keep = keep_mask_from_labels(labels)
    expected = torch.ones(1, 1, 7, 7)
    expected[0, 0, 2:5, 2:5] = 0.0
    assert torch.equal(keep, expected)
