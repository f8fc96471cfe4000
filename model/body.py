"""The SMPL-X body model: motion frames -> posed vertices, joints and face landmarks.

``smplx.SMPLX`` loads the model file (real, from ``RenderConfig.smplx_path``, or the
generated stand-in). Its own forward re-concatenates the 400 shape/expression
directions (50 MB) on every call; ``BodyModel.forward`` runs the same linear blend
skinning with those bases prepared once, and equals smplx's output (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from model.config import RenderConfig
from model.errors import AnchorError
from model.motion.frame import BodyModelSettings, MotionFrame


@dataclass(slots=True)
class BodyOutput:
    """Posed meshes of a window of N frames (model coordinates, metres)."""

    vertices: NDArray[np.float32]  # (N, V, 3)
    joints: NDArray[np.float32]  # (N, 55, 3) the skeleton joints
    landmarks: NDArray[np.float32]  # (N, 51, 3) the static face landmarks (iBUG 17..67)


def model_folder(config: RenderConfig) -> Path:
    """The folder holding ``smplx/SMPLX_<GENDER>.npz``: configured, or the stand-in."""
    if config.smplx_path is not None:
        file = config.smplx_path / "smplx" / f"SMPLX_{config.gender.upper()}.npz"
        if not file.is_file():
            raise AnchorError(
                f"render.smplx_path: {file} not found (expected FOLDER/smplx/SMPLX_<GENDER>.npz)"
            )
        return config.smplx_path
    from model.standin import ensure_standin

    return ensure_standin(config.standin_path, config.gender)


class BodyModel:
    """Batched SMPL-X forward for windows of frames of any length."""

    def __init__(
        self, folder: Path, settings: BodyModelSettings, gender: str | None = None
    ) -> None:
        import smplx

        self.settings = settings
        self.smplx = smplx.SMPLX(
            str(folder / "smplx"),
            gender=gender or settings.gender,
            num_betas=settings.num_betas,
            num_expression_coeffs=settings.num_expression,
            use_pca=settings.use_pca,
            num_pca_comps=settings.num_pca_comps,
            flat_hand_mean=settings.flat_hand_mean,
            batch_size=1,
        )
        self.smplx.requires_grad_(False)
        model = self.smplx
        self.num_betas = int(model.num_betas)
        self.num_expression = int(model.num_expression_coeffs)
        directions = torch.cat([model.shapedirs, model.expr_dirs], dim=-1)  # (V, 3, K)
        vertex_count = directions.shape[0]
        self.vertex_count = int(vertex_count)
        self._directions = directions.reshape(vertex_count * 3, -1).T.contiguous()  # (K, V*3)
        # Joints are linear in the shape: J = J_regressor (v_template + dirs @ c).
        self._joint_template = model.J_regressor @ model.v_template  # (55, 3)
        joint_directions = torch.einsum("jv,vck->jck", model.J_regressor, directions)
        self._joint_directions = joint_directions.reshape(-1, directions.shape[-1]).T.contiguous()
        self._pose_correctives = bool(model.posedirs.abs().max() > 0)
        self.faces: NDArray[np.int64] = np.asarray(model.faces, dtype=np.int64)  # (F, 3)

    @classmethod
    def from_config(cls, config: RenderConfig, settings: BodyModelSettings) -> BodyModel:
        return cls(model_folder(config), settings, config.gender)

    def stack(self, frames: Sequence[MotionFrame]) -> dict[str, torch.Tensor]:
        """The window's parameters as ``(N, k)`` float32 tensors, padded to the model's counts."""
        hand = self.settings.num_pca_comps if self.settings.use_pca else 45
        arrays: dict[str, np.ndarray] = {}
        for name, width in (("betas", self.num_betas), ("expression", self.num_expression)):
            table = np.zeros((len(frames), width), dtype=np.float32)
            for row, frame in enumerate(frames):
                value = getattr(frame, name)
                if value.shape[0] > width:
                    raise AnchorError(
                        f"frame {frame.seq}: {value.shape[0]} {name} values, the body model "
                        f"takes {width}"
                    )
                table[row, : value.shape[0]] = value
            arrays[name] = table
        for frame in frames:
            if frame.hand_size() != hand:
                raise AnchorError(
                    f"frame {frame.seq}: {frame.hand_size()} hand values, the body model "
                    f"expects {hand}"
                )
        for name in ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
                     "left_hand_pose", "right_hand_pose", "transl"):  # fmt: skip
            arrays[name] = np.stack([getattr(frame, name) for frame in frames])
        return {name: torch.from_numpy(value) for name, value in arrays.items()}

    @torch.inference_mode()
    def forward(self, frames: Sequence[MotionFrame]) -> BodyOutput:
        """Poses a window of frames; see ``forward_tensors``."""
        return self.forward_tensors(self.stack(frames))

    @torch.inference_mode()
    def forward_tensors(self, params: dict[str, torch.Tensor]) -> BodyOutput:
        """Linear blend skinning of ``params`` (as built by ``stack``), every tensor ``(N, k)``."""
        from smplx.lbs import batch_rigid_transform, batch_rodrigues

        model = self.smplx
        count = params["global_orient"].shape[0]
        left, right = params["left_hand_pose"], params["right_hand_pose"]
        if self.settings.use_pca:
            left = left @ model.left_hand_components
            right = right @ model.right_hand_components
        full_pose = torch.cat(
            [params["global_orient"], params["body_pose"], params["jaw_pose"],
             params["leye_pose"], params["reye_pose"], left, right],
            dim=1,
        ) + model.pose_mean  # fmt: skip
        coefficients = torch.cat([params["betas"], params["expression"]], dim=1)
        vertex_count = model.v_template.shape[0]
        shaped = model.v_template + (coefficients @ self._directions).view(count, vertex_count, 3)
        joints = self._joint_template + (coefficients @ self._joint_directions).view(count, -1, 3)
        rotations = batch_rodrigues(full_pose.reshape(-1, 3)).view(count, -1, 3, 3)
        posed = shaped
        if self._pose_correctives:
            identity = torch.eye(3, dtype=rotations.dtype)
            features = (rotations[:, 1:] - identity).reshape(count, -1)
            posed = shaped + (features @ model.posedirs).view(count, vertex_count, 3)
        posed_joints, transforms = batch_rigid_transform(rotations, joints, model.parents)
        blended = (model.lbs_weights @ transforms.view(count, -1, 16)).view(count, -1, 4, 4)
        vertices = (blended[:, :, :3, :3] @ posed.unsqueeze(-1)).squeeze(-1) + blended[:, :, :3, 3]
        corners = vertices[:, model.faces_tensor[model.lmk_faces_idx]]  # (N, 51, 3, 3)
        landmarks = torch.einsum("nlci,lc->nli", corners, model.lmk_bary_coords)
        offset = params["transl"].unsqueeze(1)
        return BodyOutput(
            vertices=(vertices + offset).numpy(),
            joints=(posed_joints + offset).numpy(),
            landmarks=(landmarks + offset).numpy(),
        )
