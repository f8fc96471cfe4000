"""Configuration sections owned by the model layer.

These are plain pydantic models with no torch import, so any layer can load and validate
them without pulling in the model stack. Architecture hyper-parameters
(channel widths, attention heads, ...) are NOT here: they live in the
``config.json`` written beside each set of weights (diffusers convention).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AttentionMode = Literal["all-frame", "per-frame", "sparse"]
SamplerMode = Literal["offline", "exact", "low"]
Precision = Literal["auto", "float32", "float16", "bfloat16"]
# "ddim": the paper's sampler; "lcm": latent-consistency sampling for LCM-distilled weights
# (an LCM-LoRA in model.lora_path), 2-8 steps without CFG (model/scheduling.py).
SchedulerKind = Literal["ddim", "lcm"]
ControlNetResiduals = Literal["authors", "diffusers"]
NoiseDevice = Literal["cpu", "authors"]


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    """Which weights to load and how to run them.

    ``preset = "tiny"`` builds the real diffusers classes at tiny size from a seed
    (tests). ``preset = "bundle"`` loads a model trained with ``anchor train`` from the
    bundle folder ``checkpoint_path`` (the CPU demo model: clients/models/demo).
    ``preset = "sd15"`` loads real weights from local folders:
    nothing is ever fetched from a hub.
    """

    preset: Literal["tiny", "sd15", "bundle"] = "tiny"
    tiny_seed: int = 0
    # Local folder in diffusers layout (vae/, text_encoder/, tokenizer/, scheduler/, unet/).
    sd_path: Path | None = None
    # Local folder of SD-inpainting in diffusers layout (for the face model's 9-channel UNet).
    sd_inpainting_path: Path | None = None
    # Local folder of a transformers CLIPVisionModel (ViT-B/32 in the paper) + preprocessor.
    clip_path: Path | None = None
    # Make-Your-Anchor checkpoints: body/{unet,controlnet}, head/{unet,controlnet}.
    checkpoint_path: Path | None = None
    # Reference appearance image; None = the preset's own.
    reference_image: Path | None = None
    # Square model resolution in pixels (multiple of 8); None = the preset's (sd15 512, tiny 64).
    image_size: int | None = Field(None, ge=8, multiple_of=8)
    device: str = "auto"
    precision: Precision = "auto"
    attention: AttentionMode = "all-frame"
    # Share GroupNorm statistics across the frames of a window (the official inflated UNet).
    window_groupnorm: bool = False
    # How the ControlNet's down residuals reach the UNet. "diffusers": added out of place to
    # the skip features only (stock diffusers; how training and the project's bundles run).
    # "authors": the authors' inflated UNet adds them in place, so the mid block's input
    # (the same tensor as the last skip feature) also receives the last down residual; their
    # checkpoints were sampled that way. "auto": "authors" for preset sd15 (the authors'
    # checkpoints), "diffusers" for bundle and tiny.
    controlnet_residuals: Literal["auto", "authors", "diffusers"] = "auto"
    # Compute the ControlNet conditioning-image embedding once per window, not per step.
    cache_conditioning: bool = True
    # "onnxruntime" runs the graphs of ``anchor export-onnx`` from ``onnx_dir`` (model/onnx.py).
    backend: Literal["torch", "onnxruntime"] = "torch"
    onnx_dir: Path | None = None
    # ONNX Runtime execution providers in priority order; None = TensorRT and CUDA when the
    # installed onnxruntime has them, then CPU.
    onnx_providers: list[str] | None = None
    # torch intra-op threads of the process that runs the model (server worker, generate);
    # None = torch's default (one per core). On a small CPU shared with render threads and
    # video encoding, 1 is often faster: the second thread mostly contends.
    threads: int | None = Field(None, ge=1)
    # torch.compile the UNet and ControlNet: "auto" = on a CUDA device only (on the CPU the
    # compile takes minutes for little gain). compile_backend: torch.compile's backend.
    compile: Literal["off", "on", "auto"] = "off"
    compile_backend: str = "inductor"
    # A LoRA safetensors file (kohya or diffusers/peft key layout, e.g. an SD1.5 LCM-LoRA)
    # applied to the body UNet; every key must match the UNet (model/lora.py).
    # lora_fuse: merge it into the weights at load (no adapter cost per step).
    lora_path: Path | None = None
    lora_scale: float = 1.0
    lora_fuse: bool = False
    # The same for the face UNet (the 9-channel face SGDM).
    face_lora_path: Path | None = None
    face_lora_scale: float = 1.0
    # A diffusers AutoencoderTiny folder (save_pretrained layout, e.g. TAESD or one from
    # ``anchor train vae --tiny``) that replaces the body VAE's decoder, and its encoder
    # where the body model encodes images.
    tiny_vae_path: Path | None = None

    def resolved_controlnet_residuals(self) -> ControlNetResiduals:
        """``controlnet_residuals`` with "auto" resolved by ``preset``."""
        if self.controlnet_residuals != "auto":
            return self.controlnet_residuals
        return "authors" if self.preset == "sd15" else "diffusers"


class SamplerConfig(Section):
    """Denoising loop settings shared by the offline and streaming samplers."""

    # offline: Algorithm 1 (nothing final before the whole clip); exact: the same frames,
    # streamed; low: one window of latency, overlaps averaged with the previous window's
    # cached predictions. Live sessions need a streaming mode (exact or low).
    mode: SamplerMode = "low"
    scheduler: SchedulerKind = "ddim"
    # LCM only: the share of the distillation schedule sampled (diffusers' LCMScheduler
    # ``strength``): 1 starts at timestep 999; a student distilled with ``--strength 0.5``
    # starts from noise at 499, as its bundle.json says.
    lcm_strength: float = Field(1.0, gt=0.0, le=1.0)
    steps: int = Field(20, ge=1, le=1000)
    guidance_scale: float = Field(7.5, ge=0.0)
    controlnet_scale: float = Field(2.0, ge=0.0)
    window_size: int = Field(16, ge=1)
    overlap: int = Field(4, ge=0)
    same_frame_noise: bool = True
    seed: int = 42
    # Where the initial noise is drawn (model/noise.py): "cpu" = float32 on the CPU, the
    # same on every device; "authors" = float16 from the device's generator on CUDA, as the
    # authors' pipeline draws it (exact GPU reproduction; on the CPU identical to "cpu").
    noise_device: NoiseDevice = "cpu"
    # Upper bound of window evaluations batched into one model call (stream batch).
    max_batch: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _window_fits(self) -> SamplerConfig:
        if not self.window_size > self.overlap:
            raise ValueError(
                f"sampler.window_size ({self.window_size}) must be greater than "
                f"sampler.overlap ({self.overlap})"
            )
        return self


class FaceConfig(Section):
    """Identity-specific face enhancement (Face SGDM) settings."""

    enabled: bool = True
    size: int = Field(256, ge=32)
    # Side of the FFHQ alignment the face crop is taken at, then resized to ``size`` (the
    # authors: 512); the paste-back warps with that same alignment. None = ``size``.
    align_size: int | None = Field(None, ge=32)
    scheduler: SchedulerKind = "ddim"
    lcm_strength: float = Field(1.0, gt=0.0, le=1.0)  # as sampler.lcm_strength
    steps: int = Field(20, ge=1, le=1000)
    guidance_scale: float = Field(3.5, ge=0.0)
    controlnet_scale: float = Field(1.0, ge=0.0)
    seed: int = 42
    # Reference face crop for the face appearance tokens; None = the body reference image.
    reference_image: Path | None = None
    # Run face crops through the window sampler (all-frame attention + overlap averaging).
    face_temporal: bool = False
    # A diffusers AutoencoderTiny folder replacing the face model's VAE (decoder and encoder).
    tiny_vae_path: Path | None = None
    # Masked-image latent of the inpainting input: "mode" of the VAE posterior, or "sample"
    # (the authors': drawn with a generator seeded by face.seed, the same draw per frame).
    masked_latent: Literal["mode", "sample"] = "mode"
    # Blend of the enhanced crop into the frame: "feathered" (crop-space erosion size/16 and
    # box blur) or "authors" (40x40 erosion and a 41x41 Gaussian blur of the warped crop
    # mask in frame pixels at 512, scaled with the frame size).
    blend: Literal["feathered", "authors"] = "feathered"
    # BiSeNet face-parsing weights (the authors' 79999_iter.pth, model/face_parsing.py): the
    # inpainting mask from parsing the generated face crop; None = the hull of the face
    # landmarks (mesh or detector points).
    parsing_weights: Path | None = None
    # Face geometry of frames without a mesh (condition images): MTCNN (model/face_detector.py)
    # with the weights of the facenet-pytorch wheel, or of this folder (pnet/rnet/onet.pt).
    detector_weights: Path | None = None
    # The three MTCNN stages' face-probability cut-offs. Mesh renders are stylised faces
    # that MTCNN scores low; the largest detection is taken and smoothed over time.
    detector_thresholds: tuple[float, float, float] = (0.1, 0.1, 0.1)
    # Weight of the previous frame's points in the temporal smoothing (0 = none).
    detector_smoothing: float = Field(0.5, ge=0.0, lt=1.0)
    # A missed detection keeps the last points for up to this many frames, then the frame
    # is not enhanced (never shifted or dropped).
    hold_frames: int = Field(5, ge=0)


class RenderConfig(Section):
    """Mesh renderer and body model settings."""

    width: int = Field(512, ge=16)
    height: int = Field(512, ge=16)
    fps: float = Field(30.0, gt=0.0)
    # "auto" tries EGL, then OSMesa.
    backend: Literal["auto", "egl", "osmesa"] = "auto"
    # Folder holding smplx/SMPLX_<GENDER>.npz; None = the generated stand-in.
    smplx_path: Path | None = None
    gender: Literal["neutral", "male", "female"] = "neutral"
    # Where the generated SMPL-X stand-in is cached when smplx_path is None (never committed).
    standin_path: Path = Path(".cache/standin")
    # Default camera when frames carry none: "upper" frames head to hips, "full" the whole body.
    framing: Literal["upper", "full"] = "upper"
    # 4x multisample antialiasing (pyrender's default, the look of the SHOW renders pixel for
    # pixel). Off by default: on a CPU (llvmpipe) it costs about half the frame rate
    # (`anchor bench render`) and changes only silhouette pixels.
    antialias: bool = False
