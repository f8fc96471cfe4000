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
Only numpy and scipy are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import nnls

# Bump when the generated geometry changes, so a stale cached stand-in is not reused.
STANDIN_VERSION = 2
NUM_VERTICES = 10475
NUM_JOINTS = 55
NUM_SHAPE = 300
NUM_EXPRESSION = 100
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9

JOINT_NAMES = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "jaw",
    "left_eye_smplhf",
    "right_eye_smplhf",
    "left_index1",
    "left_index2",
    "left_index3",
    "left_middle1",
    "left_middle2",
    "left_middle3",
    "left_pinky1",
    "left_pinky2",
    "left_pinky3",
    "left_ring1",
    "left_ring2",
    "left_ring3",
    "left_thumb1",
    "left_thumb2",
    "left_thumb3",
    "right_index1",
    "right_index2",
    "right_index3",
    "right_middle1",
    "right_middle2",
    "right_middle3",
    "right_pinky1",
    "right_pinky2",
    "right_pinky3",
    "right_ring1",
    "right_ring2",
    "right_ring3",
    "right_thumb1",
    "right_thumb2",
    "right_thumb3",
)
JOINT = {name: index for index, name in enumerate(JOINT_NAMES)}

# The real SMPL-X kinematic tree (parent of each joint).
PARENTS = (
    -1,
    0,
    0,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    9,
    9,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
    15,
    15,
    15,
    20,
    25,
    26,
    20,
    28,
    29,
    20,
    31,
    32,
    20,
    34,
    35,
    20,
    37,
    38,
    21,
    40,
    41,
    21,
    43,
    44,
    21,
    46,
    47,
    21,
    49,
    50,
    21,
    52,
    53,
)

# Vertex ids hard-coded by smplx (vertex_ids.py) and where they belong on this body.
SMPLX_VERTEX_IDS = {
    "nose": 9120, "reye": 9929, "leye": 9448, "rear": 616, "lear": 6,
    "rthumb": 8079, "rindex": 7669, "rmiddle": 7794, "rring": 7905, "rpinky": 8022,
    "lthumb": 5361, "lindex": 4933, "lmiddle": 5058, "lring": 5169, "lpinky": 5286,
    "LBigToe": 5770, "LSmallToe": 5780, "LHeel": 8846,
    "RBigToe": 8463, "RSmallToe": 8474, "RHeel": 8635,
}  # fmt: skip

# Indices into the 51 static landmarks (iBUG-68 points 17..67).
LANDMARK_RIGHT_EYE = tuple(range(19, 25))  # iBUG 36-41, the person's right eye
LANDMARK_LEFT_EYE = tuple(range(25, 31))  # iBUG 42-47
LANDMARK_NOSE_TIP = 13  # iBUG 30
LANDMARK_MOUTH_RIGHT = 31  # iBUG 48
LANDMARK_MOUTH_LEFT = 37  # iBUG 54

FloatArray = NDArray[np.float32]


@dataclass
class _Part:
    """One rigid piece of the mannequin: a closed ellipsoid skinned to one joint."""

    name: str
    joint: int
    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]


