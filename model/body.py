"""The SMPL-X body model: motion frames -> posed vertices, joints and face landmarks.

``smplx.SMPLX`` loads the model file (real, from ``RenderConfig.smplx_path``, or the
generated stand-in). ``BodyModel.forward`` runs the same linear blend skinning as smplx's
own forward and equals its output (tested), with the work smplx repeats on every call done
once: the 400 shape/expression directions (50 MB) are prepared at load, the body shape
(300 betas) is cached per session, expressions move only the face vertices they affect,
skinning runs over each vertex's few non-zero weights, and ``R v + t`` is element-wise.
The forward runs torch on ``BODY_THREADS`` intra-op threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from model.config import RenderConfig
from model.errors import AnchorError
from model.motion.frame import BodyModelSettings, MotionFrame

# Intra-op threads for the forward. The forward is many small ops: with a second
# OpenMP thread each one waits for it, and when the cores are busy (renderer, model
# worker) a window takes several times longer. torch's setting is process-wide: while
# any forward runs, the whole process uses this many threads.
BODY_THREADS = 1
# Vertices following more joints than this are blended with the dense (V, 55) product.
DENSE_SKINNING_WIDTH = 8


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
        vertex_count = model.v_template.shape[0]
        self.vertex_count = int(vertex_count)
        # Shape and expression directions as (K, V*3) matrices. Joints are linear in them:
        # J = J_regressor (v_template + dirs @ c).
        self._shape_directions = _flat_directions(model.shapedirs)
        self._joint_template = model.J_regressor @ model.v_template  # (55, 3)
        self._joint_shape_directions = _joint_directions(model.J_regressor, model.shapedirs)
        self._joint_expression_directions = _joint_directions(model.J_regressor, model.expr_dirs)
        # Expressions move the face only: the product runs over the vertices they move.
        moved = model.expr_dirs.abs().sum(dim=(1, 2)) > 0
        self._expression_vertices = torch.nonzero(moved).squeeze(1)  # (E,) int64
        self._expression_directions = _flat_directions(model.expr_dirs[moved])  # (100, E*3)
        self._shape_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._pose_correctives = bool(model.posedirs.abs().max() > 0)
        # Skinning weights as (V, J) sparse rows: each vertex follows a few joints.
        self._skinning = _SparseWeights(model.lbs_weights)
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

    def _shaped_template(self, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(V, 3)`` vertices and ``(55, 3)`` joints of one body shape ``(num_betas,)``.

        A session keeps its betas, so the product with the 300 shape directions (the
        largest of the forward) is cached for the last shape seen.
        """
        cached = self._shape_cache
        if cached is not None and torch.equal(cached[0], betas):
            return cached[1], cached[2]
        model = self.smplx
        vertices = model.v_template + (betas @ self._shape_directions).view(-1, 3)
        joints = self._joint_template + (betas @ self._joint_shape_directions).view(-1, 3)
        self._shape_cache = (betas.clone(), vertices, joints)
        return vertices, joints

    @torch.inference_mode()
    def forward_tensors(self, params: dict[str, torch.Tensor]) -> BodyOutput:
        """Linear blend skinning of ``params`` (as built by ``stack``), every tensor ``(N, k)``.

        Runs on one intra-op thread (``BODY_THREADS``): see the module docstring.
        """
        with _INTRA_OP_THREADS.limited(BODY_THREADS):
            return self._forward(params)

    def _forward(self, params: dict[str, torch.Tensor]) -> BodyOutput:
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
        betas, expression = params["betas"], params["expression"]
        if bool((betas == betas[:1]).all()):
            template, template_joints = self._shaped_template(betas[0])
            shaped = template.expand(count, -1, -1).clone()
            joints = template_joints + (expression @ self._joint_expression_directions).view(
                count, -1, 3
            )
        else:
            vertex_count = self.vertex_count
            shaped = model.v_template + (betas @ self._shape_directions).view(
                count, vertex_count, 3
            )
            joints = (
                self._joint_template
                + (betas @ self._joint_shape_directions).view(count, -1, 3)
                + (expression @ self._joint_expression_directions).view(count, -1, 3)
            )
        moved = self._expression_vertices
        shaped[:, moved] += (expression @ self._expression_directions).view(count, len(moved), 3)
        rotations = batch_rodrigues(full_pose.reshape(-1, 3)).view(count, -1, 3, 3)
        if self._pose_correctives:
            identity = torch.eye(3, dtype=rotations.dtype)
            features = (rotations[:, 1:] - identity).reshape(count, -1)
            shaped += (features @ model.posedirs).view(count, self.vertex_count, 3)
        posed_joints, transforms = batch_rigid_transform(rotations, joints, model.parents)
        blended = self._skinning.blend(transforms[:, :, :3, :])  # (N, V, 3, 4)
        # (R v + t) per vertex, written out: far faster than 3x3 batched matmuls.
        vertices = torch.addcmul(blended[..., 3], blended[..., 0], shaped[..., 0:1])
        vertices.addcmul_(blended[..., 1], shaped[..., 1:2])
        vertices.addcmul_(blended[..., 2], shaped[..., 2:3])
        corners = vertices[:, model.faces_tensor[model.lmk_faces_idx]]  # (N, 51, 3, 3)
        landmarks = torch.einsum("nlci,lc->nli", corners, model.lmk_bary_coords)
        offset = params["transl"].unsqueeze(1)
        vertices += offset
        return BodyOutput(
            vertices=vertices.numpy(),
            joints=(posed_joints + offset).numpy(),
            landmarks=(landmarks + offset).numpy(),
        )


