"""Headless SMPL-X mesh rendering: the ControlNet's condition images.

``MotionRenderer.render(frames)`` turns a window of ``MotionFrame``s into a
``RenderedWindow``: ``(N, H, W, 3)`` uint8 RGB images of ``render.width`` x
``render.height`` and the ``(N, 51, 2)`` face landmarks in their pixels. ``MeshRenderer``
is the part below it: ``(N, V, 3)`` camera-space vertices and one ``Intrinsics`` per frame
-> images. The look is the one of the SHOW renders the official checkpoints were trained
on: mesh colour (0.3, 0.5, 0.55), metallic 0.2, roughness 0.6, ambient 0.3, a spot light
and two point lights, black background. ``render.antialias`` draws with 4x multisampling
as pyrender's own framebuffer path does (same pixels); off, the default, only silhouette
pixels differ.

Cameras use the OpenCV convention (x right, y down, z forward) in which TalkSHOW,
EMAGE and SHOW parameters live. A frame's own camera is used as given. Otherwise a
``SessionCamera`` is computed once from the first frames of a session: it turns the
body upright and towards the camera (whatever the source's world axes) and frames it,
and is then kept so the view never jumps.

GL contexts: the process picks its platform (EGL or OSMesa) once, before anything imports
OpenGL (``configure_gl``; ``MeshRenderer`` calls it). Each renderer owns one offscreen
context, made current on the thread that creates it and on the thread that calls
``render``: create, use and ``close`` a renderer on one thread, one renderer per thread.
Any number of renderers may live in one process; ``close`` frees only its own context.
Everything that reaches into pyrender's internals lives in model/pyrender_compat.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model.body import BodyOutput
from model.config import RenderConfig
from model.errors import AnchorError
from model.motion.frame import Camera
from model.pyrender_compat import (
    configure_gl,
    create_offscreen,
    drawing,
    release,
    write_vertex_buffer,
)

MESH_COLOR = (0.3, 0.5, 0.55, 1.0)
METALLIC = 0.2
ROUGHNESS = 0.6
AMBIENT = 0.3
Z_NEAR, Z_FAR = 0.05, 100.0
# Lights, white, in OpenGL camera space (camera at the origin looking down -z): a spot
# light at the camera and point lights (position, intensity).
SPOT_INTENSITY, SPOT_OUTER_ANGLE = 12.0, np.pi / 5
POINT_LIGHTS = (((1.5, 1.5, 0.0), 6.0), ((-1.5, 0.5, 0.5), 4.0))
ANTIALIAS_SAMPLES = 4  # multisample count when render.antialias is on (pyrender's own)
SESSION_DISTANCE = 3.0  # metres from the default camera to the framed body
JOINT_PELVIS, JOINT_LEFT_HIP, JOINT_RIGHT_HIP, JOINT_NECK = 0, 1, 2, 12
JOINT_LEFT_SHOULDER, JOINT_RIGHT_SHOULDER = 16, 17


@dataclass(frozen=True, slots=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of the rendered image (OpenCV convention)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def project(self, points: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(..., 3)`` camera-space points -> ``(..., 2)`` pixel coordinates (x, y)."""
        depth = np.maximum(points[..., 2], 1e-6)
        x = self.fx * points[..., 0] / depth + self.cx
        y = self.fy * points[..., 1] / depth + self.cy
        return np.stack([x, y], axis=-1).astype(np.float32)


