"""The fast paths of the body model and renderer give the reference results."""

from __future__ import annotations

import numpy as np
import torch
from motion_helpers import random_frame, talkshow_frame

from model.config import RenderConfig
from model.motion.frame import MotionFrame
from model.render import Intrinsics, MeshRenderer, SessionCamera
from model.smplx_layout import JOINT


def _mass(image: np.ndarray) -> np.ndarray:
    return image.max(axis=-1) > 10


def _shared_betas_window(generator: np.random.Generator, betas: np.ndarray) -> list[MotionFrame]:
    frames = [random_frame(seq, generator) for seq in range(4)]
    for frame in frames:
        frame.betas = betas.copy()
    return frames


def test_shared_betas_window_equals_smplx_and_the_shape_cache_follows_betas(body_model) -> None:  # type: ignore[no-untyped-def]
    generator = np.random.default_rng(1)
    first_betas = generator.normal(0.0, 0.5, 300).astype(np.float32)
    second_betas = generator.normal(0.0, 0.5, 300).astype(np.float32)
    # The second window reuses the cached shape, the third must replace it.
    for betas in (first_betas, first_betas, second_betas):
        params = body_model.stack(_shared_betas_window(generator, betas))
        ours = body_model.forward_tensors(params)
        with torch.inference_mode():
            reference = body_model.smplx(**params)
        np.testing.assert_allclose(ours.vertices, reference.vertices.numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.joints, reference.joints[:, :55].numpy(), atol=1e-5)


