"""Training samples read from prepared datasets, indexed by their global position.

Every random choice of a sample (which frame, which reference, clean or perturbed
condition, condition dropout) is drawn from a generator seeded by (seed, position), and
the frame order is a per-epoch permutation seeded by (seed, epoch). Resuming at step s
therefore sees exactly the samples an uninterrupted run sees, with no loader state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from model.errors import AnchorError
from model.training.dataset import DatasetHeader, ManifestEntry, load_dataset, read_png

SampleKind = Literal["body", "face", "vae"]


@dataclass(slots=True)
class _Frame:
    folder: Path
    header: DatasetHeader
    entry: ManifestEntry
    clip_entries: list[ManifestEntry]


def _image(array: NDArray[np.uint8], size: int) -> torch.Tensor:
    """(H, W, 3) or (H, W) uint8 -> (C, size, size) float32 in [0, 1] (area-resized)."""
    tensor = torch.from_numpy(array).float() / 255.0
    tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor[None]
    if tensor.shape[-1] != size:
        mode = "area" if tensor.shape[-1] > size else "bilinear"
        tensor = F.interpolate(tensor[None], size=(size, size), mode=mode)[0]
    return tensor.contiguous()


class TrainingSamples(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Samples of one or more datasets for the body (or face, or autoencoder) model.

    Body sample: ``target``, ``condition``, ``reference`` (3, S, S) float32 [0, 1] and
    ``drop`` () bool (use the null embedding). Face: the same from the face crops plus
    ``mask`` (1, S, S) (1 = keep). VAE: ``target`` only (the face crops with
    ``faces``: the face model's autoencoder).
    """

    def __init__(
        self,
        folders: Sequence[Path],
        kind: SampleKind,
        size: int | None,
        seed: int,
        condition_dropout: float,
        perturbation_probability: float,
        foreground_only: bool = False,
        faces: bool = False,
    ) -> None:
        if not folders:
            raise AnchorError("--data: at least one dataset folder is required")
        self.kind, self.seed = kind, seed
        self.faces = faces or kind == "face"
        self.condition_dropout = condition_dropout
        self.perturbation_probability = perturbation_probability
        self.frames: list[_Frame] = []
        sizes = set()
        for folder in folders:
            header, entries = load_dataset(folder)
            sizes.add(header.face_size if self.faces else header.size)
            use_foreground = foreground_only and header.foreground
            if use_foreground and entries[0].foreground is None:
                raise AnchorError(f"dataset {folder}: header says foreground, manifest has none")
            self.frames.extend(_Frame(folder, header, entry, entries) for entry in entries)
        self.foreground_only = foreground_only
        self.size = size or max(sizes)

    def __len__(self) -> int:
        return len(self.frames)

    def frame_at(self, position: int) -> int:
        """The frame a global position trains on: epoch-wise seeded permutations."""
        epoch, offset = divmod(position, len(self.frames))
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.frames))
        return int(order[offset])

    def _read(self, frame: _Frame, entry: ManifestEntry, name: str) -> torch.Tensor:
        image = _image(read_png(frame.folder / getattr(entry, name)), self.size)
        if name == "frame" and self.foreground_only and entry.foreground is not None:
            image = image * _image(read_png(frame.folder / entry.foreground), self.size)
        return image

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        frame = self.frames[self.frame_at(position)]
        entry = frame.entry
        generator = np.random.default_rng([self.seed, position])
        if self.kind == "vae":
            return {"target": self._read(frame, entry, "face" if self.faces else "frame")}
        references = entry.references or [entry.index]
        reference = frame.clip_entries[int(generator.choice(references))]
        perturbed = bool(entry.perturbed) and generator.random() < self.perturbation_probability
        drop = torch.tensor(generator.random() < self.condition_dropout)
        if self.kind == "face":
            return {
                "target": self._read(frame, entry, "face"),
                "condition": self._read(frame, entry, "face_condition"),
                "mask": self._read(frame, entry, "face_mask"),
                "reference": self._read(frame, reference, "face"),
                "drop": drop,
            }
        if perturbed:
            variant = entry.perturbed[int(generator.integers(len(entry.perturbed)))]
            condition = _image(read_png(frame.folder / variant), self.size)
        else:
            condition = self._read(frame, entry, "condition")
        return {
            "target": self._read(frame, entry, "frame"),
            "condition": condition,
            "reference": self._read(frame, reference, "frame"),
            "drop": drop,
        }


class StepBatches(torch.utils.data.Sampler[list[int]]):
    """Global positions of each step's batch for one process, from ``start`` to ``stop``.

    Step s, process p of P, batch B: positions ``(s * P + p) * B + k``, k < B.
    """

    def __init__(self, start: int, stop: int, batch: int, processes: int, process: int) -> None:
        self.start, self.stop, self.batch = start, stop, batch
        self.processes, self.process = processes, process

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            first = (step * self.processes + self.process) * self.batch
            yield list(range(first, first + self.batch))
