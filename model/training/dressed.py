"""A renderer for the synthetic anchor: the body mesh with per-vertex colours.

A sibling of ``model.render.MeshRenderer`` (same scene, lights, camera convention and the
same EGL-safe ``close``): the mesh primitive carries a ``color_0`` vertex attribute and a
white material, so the lit colour is multiplied by each vertex's colour (pyrender's
shader). ``render`` also returns the foreground mask (depth > 0) so callers composite a
background scene behind the figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from model.config import RenderConfig
from model.pyrender_compat import make_current, write_vertex_buffer
from model.render import Intrinsics, MeshRenderer


class DressedRenderer(MeshRenderer):
    """``MeshRenderer`` whose mesh is coloured per vertex: colours ``(V, 3)`` float in [0, 1]."""

    def __init__(
        self, faces: NDArray[np.int64], colors: NDArray[np.float32], config: RenderConfig
    ) -> None:
        super().__init__(faces, len(colors), config)
        rgba = np.ones((len(colors), 4), dtype=np.float32)
        rgba[:, :3] = colors
        self._colors = rgba
        # Before the first draw, pyrender builds its interleaved buffer from these
        # attributes: positions, normals, color_0 (10 floats per vertex).
        self._primitive.color_0 = rgba
        self._primitive.material.baseColorFactor = np.ones(4, dtype=np.float32)

    def _upload(self, positions: NDArray[np.float32]) -> None:
        normals = self.vertex_normals(positions)
        if not self._uploaded:
            self._primitive.positions = positions
            self._primitive.normals = normals
            return
        data = np.ascontiguousarray(np.hstack([positions, normals, self._colors]), np.float32)
        make_current(self._renderer)
        write_vertex_buffer(self._primitive, data)

    def render_with_mask(
        self, vertices: NDArray[np.float32], intrinsics: Sequence[Intrinsics]
    ) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
        """``(N, V, 3)`` OpenCV camera-space vertices -> ``(N, H, W, 3)`` uint8 RGB and
        ``(N, H, W)`` bool foreground masks."""
        count, height, width = len(vertices), self.config.height, self.config.width
        images = np.empty((count, height, width, 3), np.uint8)
        masks = np.empty((count, height, width), bool)
        flip = np.array([1.0, -1.0, -1.0], dtype=np.float32)
        for index, (frame_vertices, camera) in enumerate(zip(vertices, intrinsics, strict=True)):
            self._upload(np.ascontiguousarray(frame_vertices * flip))
            self._camera.fx, self._camera.fy = camera.fx, camera.fy
            self._camera.cx, self._camera.cy = camera.cx, camera.cy
            color, depth = self._renderer.render(self._scene)
            self._uploaded = True
            images[index] = color[..., :3]
            masks[index] = depth > 0
        return images, masks
