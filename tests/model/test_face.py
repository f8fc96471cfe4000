"""Face SGDM on tiny real models: 9-channel inpainting UNet + 4-channel ControlNet."""

from __future__ import annotations

import pytest
import torch
from sgdm_helpers import FACE_SIZE, random_images, tiny_components

from model.face_sgdm import FaceEnhancer


@pytest.fixture(scope="module")
def face() -> FaceEnhancer:
    enhancer = tiny_components(steps=2, face=True).face
    assert enhancer is not None
    return enhancer


def _inputs(count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    crops = random_images(count, FACE_SIZE, seed=4)
    mesh = random_images(count, FACE_SIZE, seed=5)
    masks = torch.ones(count, 1, FACE_SIZE, FACE_SIZE)
    masks[:, :, 16:48, 16:48] = 0.0  # the face region is regenerated
    return crops, mesh, masks


def test_architecture_and_defaults(face: FaceEnhancer) -> None:
    assert face.unet.config["in_channels"] == 9
    assert face.controlnet.config["in_channels"] == 4
    assert face.guidance_scale == 3.5 and face.controlnet_scale == 1.0
    assert len(face.scheduler.timesteps) == 2


def test_enhance_shapes_and_range(face: FaceEnhancer) -> None:
    out = face.enhance(*_inputs(3))
    assert out.shape == (3, 3, FACE_SIZE, FACE_SIZE) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_frames_are_independent_and_share_one_noise(face: FaceEnhancer) -> None:
    crops, mesh, masks = _inputs(3)
    batch = face.enhance(crops, mesh, masks)
    single = face.enhance(crops[1:2], mesh[1:2], masks[1:2])
    assert torch.allclose(batch[1:2], single, atol=1e-5)
    same = face.enhance(crops[:1].expand(2, -1, -1, -1), mesh[:1].expand(2, -1, -1, -1), masks[:2])
    assert torch.allclose(same[0], same[1], atol=1e-6)  # one fixed noise for every frame


def test_regenerated_region_of_the_input_is_never_read(face: FaceEnhancer) -> None:
    """Official convention: 1 = keep, masked_image = image * (mask > 0.5)."""
    crops, mesh, masks = _inputs(1)
    other = crops.clone()
    other[:, :, 16:48, 16:48] = torch.rand(1, 3, 32, 32)
    assert torch.equal(face.enhance(crops, mesh, masks), face.enhance(other, mesh, masks))
    kept_changed = crops.clone()
    kept_changed[:, :, :8, :8] = 1.0 - kept_changed[:, :, :8, :8]
    difference = face.enhance(kept_changed, mesh, masks) - face.enhance(crops, mesh, masks)
    assert float(difference.abs().max()) > 1e-4


def test_mesh_crop_guides_the_result(face: FaceEnhancer) -> None:
    crops, mesh, masks = _inputs(1)
    other_mesh = random_images(1, FACE_SIZE, seed=11)
    difference = face.enhance(crops, mesh, masks) - face.enhance(crops, other_mesh, masks)
    assert float(difference.abs().max()) > 1e-5


def test_wrong_shapes_are_errors(face: FaceEnhancer) -> None:
    crops, mesh, masks = _inputs(2)
    with pytest.raises(ValueError, match="masks"):
        face.enhance(crops, mesh, masks[:, :, :32])
