"""What every streaming sampler core shares: the clip being received.

A clip is the run of frames between two resets (or flushes). Each frame gets a
``position`` 0, 1, 2, ... within its clip; its initial noise is drawn for that position
with ``model.noise.frame_noise``, so a streamed clip and an offline run over the same
frames start from identical latents. Condition features are encoded in batches aligned
to window ends (never to how the input happened to be chunked), so the encoder sees the
same batches whatever the chunking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from model.config import SamplerConfig
from model.denoiser import FrameScheduler, WindowDenoiser
from model.errors import AnchorError
from model.noise import frame_noise
from model.windows import window_stride
from streaming.batching import SamplerStats
from streaming.frames import CommittedFrame, ConditionFrame

if TYPE_CHECKING:
    from streaming.frames import FrameFace


@dataclass(slots=True)
class PendingFrame:
    """A received frame that is not committed yet.

    image: (3, H, W) condition image until encoded, then None.
    condition: (...) encoded features, None until encoded.
    latent: (C, h, w) float32 at denoising step ``step`` (0 = initial noise).
    contributions: window index -> (C, h, w) guided noise predicted at ``step``.
    """

    seq: int
    pts: float
    face: FrameFace | None
    image: torch.Tensor | None
    condition: torch.Tensor | None = None
    latent: torch.Tensor | None = None
    step: int = 0
    contributions: dict[int, torch.Tensor] = field(default_factory=dict)


class ClipState:
    """Input bookkeeping of one sampler: positions, seq order, epochs, encoding, noise."""

    def __init__(
        self, denoiser: WindowDenoiser, scheduler: FrameScheduler, config: SamplerConfig
    ) -> None:
        self.denoiser = denoiser
        self.scheduler = scheduler
        self.config = config
        self.window_size = config.window_size
        self.overlap = config.overlap
        self.stride = window_stride(config.window_size, config.overlap)
        self.timesteps = [int(t) for t in scheduler.timesteps.tolist()]
        if len(self.timesteps) != config.steps:
            raise AnchorError(
                f"sampler.steps is {config.steps} but the scheduler has "
                f"{len(self.timesteps)} timesteps; build the scheduler with sampler.steps"
            )
        self.steps = len(self.timesteps)
        self.latent_shape = (
            int(denoiser.latent_channels),
            int(denoiser.latent_height),
            int(denoiser.latent_width),
        )
        self.stats = SamplerStats()
        self.epoch = 0
        self.frames: dict[int, PendingFrame] = {}
        self.received = 0
        self.commit_next = 0
        self.encoded_until = 0
        self.last_seq: int | None = None

    def new_clip(self) -> None:
        """Forget every frame of the current clip and start the next epoch."""
        self.epoch += 1
        self.frames = {}
        self.received = 0
        self.commit_next = 0
        self.encoded_until = 0
        self.last_seq = None

    def receive(self, frames: list[ConditionFrame]) -> None:
        """Take new frames in; seq must increase strictly within a clip."""
        for frame in frames:
            if self.last_seq is not None and frame.seq <= self.last_seq:
                raise AnchorError(
                    f"frame seq {frame.seq} does not follow seq {self.last_seq}: "
                    "seq must increase strictly within a clip"
                )
            if frame.features is None and (
                frame.condition.ndim != 3 or frame.condition.shape[0] != 3
            ):
                raise AnchorError(
                    f"frame seq {frame.seq}: condition must be (3, H, W), "
                    f"got {tuple(frame.condition.shape)}"
                )
            self.last_seq = frame.seq
            self.frames[self.received] = PendingFrame(
                seq=frame.seq,
                pts=frame.pts,
                face=frame.face,
                image=None if frame.features is not None else frame.condition,
                condition=frame.features,
            )
            self.received += 1

    def encode_until(self, end: int) -> None:
        """Encode conditions and draw initial noise for every frame before ``end``."""
        if end <= self.encoded_until:
            return
        positions = range(self.encoded_until, end)
        to_encode = [p for p in positions if self.frames[p].condition is None]
        if to_encode:
            images = torch.stack([self._take_image(p) for p in to_encode])
            started = time.perf_counter()
            features = self.denoiser.encode_conditions(images)
            self.stats.model_seconds += time.perf_counter() - started
            self.stats.encoded_frames += len(to_encode)
            for row, position in enumerate(to_encode):
                self.frames[position].condition = features[row]
        device = self.condition(positions[0]).device
        noise = frame_noise(
            self.config.seed,
            positions,
            self.latent_shape,
            self.config.same_frame_noise,
            device=device,
            noise_device=self.config.noise_device,
        ).to(device)
        for row, position in enumerate(positions):
            self.frames[position].latent = noise[row]
        self.encoded_until = end

    def condition(self, position: int) -> torch.Tensor:
        """The encoded condition of an uncommitted frame (after ``encode_until``)."""
        condition = self.frames[position].condition
        if condition is None:
            raise RuntimeError(f"frame at position {position} is not encoded yet")
        return condition

    def latent(self, position: int) -> torch.Tensor:
        """The current latent of an uncommitted frame (its initial noise in mode low)."""
        latent = self.frames[position].latent
        if latent is None:
            raise RuntimeError(f"frame at position {position} has no latent yet")
        return latent

    def _take_image(self, position: int) -> torch.Tensor:
        pending = self.frames[position]
        image = pending.image
        if image is None:
            raise RuntimeError(f"frame at position {position} has no condition image")
        pending.image = None
        return image

    def commit(self, position: int, latent: torch.Tensor) -> CommittedFrame:
        """Hand the frame at ``position`` out; it must be the next one in order."""
        if position != self.commit_next:
            raise RuntimeError(f"commit out of order: {position} before {self.commit_next}")
        pending = self.frames.pop(position)
        self.commit_next += 1
        return CommittedFrame(
            seq=pending.seq,
            pts=pending.pts,
            epoch=self.epoch,
            position=position,
            latent=latent,
            face=pending.face,
        )

    def windows_containing(self, position: int) -> range:
        """Indices k of the windows [k*s, k*s+ws) that contain ``position``.

        Independent of the clip length: every such window starts at or before the
        frame, so it exists in the official set whatever L turns out to be, and a
        truncated last window still reaches the frame (it is cut at L > position).
        """
        first = max(0, -((self.window_size - 1 - position) // self.stride))
        return range(first, position // self.stride + 1)
