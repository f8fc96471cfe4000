"""``anchor bench quality``: the demo model against ground truth, in the paper's tables.

The synthetic anchor gives ground truth for any motion, so the held-out split measures
what the paper's Tables 1 and 2 measure (here with the committed demo bundle):

- Table 1 rows: the full system (batch-overlapped temporal denoising = all-frame attention
  over ws/os windows, exact streaming, face enhancement); without temporal denoising
  (frame-wise: per-frame attention, windows that do not overlap); without face
  enhancement;
- Table 2 rows: ws/os 8/2, 16/4 (the full system), 32/8;
- the streaming rows this product adds: ``low`` mode instead of ``exact``, the face stage
  through the window sampler (``face_temporal``), and the live demo's own settings;
- ``detected faces``: the full system with the face geometry found by the face detector
  on the condition renders (as for a condition-image folder) instead of the dataset's mesh
  geometry; its ``face_detection_rate`` is the share of frames where a face was found
  (None on the mesh rows).

Each row runs the live chain (``generate_streaming``: sampler, decode, face stage) and
scores it with ``model.evaluation.Evaluator``: SSIM, PSNR, L1 and flicker always; LPIPS,
FID, FVD and LMD when ``[eval]`` names their local networks (else listed as skipped); and
SSIM/PSNR of the aligned face crops, where the face stage acts.
The paper's training ablations (two-stage settings, perturbation) need retraining and
are not rows here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bench.heldout import (
    HeldOut,
    bundle_face,
    bundle_sampler,
    load_heldout,
    run_clip,
)
from model.bundle import bundle_meta, load_bundle
from model.config import FaceConfig
from model.errors import AnchorError
from model.evaluation.pixels import psnr, ssim
from model.face_geometry import crop_faces
from model.training.data import _image
from model.training.dataset import load_dataset, read_png
from model.video_io import to_uint8
from streaming.frames import ConditionFrame

if TYPE_CHECKING:
    from app.config import AppConfig


@dataclass(frozen=True, slots=True)
class Variant:
    """One row: a name, the table it reproduces, sampler/model/face overrides."""

    name: str
    table: str
    sampler: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    face: dict[str, Any] = field(default_factory=dict)
    # Face geometry from the face detector on the condition renders, not the mesh.
    detector: bool = False


FULL = {"mode": "exact", "window_size": 16, "overlap": 4}
VARIANTS = (
    Variant("full", "1", FULL, {"attention": "all-frame"}),
    Variant("w/o TD", "1", FULL | {"overlap": 0}, {"attention": "per-frame"}),
    Variant("w/o FE", "1", FULL, {"attention": "all-frame"}, {"enabled": False}),
    Variant("ws8/os2", "2", FULL | {"window_size": 8, "overlap": 2}, {"attention": "all-frame"}),
    Variant("ws32/os8", "2", FULL | {"window_size": 32, "overlap": 8}, {"attention": "all-frame"}),
    Variant("low mode", "streaming", FULL | {"mode": "low"}, {"attention": "all-frame"}),
    Variant(
        "face_temporal", "streaming", FULL, {"attention": "all-frame"}, {"face_temporal": True}
    ),
    Variant("live demo", "streaming", {"mode": "low"}, {}),
    Variant("detected faces", "streaming", FULL, {"attention": "all-frame"}, detector=True),
)


def heldout_folder(heldout: Path | None) -> Path:
    folder = heldout or Path(".cache/demo-data/heldout")
    if not (folder / "manifest.jsonl").is_file():
        from model.errors import AnchorError

        raise AnchorError(
            f"--heldout {folder}: no held-out synthetic dataset; make it with `anchor "
            "synth-dataset --out .cache/demo-data --seconds 40 --heldout-seconds 8 --size 128 "
            "--face-size 64 --seed 0` (the demo model's data, README 'Training')"
        )
    return folder


def bench_quality(
    config: AppConfig,
    bundle: Path,
    heldout: Path | None,
    frames: int,
    names: list[str] | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Every variant (or those in ``names``) on ``frames`` held-out frames; a report.

    steps: DDIM steps of every row (default: the bundle's own)."""
    from model.evaluation.evaluate import Evaluator, json_safe

    variants = [v for v in VARIANTS if names is None or v.name in names]
    if names is not None and len(variants) != len(names):
        known = ", ".join(v.name for v in VARIANTS)
        raise AnchorError(
            f"--variants: unknown {sorted(set(names) - {v.name for v in variants})}"
            f"; choose from {known}"
        )
    folder = heldout_folder(heldout)
    meta = bundle_meta(bundle)
    base_sampler = bundle_sampler(meta, config.sampler)
    if steps is not None:
        base_sampler = base_sampler.model_copy(update={"steps": steps})
    base_model = config.model.model_copy(
        update={"attention": meta.get("attention", "per-frame"), "checkpoint_path": bundle}
    )
    base_face = bundle_face(bundle, meta, config.face)
    face_size = base_face.size if base_face is not None else None
    evaluator = Evaluator(config.eval, config.render)
    rows = []
    clip = None
    for variant in variants:
        sampler = base_sampler.model_copy(update=variant.sampler)
        model = base_model.model_copy(update=variant.model)
        face = base_face.model_copy(update=variant.face) if base_face is not None else None
        if face is not None and not face.enabled:
            face = None
        if (variant.face or variant.detector) and base_face is None:
            continue  # a face row without a face model
        components = load_bundle(bundle, model, sampler, face=face)
        if clip is None:
            clip = load_heldout(folder, components.image_size, face_size, frames)
        conditions, detection_rate = clip.conditions, None
        if variant.detector and face is not None:
            conditions, detection_rate = detected_conditions(folder, clip, face)
        started = time.perf_counter()
        images, _ = run_clip(conditions, components, sampler, face)
        elapsed = time.perf_counter() - started
        report = evaluator.evaluate(to_uint8(images), to_uint8(clip.targets), motion=clip.motion)
        if face_size is not None:
            report["metrics"].update(face_crop_scores(images, clip, face_size))
        rows.append(
            {
                "variant": variant.name,
                "table": variant.table,
                "mode": sampler.mode,
                "attention": model.attention,
                "window_size": sampler.window_size,
                "overlap": sampler.overlap,
                "face": face is not None,
                "face_temporal": bool(face is not None and face.face_temporal),
                "face_detection_rate": detection_rate,
                "ms_per_frame": round(1000.0 * elapsed / len(clip.conditions), 1),
                "metrics": json_safe(report["metrics"]),
                "skipped": report["skipped"],
            }
        )
    return {
        "bundle": str(bundle),
        "heldout": str(folder),
        "frames": len(clip.conditions) if clip is not None else 0,
        "steps": base_sampler.steps,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def detected_conditions(
    folder: Path, clip: HeldOut, face: FaceConfig
) -> tuple[list[ConditionFrame], float]:
    """The clip's condition frames with face geometry from the face detector run on the
    stored condition renders (``streaming.face_tracking``, as ``anchor generate
    CONDITION_DIR`` does), and the share of frames where it found a face."""
    from streaming.face_tracking import detected_face_geometries

    header, entries = load_dataset(folder)
    stored = entries[: len(clip.conditions)]
    renders = torch.stack([_image(read_png(folder / e.condition), header.size) for e in stored])
    geometries, track = detected_face_geometries(renders, face)
    conditions = [
        replace(frame, face=geometry)
        for frame, geometry in zip(clip.conditions, geometries, strict=True)
    ]
    return conditions, track.detection_rate


def face_crop_scores(images: torch.Tensor, clip: HeldOut, size: int) -> dict[str, float]:
    """SSIM/PSNR of the aligned face crops of ``images`` against the truth's: where the
    face stage acts (whole-frame figures hardly see it)."""
    crops = to_uint8(crop_faces(images, clip.face_matrices, size))
    truth = to_uint8(crop_faces(clip.targets, clip.face_matrices, size))
    return {"face_ssim": ssim(crops, truth), "face_psnr": psnr(crops, truth)}


COLUMNS = (
    "ssim",
    "psnr",
    "face_ssim",
    "face_psnr",
    "l1",
    "flicker_difference",
    "lpips",
    "fid",
    "fvd",
    "lmd_face",
    "lmd_body",
    "lmd_hands",
)


def format_report(report: dict[str, Any]) -> str:
    """The rows as a text table (metrics that were not computed are left out)."""
    present = [
        c for c in COLUMNS if any(row["metrics"].get(c) is not None for row in report["rows"])
    ]
    header = ["variant", "table", "mode", "attn", "ws/os", "face", "ms/frame", *present]
    lines = [
        f"demo bundle {report['bundle']} on {report['frames']} held-out frames "
        f"({report['steps']} steps, {report['threads']} threads)",
        " | ".join(header),
    ]
    for row in report["rows"]:
        face = "temporal" if row["face_temporal"] else ("on" if row["face"] else "off")
        cells = [
            row["variant"],
            row["table"],
            row["mode"],
            row["attention"],
            f"{row['window_size']}/{row['overlap']}",
            face,
            f"{row['ms_per_frame']:.1f}",
        ]
        for column in present:
            value = row["metrics"].get(column)
            cells.append("-" if value is None else f"{value:.4g}")
        lines.append(" | ".join(cells))
    for row in report["rows"]:
        if row.get("face_detection_rate") is not None:
            lines.append(
                f"{row['variant']}: faces detected on {100 * row['face_detection_rate']:.0f}% "
                "of the condition renders"
            )
    skipped = {name for row in report["rows"] for name in row["skipped"]}
    if skipped:
        reasons = report["rows"][0]["skipped"]
        lines.append(
            "not computed: " + "; ".join(f"{n} ({reasons.get(n, '')})" for n in sorted(skipped))
        )
    return "\n".join(lines)
