"""A synthetic SMPL-X model file: a plausible mannequin with the real keys and shapes.

The real SMPL-X files are licence-restricted, so tests and the demo generate this
stand-in instead (deterministically, in about a second, into a cache folder; it is
never committed). It has the real layout: 10475 vertices, ``shapedirs (V, 3, 400)``
(300 shape + 100 expression components, so smplx does not fall back to 10),
``posedirs (V, 3, 486)``, ``J_regressor (55, V)``, ``weights (V, 55)``, the real
55-joint ``kintree_table``, hand PCA components and means, and the 51 static face
landmarks. The body is built from ellipsoids, each rigidly skinned to one joint of
the real tree, so a pose moves the right parts: the jaw opens the mouth, the finger
joints curl the fingers, the eyes turn. The vertex ids that the smplx package hard-codes
(nose, eyes, ears, finger tips, toes, heels) are placed where their names say.

Coordinates follow SMPL-X: metres, y up, the person faces +z, their left is +x.
The layout is model/smplx_layout.py, the mannequin's geometry model/standin_body.py.
Only numpy and scipy are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import nnls

from model.smplx_layout import (
    JOINT,
    NUM_EXPRESSION,
    NUM_JOINTS,
    NUM_POSE_BASIS,
    NUM_SHAPE,
    NUM_VERTICES,
    PARENTS,
    SMPLX_VERTEX_IDS,
)
from model.standin_body import build_parts, joint_positions, landmark_targets

# Bump when the generated geometry changes, so a stale cached stand-in is not reused.
STANDIN_VERSION = 2
FloatArray = NDArray[np.float32]


def _special_vertices(vertices: NDArray[np.float64], parts: dict[str, slice]) -> dict[str, int]:
    """Our vertex index for each name smplx hard-codes."""

    def extreme(part: str, score: NDArray[np.float64]) -> int:
        span = parts[part]
        return int(span.start + np.argmax(score[span]))

    x, z = vertices[:, 0], vertices[:, 2]
    special = {
        "nose": extreme("nose", z),
        "leye": extreme("left_eye", z),
        "reye": extreme("right_eye", z),
        "lear": extreme("left_ear", x),
        "rear": extreme("right_ear", -x),
        "LHeel": extreme("left_foot", -z),
        "RHeel": extreme("right_foot", -z),
        "LBigToe": extreme("left_toes", z - 0.5 * x),
        "LSmallToe": extreme("left_toes", z + 0.5 * x),
        "RBigToe": extreme("right_toes", z + 0.5 * x),
        "RSmallToe": extreme("right_toes", z - 0.5 * x),
    }
    for side, prefix in (("left", "l"), ("right", "r")):
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            span = parts[f"{side}_{finger}3"]
            local = vertices[span]
            base = local.mean(axis=0)
            # The tip is the vertex furthest along the segment from its centre.
            distances = np.linalg.norm(local - base, axis=1)
            special[f"{prefix}{finger}"] = int(span.start + np.argmax(distances))
    return special


@dataclass
class StandinModel:
    """The arrays of a SMPL-X model file (keys as in ``SMPLX_<GENDER>.npz``)."""

    arrays: dict[str, np.ndarray]
    # Vertex ids of each named part (after the reordering that places smplx's ids).
    part_indices: dict[str, NDArray[np.int64]]


def build_standin() -> StandinModel:
    """Builds the stand-in arrays (deterministic; no randomness beyond a fixed seed)."""
    joints = joint_positions()
    builder = build_parts(joints)
    vertices_list, faces_list, owners = [], [], []
    part_slices: dict[str, slice] = {}
    offset = 0
    for part in builder.parts:
        vertices_list.append(part.vertices)
        faces_list.append(part.faces + offset)
        owners.append(np.full(len(part.vertices), part.joint))
        part_slices[part.name] = slice(offset, offset + len(part.vertices))
        offset += len(part.vertices)
    if offset > NUM_VERTICES:
        raise ValueError(f"stand-in has {offset} vertices, more than {NUM_VERTICES}")
    # Unreferenced filler vertices sit at the chest joint, skinned to it, so that the
    # vertex count is the real one without changing what is drawn.
    filler = NUM_VERTICES - offset
    vertices_list.append(np.repeat(joints[JOINT["spine3"]][None], filler, axis=0))
    owners.append(np.full(filler, JOINT["spine3"]))
    vertices = np.concatenate(vertices_list)
    faces = np.concatenate(faces_list)
    owner = np.concatenate(owners)

    order = _vertex_order(_special_vertices(vertices, part_slices), len(vertices))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    vertices, owner, faces = vertices[order], owner[order], inverse[faces]
    part_indices = {name: inverse[np.arange(s.start, s.stop)] for name, s in part_slices.items()}

    weights = np.zeros((NUM_VERTICES, NUM_JOINTS), dtype=np.float32)
    weights[np.arange(NUM_VERTICES), owner] = 1.0
    arrays: dict[str, np.ndarray] = {
        "v_template": vertices.astype(np.float32),
        "f": faces.astype(np.int32),
        "J_regressor": _joint_regressor(vertices, faces, joints),
        "weights": weights,
        "kintree_table": np.stack([np.asarray(PARENTS), np.arange(NUM_JOINTS)]).astype(np.int64),
        "shapedirs": _shape_directions(vertices, part_indices),
        "posedirs": np.zeros((NUM_VERTICES, 3, NUM_POSE_BASIS), dtype=np.float32),
    }
    arrays.update(_hand_arrays())
    arrays.update(_landmark_arrays(vertices, faces, owner, joints))
    return StandinModel(arrays, part_indices)


def _vertex_order(special: dict[str, int], count: int) -> NDArray[np.int64]:
    """A permutation putting each special vertex at the id smplx expects for it."""
    order = np.full(count, -1, dtype=np.int64)
    taken = np.zeros(count, dtype=bool)
    for name, target in SMPLX_VERTEX_IDS.items():
        order[target] = special[name]
        taken[special[name]] = True
    rest = iter(np.flatnonzero(~taken))
    for slot in np.flatnonzero(order < 0):
        order[slot] = next(rest)
    return order


def _joint_regressor(
    vertices: NDArray[np.float64], faces: NDArray[np.int64], joints: NDArray[np.float64]
) -> FloatArray:
    """Sparse non-negative rows (summing to one) whose vertex average is each joint."""
    used = np.unique(faces)
    regressor = np.zeros((NUM_JOINTS, NUM_VERTICES), dtype=np.float64)
    for joint_index, joint in enumerate(joints):
        distances = np.linalg.norm(vertices[used] - joint, axis=1)
        for count in (24, 64, 160):
            nearest = used[np.argsort(distances)[:count]]
            system = np.vstack([vertices[nearest].T, 10.0 * np.ones(count)])
            target = np.concatenate([joint, [10.0]])
            solution, residual = nnls(system, target)
            if residual < 1e-4:
                break
        regressor[joint_index, nearest] = solution / solution.sum()
    return regressor.astype(np.float32)


def _shape_directions(
    vertices: NDArray[np.float64], parts: dict[str, NDArray[np.int64]]
) -> FloatArray:
    """300 shape + 100 expression directions; the first few are meaningful, the rest zero."""
    directions = np.zeros((NUM_VERTICES, 3, NUM_SHAPE + NUM_EXPRESSION), dtype=np.float64)
    centre = np.array([0.0, -0.35, 0.0])
    directions[:, :, 0] = 0.04 * (vertices - centre)  # overall size
    directions[:, 0, 1] = 0.06 * vertices[:, 0]  # width
    torso = np.concatenate([parts[name] for name in ("pelvis", "abdomen", "belly", "chest")])
    directions[torso, 2, 2] = 0.1 * vertices[torso, 2]  # depth of the torso
    expression = NUM_SHAPE
    mouth_jaw = np.concatenate([parts["lower_lip"], parts["chin"]])
    directions[mouth_jaw, 1, expression] = -0.006  # mouth opens
    lips = np.concatenate([parts["lower_lip"], parts["upper_lip"]])
    smile = np.clip(np.abs(vertices[lips, 0]) / 0.026, 0.0, 1.0) ** 2
    directions[lips, 1, expression + 1] = 0.004 * smile  # corners up
    directions[lips, 0, expression + 1] = 0.003 * smile * np.sign(vertices[lips, 0])
    brows = np.concatenate([parts["left_brow"], parts["right_brow"]])
    directions[brows, 1, expression + 2] = 0.005  # brows raise
    return directions.astype(np.float32)


def _hand_arrays() -> dict[str, np.ndarray]:
    """PCA bases (orthonormal) and relaxed-hand means curling the fingers slightly."""
    generator = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {}
    for suffix, sign in (("l", -1.0), ("r", 1.0)):
        basis, _ = np.linalg.qr(generator.standard_normal((45, 45)))
        mean = np.zeros((15, 3))
        # Curling towards the palm is a rotation about z: negative for the left hand
        # (fingers along +x, palm down), positive for the right.
        mean[:12, 2] = sign * 0.15
        mean[12:, 1] = sign * 0.1
        arrays[f"hands_components{suffix}"] = basis.T.astype(np.float32)
        arrays[f"hands_mean{suffix}"] = mean.ravel().astype(np.float32)
    return arrays


def _landmark_arrays(
    vertices: NDArray[np.float64],
    faces: NDArray[np.int64],
    owner: NDArray[np.int64],
    joints: NDArray[np.float64],
) -> dict[str, np.ndarray]:
    """``lmk_faces_idx (51,)`` and ``lmk_bary_coords (51, 3)`` on the right face parts."""
    face_owner = owner[faces[:, 0]]
    uniform = (owner[faces] == face_owner[:, None]).all(axis=1)
    centroids = vertices[faces].mean(axis=1)
    groups = {
        "head": uniform & (face_owner == JOINT["head"]),
        "jaw": uniform & (face_owner == JOINT["jaw"]),
        "corner": uniform & np.isin(face_owner, (JOINT["head"], JOINT["jaw"])),
    }
    face_indices, bary = [], []
    for target, group in landmark_targets(joints):
        candidates = np.flatnonzero(groups[group])
        # Nearest face to the target seen from the front: weigh depth less than x/y.
        delta = centroids[candidates] - np.asarray(target)
        score = delta[:, 0] ** 2 + delta[:, 1] ** 2 + 0.01 * delta[:, 2] ** 2
        score -= 1e-3 * centroids[candidates, 2]  # prefer the frontmost surface
        best = int(candidates[np.argmin(score)])
        face_indices.append(best)
        bary.append((1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0))
    return {
        "lmk_faces_idx": np.asarray(face_indices, dtype=np.int64),
        "lmk_bary_coords": np.asarray(bary, dtype=np.float32),
    }


def write_standin(folder: Path, gender: str = "neutral") -> Path:
    """Writes ``folder/smplx/SMPLX_<GENDER>.npz`` and returns the model folder (``folder``).

    The file is written atomically (temporary name, then rename), so concurrent test
    workers never read a half-written model.
    """
    target_dir = folder / "smplx"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"SMPLX_{gender.upper()}.npz"
    model = build_standin()
    temporary = target_dir / f".{target.name}.{np.random.default_rng().integers(1 << 30)}.tmp"
    with open(temporary, "wb") as handle:
        np.savez(handle, **model.arrays)  # type: ignore[arg-type]
    temporary.replace(target)
    return folder


def ensure_standin(cache: Path, gender: str = "neutral") -> Path:
    """Returns a model folder (under ``cache``) holding the stand-in, generating it if missing."""
    folder = cache / f"v{STANDIN_VERSION}"
    if not (folder / "smplx" / f"SMPLX_{gender.upper()}.npz").is_file():
        write_standin(folder, gender)
    return folder
