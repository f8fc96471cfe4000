"""``anchor bench distill``: a teacher bundle and its consistency student side by side on
the synthetic anchor's held-out split, in one run.

Body rows (face stage off, so the body model alone is compared): the teacher with DDIM at
``reference_steps`` (20) and its CFG scale (the paper's sampling), the teacher with DDIM
at each of ``steps`` (1, 2, 4) at the same scale, the student with LCM (at its strength) at each of
``steps`` without CFG (its guidance is baked in), and a control: the teacher's weights with
the student's LCM sampler. Face rows, when both bundles carry a
face model: the body is the student's at 2 steps in every face row, and the face stage is
the teacher's (DDIM, its CFG scale) at 20 and at ``steps``, or the student's (LCM).

Every row runs the live chain (``generate_streaming``) in mode ``exact`` (the paper's
Algorithm 1, equal to offline) with the bundle's windows and attention, and reports
SSIM/PSNR against the ground truth, SSIM against the reference row's frames (the teacher
at 20 steps), flicker (mean absolute change between consecutive frames, 0..1), SSIM of
the aligned face crops against the truth's, ms per committed frame on this machine, and
TFLOPs per frame of the same settings at SD1.5 / 512 px (``bench.flops``: with the face
stage off in body rows, and the student's 2-step body plus the row's face stage in face
rows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from bench.heldout import HeldOut, bundle_face, bundle_sampler, load_heldout, run_clip
from bench.train import psnr, ssim
from model.bundle import bundle_meta, load_bundle
from model.config import FaceConfig, SamplerConfig
from model.errors import AnchorError
from model.evaluation.pixels import flicker
from model.face_geometry import crop_faces
from model.video_io import to_uint8

if TYPE_CHECKING:
    from app.config import AppConfig

Part = Literal["body", "face"]
BODY_OF_FACE_ROWS = 2  # the student's body steps under every face row


def _row(
    model: str, part: Part, steps: int, guidance: float, scheduler: str, strength: float = 1.0
) -> dict[str, Any]:
    return {"model": model, "part": part, "steps": steps, "guidance_scale": guidance,
            "scheduler": scheduler, "lcm_strength": strength}  # fmt: skip


def plan_rows(
    teacher_guidance: float | None,
    teacher_face_guidance: float | None,
    strength: float = 1.0,
    face_strength: float = 1.0,
    steps: tuple[int, ...] = (1, 2, 4),
    reference_steps: int = 20,
) -> list[dict[str, Any]]:
    """The rows in order, per part: the reference (teacher, DDIM, ``reference_steps``), the
    teacher with DDIM at each of ``steps``, the student with LCM at its strength, and a
    control: the teacher's own weights with the student's sampler (LCM at that strength,
    no CFG: what distillation adds beyond the sampler). Body rows when ``teacher_guidance``
    is given, face rows when ``teacher_face_guidance`` is."""
    parts: list[tuple[Part, float, float]] = []
    if teacher_guidance is not None:
        parts.append(("body", teacher_guidance, strength))
    if teacher_face_guidance is not None:
        parts.append(("face", teacher_face_guidance, face_strength))
    rows = []
    for part, guidance, lcm_strength in parts:
        rows.append(_row("teacher", part, reference_steps, guidance, "ddim"))
        rows += [_row("teacher", part, n, guidance, "ddim") for n in steps]
        rows += [_row("student", part, n, 1.0, "lcm", lcm_strength) for n in steps]
        rows += [_row("teacher", part, n, 1.0, "lcm", lcm_strength) for n in steps]
    return rows


def bench_distill(
    config: AppConfig,
    teacher: Path,
    student: Path,
    heldout: Path,
    frames: int = 96,
    guidance_scale: float | None = None,
    face_guidance_scale: float | None = None,
    steps: tuple[int, ...] = (1, 2, 4),
    reference_steps: int = 20,
) -> dict[str, Any]:
    """The side-by-side table (module docstring). guidance_scale: the teacher's CFG scale
    (default: the one the student was distilled with, from its ``bundle.json``)."""
    teacher_meta, student_meta = bundle_meta(teacher), bundle_meta(student)
    distilled = student_meta.get("distilled")
    face_distilled = student_meta.get("face", {}).get("distilled")
    if distilled is None and face_distilled is None:
        raise AnchorError(f"--student {student}: bundle.json names no distilled part (distilled)")
    body_guidance = None
    if distilled is not None:
        body_guidance = float(guidance_scale or distilled.get("guidance_scale_baked", 1.0))
    base = bundle_sampler(teacher_meta, config.sampler).model_copy(update={"mode": "exact"})
    attention = teacher_meta.get("attention", "per-frame")
    model = config.model.model_copy(update={"attention": attention})
    teacher_face = bundle_face(teacher, teacher_meta, config.face)
    student_face = bundle_face(student, student_meta, config.face)
    face_rows = teacher_face is not None and student_face is not None and face_distilled is not None
    face_guidance = None
    if face_rows:
        assert teacher_face is not None
        face_guidance = float(
            face_guidance_scale
            or (face_distilled or {}).get("guidance_scale_baked", teacher_face.guidance_scale)
        )
    rows = plan_rows(
        body_guidance,
        face_guidance,
        float(student_meta.get("lcm_strength", 1.0)),
        float(student_meta.get("face", {}).get("lcm_strength", 1.0)),
        steps,
        reference_steps,
    )
    if not rows:
        raise AnchorError(
            f"--teacher {teacher}: no face model (head/) to compare the student's face with"
        )
    face_size = teacher_face.size if teacher_face is not None else int(config.face.size)
    clip: HeldOut | None = None
    reference: dict[Part, torch.Tensor] = {}
    from bench.flops import network_costs, preset_config, sd15_networks

    counted = preset_config("quality", config)
    # Every row shares the windows and attention: one count of the networks serves them all.
    costs = network_costs(sd15_networks(counted.face.size), counted.face.size,
                          base.window_size, counted.model.attention)  # fmt: skip
    truth: _Truth | None = None
    for row in rows:
        body = _body_sampler(base, row, student_meta)
        face: FaceConfig | None = None
        if row["part"] == "face":
            face = _face_config(teacher_face if row["model"] == "teacher" else student_face, row)
        folder = student if row["model"] == "student" or row["part"] == "face" else teacher
        components = load_bundle(folder, model, body, face=None)
        if face is not None:
            face_folder = teacher if row["model"] == "teacher" else student
            enhancer = load_bundle(face_folder, model, body, face=face).face
            components = replace(components, face=enhancer)
        if clip is None or truth is None:
            clip = load_heldout(heldout, components.image_size, face_size, frames)
            truth = _Truth(crop_faces(clip.targets, clip.face_matrices, face_size),
                           round(flicker(to_uint8(clip.targets)), 5))  # fmt: skip
        images, fps = run_clip(clip.conditions, components, body, face)
        if (row["model"], row["scheduler"], row["steps"]) == ("teacher", "ddim", reference_steps):
            reference[row["part"]] = images
        row.update(_scores(images, clip, truth, reference[row["part"]], face_size))
        row["ms_per_frame"] = round(1000.0 / fps, 2)
        row["tflops_per_frame_512"] = _tflops_512(counted, costs, body, face)
    assert clip is not None
    return {
        "teacher": str(teacher),
        "student": str(student),
        "heldout": str(heldout),
        "frames": len(clip.conditions),
        "size": int(clip.targets.shape[-1]),
        "mode": "exact",
        "window_size": base.window_size,
        "overlap": base.overlap,
        "attention": model.attention,
        "threads": torch.get_num_threads(),
        "distilled": distilled,
        "face_distilled": face_distilled,
        "rows": rows,
    }


def _body_sampler(
    base: SamplerConfig, row: dict[str, Any], student_meta: dict[str, Any]
) -> SamplerConfig:
    """The body sampler of a row: its own for body rows, the student's 2 LCM steps under
    face rows."""
    if row["part"] == "face":
        return base.model_copy(
            update={"steps": BODY_OF_FACE_ROWS, "scheduler": "lcm", "guidance_scale": 1.0,
                    "lcm_strength": float(student_meta.get("lcm_strength", 1.0))}
        )  # fmt: skip
    return base.model_copy(
        update={"steps": row["steps"], "scheduler": row["scheduler"],
                "guidance_scale": row["guidance_scale"], "lcm_strength": row["lcm_strength"]}
    )  # fmt: skip


def _face_config(face: FaceConfig | None, row: dict[str, Any]) -> FaceConfig:
    assert face is not None
    return face.model_copy(
        update={"steps": row["steps"], "scheduler": row["scheduler"],
                "guidance_scale": row["guidance_scale"], "lcm_strength": row["lcm_strength"],
                "enabled": True}
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Truth:
    """What every row is scored against, computed once: the truth's aligned face crops and
    its own flicker."""

    face_crops: torch.Tensor
    flicker: float


def _scores(
    images: torch.Tensor, clip: HeldOut, truth: _Truth, reference: torch.Tensor, face_size: int
) -> dict[str, float]:
    crops = crop_faces(images, clip.face_matrices, face_size)
    video: np.ndarray = to_uint8(images)
    return {
        "ssim_gt": round(ssim(images, clip.targets), 4),
        "psnr_gt": round(psnr(images, clip.targets), 2),
        "ssim_vs_teacher20": round(ssim(images, reference), 4),
        "flicker": round(flicker(video), 5),
        "flicker_gt": truth.flicker,
        "face_ssim": round(ssim(crops, truth.face_crops), 4),
    }


def _tflops_512(
    counted: AppConfig, costs: dict[str, float], body: SamplerConfig, face: FaceConfig | None
) -> float:
    """TFLOPs per frame at SD1.5 / 512 (``counted``: the quality preset's architecture,
    ``costs``: its networks' per-evaluation counts) of a row's sampler and face settings."""
    from bench.flops import frame_stages

    sampler = counted.sampler.model_copy(
        update={"steps": body.steps, "guidance_scale": body.guidance_scale,
                "window_size": body.window_size, "overlap": body.overlap}
    )  # fmt: skip
    face_section = counted.face.model_copy(update={"enabled": False})
    if face is not None:
        face_section = counted.face.model_copy(
            update={"enabled": True, "steps": face.steps, "guidance_scale": face.guidance_scale}
        )
    config = counted.model_copy(update={"sampler": sampler, "face": face_section})
    return round(sum(frame_stages(config, costs).values()) / 1e12, 3)


COLUMNS = ("ssim_gt", "psnr_gt", "ssim_vs_teacher20", "flicker", "face_ssim", "ms_per_frame",
           "tflops_per_frame_512")  # fmt: skip


def format_report(report: dict[str, Any]) -> str:
    """The table as text."""
    lines = [
        f"teacher {report['teacher']}  student {report['student']}",
        f"{report['frames']} held-out frames at {report['size']} px, mode exact, ws/os "
        f"{report['window_size']}/{report['overlap']}, {report['threads']} thread(s)",
        f"{'part':5} {'model':8} {'sampler':8} {'steps':>5} {'cfg':>4} "
        + " ".join(f"{c:>18}" for c in COLUMNS),
    ]
    for row in report["rows"]:
        lines.append(
            f"{row['part']:5} {row['model']:8} {row['scheduler']:8} {row['steps']:>5} "
            f"{row['guidance_scale']:>4.1f} " + " ".join(f"{row[c]:>18}" for c in COLUMNS)
        )
    return "\n".join(lines)
