"""The on-disk training dataset shared by ``anchor prepare`` and ``anchor synth-dataset``.

Layout of a dataset folder ``D``::

    D/dataset.json            header: size, fps, face size, source, crop, perturbations, split
    D/manifest.jsonl          one JSON line per finished frame (written last: resumable)
    D/frames/%06d.png         target frames, size x size RGB
    D/conditions/%06d.png     SHOW-style mesh renders of the same frames (ControlNet input)
    D/perturbed/K/%06d.png    renders of randomly perturbed SMPL-X parameters (augmentation)
    D/faces/%06d.png          FFHQ-aligned face crops of the frame, face_size x face_size
    D/face_conditions/%06d.png  the same crops of the mesh render
    D/face_masks/%06d.png     inpainting masks, official convention: 255 = keep, 0 = face
    D/foreground/%06d.png     optional foreground masks (255 = person), for stage-1 data

A manifest line names every file of its frame relative to ``D``, the frame's face
alignment matrix and its reference candidates (frames of the same clip at least
``REFERENCE_MIN_GAP`` frames away, drawn with a seeded generator).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from model.errors import AnchorError

MANIFEST = "manifest.jsonl"
HEADER = "dataset.json"
DATASET_VERSION = 1
REFERENCE_COUNT = 8
REFERENCE_MIN_GAP = 15  # frames (half a second at 30 fps): references show another pose


@dataclass(slots=True)
class DatasetHeader:
    """``dataset.json``: what every frame of the dataset shares."""

    size: int
    fps: float
    face_size: int
    frame_count: int
    source: str
    motion: str
    crop: tuple[int, int, int] | None = None  # x, y, size in source pixels
    perturbations: int = 0
    perturbation_std: float = 0.0
    foreground: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = DATASET_VERSION

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / HEADER, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> DatasetHeader:
        path = folder / HEADER
        if not path.is_file():
            raise AnchorError(f"dataset {folder}: {HEADER} not found (run anchor prepare first)")
        try:
            data = json.loads(path.read_text())
            if data.get("crop") is not None:
                data["crop"] = tuple(data["crop"])
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as err:
            raise AnchorError(f"dataset {folder}: unreadable {HEADER} ({err})") from err


@dataclass(slots=True)
class ManifestEntry:
    """One frame of a dataset (paths relative to the dataset folder)."""

    index: int
    frame: str
    condition: str
    perturbed: list[str]
    face: str
    face_condition: str
    face_mask: str
    face_matrix: list[list[float]]  # (2, 3) frame pixels -> face crop pixels
    references: list[int]
    foreground: str | None = None


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


def entry_paths(index: int, perturbations: int, foreground: bool) -> dict[str, Any]:
    """The relative paths of frame ``index``'s files."""
    name = frame_name(index)
    return {
        "frame": f"frames/{name}",
        "condition": f"conditions/{name}",
        "perturbed": [f"perturbed/{k}/{name}" for k in range(perturbations)],
        "face": f"faces/{name}",
        "face_condition": f"face_conditions/{name}",
        "face_mask": f"face_masks/{name}",
        "foreground": f"foreground/{name}" if foreground else None,
    }


def atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def write_png(path: Path, array: NDArray[np.uint8]) -> None:
    """Writes an (H, W, 3) or (H, W) uint8 PNG atomically (a killed run leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(array).save(temporary, format="PNG")
    temporary.replace(path)


def read_png(path: Path) -> NDArray[np.uint8]:
    """A PNG as (H, W, 3) uint8 RGB or (H, W) uint8 for single-channel files."""
    try:
        with Image.open(path) as image:
            mode = "L" if image.mode in ("L", "1", "I;16") else "RGB"
            return np.asarray(image.convert(mode), dtype=np.uint8).copy()
    except FileNotFoundError as err:
        raise AnchorError(f"dataset file not found: {path}") from err
    except OSError as err:
        raise AnchorError(f"cannot read {path}: {err}") from err


def reference_candidates(index: int, count: int, seed: int) -> list[int]:
    """Up to ``REFERENCE_COUNT`` frames of the clip at least ``REFERENCE_MIN_GAP`` away
    from ``index`` (all other frames when the clip is too short), seeded per frame."""
    far = [i for i in range(count) if abs(i - index) >= REFERENCE_MIN_GAP]
    pool = far or [i for i in range(count) if i != index] or [index]
    generator = np.random.default_rng([seed, index])
    chosen = generator.choice(len(pool), size=min(REFERENCE_COUNT, len(pool)), replace=False)
    return sorted(int(pool[i]) for i in chosen)


def read_manifest(folder: Path) -> list[ManifestEntry]:
    """The finished frames of a dataset, in index order; a malformed line is an error
    naming its line number."""
    path = folder / MANIFEST
    if not path.is_file():
        return []
    entries: dict[int, ManifestEntry] = {}
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = ManifestEntry(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as err:
                raise AnchorError(
                    f"{path} line {number}: malformed manifest entry ({err})"
                ) from err
            entries[entry.index] = entry
    return [entries[index] for index in sorted(entries)]


def append_manifest(folder: Path, entry: ManifestEntry) -> None:
    """Appends one finished frame (one line, flushed): a killed run keeps what it finished."""
    with open(folder / MANIFEST, "a") as handle:
        handle.write(json.dumps(asdict(entry)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_dataset(folder: Path) -> tuple[DatasetHeader, list[ManifestEntry]]:
    """Header and entries of a complete dataset; a missing frame file is an error naming it."""
    if not folder.is_dir():
        raise AnchorError(f"--data {folder}: no such dataset folder")
    header = DatasetHeader.read(folder)
    entries = read_manifest(folder)
    if not entries:
        raise AnchorError(f"dataset {folder}: {MANIFEST} has no frames")
    if len(entries) != header.frame_count:
        raise AnchorError(
            f"dataset {folder}: manifest has {len(entries)} frames, {HEADER} says "
            f"{header.frame_count} (an unfinished anchor prepare? run it again to resume)"
        )
    for entry in entries:
        for relative in (entry.frame, entry.condition, *entry.perturbed):
            if not (folder / relative).is_file():
                raise AnchorError(f"dataset {folder}: frame {entry.index}: {relative} missing")
    return header, entries


def iter_existing(folder: Path) -> Iterator[int]:
    """Indices of the frames whose manifest line exists and whose files are all present."""
    for entry in read_manifest(folder):
        files = [entry.frame, entry.condition, *entry.perturbed, entry.face,
                 entry.face_condition, entry.face_mask]  # fmt: skip
        if entry.foreground:
            files.append(entry.foreground)
        if all((folder / relative).is_file() for relative in files):
            yield entry.index