class _IntraOpThreads:
    """Lowers torch's (process-wide) intra-op thread count while any caller is inside.

    Render threads run forwards concurrently: the first one in saves the count, the
    last one out restores it, so overlapping callers never leave it lowered.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._saved = 0

    @contextmanager
    def limited(self, count: int) -> Iterator[None]:
        with self._lock:
            if self._inside == 0:
                self._saved = torch.get_num_threads()
                torch.set_num_threads(count)
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0:
                    torch.set_num_threads(self._saved)


_INTRA_OP_THREADS = _IntraOpThreads()


def _flat_directions(directions: torch.Tensor) -> torch.Tensor:
    """``(V, 3, K)`` blend directions -> ``(K, V*3)`` contiguous float32."""
    return directions.reshape(-1, directions.shape[-1]).T.contiguous()


def _joint_directions(regressor: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``(K, 55*3)``: how each direction moves the regressed joints."""
    return _flat_directions(torch.einsum("jv,vck->jck", regressor, directions))


class _SparseWeights:
    """Skinning weights ``(V, J)`` stored as each vertex's ``K`` non-zero entries.

    SMPL-X vertices follow at most a handful of its 55 joints; blending only those
    is exact (the skipped weights are zero) and far cheaper than the dense product.
    """

    def __init__(self, weights: torch.Tensor) -> None:
        self.weights = weights
        self.width = max(int((weights != 0).sum(dim=1).max()), 1)
        indices = weights.abs().topk(self.width, dim=1).indices  # (V, K)
        self.values = weights.gather(1, indices).contiguous()
        self.indices = indices.contiguous()

    def blend(self, transforms: torch.Tensor) -> torch.Tensor:
        """``(N, J, 3, 4)`` joint transforms -> ``(N, V, 3, 4)`` per-vertex blends."""
        flat = transforms.reshape(transforms.shape[0], transforms.shape[1], 12)
        if self.width > DENSE_SKINNING_WIDTH:
            return (self.weights @ flat).view(transforms.shape[0], -1, 3, 4)
        blended = flat[:, self.indices[:, 0]] * self.values[:, 0:1]
        for column in range(1, self.width):
            blended.addcmul_(flat[:, self.indices[:, column]], self.values[:, column : column + 1])
        return blended.view(transforms.shape[0], -1, 3, 4)
