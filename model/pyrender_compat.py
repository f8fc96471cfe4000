"""Everything that reaches past pyrender 0.1.45's public API, and why.

model/render.py and model/training/dressed.py draw through these functions only; each
one names the pyrender (or PyOpenGL, NumPy) behaviour it works around:

- ``configure_gl``: PyOpenGL binds its platform (EGL or OSMesa) from
  ``PYOPENGL_PLATFORM`` when OpenGL is first imported, and cannot change it afterwards;
  pyrender's ``Mesh.bounds`` uses ``np.infty``, an alias NumPy 2 removed.
- ``create_offscreen``: pyrender's ``OffscreenRenderer`` always builds a plain
  ``Renderer``, which draws into a 4x multisample framebuffer, resolves colour AND depth
  and reads both back (with OSMesa it reads the default framebuffer, never antialiased),
  and compiles its mesh shader with light counts, lights and camera position as
  uniforms. Its ``_renderer`` is replaced by ``_SceneRenderer`` (own framebuffers, a
  colour-only readback) whose shader cache lets the caller rewrite ``mesh.frag``.
- ``write_vertex_buffer``: pyrender uploads a primitive's vertices once; changing them
  needs a new primitive (new GL objects). This writes its interleaved buffer in place.
- ``release``: pyrender's EGL teardown calls ``eglTerminate`` on the display, which all
  renderers of the process share; this destroys only the renderer's own context.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model.errors import AnchorError

PACK_INVERT_MESA = 0x8758  # GL_MESA_pack_invert: glReadPixels rows top to bottom


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
    if "OpenGL" in sys.modules and current != chosen:
        raise AnchorError(
            f"render.backend: OpenGL is already loaded for {current!r}, cannot switch to "
            f"{chosen!r} in this process"
        )
    os.environ["PYOPENGL_PLATFORM"] = chosen
    # pyrender's Mesh.bounds reads np.infty, which NumPy 2 removed.
    if not hasattr(np, "infty"):
        np.infty = np.inf  # type: ignore[attr-defined]
    return chosen


def _program_cache(fragment: Callable[[str], str] | None) -> Any:
    """pyrender's shader cache; with ``fragment``, mesh programs compile
    ``fragment(text of mesh.frag)`` instead of the file's text.

    pyrender reads shader files in ``ShaderProgram._load`` and offers no hook for their
    text: each new, not yet compiled mesh program gets its own ``_load`` wrapping the
    original one.
    """
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
                fragment is not None
                and fragment_shader == "mesh.frag"
                and not program._in_context()
                and "_load" not in vars(program)
            ):
                load = program._load

                def specialized_load(filename: str) -> str:
                    text = load(filename)
                    if filename.endswith("mesh.frag"):
                        text = fragment(text)
                    return str(text)

                program._load = specialized_load
            return program

    return ProgramCache()


def _scene_renderer(
    width: int, height: int, samples: int, fragment: Callable[[str], str] | None
) -> Any:
    """pyrender's ``Renderer`` drawing into a ``samples``-per-pixel framebuffer (0: none).

    pyrender always draws offscreen into a 4x multisample framebuffer, resolves colour
    AND depth into a second one and reads both back. Here the draw framebuffer has
    ``samples`` samples (0: single-sample), and with ``target`` set (an ``(H, W, 3)``
    uint8 image) the readback resolves and reads colour alone, rows top to bottom,
    straight into it (Mesa's pack-invert; a flipped copy where that is missing). Without
    ``target`` it returns ``(color, depth)`` exactly as pyrender does.
    """
    import pyrender
    from OpenGL import GL

    class SceneRenderer(pyrender.Renderer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(width, height)
            self._program_cache = _program_cache(fragment)
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


def create_offscreen(
    width: int, height: int, samples: int, fragment: Callable[[str], str] | None = None
) -> Any:
    """A pyrender ``OffscreenRenderer`` (its GL context on the calling thread) whose
    renderer draws into ``samples``-per-pixel framebuffers (0: single-sample) and, with
    ``fragment``, compiles mesh programs from ``fragment(text of mesh.frag)``.

    Its ``render(scene)`` returns ``(color, depth)`` as pyrender's does; ``draw_into``
    is the colour-only path. Raises AnchorError when the context cannot be created.
    """
    import pyrender

    try:
        offscreen = pyrender.OffscreenRenderer(width, height)
        offscreen._renderer = _scene_renderer(width, height, samples, fragment)
    except Exception as err:  # pyrender raises bare RuntimeError/ImportError variants
        raise AnchorError(
            f"render.backend: cannot create an offscreen {os.environ['PYOPENGL_PLATFORM']} "
            f"context ({err}); try render.backend=osmesa or egl"
        ) from err
    return offscreen


def make_current(offscreen: Any) -> None:
    """Makes the renderer's GL context current on the calling thread."""
    offscreen._platform.make_current()


@contextmanager
def drawing(offscreen: Any) -> Iterator[Callable[[Any, NDArray[np.uint8]], None]]:
    """With the context current: ``draw(scene, target)`` renders ``scene`` and reads its
    colour into ``target``, an ``(H, W, 3)`` uint8 image (rows top to bottom).

    The draw goes to the renderer's own framebuffers on both platforms (pyrender's
    ``OffscreenRenderer.render`` reads OSMesa's default framebuffer instead).
    """
    import pyrender

    platform, scene_renderer = offscreen._platform, offscreen._renderer

    def draw(scene: Any, target: NDArray[np.uint8]) -> None:
        scene_renderer.target = target
        scene_renderer.render(scene, pyrender.RenderFlags.OFFSCREEN)

    platform.make_current()
    try:
        yield draw
    finally:
        scene_renderer.target = None
        platform.make_uncurrent()


def write_vertex_buffer(primitive: Any, interleaved: NDArray[np.float32]) -> None:
    """Overwrites an uploaded primitive's interleaved vertex buffer (context current).

    interleaved: ``(V, K)`` float32 in pyrender's attribute order (positions, normals,
    then ``color_0`` when the primitive has it).
    """
    from OpenGL import GL

    GL.glBindBuffer(GL.GL_ARRAY_BUFFER, primitive._buffers[0])
    GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, interleaved.nbytes, interleaved)
    GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)


def release(offscreen: Any) -> None:
    """Frees the renderer's GL objects and its context, and only these (see the module
    docstring); a second call does nothing."""
    platform = offscreen._platform
    if platform is None:
        return
    if os.environ.get("PYOPENGL_PLATFORM") == "egl":
        from OpenGL import EGL

        platform.make_current()
        offscreen._renderer.delete()
        EGL.eglMakeCurrent(
            platform._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT
        )
        EGL.eglDestroyContext(platform._egl_display, platform._egl_context)
        platform._egl_context = None
        platform._egl_display = None
        offscreen._platform = None
    else:
        offscreen.delete()