@dataclass
class _Builder:
    parts: list[_Part] = field(default_factory=list)

    def ellipsoid(
        self,
        name: str,
        joint: int,
        center: NDArray[np.float64] | tuple[float, float, float],
        radii: tuple[float, float, float],
        axes: NDArray[np.float64] | None = None,
        rings: int = 10,
        segments: int = 12,
    ) -> None:
        """Adds a UV ellipsoid; ``axes`` columns are its local x, y, z directions."""
        polar = np.linspace(0.0, np.pi, rings + 1)[1:-1]
        azimuth = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
        sin_polar, cos_polar = np.sin(polar)[:, None], np.cos(polar)[:, None]
        unit = np.stack(
            [
                (sin_polar * np.cos(azimuth)).ravel(),
                np.repeat(cos_polar, segments, axis=1).ravel(),
                (sin_polar * np.sin(azimuth)).ravel(),
            ],
            axis=1,
        )
        unit = np.concatenate([[[0.0, 1.0, 0.0]], unit, [[0.0, -1.0, 0.0]]])
        local = unit * np.asarray(radii)
        rotation = np.eye(3) if axes is None else axes
        vertices = local @ rotation.T + np.asarray(center, dtype=np.float64)
        faces = []
        last = len(unit) - 1
        for j in range(segments):
            k = (j + 1) % segments
            faces.append((0, 1 + k, 1 + j))
            base = 1 + (rings - 2) * segments
            faces.append((last, base + j, base + k))
        for i in range(rings - 2):
            for j in range(segments):
                k = (j + 1) % segments
                a, b = 1 + i * segments + j, 1 + i * segments + k
                c, d = a + segments, b + segments
                faces.extend([(a, b, d), (a, d, c)])
        face_array = np.asarray(faces, dtype=np.int64)
        if _signed_volume(vertices, face_array) < 0:
            face_array = face_array[:, ::-1].copy()
        self.parts.append(_Part(name, joint, vertices, face_array))

    def bone(
        self,
        name: str,
        joint: int,
        start: NDArray[np.float64],
        end: NDArray[np.float64],
        radius: float,
        depth: float | None = None,
        overlap: float = 0.15,
        rings: int = 10,
        segments: int = 12,
    ) -> None:
        """Adds an ellipsoid spanning ``start`` -> ``end`` (slightly longer, to overlap)."""
        direction = end - start
        length = float(np.linalg.norm(direction))
        axis_y = direction / length
        helper = np.array([0.0, 0.0, 1.0]) if abs(axis_y[2]) < 0.9 else np.array([1.0, 0, 0])
        axis_x = np.cross(axis_y, helper)
        axis_x /= np.linalg.norm(axis_x)
        axis_z = np.cross(axis_x, axis_y)
        axes = np.stack([axis_x, axis_y, axis_z], axis=1)
        half = 0.5 * length * (1.0 + overlap)
        self.ellipsoid(
            name,
            joint,
            0.5 * (start + end),
            (radius, half, radius if depth is None else depth),
            axes,
            rings,
            segments,
        )


def _signed_volume(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> float:
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _joint_positions() -> NDArray[np.float64]:
    """T-pose joint locations (metres), close to the real neutral SMPL-X skeleton."""
    joints = np.zeros((NUM_JOINTS, 3))
    left = {
        "hip": (0.06, -0.44, -0.01),
        "knee": (0.10, -0.82, 0.0),
        "ankle": (0.09, -1.22, -0.04),
        "foot": (0.11, -1.29, 0.08),
        "collar": (0.07, 0.11, -0.01),
        "shoulder": (0.17, 0.13, -0.02),
        "elbow": (0.43, 0.10, -0.03),
        "wrist": (0.68, 0.09, -0.02),
        "eye_smplhf": (0.032, 0.405, 0.079),
    }
    for name, position in left.items():
        joints[JOINT[f"left_{name}"]] = position
        joints[JOINT[f"right_{name}"]] = (-position[0], position[1], position[2])
    central = {
        "pelvis": (0.0, -0.35, 0.0),
        "spine1": (0.0, -0.24, -0.01),
        "spine2": (0.0, -0.11, 0.0),
        "spine3": (0.0, -0.05, 0.01),
        "neck": (0.0, 0.20, -0.02),
        "head": (0.0, 0.29, 0.0),
        "jaw": (0.0, 0.335, 0.01),
    }
    for name, position in central.items():
        joints[JOINT[name]] = position
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for finger, (base, direction, lengths) in _finger_layout().items():
            finger_joint = np.array([sign * base[0], base[1], base[2]])
            step = np.array([sign * direction[0], direction[1], direction[2]])
            step /= np.linalg.norm(step)
            for segment in range(3):
                joints[JOINT[f"{side}_{finger}{segment + 1}"]] = finger_joint
                finger_joint = finger_joint + step * lengths[segment]
    return joints


def _finger_layout() -> dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]]:
    """Left-hand finger base, direction and the three segment lengths."""
    return {
        "index": ((0.765, 0.092, 0.028), (1.0, 0.0, 0.08), (0.035, 0.024, 0.02)),
        "middle": ((0.772, 0.092, 0.006), (1.0, 0.0, 0.0), (0.04, 0.027, 0.021)),
        "ring": ((0.767, 0.090, -0.015), (1.0, 0.0, -0.06), (0.037, 0.025, 0.02)),
        "pinky": ((0.757, 0.087, -0.034), (1.0, 0.0, -0.14), (0.028, 0.019, 0.018)),
        "thumb": ((0.705, 0.080, 0.030), (0.6, -0.2, 0.75), (0.035, 0.03, 0.025)),
    }


