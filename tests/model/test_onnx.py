"""``anchor export-onnx`` and ``model.backend = "onnxruntime"`` against the torch backend.

The tiny preset (real diffusers classes at tiny size, seeded) is exported once per module
through the CLI; ONNX Runtime runs on its CPU provider here. Pretrained weights cannot
exist here, so the networks are the tiny preset's seeded ones: the comparisons check the
export and the runtime, which do not depend on what the weights are.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from app.cli import main
from model.components import build_components
from model.config import FaceConfig, ModelConfig, SamplerConfig
from model.errors import AnchorError
from model.onnx_export import export_onnx
from model.onnx_runtime import OnnxDenoiser, choose_providers
from model.placement import Components
from model.sgdm import SGDMDenoiser
from streaming.frames import ConditionFrame
from streaming.generate import generate_streaming

WINDOW, OVERLAP, STEPS = 8, 2, 2
TOLERANCE = 1e-3  # max abs difference, the bound
NO_FACE = FaceConfig(enabled=False)
OVERRIDES = [
    "--set",
    "model.preset=tiny",
    "--set",
    "model.device=cpu",
    "--set",
    f"sampler.window_size={WINDOW}",
    "--set",
    f"sampler.overlap={OVERLAP}",
    "--set",
    f"sampler.steps={STEPS}",
]


def _model(**fields: Any) -> ModelConfig:
    return ModelConfig(preset="tiny", device="cpu", **fields)


def _sampler(**fields: Any) -> SamplerConfig:
    settings: dict[str, Any] = {
        "mode": "exact",
        "window_size": WINDOW,
        "overlap": OVERLAP,
        "steps": STEPS,
    }
    return SamplerConfig(**{**settings, **fields})


def _onnx(folder: Path, sampler: SamplerConfig | None = None, **fields: Any) -> Components:
    model = _model(backend="onnxruntime", onnx_dir=folder, **fields)
    return build_components(model, sampler or _sampler(), NO_FACE)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset exported by ``anchor export-onnx`` (all-frame, cached conditioning)."""
    folder = tmp_path_factory.mktemp("onnx")
    assert main([*OVERRIDES, "export-onnx", "--out", str(folder)]) == 0
    return folder


def _inputs(windows: int, frames: int, seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((windows, frames, 4, 8, 8), generator=generator)
    images = torch.rand((windows * frames, 3, 64, 64), generator=generator)
    timesteps = torch.randint(1, 1000, (windows,), generator=generator)
    return latents, images, timesteps


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _guided_difference(torch_side: Components, onnx_side: Components) -> float:
    """Max abs difference of guided predictions over full, batched and short windows."""
    worst = 0.0
    for windows, frames in ((1, WINDOW), (3, WINDOW), (2, 3), (1, 1)):
        latents, images, timesteps = _inputs(windows, frames, seed=windows * 10 + frames)
        predictions = []
        for side in (torch_side, onnx_side):
            conditions = side.denoiser.encode_conditions(images)
            conditions = conditions.reshape(windows, frames, *conditions.shape[1:])
            predictions.append(side.denoiser.predict(latents, timesteps, conditions))
        assert predictions[0].shape == predictions[1].shape == latents.shape
        worst = max(worst, _max_diff(*predictions))
    return worst


def test_manifest_describes_the_export(exported: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["preset"] == "tiny" and manifest["image_size"] == 64
    assert manifest["window_size"] == WINDOW and manifest["attention"] == "all-frame"
    assert manifest["opset"] == 17 and manifest["versions"]["torch"] == torch.__version__
    assert manifest["source_config"]["sampler"]["window_size"] == WINDOW
    graphs = manifest["graphs"]
    assert set(graphs) == {"denoiser", "vae_decoder", "conditioning"}
    assert graphs["denoiser"]["inputs"]["latents"] == ["windows", "frames", 4, 8, 8]
    assert graphs["denoiser"]["outputs"]["noise"] == ["windows", "frames", 4, 8, 8]
    assert graphs["vae_decoder"]["outputs"]["images"] == ["frames", 3, 64, 64]
    assert all((exported / graph["file"]).is_file() for graph in graphs.values())


def test_guided_denoiser_and_conditioning_match_torch(exported: Path) -> None:
    """CFG 7.5 (both halves in one graph run), stream batches and shorter tail windows."""
    torch_side = build_components(_model(), _sampler(), NO_FACE)
    onnx_side = _onnx(exported)
    assert isinstance(onnx_side.denoiser, OnnxDenoiser)
    assert onnx_side.denoiser.providers == ["CPUExecutionProvider"]
    images = _inputs(1, 5, seed=0)[1]
    embedding = torch_side.denoiser.encode_conditions(images)
    assert _max_diff(embedding, onnx_side.denoiser.encode_conditions(images)) <= TOLERANCE
    assert torch.equal(torch_side.appearance, onnx_side.appearance)
    assert _guided_difference(torch_side, onnx_side) <= TOLERANCE


def test_decoder_matches_torch(exported: Path) -> None:
    torch_side = build_components(_model(), _sampler(), NO_FACE)
    onnx_side = _onnx(exported)
    latents = torch.randn((19, 4, 8, 8), generator=torch.Generator().manual_seed(5))
    expected = torch_side.denoiser.decode(latents)
    decoded = onnx_side.denoiser.decode(latents)
    assert decoded.shape == expected.shape == (19, 3, 64, 64)
    assert _max_diff(decoded, expected) <= TOLERANCE


def test_generate_with_onnxruntime_matches_torch(exported: Path) -> None:
    """A 19-frame clip through the exact streaming sampler (windows 0-8, 6-14, 12-19 and
    the 1-frame tail 18-19, batched up to 3 per call), decoded: same frames as torch."""
    sampler = _sampler(max_batch=3)
    generator = torch.Generator().manual_seed(7)
    conditions = [
        ConditionFrame(
            seq=seq, pts=seq / 30.0, condition=torch.rand((3, 64, 64), generator=generator)
        )
        for seq in range(19)
    ]
    frames = []
    for side in (build_components(_model(), sampler, NO_FACE), _onnx(exported, sampler)):
        committed = generate_streaming(conditions, side, sampler)
        assert [frame.seq for frame in committed] == list(range(19))
        frames.append(torch.stack([frame.image for frame in committed if frame.image is not None]))
    assert frames[0].shape == frames[1].shape == (19, 3, 64, 64)
    assert _max_diff(*frames) <= TOLERANCE


def test_sparse_attention_window_groupnorm_uncached_and_external_data(tmp_path: Path) -> None:
    """The other attention grouping, window GroupNorm and raw condition images trace too;
    external data (what graphs above 2 GB need) loads and gives the same numbers."""
    fields: dict[str, Any] = {
        "attention": "sparse",
        "window_groupnorm": True,
        "cache_conditioning": False,
    }
    manifest = export_onnx(_model(**fields), _sampler(), tmp_path, external_data=True)
    assert "conditioning" not in manifest["graphs"]
    assert manifest["graphs"]["denoiser"]["inputs"]["conditions"] == [
        "windows",
        "frames",
        3,
        64,
        64,
    ]
    for graph in manifest["graphs"].values():
        assert graph["external_data"] == graph["file"] + ".data"
        assert (tmp_path / graph["external_data"]).stat().st_size > 10_000
        assert (tmp_path / graph["file"]).stat().st_size < 1_000_000  # weights are outside
    torch_side = build_components(_model(**fields), _sampler(), NO_FACE)
    assert _guided_difference(torch_side, _onnx(tmp_path, **fields)) <= TOLERANCE


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"attention": "per-frame"}, "model.attention"),
        ({"image_size": 128}, "model.image_size"),
        ({"tiny_seed": 3}, "model.tiny_seed"),
        ({"cache_conditioning": False}, "model.cache_conditioning"),
        ({"window_size": 6}, "sampler.window_size"),
        ({"onnx_providers": ["NoSuchExecutionProvider"]}, "model.onnx_providers"),
    ],
)
def test_config_that_disagrees_with_the_export_is_named(
    exported: Path, change: dict[str, Any], named: str
) -> None:
    sampler = _sampler(**{k: v for k, v in change.items() if k == "window_size"})
    fields = {k: v for k, v in change.items() if k != "window_size"}
    with pytest.raises(AnchorError, match=named.replace(".", r"\.")):
        _onnx(exported, sampler, **fields)


