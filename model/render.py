"""Headless SMPL-X mesh rendering (pyrender offscreen, EGL or OSMesa).

The look is the one of the SHOW renders the official checkpoints were trained on:
mesh colour (0.3, 0.5, 0.55), metallic 0.2, roughness 0.6, ambient 0.3, point and spot
lights, black background.

Cameras use the OpenCV convention (x right, y down, z forward) in which TalkSHOW,
EMAGE and SHOW parameters live. A frame's own camera is used as given. Otherwise a
``SessionCamera`` is computed once from the first frames of a session: it turns the
body upright and towards the camera (whatever the source's world axes) and frames it,
and is then kept so the view never jumps.

``PYOPENGL_PLATFORM`` must be set before anything imports OpenGL: ``configure_gl`` is
the one place that does it, and every pyrender import here goes through it.

Speed (pose -> vertices -> image, 16-frame windows, 512x512, llvmpipe on the 2-core
machine under a load average of 5-7; variants compared interleaved in one process,
medians). Before this tuning 10.8 frames/s, now 30.4 with antialiasing and 74.5
without (the default), one run at a load average of 5.2. Rasterising and shading
inside llvmpipe is nearly all of a frame now; the figures per step below were each
measured against the step before.
- Mesh shader with the light counts as compile-time constants (pyrender loops over
  uniform counts): same pixels, 2x faster (8.0 -> 15.3 frames/s with antialiasing,
  15.9 -> 25.8 without). The lights, ambient light and camera position as constants
  too: another 1.27x (32.7 -> 41.6 without antialiasing, same pixels; with it, one
  pixel in 4.2 million moved by one level).
- ``render.antialias`` off: 4x multisampling costs 2.3x the rasterisation plus a 7 ms
  resolve per frame (25.5 vs 52.2 frames/s); without it 1.4% of the pixels differ, all
  on the silhouette (mean 0.23 levels over the image). With it on, the images equal
  pyrender's own framebuffer path (tested pixel for pixel on a posed window; see the
  constants above for the rare one-level pixel). pyrender's OSMesa path never
  antialiased (it reads the default framebuffer); here both platforms agree.
- Colour-only readback (pyrender also resolves, reads and linearises depth): not
  measurable through the noise. RGB rows read top to bottom straight into the
  window's array (GL_MESA_pack_invert) instead of a flipped RGBA copy: 2.4 ms a frame.
- Body model 218 -> 23 ms per window (see ``model.body``); vertex normals for the
  whole window in one pass, about 0.7 ms per frame less.
- No effect measurable through the load: ``LP_NUM_THREADS`` 1, 2 or 4. OSMesa gives the
  same pixels as EGL, about 20% slower (31 vs 37 frames/s). ``GALLIUM_DRIVER=softpipe``:
  1.7 frames/s (OSMesa; EGL cannot create its context). Shadows are already off (no
  shadow flags); fewer lights would change the look.
"""

from __future__ import annotations

import ctypes.util
import os
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

MESH_COLOR = (0.3, 0.5, 0.55, 1.0)
METALLIC = 0.2
ROUGHNESS = 0.6
AMBIENT = 0.3
Z_NEAR, Z_FAR = 0.05, 100.0
# Lights, white, in OpenGL camera space (camera at the origin looking down -z): a spot
# light at the camera and point lights (position, intensity).
SPOT_INTENSITY, SPOT_OUTER_ANGLE = 12.0, np.pi / 5
POINT_LIGHTS = (((1.5, 1.5, 0.0), 6.0), ((-1.5, 0.5, 0.5), 4.0))
PACK_INVERT_MESA = 0x8758  # GL_MESA_pack_invert: glReadPixels rows top to bottom
ANTIALIAS_SAMPLES = 4  # multisample count when render.antialias is on (pyrender's own)
SESSION_DISTANCE = 3.0  # metres from the default camera to the framed body
JOINT_PELVIS, JOINT_LEFT_HIP, JOINT_RIGHT_HIP, JOINT_NECK = 0, 1, 2, 12
JOINT_LEFT_SHOULDER, JOINT_RIGHT_SHOULDER = 16, 17


