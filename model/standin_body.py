"""The stand-in mannequin's geometry: T-pose skeleton, ellipsoid parts, landmark targets.

SMPL-X coordinates: metres, y up, the person faces +z, their left is +x. Every part is a
closed ellipsoid rigidly skinned to one joint of the real tree (model/smplx_layout.py),
so a pose moves the right parts. model/standin.py turns the parts into a model file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from model.smplx_layout import JOINT, NUM_JOINTS


@dataclass
class Part:
    """One rigid piece of the mannequin: a closed ellipsoid skinned to one joint."""

    name: str
    joint: int
    vertices: NDArray[np.float64]
    faces: NDArray[np.int64]


@dataclass
class PartBuilder:
    """Collects the mannequin's parts, in the order their vertices are numbered."""

    parts: list[Part] = field(default_factory=list)

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
        if signed_volume(vertices, face_array) < 0:
            face_array = face_array[:, ::-1].copy()
        self.parts.append(Part(name, joint, vertices, face_array))

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


def signed_volume(vertices: NDArray[np.float64], faces: NDArray[np.int64]) -> float:
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def joint_positions() -> NDArray[np.float64]:
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
        for finger, (base, direction, lengths) in finger_layout().items():
            finger_joint = np.array([sign * base[0], base[1], base[2]])
            step = np.array([sign * direction[0], direction[1], direction[2]])
            step /= np.linalg.norm(step)
            for segment in range(3):
                joints[JOINT[f"{side}_{finger}{segment + 1}"]] = finger_joint
                finger_joint = finger_joint + step * lengths[segment]
    return joints


def finger_layout() -> dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]]:
    """Left-hand finger base, direction and the three segment lengths."""
    return {
        "index": ((0.765, 0.092, 0.028), (1.0, 0.0, 0.08), (0.035, 0.024, 0.02)),
        "middle": ((0.772, 0.092, 0.006), (1.0, 0.0, 0.0), (0.04, 0.027, 0.021)),
        "ring": ((0.767, 0.090, -0.015), (1.0, 0.0, -0.06), (0.037, 0.025, 0.02)),
        "pinky": ((0.757, 0.087, -0.034), (1.0, 0.0, -0.14), (0.028, 0.019, 0.018)),
        "thumb": ((0.705, 0.080, 0.030), (0.6, -0.2, 0.75), (0.035, 0.03, 0.025)),
    }


def build_parts(joints: NDArray[np.float64]) -> PartBuilder:
    builder = PartBuilder()
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
                end = joints[joint + 1] if segment < 2 else finger_tip(joints, side, finger)
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


def finger_tip(joints: NDArray[np.float64], side: str, finger: str) -> NDArray[np.float64]:
    third = joints[JOINT[f"{side}_{finger}3"]]
    second = joints[JOINT[f"{side}_{finger}2"]]
    direction = (third - second) / np.linalg.norm(third - second)
    return third + direction * finger_layout()[finger][2][2]


def landmark_targets(joints: NDArray[np.float64]) -> list[tuple[tuple[float, float, float], str]]:
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