def _build_parts(joints: NDArray[np.float64]) -> _Builder:
    builder = _Builder()
    add, bone = builder.ellipsoid, builder.bone
    # Torso, neck and head.
    add("pelvis", JOINT["pelvis"], (0.0, -0.37, 0.0), (0.16, 0.13, 0.11), rings=16, segments=24)
    add("abdomen", JOINT["spine1"], (0.0, -0.22, 0.0), (0.14, 0.15, 0.10), rings=16, segments=24)
    add("belly", JOINT["spine2"], (0.0, -0.07, 0.005), (0.145, 0.15, 0.105), rings=16, segments=24)
    add("chest", JOINT["spine3"], (0.0, 0.07, 0.0), (0.165, 0.14, 0.11), rings=20, segments=28)
    bone("neck", JOINT["neck"], joints[JOINT["neck"]] - (0, 0.03, 0), joints[JOINT["head"]], 0.05)
    add("head", JOINT["head"], (0.0, 0.385, 0.005), (0.078, 0.11, 0.095), rings=36, segments=48)
    add("chin", JOINT["jaw"], (0.0, 0.305, 0.045), (0.06, 0.04, 0.05), rings=16, segments=24)
    add("lower_lip", JOINT["jaw"], (0.0, 0.323, 0.09), (0.024, 0.006, 0.01), rings=8, segments=16)
    add("upper_lip", JOINT["head"], (0.0, 0.335, 0.092), (0.026, 0.006, 0.01), rings=8, segments=16)
    bone(
        "nose",
        JOINT["head"],
        np.array([0.0, 0.40, 0.088]),
        np.array([0.0, 0.362, 0.118]),
        0.011,
        rings=10,
        segments=14,
    )
    for side, sign in (("left", 1.0), ("right", -1.0)):
        eye = joints[JOINT[f"{side}_eye_smplhf"]]
        add(f"{side}_eye", JOINT[f"{side}_eye_smplhf"], eye, (0.013, 0.013, 0.013), None, 12, 16)
        add(f"{side}_brow", JOINT["head"], (sign * 0.034, 0.428, 0.084), (0.02, 0.004, 0.008))
        add(f"{side}_ear", JOINT["head"], (sign * 0.079, 0.39, -0.005), (0.01, 0.028, 0.018))
    # Limbs.
    for side, sign in (("left", 1.0), ("right", -1.0)):

        def at(name: str, side: str = side) -> NDArray[np.float64]:
            return joints[JOINT[f"{side}_{name}"]]

        bone(f"{side}_collar", JOINT[f"{side}_collar"], at("collar"), at("shoulder"), 0.055)
        bone(f"{side}_upper_arm", JOINT[f"{side}_shoulder"], at("shoulder"), at("elbow"), 0.045)
        add(f"{side}_elbow", JOINT[f"{side}_elbow"], at("elbow"), (0.04, 0.04, 0.04))
        bone(f"{side}_forearm", JOINT[f"{side}_elbow"], at("elbow"), at("wrist"), 0.036)
        add(f"{side}_wrist", JOINT[f"{side}_wrist"], at("wrist"), (0.028, 0.028, 0.028))
        add(
            f"{side}_palm",
            JOINT[f"{side}_wrist"],
            at("wrist") + np.array([sign * 0.048, 0.0, 0.004]),
            (0.05, 0.015, 0.045),
        )
        for finger in ("index", "middle", "ring", "pinky", "thumb"):
            radius = 0.0105 if finger == "thumb" else 0.0085
            for segment in range(3):
                joint = JOINT[f"{side}_{finger}{segment + 1}"]
                start = joints[joint]
                end = joints[joint + 1] if segment < 2 else _finger_tip(joints, side, finger)
                bone(
                    f"{side}_{finger}{segment + 1}",
                    joint,
                    start,
                    end,
                    radius,
                    radius * 0.85,
                    overlap=0.25,
                    rings=8,
                    segments=10,
                )
        bone(
            f"{side}_thigh",
            JOINT[f"{side}_hip"],
            at("hip") + np.array([sign * 0.03, 0.0, 0.0]),
            at("knee"),
            0.075,
            rings=14,
            segments=18,
        )
        add(f"{side}_knee", JOINT[f"{side}_knee"], at("knee"), (0.055, 0.055, 0.055))
        bone(f"{side}_shin", JOINT[f"{side}_knee"], at("knee"), at("ankle"), 0.05, rings=14)
        add(f"{side}_ankle", JOINT[f"{side}_ankle"], at("ankle"), (0.04, 0.04, 0.04))
        add(
            f"{side}_foot", JOINT[f"{side}_ankle"], (sign * 0.10, -1.285, 0.01), (0.045, 0.035, 0.1)
        )
        add(
            f"{side}_toes",
            JOINT[f"{side}_foot"],
            (sign * 0.11, -1.295, 0.12),
            (0.045, 0.025, 0.035),
        )
    return builder