def configure_gl(backend: str = "auto") -> str:
    """Selects the PyOpenGL platform ("egl" or "osmesa") before OpenGL is imported.

    ``auto`` picks EGL when libEGL is present, else OSMesa when libOSMesa is. Raises
    ``AnchorError`` when the requested platform is missing, or when OpenGL was
    already imported with another platform (it cannot change within a process).
    """
    chosen = os.environ.get("PYOPENGL_PLATFORM") if backend == "auto" else backend
    if chosen is None:
        if ctypes.util.find_library("EGL"):
            chosen = "egl"
        elif ctypes.util.find_library("OSMesa"):
            chosen = "osmesa"
        else:
            raise AnchorError(
                "render.backend: neither libEGL nor libOSMesa is installed "
                "(apt-get install libegl1 libegl-mesa0 libosmesa6)"
            )
    if chosen not in ("egl", "osmesa"):
        raise AnchorError(f"render.backend: unsupported platform {chosen!r}")
    current = os.environ.get("PYOPENGL_PLATFORM")
    import sys

    if "OpenGL" in sys.modules and current != chosen:
        raise AnchorError(
            f"render.backend: OpenGL is already loaded for {current!r}, cannot switch to "
            f"{chosen!r} in this process"
        )
    os.environ["PYOPENGL_PLATFORM"] = chosen
    _numpy2_compat()
    return chosen


def _numpy2_compat() -> None:
    """pyrender 0.1.45 uses aliases NumPy 2 removed; restore them before it is used."""
    if not hasattr(np, "infty"):
        np.infty = np.inf  # type: ignore[attr-defined]


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


def _program_cache(specialize: bool) -> Any:
    """pyrender's shader cache; with ``specialize``, mesh programs for this module's scene."""
    from pyrender.shader_program import ShaderProgramCache

    class ProgramCache(ShaderProgramCache):  # type: ignore[misc]
        def get_program(
            self,
            vertex_shader: str,
            fragment_shader: str,
            geometry_shader: str | None = None,
            defines: dict[str, Any] | None = None,
        ) -> Any:
            program = super().get_program(vertex_shader, fragment_shader, geometry_shader, defines)
            if (
                specialize
                and fragment_shader == "mesh.frag"
                and not program._in_context()
                and "_load" not in vars(program)
            ):
                load = program._load

                def specialized_load(filename: str) -> str:
                    text = load(filename)
                    if filename.endswith("mesh.frag"):
                        text = _specialize_mesh_shader(text)
                    return str(text)

                program._load = specialized_load
            return program

    return ProgramCache()