def test_forward_restores_the_callers_thread_count(body_model) -> None:  # type: ignore[no-untyped-def]
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        body_model.forward([MotionFrame(seq=0, pts=0.0)])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_overlapping_forwards_restore_the_thread_count() -> None:
    """Two render threads' forwards overlap: A enters, B enters, A leaves, B leaves."""
    from model.body import _IntraOpThreads

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        limiter = _IntraOpThreads()
        first, second = limiter.limited(1), limiter.limited(1)
        first.__enter__()
        second.__enter__()
        assert torch.get_num_threads() == 1
        first.__exit__(None, None, None)
        assert torch.get_num_threads() == 1  # the second forward is still running
        second.__exit__(None, None, None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_sparse_skinning_equals_the_dense_product() -> None:
    from model.body import DENSE_SKINNING_WIDTH, _SparseWeights

    generator = torch.Generator().manual_seed(0)
    transforms = torch.randn(3, 55, 3, 4, generator=generator)
    for width in (1, 4, DENSE_SKINNING_WIDTH + 3):
        weights = torch.zeros(200, 55)
        for row in range(200):
            joints = torch.randperm(55, generator=generator)[: 1 + row % width]
            weights[row, joints] = torch.rand(len(joints), generator=generator)
        dense = (weights @ transforms.reshape(3, 55, 12)).view(3, 200, 3, 4)
        torch.testing.assert_close(_SparseWeights(weights).blend(transforms), dense)


def _pyrender_reference(
    config: RenderConfig, body_model, vertices: np.ndarray, camera: Intrinsics
) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The same scene through pyrender's own renderer, shader, framebuffers and readback."""
    import pyrender

    renderer = MeshRenderer(body_model.faces, body_model.vertex_count, config)
    try:
        offscreen = renderer._renderer
        offscreen._renderer = pyrender.Renderer(config.width, config.height)
        renderer._upload(np.ascontiguousarray(vertices * np.array([1.0, -1.0, -1.0], np.float32)))
        renderer._camera.fx, renderer._camera.fy = camera.fx, camera.fy
        renderer._camera.cx, renderer._camera.cy = camera.cx, camera.cy
        # pyrender's framebuffer path (the one its OffscreenRenderer takes with EGL).
        offscreen._platform.make_current()
        color, _ = offscreen._renderer.render(renderer._scene, pyrender.RenderFlags.OFFSCREEN)
        return np.array(color[..., :3])
    finally:
        renderer.close()


def _posed_window(render_config: RenderConfig, body_model) -> tuple[np.ndarray, Intrinsics]:  # type: ignore[no-untyped-def]
    frames = [talkshow_frame(seq) for seq in range(2)]
    frames[1].body_pose[3 * (JOINT["head"] - 1) + 1] = 0.5
    body = body_model.forward(frames)
    camera = SessionCamera.from_body(body, render_config)
    return camera.to_camera(body.vertices), camera.intrinsics


def test_antialiased_render_equals_pyrender_pixel_for_pixel(
    render_config: RenderConfig, body_model
) -> None:  # type: ignore[no-untyped-def]
    vertices, camera = _posed_window(render_config, body_model)
    config = render_config.model_copy(update={"antialias": True})
    renderer = MeshRenderer(body_model.faces, body_model.vertex_count, config)
    try:
        images = renderer.render(vertices, [camera, camera])
        assert _mass(images[1]).mean() > 0.05
        reference = _pyrender_reference(config, body_model, vertices[1], camera)
        np.testing.assert_array_equal(images[1], reference)
    finally:
        renderer.close()


def test_render_without_antialiasing_differs_only_on_the_silhouette(
    render_config: RenderConfig, body_model
) -> None:  # type: ignore[no-untyped-def]
    vertices, camera = _posed_window(render_config, body_model)
    images = {}
    for antialias in (True, False):
        config = render_config.model_copy(update={"antialias": antialias})
        renderer = MeshRenderer(body_model.faces, body_model.vertex_count, config)
        try:
            first = renderer.render(vertices, [camera, camera])
            np.testing.assert_array_equal(renderer.render(vertices, [camera, camera]), first)
        finally:
            renderer.close()
        images[antialias] = first
    sharp, smooth = images[False], images[True]
    mask = _mass(sharp[0])
    ys, xs = np.nonzero(mask)
    assert 0.05 < mask.mean() < 0.6
    assert abs(xs.mean() - mask.shape[1] / 2) < 0.1 * mask.shape[1]
    assert abs(ys.mean() - mask.shape[0] / 2) < 0.15 * mask.shape[0]
    # Away from every depth or silhouette edge both are the same shader's pixels.
    changed = np.abs(sharp.astype(int) - smooth.astype(int)).max(axis=-1) > 2
    assert 0 < changed.mean() < 0.05
    edges = np.zeros_like(changed)
    for frame in range(2):
        level = sharp[frame].astype(int).sum(axis=-1)
        jump = np.zeros_like(level, dtype=bool)
        jump[1:] |= np.abs(np.diff(level, axis=0)) > 30
        jump[:-1] |= np.abs(np.diff(level, axis=0)) > 30
        jump[:, 1:] |= np.abs(np.diff(level, axis=1)) > 30
        jump[:, :-1] |= np.abs(np.diff(level, axis=1)) > 30
        edges[frame] = jump
    assert changed[~edges].mean() < 0.002


def test_bench_render_reports_json(standin_cache, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from app.cli import main

    overrides = [
        "--set", f"render.standin_path={standin_cache}",
        "--set", "render.width=64", "--set", "render.height=64",
        "--set", "render.antialias=true",
    ]  # fmt: skip
    assert main([*overrides, "bench", "render", "--json", "--windows", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["antialias"] is True and (result["width"], result["window"]) == (64, 16)
    assert result["frames_per_second"] > 0 and result["smplx_ms_per_window"] > 0


def test_readback_without_pack_invert_gives_the_same_image(
    render_config: RenderConfig, body_model
) -> None:  # type: ignore[no-untyped-def]
    vertices, camera = _posed_window(render_config, body_model)
    renderer = MeshRenderer(body_model.faces, body_model.vertex_count, render_config)
    try:
        direct = renderer.render(vertices, [camera, camera])
        assert renderer._renderer._renderer.pack_invert  # Mesa (llvmpipe) has it
        renderer._renderer._renderer.pack_invert = False
        np.testing.assert_array_equal(renderer.render(vertices, [camera, camera]), direct)
    finally:
        renderer.close()
