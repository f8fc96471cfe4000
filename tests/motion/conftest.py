"""Fixtures for the motion tests: the SMPL-X stand-in generated once into a tmp folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model.config import RenderConfig
from model.motion.frame import TALKSHOW_SETTINGS


@pytest.fixture(scope="session")
def render_config(standin_cache: Path) -> RenderConfig:
    return RenderConfig(standin_path=standin_cache, framing="full", width=256, height=256)


@pytest.fixture(scope="session")
def body_model(render_config: RenderConfig):  # type: ignore[no-untyped-def]
    from model.body import BodyModel

    return BodyModel.from_config(render_config, TALKSHOW_SETTINGS)


@pytest.fixture(scope="session")
def mesh_renderer(render_config: RenderConfig, body_model) -> Iterator[object]:  # type: ignore[no-untyped-def]
    from model.render import MeshRenderer

    renderer = MeshRenderer(body_model.faces, body_model.vertex_count, render_config)
    yield renderer
    renderer.close()