def _scene_renderer(width: int, height: int, samples: int, specialize: bool = True) -> Any:
    """pyrender's ``Renderer`` drawing into a ``samples``-per-pixel framebuffer (0: none).

    pyrender always draws offscreen into a 4x multisample framebuffer, resolves colour
    AND depth into a second one and reads both back. Here the draw framebuffer has
    ``samples`` samples (0: single-sample), and with ``target`` set (an ``(H, W, 3)``
    uint8 image) the readback resolves and reads colour alone, rows top to bottom,
    straight into it (Mesa's pack-invert; a flipped copy where that is missing). Without
    ``target`` it returns ``(color, depth)`` exactly as pyrender does (subclasses of
    ``MeshRenderer`` use it).
    """
    import pyrender
    from OpenGL import GL

    class SceneRenderer(pyrender.Renderer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(width, height)
            self._program_cache = _program_cache(specialize)
            self.samples = samples
            # Set: the colour-only readback writes into this (H, W, 3) uint8 image.
            self.target: NDArray[np.uint8] | None = None
            self.readback = np.empty((height, width, 3), dtype=np.uint8)
            self.pack_invert: bool | None = None  # GL_MESA_pack_invert, known once current
            self._main_fb: int | None = None  # made on first draw (pyrender's protocol)
            self._main_fb_ms: int | None = None

        def _configure_main_framebuffer(self) -> None:
            if self._main_fb is not None:
                return
            # The resolve target (colour + depth, single-sample): pyrender's own readback
            # reads it, the colour-only one too when the draw framebuffer is multisample.
            self._main_cb, self._main_db = GL.glGenRenderbuffers(2)
            self._main_fb = self._framebuffer(self._main_cb, self._main_db, 0)
            # The draw target (pyrender calls it the multisample one whatever ``samples``).
            self._main_cb_ms, self._main_db_ms = GL.glGenRenderbuffers(2)
            self._main_fb_ms = self._framebuffer(self._main_cb_ms, self._main_db_ms, self.samples)
            self._main_fb_dims = (width, height)

        def _framebuffer(self, color: int, depth: int, count: int) -> int:
            for buffer, storage in ((color, GL.GL_RGBA8), (depth, GL.GL_DEPTH_COMPONENT24)):
                GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, buffer)
                if count > 0:
                    GL.glRenderbufferStorageMultisample(
                        GL.GL_RENDERBUFFER, count, storage, width, height
                    )
                else:
                    GL.glRenderbufferStorage(GL.GL_RENDERBUFFER, storage, width, height)
            framebuffer = int(GL.glGenFramebuffers(1))
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, framebuffer)
            GL.glFramebufferRenderbuffer(
                GL.GL_DRAW_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_RENDERBUFFER, color
            )
            GL.glFramebufferRenderbuffer(
                GL.GL_DRAW_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, depth
            )
            return framebuffer

        def _read_main_framebuffer(self, scene: Any, flags: int) -> Any:
            target = self.target
            if target is None:
                return super()._read_main_framebuffer(scene, flags)
            source = self._main_fb_ms
            if self.samples > 0:
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._main_fb_ms)
                GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._main_fb)
                GL.glBlitFramebuffer(
                    0, 0, width, height, 0, 0, width, height,
                    GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST,
                )  # fmt: skip
                source = self._main_fb
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, source)
            GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
            if self.pack_invert is None:
                count = int(GL.glGetIntegerv(GL.GL_NUM_EXTENSIONS))
                names = {GL.glGetStringi(GL.GL_EXTENSIONS, index) for index in range(count)}
                self.pack_invert = b"GL_MESA_pack_invert" in names
            if self.pack_invert:
                # Mesa returns the rows top to bottom: straight into the caller's image.
                GL.glPixelStorei(PACK_INVERT_MESA, 1)
                GL.glReadPixels(0, 0, width, height, GL.GL_RGB, GL.GL_UNSIGNED_BYTE, target)
                GL.glPixelStorei(PACK_INVERT_MESA, 0)
            else:
                GL.glReadPixels(
                    0, 0, width, height, GL.GL_RGB, GL.GL_UNSIGNED_BYTE, self.readback
                )  # fmt: skip
                target[...] = self.readback[::-1]
            return target

    return SceneRenderer()


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
        try:
            self._renderer = pyrender.OffscreenRenderer(config.width, config.height)
            self._renderer._renderer = _scene_renderer(
                config.width,
                config.height,
                ANTIALIAS_SAMPLES if config.antialias else 0,
            )
        except Exception as err:  # pyrender raises bare RuntimeError/ImportError variants
            raise AnchorError(
                f"render.backend: cannot create an offscreen {os.environ['PYOPENGL_PLATFORM']} "
                f"context ({err}); try render.backend=osmesa or egl"
            ) from err
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
        from OpenGL import GL

        interleaved = self._interleaved
        interleaved[:, :3] = positions
        interleaved[:, 3:] = normals
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._primitive._buffers[0])
        GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, interleaved.nbytes, interleaved)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)

    def render(
        self, vertices: NDArray[np.float32], intrinsics: Sequence[Intrinsics]
    ) -> NDArray[np.uint8]:
        """``(N, V, 3)`` OpenCV camera-space vertices -> ``(N, H, W, 3)`` uint8 RGB images."""
        import pyrender

        if len(intrinsics) != len(vertices):
            raise ValueError(f"{len(vertices)} frames of vertices, {len(intrinsics)} cameras")
        images = np.empty((len(vertices), self.config.height, self.config.width, 3), np.uint8)
        # OpenCV (y down, z forward) -> OpenGL (y up, z backward): a rotation, so the
        # triangle winding (and back-face culling) is preserved.
        positions = vertices * np.array([1.0, -1.0, -1.0], dtype=np.float32)
        # A subclass with its own _upload (extra vertex attributes) keeps writing the buffer.
        own_upload = type(self)._upload is MeshRenderer._upload
        normals = self.vertex_normals(positions) if own_upload else None
        platform, scene_renderer = self._renderer._platform, self._renderer._renderer
        platform.make_current()
        try:
            for index, camera in enumerate(intrinsics):
                if normals is not None:
                    self._write_vertices(positions[index], normals[index])
                else:
                    self._upload(positions[index])
                self._camera.fx, self._camera.fy = camera.fx, camera.fy
                self._camera.cx, self._camera.cy = camera.cx, camera.cy
                scene_renderer.target = images[index]
                scene_renderer.render(self._scene, pyrender.RenderFlags.OFFSCREEN)
                self._uploaded = True
        finally:
            scene_renderer.target = None
            platform.make_uncurrent()
        return images

    def close(self) -> None:
        """Frees this renderer's GL objects and context.

        pyrender's EGL teardown calls eglTerminate on the display, which every
        renderer of the process shares: it would break the other sessions' renderers.
        Here only this context is destroyed.
        """
        platform = self._renderer._platform
        if platform is None:
            return
        if os.environ.get("PYOPENGL_PLATFORM") == "egl":
            from OpenGL import EGL

            platform.make_current()
            self._renderer._renderer.delete()
            EGL.eglMakeCurrent(
                platform._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT
            )
            EGL.eglDestroyContext(platform._egl_display, platform._egl_context)
            platform._egl_context = None
            platform._egl_display = None
            self._renderer._platform = None
        else:
            self._renderer.delete()


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