def _finger_tip(joints: NDArray[np.float64], side: str, finger: str) -> NDArray[np.float64]:
    third = joints[JOINT[f"{side}_{finger}3"]]
    second = joints[JOINT[f"{side}_{finger}2"]]
    direction = (third - second) / np.linalg.norm(third - second)
    return third + direction * _finger_layout()[finger][2][2]


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


def _landmark_targets(joints: NDArray[np.float64]) -> list[tuple[tuple[float, float, float], str]]:
    """The 51 static landmarks (iBUG 17..67): 3D target and which group may carry it."""
    targets: list[tuple[tuple[float, float, float], str]] = []
    # Eyebrows: iBUG 17-21 person's right (x < 0), 22-26 left, from outer/inner order.
    for x in np.linspace(-0.055, -0.015, 5):
        targets.append(((x, 0.428, 0.09), "head"))
    for x in np.linspace(0.015, 0.055, 5):
        targets.append(((x, 0.428, 0.09), "head"))
    for y in np.linspace(0.40, 0.365, 4):  # nose bridge 27-30, 30 is the tip
        targets.append(((0.0, y, 0.125), "head"))
    for x in np.linspace(-0.014, 0.014, 5):  # nostrils 31-35
        targets.append(((x, 0.357, 0.1), "head"))
    for side_sign in (-1.0, 1.0):  # eyes 36-41 (right), 42-47 (left)
        center = joints[JOINT["left_eye_smplhf"]] * (side_sign, 1.0, 1.0)
        for angle in np.linspace(np.pi, -np.pi, 6, endpoint=False):
            offset_x = -side_sign * 0.016 * np.cos(angle)
            offset_y = 0.008 * np.sin(angle)
            targets.append(((center[0] + offset_x, center[1] + offset_y, 0.1), "head"))
    outer = np.linspace(np.pi, 0.0, 7)  # 48 right corner .. 54 left corner (upper lip)
    for angle in outer:
        group = "head" if 0.01 < angle < np.pi - 0.01 else "corner"
        targets.append(((0.026 * np.cos(angle), 0.329 + 0.008 * np.sin(angle), 0.1), group))
    for angle in np.linspace(0.0, -np.pi, 7)[1:-1]:  # 55-59 lower lip, left to right
        targets.append(((0.026 * np.cos(angle), 0.329 + 0.008 * np.sin(angle), 0.1), "jaw"))
    for angle in np.linspace(np.pi, 0.0, 5):  # inner 60-64
        targets.append(((0.018 * np.cos(angle), 0.330 + 0.002 * np.sin(angle), 0.1), "head"))
    for angle in np.linspace(0.0, -np.pi, 5)[1:-1]:  # inner 65-67
        targets.append(((0.018 * np.cos(angle), 0.326 + 0.002 * np.sin(angle), 0.1), "jaw"))
    return targets


@dataclass
class StandinModel:
    """The arrays of a SMPL-X model file (keys as in ``SMPLX_<GENDER>.npz``)."""

    arrays: dict[str, np.ndarray]
    # Vertex ids of each named part (after the reordering that places smplx's ids).
    part_indices: dict[str, NDArray[np.int64]]


def build_standin() -> StandinModel:
    """Builds the stand-in arrays (deterministic; no randomness beyond a fixed seed)."""
    joints = _joint_positions()
    builder = _build_parts(joints)
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
    for target, group in _landmark_targets(joints):
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
