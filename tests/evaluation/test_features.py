"""LPIPS, FID and FVD with tiny stand-in networks of the real files' interfaces.

The pretrained AlexNet/LPIPS heads, Inception and I3D files cannot be downloaded in
tests: the networks here are random, saved in the same formats (state dict, TorchScript)
and called through the same signatures, so loading, batching and the distances run for
real; only the feature values differ from the published networks'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from eval_helpers import noisy, smooth_video, tiny_lpips_state
from torch import nn

from model.errors import AnchorError, WeightsError
from model.evaluation.config import EvalConfig
from model.evaluation.evaluate import Evaluator
from model.evaluation.frechet import (
    ImageFeatures,
    VideoFeatures,
    fid,
    frechet_distance,
    fvd,
    video_clips,
)
from model.evaluation.lpips import LPIPS, lpips_per_frame


def test_lpips_is_zero_for_identical_frames_and_grows_with_noise(weights_dir: Path) -> None:
    network = LPIPS.load(weights_dir / "lpips_alex.pth", "alex")
    video = smooth_video(4)
    assert np.abs(lpips_per_frame(network, video, video)).max() < 1e-6
    means = [lpips_per_frame(network, noisy(video, level), video).mean() for level in (5, 20, 60)]
    assert 0 < means[0] < means[1] < means[2]
    # A distance: symmetric in its arguments.
    forward = lpips_per_frame(network, noisy(video, 20), video)
    np.testing.assert_allclose(forward, lpips_per_frame(network, video, noisy(video, 20)))


def _torchvision_layout(net: str, state: dict[str, torch.Tensor]) -> nn.Sequential:
    """The trunk as torchvision numbers its ``features`` (conv, ReLU and pool modules)."""
    layers: list[nn.Module] = []
    index = 0
    pool = None  # a max-pool step; a tuple is a convolution (kernel, stride, padding)
    plan: list[tuple[int, int, int] | None]
    if net == "alex":
        plan = [(11, 4, 2), pool, (5, 1, 2), pool, (3, 1, 1), (3, 1, 1), (3, 1, 1), pool]
        pool_size = (3, 2)
    else:
        plan = [(3, 1, 1)] * 2 + [pool] + [(3, 1, 1)] * 2 + [pool]
        plan += ([(3, 1, 1)] * 3 + [pool]) * 3
        pool_size = (2, 2)
    for step in plan:
        if step is None:
            layers.append(nn.MaxPool2d(*pool_size))
            index += 1
            continue
        weight = state[f"features.{index}.weight"]
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], *step)
        conv.load_state_dict({"weight": weight, "bias": state[f"features.{index}.bias"]})
        layers += [conv, nn.ReLU()]
        index += 2
    return nn.Sequential(*layers)


@pytest.mark.parametrize(("net", "taps"), [("alex", (1, 4, 7, 9, 11)), ("vgg", (3, 8, 15, 22, 29))])
def test_lpips_taps_are_torchvisions_relu_outputs(net: str, taps: tuple[int, ...]) -> None:
    """The state-dict indices mean what they mean in torchvision, so real weights load."""
    state = tiny_lpips_state(net, seed=5)
    network = LPIPS.from_state_dict(state, net)
    reference = _torchvision_layout(net, state)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    hidden = (images - network.shift) / network.scale
    expected = []
    with torch.no_grad():
        for index, layer in enumerate(reference):
            hidden = layer(hidden)
            if index in taps:
                expected.append(hidden)
        produced = network.tap_features(images)
    assert len(produced) == 5
    for ours, theirs in zip(produced, expected, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_lpips_weight_files_are_checked(weights_dir: Path, tmp_path: Path) -> None:
    state = tiny_lpips_state()
    with pytest.raises(WeightsError, match=r"eval.lpips_weights: .*missing\.pth not found"):
        LPIPS.load(tmp_path / "missing.pth", "alex")
    partial = {key: value for key, value in state.items() if key != "lin2.model.1.weight"}
    with pytest.raises(WeightsError, match=r"missing keys .*lin2\.model\.1\.weight"):
        LPIPS.from_state_dict(partial, "alex")
    with pytest.raises(WeightsError, match=r"unexpected keys \['extra'\]"):
        LPIPS.from_state_dict({**state, "extra": torch.zeros(1)}, "alex")
    wrong = {**state, "lin0.model.1.weight": torch.zeros(1, 5, 1, 1)}
    with pytest.raises(WeightsError, match=r"lin0\.model\.1\.weight has shape \(1, 5, 1, 1\)"):
        LPIPS.from_state_dict(wrong, "alex")
    # torchvision's classifier keys may stay in a merged file.
    LPIPS.from_state_dict({**state, "classifier.1.weight": torch.zeros(2, 2)}, "alex")
    not_a_dict = tmp_path / "list.pth"
    torch.save([1, 2], not_a_dict)
    with pytest.raises(WeightsError, match="not a state dict"):
        LPIPS.load(not_a_dict, "alex")


def test_frechet_distance_equals_the_scipy_sqrtm_formula() -> None:
    generator = np.random.default_rng(0)
    first = generator.normal(size=(300, 6)) @ generator.normal(size=(6, 6))
    second = generator.normal(0.3, 1.0, size=(250, 6)) @ generator.normal(size=(6, 6))
    mean_1, cov_1 = first.mean(0), np.cov(first, rowvar=False)
    mean_2, cov_2 = second.mean(0), np.cov(second, rowvar=False)
    root = scipy.linalg.sqrtm(cov_1 @ cov_2).real
    expected = ((mean_1 - mean_2) ** 2).sum() + np.trace(cov_1 + cov_2 - 2 * root)
    result = frechet_distance(first, second)
    assert result.value == pytest.approx(expected, rel=1e-8)
    assert (result.pred_samples, result.gt_samples, result.feature_dim) == (300, 250, 6)
    assert result.note is None


def test_frechet_distance_of_shifted_features_is_the_squared_shift() -> None:
    generator = np.random.default_rng(1)
    features = generator.normal(size=(40, 8))
    assert frechet_distance(features, features).value < 1e-9
    shift = generator.normal(size=8)
    result = frechet_distance(features + shift, features)
    assert result.value == pytest.approx(float((shift**2).sum()), rel=1e-8)


def test_frechet_distance_with_few_samples_says_so() -> None:
    generator = np.random.default_rng(2)
    few = frechet_distance(generator.normal(size=(3, 16)), generator.normal(size=(3, 16)))
    assert np.isfinite(few.value) and few.value > 0
    assert few.note is not None and "3 samples in 16 dimensions" in few.note
    one = frechet_distance(np.ones((1, 4)), np.zeros((1, 4)))
    assert one.value == pytest.approx(4.0)
    assert one.note is not None and "one sample" in one.note
    with pytest.raises(AnchorError, match="do not compare"):
        frechet_distance(np.ones((3, 4)), np.ones((3, 5)))


def test_fid_and_fvd_are_zero_for_identical_videos_and_grow_with_noise(weights_dir: Path) -> None:
    images = ImageFeatures.load(weights_dir / "fid.pt")
    clips = VideoFeatures.load(weights_dir / "fvd.pt", size=32)
    video = smooth_video(20)
    same_fid = fid(images, video, video, batch_size=7)
    same_fvd = fvd(clips, video, video, clip_length=4, clip_stride=2, batch_size=3)
    assert same_fid.value < 1e-9 and same_fvd.value < 1e-9
    assert same_fid.pred_samples == 20 and same_fid.feature_dim == 16
    assert same_fvd.pred_samples == (20 - 4) // 2 + 1 and same_fvd.feature_dim == 12
    fids = [fid(images, noisy(video, level), video).value for level in (10, 40, 100)]
    fvds = [fvd(clips, noisy(video, level), video, 4, 2).value for level in (10, 40, 100)]
    assert 0 < fids[0] < fids[1] < fids[2]
    assert 0 < fvds[0] < fvds[1] < fvds[2]


class _InputProbe(nn.Module):
    """Returns what it was given: dtype code, value range and shape, as features."""

    def forward(
        self,
        videos: torch.Tensor,
        rescale: bool = True,
        resize: bool = True,
        return_features: bool = False,
    ) -> torch.Tensor:
        flags = torch.tensor([float(rescale), float(resize), float(return_features)])
        shape = torch.tensor(videos.shape[1:], dtype=torch.float32)
        values = videos.float().flatten(1)
        ranges = torch.stack([values.min(dim=1).values, values.max(dim=1).values], dim=1)
        return torch.cat([ranges, flags.expand(len(videos), 3), shape.expand(len(videos), -1)], 1)


def test_fvd_network_gets_the_documented_input(tmp_path: Path) -> None:
    path = tmp_path / "probe.pt"
    torch.jit.script(_InputProbe()).save(str(path))
    network = VideoFeatures.load(path, size=24)
    video = np.zeros((8, 40, 40, 3), dtype=np.uint8)
    video[:, :, 20:] = 255
    features = network(video_clips(video, 4, 4))
    # range [-1, 1]; rescale=False, resize=False, return_features=True; (3, L, S, S)
    np.testing.assert_allclose(features[0], [-1, 1, 0, 0, 1, 3, 4, 24, 24], atol=1e-6)
    assert len(features) == 2


def test_missing_weights_are_skipped_unless_asked_for(weights_dir: Path, tmp_path: Path) -> None:
    video = smooth_video(4)
    report = Evaluator(EvalConfig()).evaluate(video, video)
    assert report["skipped"]["lpips"].startswith("eval.lpips_weights is not set")
    assert report["skipped"]["fid"].startswith("eval.fid_weights is not set")
    assert "eval.fvd_clip_length" in report["skipped"]["fvd"]
    assert "--motion" in report["skipped"]["lmd"]
    assert report["metrics"]["ssim"] == pytest.approx(1.0)
    with pytest.raises(AnchorError, match=r"lpips: eval\.lpips_weights is not set"):
        Evaluator(EvalConfig()).evaluate(video, video, metrics=["ssim", "lpips"])
    missing = EvalConfig(fid_weights=tmp_path / "nowhere.pt")
    with pytest.raises(AnchorError, match=r"eval.fid_weights: .*nowhere\.pt not found"):
        Evaluator(missing).evaluate(video, video)
    with pytest.raises(AnchorError, match="unknown \\['ssimm'\\]"):
        Evaluator(EvalConfig()).evaluate(video, video, metrics=["ssimm"])
    configured = EvalConfig(lpips_weights=weights_dir / "lpips_alex.pth")
    report = Evaluator(configured).evaluate(noisy(video, 20), video, metrics=["lpips"])
    assert set(report["metrics"]) == {"lpips"} and report["metrics"]["lpips"] > 0
