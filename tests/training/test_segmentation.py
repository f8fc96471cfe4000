"""Stage-1 foreground masks from segmentation plug-ins (``anchor prepare --segmenter``).

No person-segmentation weights exist here, so the ONNX model is a small graph built at
test time with the same interface (image in, per-pixel probability out); the Python
plug-in is a file in tmp. Both run through the real ``prepare_dataset``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from model.config import RenderConfig
from model.errors import AnchorError
from model.training.dataset import load_dataset, read_png
from model.training.prepare import PrepareOptions, prepare_dataset
from model.training.segmentation import OnnxSegmenter, load_segmenter, to_mask_uint8


def red_minus_green_model(path: Path, size: int | None, channels: int = 1) -> Path:
    """ONNX: probability = sigmoid(8 * (R - G)) per pixel, (1, channels, H, W) out."""
    height: int | str = size if size is not None else "H"
    width: int | str = size if size is not None else "W"
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])
    out = helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, channels, height, width])
    consts = [
        helper.make_tensor("r", TensorProto.INT64, [1], [0]),
        helper.make_tensor("g", TensorProto.INT64, [1], [1]),
        helper.make_tensor("k", TensorProto.FLOAT, [], [8.0]),
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("Gather", ["image", "r"], ["red"], axis=1),
        helper.make_node("Gather", ["image", "g"], ["green"], axis=1),
        helper.make_node("Sub", ["red", "green"], ["diff"]),
        helper.make_node("Mul", ["diff", "k"], ["scaled"]),
    ]
    if channels == 1:
        nodes.append(helper.make_node("Sigmoid", ["scaled"], ["mask"]))
    else:  # background score 0, person score 8 (R - G): softmax gives the same sigmoid
        nodes += [
            helper.make_node("Sub", ["scaled", "scaled"], ["zero"]),
            helper.make_node("Concat", ["zero", "scaled"], ["mask"], axis=1),
        ]
    graph = helper.make_graph(nodes, "segmenter", [image], [out], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def expected(frames: np.ndarray) -> np.ndarray:
    values = frames.astype(np.float32) / 255.0
    return 1.0 / (1.0 + np.exp(-8.0 * (values[..., 0] - values[..., 1])))


@pytest.mark.parametrize(("size", "channels"), [(None, 1), (None, 2), (32, 1)])
def test_onnx_segmenter_runs_the_graph(tmp_path: Path, size: int | None, channels: int) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    path = red_minus_green_model(tmp_path / "seg.onnx", size, channels)
    masks = load_segmenter(f"onnx:{path}")(frames)
    assert masks.shape == (3, 32, 32) and masks.dtype == np.uint8
    assert np.abs(masks.astype(np.float32) - expected(frames) * 255.0).max() <= 1.0


def test_onnx_segmenter_resizes_to_a_fixed_input_and_back(tmp_path: Path) -> None:
    frames = np.zeros((1, 48, 48, 3), dtype=np.uint8)
    frames[0, :, :24, 0] = 255  # left half red: person; right half black: 0.5
    segmenter = OnnxSegmenter(red_minus_green_model(tmp_path / "seg.onnx", 16))
    assert segmenter.input_size == (16, 16)
    mask = segmenter(frames)[0]
    assert mask.shape == (48, 48)
    assert mask[:, :20].min() >= 250 and abs(int(mask[:, 30:].mean()) - 128) <= 2


def test_python_plugin_from_a_file(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import numpy as np\n"
        "def bright(frames):\n"
        "    return frames.mean(-1) > 100\n"
        "def wrong(frames):\n"
        "    return np.zeros(frames.shape[:2])\n"
    )
    frames = np.full((2, 8, 8, 3), 200, dtype=np.uint8)
    frames[1] = 0
    masks = load_segmenter(f"{plugin}:bright")(frames)
    assert masks[0].min() == 255 and masks[1].max() == 0
    with pytest.raises(AnchorError, match=r"shape \(2, 8\).*expected \(2, 8, 8\)"):
        load_segmenter(f"{plugin}:wrong")(frames)


def test_bad_specs_are_named(tmp_path: Path) -> None:
    with pytest.raises(AnchorError, match=r"missing\.onnx: file not found"):
        load_segmenter(f"onnx:{tmp_path / 'missing.onnx'}")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(AnchorError, match=r"junk\.onnx: not a loadable ONNX model"):
        load_segmenter(f"onnx:{tmp_path / 'junk.onnx'}")
    with pytest.raises(AnchorError, match=r"expected onnx:PATH, module:function"):
        load_segmenter("no-colon-here")
    with pytest.raises(AnchorError, match=r"cannot import no_such_module_xyz"):
        load_segmenter("no_such_module_xyz:segment")
    with pytest.raises(AnchorError, match=r"json has no callable nope"):
        load_segmenter("json:nope")
    with pytest.raises(AnchorError, match=r"mean must be 3 numbers"):
        load_segmenter(f"onnx:{tmp_path / 'x.onnx'}?mean=1,2")
    with pytest.raises(AnchorError, match=r"in \[0, 1\]"):
        to_mask_uint8(np.full((1, 2, 2), 3.0), np.zeros((1, 2, 2, 3), np.uint8), "test")


def test_prepare_writes_segmenter_masks(
    synth_root: Path, render_config: RenderConfig, tmp_path: Path
) -> None:
    train = synth_root / "train"
    model = red_minus_green_model(tmp_path / "seg.onnx", None)
    options = PrepareOptions(size=64, face_size=32, segmenter=f"onnx:{model}")
    out = tmp_path / "dataset"
    prepare_dataset(train / "video.mp4", train / "motion.npz", out, options, render_config)
    header, entries = load_dataset(out)
    assert header.foreground and all(entry.foreground for entry in entries)
    for entry in entries[:3]:
        assert entry.foreground is not None
        frame = read_png(out / entry.frame)
        mask = read_png(out / entry.foreground)
        assert np.abs(mask.astype(np.float32) - expected(frame[None])[0] * 255.0).max() <= 2.0
    both = PrepareOptions(size=64, face_size=32, segmenter="x:y", foreground=tmp_path)
    with pytest.raises(AnchorError, match="choose one"):
        prepare_dataset(
            train / "video.mp4", train / "motion.npz", tmp_path / "e", both, render_config
        )
