"""Reference landmarks for LMD: the driving motion's SMPL-X body projected into the video.

The body is posed by ``model.body.BodyModel`` and projected with exactly the camera the
condition renders use (``model.render.MotionRenderer``): a frame's own camera scaled to
the render size, otherwise the ``SessionCamera`` framed once on the first render window.
So the landmarks land on the pixels the mesh covered in the condition image that
generated the frame.

Keypoints follow COCO-WholeBody (133 points; DWPose and RTMPose-WholeBody predict them):
body 0-16, feet 17-22, face 23-90 (the 68 iBUG points), left hand 91-111, right hand
112-132 (wrist, then thumb, index, middle, ring and pinky, four points each, base to
tip). Each comes from an SMPL-X joint, a vertex (the ones the smplx package itself
uses for nose, eyes, ears, toes, heels and finger tips) or one of the 51 static face
landmarks (iBUG 17-67). The jaw contour (iBUG 0-16) needs the dynamic contour
landmarks, which the body model does not compute: those 17 face points are never
counted. SMPL-X's hip joints sit higher and further in than COCO's annotated hips, a
fixed offset that adds to every method's body LMD alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from model.config import RenderConfig
from model.motion.frame import BodyModelSettings, MotionFrame
from model.smplx_layout import JOINT, SMPLX_VERTEX_IDS

WHOLEBODY_KEYPOINTS = 133
COCO_BODY_KEYPOINTS = 17
# Keypoint index ranges of each part; LMD groups pool parts (hands = both hands).
PARTS: dict[str, range] = {
    "body": range(0, 23),
    "face": range(23, 91),
    "left_hand": range(91, 112),
    "right_hand": range(112, 133),
}
GROUP_PARTS: dict[str, tuple[str, ...]] = {
    "face": ("face",),
    "body": ("body",),
    "hands": ("left_hand", "right_hand"),
}
FIRST_STATIC_LANDMARK = 17  # the 51 SMPL-X static landmarks are iBUG 17..67
FINGERS = ("thumb", "index", "middle", "ring", "pinky")

Source = tuple[str, int]  # ("joint" | "vertex" | "landmark", index)


def _wholebody_sources() -> list[Source | None]:
    """Where each of the 133 COCO-WholeBody keypoints comes from on the SMPL-X body."""
    vertex = SMPLX_VERTEX_IDS

    def joint(name: str) -> Source:
        return ("joint", JOINT[name])

    sources: list[Source | None] = [
        ("vertex", vertex["nose"]),
        ("vertex", vertex["leye"]),
        ("vertex", vertex["reye"]),
        ("vertex", vertex["lear"]),
        ("vertex", vertex["rear"]),
    ]
    for name in ("shoulder", "elbow", "wrist"):
        sources += [joint(f"left_{name}"), joint(f"right_{name}")]
    for name in ("hip", "knee", "ankle"):
        sources += [joint(f"left_{name}"), joint(f"right_{name}")]
    for side in ("L", "R"):
        sources += [("vertex", vertex[f"{side}BigToe"]), ("vertex", vertex[f"{side}SmallToe"])]
        sources.append(("vertex", vertex[f"{side}Heel"]))
    sources += [None] * FIRST_STATIC_LANDMARK
    sources += [("landmark", index) for index in range(68 - FIRST_STATIC_LANDMARK)]
    for side, prefix in (("left", "l"), ("right", "r")):
        sources.append(joint(f"{side}_wrist"))
        for finger in FINGERS:
            sources += [joint(f"{side}_{finger}{number}") for number in (1, 2, 3)]
            sources.append(("vertex", vertex[f"{prefix}{finger}"]))  # the tip
    assert len(sources) == WHOLEBODY_KEYPOINTS
    return sources


WHOLEBODY_SOURCES = _wholebody_sources()


@dataclass(slots=True)
class ReferenceKeypoints:
    """Projected reference keypoints of T frames in pixels of a ``width x height`` image.

    Coordinates are continuous: pixel (i, j) covers [i, i+1) x [j, j+1).
    """

    points: NDArray[np.float32]  # (T, 133, 2) x, y
    valid: NDArray[np.bool_]  # (T, 133) defined, in front of the camera and inside the image
    boxes: NDArray[np.float32]  # (T, 4) x0, y0, x1, y1 of the projected mesh, inside the image
    width: int
    height: int

    def resized(self, width: int, height: int) -> ReferenceKeypoints:
        """The same keypoints in a ``width x height`` image (the render resized to it)."""
        scale = np.array([width / self.width, height / self.height], dtype=np.float32)
        return replace(
            self,
            points=self.points * scale,
            boxes=self.boxes * np.tile(scale, 2),
            width=width,
            height=height,
        )


def gather_keypoints(
    joints: NDArray[np.float32],
    vertices: NDArray[np.float32],
    landmarks: NDArray[np.float32],
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """``(N, 133, 3)`` COCO-WholeBody points from posed SMPL-X arrays, and which exist.

    ``joints (N, 55, 3)``, ``vertices (N, V, 3)``, ``landmarks (N, 51, 3)``: the arrays of
    ``model.body.BodyOutput`` (or the same points already in camera space).
    """
    count = len(joints)
    points = np.zeros((count, WHOLEBODY_KEYPOINTS, 3), dtype=np.float32)
    defined = np.zeros(WHOLEBODY_KEYPOINTS, dtype=bool)
    arrays = {"joint": joints, "vertex": vertices, "landmark": landmarks}
    for index, source in enumerate(WHOLEBODY_SOURCES):
        if source is not None:
            points[:, index] = arrays[source[0]][:, source[1]]
            defined[index] = True
    return points, np.broadcast_to(defined, (count, WHOLEBODY_KEYPOINTS)).copy()


def reference_keypoints(
    frames: Sequence[MotionFrame],
    render: RenderConfig,
    settings: BodyModelSettings,
    camera_frames: int = 16,
    chunk: int = 16,
) -> ReferenceKeypoints:
    """Projects ``frames`` with the condition renders' camera, at the render size.

    ``camera_frames``: how many first frames the session camera was framed on (the first
    render window of ``render_motion_conditions``: ``min(window, 16)``); used only by
    frames without their own camera.
    """
    from model.body import BodyModel
    from model.render import Z_NEAR, SessionCamera, frame_intrinsics

    frames = list(frames)
    body_model = BodyModel.from_config(render, settings)
    session = None
    if any(frame.camera is None for frame in frames):
        first = body_model.forward(frames[: max(1, min(camera_frames, 16))])
        session = SessionCamera.from_body(first, render)
    points, valid, boxes = [], [], []
    for start in range(0, len(frames), chunk):
        window = frames[start : start + chunk]
        body = body_model.forward(window)
        world, defined = gather_keypoints(body.joints, body.vertices, body.landmarks)
        for index, frame in enumerate(window):
            if frame.camera is not None:
                shift = frame.camera.translation
                camera_points, mesh = world[index] + shift, body.vertices[index] + shift
                intrinsics = frame_intrinsics(frame.camera, render)
            else:
                assert session is not None
                camera_points = session.to_camera(world[index])
                mesh = session.to_camera(body.vertices[index])
                intrinsics = session.intrinsics
            projected = intrinsics.project(camera_points)
            inside = (
                (camera_points[:, 2] > Z_NEAR)
                & (projected[:, 0] >= 0)
                & (projected[:, 0] < render.width)
                & (projected[:, 1] >= 0)
                & (projected[:, 1] < render.height)
            )
            points.append(projected)
            valid.append(defined[index] & inside)
            boxes.append(_mesh_box(intrinsics.project(mesh[mesh[:, 2] > Z_NEAR]), render))
    return ReferenceKeypoints(
        points=np.stack(points).astype(np.float32),
        valid=np.stack(valid),
        boxes=np.stack(boxes).astype(np.float32),
        width=render.width,
        height=render.height,
    )


def _mesh_box(projected: NDArray[np.float32], render: RenderConfig) -> NDArray[np.float32]:
    """Bounding box of projected mesh vertices, clipped to the image (the whole image if none)."""
    if len(projected) == 0:
        return np.array([0.0, 0.0, render.width, render.height], dtype=np.float32)
    low = np.clip(projected.min(axis=0), 0.0, [render.width, render.height])
    high = np.clip(projected.max(axis=0), 0.0, [render.width, render.height])
    if (high - low).min() <= 0.0:
        return np.array([0.0, 0.0, render.width, render.height], dtype=np.float32)
    return np.concatenate([low, high]).astype(np.float32)