def _snap_to_axis(
    vector: NDArray[np.float64], exclude: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """The signed world axis closest to ``vector`` (optionally not along ``exclude``)."""
    candidates = np.concatenate([np.eye(3), -np.eye(3)])
    if exclude is not None:
        candidates = candidates[np.abs(candidates @ exclude) < 0.5]
    return candidates[int(np.argmax(candidates @ vector))]


@dataclass(frozen=True, slots=True)
class SessionCamera:
    """The default camera of a session: ``camera = rotation @ world + translation``."""

    rotation: NDArray[np.float64]  # (3, 3)
    translation: NDArray[np.float64]  # (3,)
    intrinsics: Intrinsics

    @classmethod
    def from_body(cls, body: BodyOutput, config: RenderConfig) -> SessionCamera:
        """Frames the first frames of ``body`` (up to 16) once for the whole session.

        The body's up (pelvis -> neck) and forward (left x up) directions, snapped to
        the nearest world axes, become image-up and towards-the-camera: sources whose
        world is y-up (SMPL-X canonical) and OpenCV y-down (TalkSHOW's global_orient of
        about pi around x) both come out upright and facing the camera.
        """
        joints = body.joints[:16].mean(axis=0).astype(np.float64)
        up = _snap_to_axis(joints[JOINT_NECK] - joints[JOINT_PELVIS])
        across = joints[JOINT_LEFT_SHOULDER] - joints[JOINT_RIGHT_SHOULDER]
        across += joints[JOINT_LEFT_HIP] - joints[JOINT_RIGHT_HIP]
        left = _snap_to_axis(across - (across @ up) * up, exclude=up)
        forward = np.cross(left, up)
        # Person's left -> image right (+x), up -> image up (-y), forward -> camera (-z).
        rotation = np.stack([left, -up, -forward])
        vertices = body.vertices[:16].reshape(-1, 3).astype(np.float64) @ rotation.T
        rotated_joints = joints @ rotation.T
        top = float(vertices[:, 1].min())
        if config.framing == "upper":
            pelvis = rotated_joints[JOINT_PELVIS]
            bottom = float(pelvis[1]) + 0.15 * (float(pelvis[1]) - top)
            centre_x = float(0.5 * (pelvis[0] + rotated_joints[JOINT_NECK][0]))
            extent = (bottom - top) * 1.15
        else:
            bottom = float(vertices[:, 1].max())
            centre_x = float(0.5 * (vertices[:, 0].min() + vertices[:, 0].max()))
            width = float(vertices[:, 0].max() - vertices[:, 0].min())
            extent = 1.1 * max(bottom - top, width * config.height / config.width)
        centre_z = float(rotated_joints[JOINT_PELVIS][2])
        translation = np.array(
            [-centre_x, -0.5 * (top + bottom), SESSION_DISTANCE - centre_z], dtype=np.float64
        )
        focal = config.height * SESSION_DISTANCE / extent
        intrinsics = Intrinsics(focal, focal, config.width / 2.0, config.height / 2.0)
        return cls(rotation, translation, intrinsics)

    def to_camera(self, points: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(..., 3)`` world points -> OpenCV camera coordinates."""
        return (points @ self.rotation.T.astype(np.float32) + self.translation).astype(np.float32)


def _glsl_float(value: float) -> str:
    """The float32 nearest ``value`` as an exact GLSL constant (what glUniform1f passes)."""
    bits = int(np.array(value, dtype=np.float32).view(np.uint32))
    return f"uintBitsToFloat({bits:#010x}u)"


def _glsl_vec3(values: Sequence[float]) -> str:
    return "vec3(" + ", ".join(_glsl_float(value) for value in values) + ")"


def _specialize_mesh_shader(text: str) -> str:
    """pyrender's mesh fragment shader with this module's fixed scene as constants.

    pyrender passes light counts, lights, the ambient light and the camera position as
    uniforms and loops over the counts. As constants, with the float32 values pyrender
    would upload, the GLSL compiler unrolls the loops and folds the light terms; the
    arithmetic left per fragment is unchanged. The scene's lights and camera pose never
    change after ``MeshRenderer`` builds them (only the intrinsics do).
    """
    white = (1.0, 1.0, 1.0)
    # pyrender: light_angle_scale and _offset from the cone (inner angle 0), range unset.
    scale = 1.0 / max(0.001, 1.0 - float(np.cos(SPOT_OUTER_ANGLE)))
    offset = -float(np.cos(SPOT_OUTER_ANGLE)) * scale
    spot = (
        f"SpotLight({_glsl_vec3(white)}, {_glsl_float(SPOT_INTENSITY)}, 0.0, vec3(0.0), "
        f"{_glsl_vec3((0.0, 0.0, -1.0))}, {_glsl_float(scale)}, {_glsl_float(offset)})"
    )
    points = ", ".join(
        f"PointLight({_glsl_vec3(white)}, {_glsl_float(intensity)}, 0.0, {_glsl_vec3(position)})"
        for position, intensity in POINT_LIGHTS
    )
    count = len(POINT_LIGHTS)
    replacements = {
        r"uniform int n_directional_lights;": "const int n_directional_lights = 0;",
        r"uniform int n_spot_lights;": "const int n_spot_lights = 1;",
        r"uniform int n_point_lights;": f"const int n_point_lights = {count};",
        r"uniform SpotLight spot_lights\[\w+\];": (
            f"const SpotLight spot_lights[1] = SpotLight[1]({spot});"
        ),
        r"uniform PointLight point_lights\[\w+\];": (
            f"const PointLight point_lights[{count}] = PointLight[{count}]({points});"
        ),
        r"uniform vec3 ambient_light;": f"const vec3 ambient_light = {_glsl_vec3([AMBIENT] * 3)};",
        r"uniform vec3 cam_pos;": "const vec3 cam_pos = vec3(0.0);",
    }
    # The constructors above follow these field orders (shadow fields are compiled out).
    flat = " ".join(text.split())
    layouts = (
        "struct SpotLight { vec3 color; float intensity; float range; vec3 position; "
        "vec3 direction; float light_angle_scale; float light_angle_offset;",
        "struct PointLight { vec3 color; float intensity; float range; vec3 position;",
    )
    for layout in layouts:
        if layout not in flat:
            raise AnchorError(f"render: pyrender's mesh.frag lacks {layout!r}")
    for pattern, constant in replacements.items():
        text, found = re.subn(pattern, constant, text)
        if found != 1:
            raise AnchorError(f"render: pyrender's mesh.frag has no {pattern!r}")
    return text


def frame_intrinsics(camera: Camera, config: RenderConfig) -> Intrinsics:
    """A frame's camera scaled from its image size to the render size."""
    scale_x, scale_y = config.width / camera.width, config.height / camera.height
    return Intrinsics(
        float(camera.focal[0]) * scale_x,
        float(camera.focal[1]) * scale_y,
        float(camera.principal[0]) * scale_x,
        float(camera.principal[1]) * scale_y,
    )


class MeshRenderer:
    """One offscreen renderer and scene, reused for every frame of a session.

    The mesh's vertex buffer is overwritten in place each frame (no new GL objects),
    which is what keeps rendering at video rate on a CPU.
    """

    def __init__(self, faces: NDArray[np.int64], vertex_count: int, config: RenderConfig) -> None:
        configure_gl(config.backend)
        import pyrender
        from scipy import sparse

        self.config = config
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)
        face_ids = np.repeat(np.arange(len(self.faces)), 3)
        self._incidence = sparse.csr_matrix(
            (np.ones(face_ids.size, dtype=np.float32), (self.faces.ravel(), face_ids)),
            shape=(vertex_count, len(self.faces)),
        )
        # pyrender's OffscreenRenderer: its GL context, drawn into by pyrender_compat.
        self._renderer = create_offscreen(
            config.width,
            config.height,
            ANTIALIAS_SAMPLES if config.antialias else 0,
            _specialize_mesh_shader,
        )
        self._scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 1.0], ambient_light=[AMBIENT] * 3)
        material = pyrender.MetallicRoughnessMaterial(
            metallicFactor=METALLIC,
            roughnessFactor=ROUGHNESS,
            alphaMode="OPAQUE",
            baseColorFactor=MESH_COLOR,
        )
        positions = np.zeros((vertex_count, 3), dtype=np.float32)
        positions[:, 2] = -SESSION_DISTANCE
        self._primitive = pyrender.Primitive(
            positions=positions,
            normals=np.tile(np.array([0.0, 0.0, 1.0], dtype=np.float32), (vertex_count, 1)),
            indices=self.faces,
            material=material,
        )
        self._scene.add(pyrender.Mesh([self._primitive]))
        self._camera = pyrender.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, znear=Z_NEAR, zfar=Z_FAR)
        self._scene.add(self._camera, pose=np.eye(4))
        # Lights live in OpenGL camera space (y up, looking down -z).
        # Fixed from here on: the mesh shader has them as constants (_specialize_mesh_shader).
        spot = pyrender.SpotLight(
            color=np.ones(3), intensity=SPOT_INTENSITY, outerConeAngle=SPOT_OUTER_ANGLE
        )
        self._scene.add(spot, pose=np.eye(4))
        for position, intensity in POINT_LIGHTS:
            pose = np.eye(4)
            pose[:3, 3] = position
            self._scene.add(pyrender.PointLight(color=np.ones(3), intensity=intensity), pose=pose)
        self._uploaded = False
        self._interleaved = np.empty((vertex_count, 6), dtype=np.float32)  # positions, normals

    def vertex_normals(self, vertices: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(..., V, 3)`` vertices -> unit normals of the same shape, float32: area-weighted
        averages of the adjacent faces, every frame of a window in one pass."""
        vertex_count, face_count = vertices.shape[-2], len(self.faces)
        batch = vertices.reshape(-1, vertex_count, 3)
        count = len(batch)
        corners = np.take(batch, self.faces.ravel(), axis=1).reshape(count, face_count, 3, 3)
        first = corners[:, :, 1] - corners[:, :, 0]
        second = corners[:, :, 2] - corners[:, :, 0]
        face_normals = np.empty_like(first)  # first x second, without np.cross's temporaries
        for axis, (a, b) in enumerate(((1, 2), (2, 0), (0, 1))):
            np.multiply(first[..., a], second[..., b], out=face_normals[..., axis])
            face_normals[..., axis] -= first[..., b] * second[..., a]
        sums = self._incidence @ face_normals.transpose(1, 0, 2).reshape(face_count, count * 3)
        normals = np.asarray(sums, dtype=np.float32).reshape(vertex_count, count, 3)
        normals = normals.transpose(1, 0, 2)
        length = np.sqrt(np.einsum("nvi,nvi->nv", normals, normals))[..., None]
        return (normals / np.maximum(length, 1e-12)).reshape(vertices.shape)

    def _upload(self, positions: NDArray[np.float32]) -> None:
        """Writes one frame's ``(V, 3)`` OpenGL-space positions and their normals."""
        self._write_vertices(positions, self.vertex_normals(positions))

    def _write_vertices(self, positions: NDArray[np.float32], normals: NDArray[np.float32]) -> None:
        if not self._uploaded:
            self._primitive.positions = positions
            self._primitive.normals = normals
            return
        interleaved = self._interleaved
        interleaved[:, :3] = positions
        interleaved[:, 3:] = normals
        write_vertex_buffer(self._primitive, interleaved)

    def render(
        self, vertices: NDArray[np.float32], intrinsics: Sequence[Intrinsics]
    ) -> NDArray[np.uint8]:
        """``(N, V, 3)`` OpenCV camera-space vertices -> ``(N, H, W, 3)`` uint8 RGB images."""
        if len(intrinsics) != len(vertices):
            raise ValueError(f"{len(vertices)} frames of vertices, {len(intrinsics)} cameras")
        images = np.empty((len(vertices), self.config.height, self.config.width, 3), np.uint8)
        # OpenCV (y down, z forward) -> OpenGL (y up, z backward): a rotation, so the
        # triangle winding (and back-face culling) is preserved.
        positions = vertices * np.array([1.0, -1.0, -1.0], dtype=np.float32)
        # A subclass with its own _upload (extra vertex attributes) keeps writing the buffer.
        own_upload = type(self)._upload is MeshRenderer._upload
        normals = self.vertex_normals(positions) if own_upload else None
        with drawing(self._renderer) as draw:
            for index, camera in enumerate(intrinsics):
                if normals is not None:
                    self._write_vertices(positions[index], normals[index])
                else:
                    self._upload(positions[index])
                self._camera.fx, self._camera.fy = camera.fx, camera.fy
                self._camera.cx, self._camera.cy = camera.cx, camera.cy
                draw(self._scene, images[index])
                self._uploaded = True
        return images

    def close(self) -> None:
        """Frees this renderer's GL objects and context (only its own: other renderers of
        the process keep working). A second call does nothing."""
        release(self._renderer)


@dataclass(slots=True)
class RenderedWindow:
    """Condition images of a window of N frames and what the face stage needs."""

    images: NDArray[np.uint8]  # (N, H, W, 3) RGB
    landmarks: NDArray[np.float32]  # (N, 51, 2) face landmarks in image pixels
    body: BodyOutput

    def as_tensor(self) -> Any:
        """``(N, 3, H, W)`` float32 torch tensor in [0, 1] (the ControlNet input)."""
        import torch

        return torch.from_numpy(self.images).permute(0, 3, 1, 2).float().div_(255.0)


class MotionRenderer:
    """Motion frames -> condition images for one session (body model + renderer + camera)."""

    def __init__(self, config: RenderConfig, settings: Any) -> None:
        from model.body import BodyModel

        self.config = config
        self.body_model = BodyModel.from_config(config, settings)
        self.mesh = MeshRenderer(self.body_model.faces, self.body_model.vertex_count, config)
        self.session_camera: SessionCamera | None = None

    def render(self, frames: Sequence[Any]) -> RenderedWindow:
        """Renders a window of ``MotionFrame``s (any length >= 1)."""
        body = self.body_model.forward(frames)
        if self.session_camera is None and any(frame.camera is None for frame in frames):
            self.session_camera = SessionCamera.from_body(body, self.config)
        camera_vertices = np.empty_like(body.vertices)
        landmarks = np.empty((*body.landmarks.shape[:2], 2), dtype=np.float32)
        intrinsics = []
        for index, frame in enumerate(frames):
            if frame.camera is not None:
                shift = frame.camera.translation
                camera_vertices[index] = body.vertices[index] + shift
                marks = body.landmarks[index] + shift
                camera = frame_intrinsics(frame.camera, self.config)
            else:
                assert self.session_camera is not None
                camera_vertices[index] = self.session_camera.to_camera(body.vertices[index])
                marks = self.session_camera.to_camera(body.landmarks[index])
                camera = self.session_camera.intrinsics
            landmarks[index] = camera.project(marks)
            intrinsics.append(camera)
        images = self.mesh.render(camera_vertices, intrinsics)
        return RenderedWindow(images, landmarks, body)

    def close(self) -> None:
        self.mesh.close()