def test_missing_folder_file_and_face_model_are_named(exported: Path, tmp_path: Path) -> None:
    with pytest.raises(AnchorError, match=r"model\.onnx_dir is not set"):
        build_components(_model(backend="onnxruntime"), _sampler(), NO_FACE)
    with pytest.raises(AnchorError, match=r"model\.onnx_dir .*nowhere is not a folder"):
        _onnx(tmp_path / "nowhere")
    with pytest.raises(AnchorError, match=r"manifest\.json is missing"):
        _onnx(tmp_path)
    partial = tmp_path / "partial"
    shutil.copytree(exported, partial)
    (partial / "vae_decoder.onnx").unlink()
    with pytest.raises(AnchorError, match=r"partial/vae_decoder\.onnx is missing"):
        _onnx(partial)
    with pytest.raises(AnchorError, match=r"face\.enabled"):
        model = _model(backend="onnxruntime", onnx_dir=exported)
        build_components(model, _sampler(), FaceConfig(size=64))


def test_gpu_providers_come_first_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu cannot be installed here: its provider list is substituted."""
    import onnxruntime

    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: gpu)
    assert choose_providers(None) == gpu
    assert choose_providers(["CUDAExecutionProvider"]) == ["CUDAExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: gpu[2:])
    assert choose_providers(None) == ["CPUExecutionProvider"]
    with pytest.raises(AnchorError, match=r"model\.onnx_providers: \['CUDAExecutionProvider'\]"):
        choose_providers(["CUDAExecutionProvider"])


def test_torch_backend_never_imports_onnxruntime() -> None:
    code = (
        "import sys\n"
        "from model.components import build_components\n"
        "from model.config import FaceConfig, ModelConfig, SamplerConfig\n"
        "build_components(ModelConfig(device='cpu'), SamplerConfig(), FaceConfig(enabled=False))\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_bench_onnx_reports_both_backends(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--set",
        "model.preset=tiny",
        "--set",
        "model.device=cpu",
        "bench",
        "onnx",
        "--json",
        "--latent-sizes",
        "2",
    ]
    assert main([*args, "--repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["onnxruntime_providers"] == ["CPUExecutionProvider"]
    rows = report["results"]
    assert [row["call"] for row in rows] == ["window", "guided predict"]
    assert all(row["torch_ms"] > 0 and row["onnxruntime_ms"] > 0 for row in rows)
    assert all(row["max_abs_diff"] <= TOLERANCE for row in rows)


def test_components_report_the_onnx_denoiser_and_torch_narrowing(exported: Path) -> None:
    """Torch-only tools refuse the onnxruntime denoiser by name, not with an AttributeError."""
    from bench.model import bench_model

    components = _onnx(exported)
    assert not isinstance(components.denoiser, SGDMDenoiser)
    assert components.image_size == 64 and components.face is None
    model = _model(backend="onnxruntime", onnx_dir=exported)
    with pytest.raises(AnchorError, match=r"model\.backend"):
        bench_model(model, (8,), 1)
