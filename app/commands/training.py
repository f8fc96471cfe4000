"""``anchor synth-dataset``, ``anchor prepare`` and ``anchor train`` (``anchor bench train`` is
registered by streaming/commands.py: its demo figures run the live chain).

No torch import at module level (``anchor --help`` stays fast); handlers import lazily.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.errors import AnchorError

if TYPE_CHECKING:
    from app.config import AppConfig

log = logging.getLogger("anchor.training")


def register(commands: Any) -> None:
    """Add the training commands."""
    _register_synth(commands)
    _register_prepare(commands)
    _register_train(commands)
    _register_distill(commands)


def _register_synth(commands: Any) -> None:
    synth = commands.add_parser(
        "synth-dataset",
        help="render the synthetic anchor: training and held-out datasets with ground truth",
        description=(
            "The SMPL-X stand-in dressed as a person, driven by varied seeded motion, "
            "rendered as target frames with the SHOW-style mesh render as condition. Writes "
            "OUT/train and OUT/heldout (held-out motion seeds and families never in train), "
            "each a dataset as `anchor prepare` writes it, plus motion.npz and video.mp4. "
            "Resumable."
        ),
    )
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--seconds", type=float, required=True, help="training motion length")
    synth.add_argument(
        "--heldout-seconds", type=float, default=None, help="held-out length (default: 1/4)"
    )
    synth.add_argument("--seed", type=int, default=0, help="motion seed")
    synth.add_argument("--size", type=int, default=512, help="frame size in pixels")
    synth.add_argument("--face-size", type=int, default=256, help="face crop size in pixels")
    synth.add_argument(
        "--perturbations", type=int, default=1, help="perturbed condition renders per frame"
    )
    synth.add_argument("--perturbation-std", type=float, default=0.05, help="pose noise in radians")
    synth.set_defaults(handler=synth_command)


def synth_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor synth-dataset``."""
    from model.training.synth import SynthOptions, synth_dataset

    if args.perturbations < 0:
        raise AnchorError(f"--perturbations must be >= 0, got {args.perturbations}")
    options = SynthOptions(
        seconds=args.seconds,
        heldout_seconds=args.heldout_seconds or max(args.seconds / 4.0, 1.0),
        seed=args.seed,
        size=args.size,
        face_size=args.face_size,
        perturbations=args.perturbations,
        perturbation_std=args.perturbation_std,
        supersample=2 if args.size <= 256 else 1,
    )
    written = synth_dataset(args.out, options, config.render)
    print(json.dumps({"out": str(args.out), "written": written}))
    return 0


def _register_prepare(commands: Any) -> None:
    prepare = commands.add_parser(
        "prepare",
        help="turn a video + its SMPL-X parameters into a training dataset",
        description=(
            "Frames at --fps, a fixed square crop resized to --size, condition renders from "
            "the motion file (TalkSHOW/EMAGE/SHOW/anchor npz; SHOW camera fields honoured), "
            "perturbed renders (augmentation), face crops and masks from the mesh (or the face "
            "detector: --face-geometry), reference "
            "candidates and a JSONL manifest. Resumable: run it again to finish."
        ),
    )
    prepare.add_argument("video", type=Path, help="video of one person")
    prepare.add_argument("--motion", type=Path, required=True, help="SMPL-X parameters")
    prepare.add_argument("--out", type=Path, required=True, help="dataset folder")
    prepare.add_argument("--crop", default=None, help="x,y,size in video pixels (default: centre)")
    prepare.add_argument("--size", type=int, default=512, help="frame size in pixels")
    prepare.add_argument("--face-size", type=int, default=256, help="face crop size")
    prepare.add_argument("--fps", type=float, default=30.0, help="dataset frame rate")
    prepare.add_argument("--perturbations", type=int, default=1, help="perturbed renders/frame")
    prepare.add_argument("--perturbation-std", type=float, default=0.05, help="radians")
    prepare.add_argument(
        "--foreground", type=Path, default=None, help="folder of %%06d.png person masks (stage 1)"
    )
    prepare.add_argument(
        "--segmenter",
        default=None,
        metavar="SPEC",
        help="person masks from a plug-in instead: onnx:MODEL.onnx, module:function or "
        "file.py:function (see model/training/segmentation.py)",
    )
    prepare.add_argument(
        "--face-geometry",
        choices=("auto", "detector", "mesh"),
        default="auto",
        help="face crops aligned on the mesh, on the face detector's points where the mesh "
        "gives no face (auto), or on the detector's points wherever it finds a face",
    )
    prepare.add_argument(
        "--stage",
        choices=("pretrain", "finetune"),
        default="finetune",
        help="finetune warns when the video is shorter than 60 s",
    )
    prepare.set_defaults(handler=prepare_command)


def prepare_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor prepare``."""
    from model.training.prepare import PrepareOptions, parse_crop, prepare_dataset

    if args.perturbations < 0:
        raise AnchorError(f"--perturbations must be >= 0, got {args.perturbations}")
    options = PrepareOptions(
        size=args.size,
        face_size=args.face_size,
        fps=args.fps,
        crop=parse_crop(args.crop) if args.crop else None,
        perturbations=args.perturbations,
        perturbation_std=args.perturbation_std,
        foreground=args.foreground,
        segmenter=args.segmenter,
        stage=args.stage,
        face_geometry=args.face_geometry,
        detector_weights=config.face.detector_weights,
        detector_thresholds=config.face.detector_thresholds,
        face_align_size=config.face.align_size,
    )
    written = prepare_dataset(args.video, args.motion, args.out, options, config.render)
    print(json.dumps({"out": str(args.out), "written": written}))
    return 0


def _register_train(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train the body SGDM, the face SGDM or a small autoencoder (accelerate)",
        description=(
            "Same command on one CPU, one GPU or many (launch with `accelerate launch -m "
            "app.cli train ...` for several processes). Hyper-parameters come from the "
            "[train] config section; the flags below override it."
        ),
    )
    what = train.add_subparsers(dest="train_what", metavar="WHAT", required=True)
    for kind, text in (
        ("body", "the body SGDM (UNet + ControlNet)"),
        ("face", "the face SGDM (9-channel inpainting UNet + ControlNet)"),
        ("vae", "a small AutoencoderKL for the tiny/demo families"),
    ):
        parser = what.add_parser(kind, help=f"train {text}")
        _run_arguments(parser)
        parser.add_argument(
            "--init",
            default="tiny",
            help="tiny | demo | sd15 | a checkpoint folder (official layout) to start from",
        )
        parser.add_argument("--validate-every", type=int, default=None)
        parser.add_argument("--ema", action="store_true", default=None, help="train.ema")
        parser.add_argument(
            "--condition-dropout", type=float, default=None, help="train.condition_dropout"
        )
        if kind == "vae":
            parser.add_argument(
                "--faces",
                action="store_true",
                help="train on the face crops: the autoencoder of the face model",
            )
            parser.add_argument(
                "--decoder-only",
                action="store_true",
                help="train the decoder only (encoder and scaling factor frozen: latents of "
                "models trained on this autoencoder stay valid); use with --init FOLDER",
            )
            parser.add_argument(
                "--tiny",
                action="store_true",
                help="distil a diffusers AutoencoderTiny (TAESD layout) from the VAE of --init "
                "FOLDER on these frames; prints its SSIM/PSNR against the full VAE's",
            )
            parser.add_argument(
                "--tiny-encoder",
                action="store_true",
                help="with --tiny: train its encoder too (default: decoder only)",
            )
            parser.add_argument(
                "--tiny-channels",
                type=int,
                default=64,
                help="with --tiny: width of each of its 4 blocks (TAESD: 64)",
            )
        else:
            parser.add_argument(
                "--stage",
                choices=("pretrain", "finetune"),
                default="pretrain",
                help="finetune: start from stage-1 weights (--init FOLDER)",
            )
            parser.add_argument(
                "--keep-background",
                action="store_true",
                help="stage 1: train on whole frames even when the data has foreground masks",
            )
            parser.add_argument("--vae", type=Path, default=None, help="frozen VAE folder")
            parser.add_argument("--clip", type=Path, default=None, help="frozen CLIP folder")
            parser.add_argument(
                "--validation-data", type=Path, action="append", default=None,
                help="dataset(s) for the validation renders (default: the first --data)",
            )  # fmt: skip
        parser.set_defaults(handler=train_command, train_kind=kind)


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``anchor train`` and ``anchor distill`` share: data, output, the [train]
    fields both runs read, and resume."""
    parser.add_argument(
        "--data", type=Path, action="append", required=True, help="dataset (repeatable)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--steps", type=int, default=None, help="train.steps")
    parser.add_argument("--batch-size", type=int, default=None, help="train.batch_size")
    parser.add_argument("--lr", type=float, default=None, help="train.learning_rate")
    parser.add_argument("--seed", type=int, default=None, help="train.seed")
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--warmup-steps", type=int, default=None, help="train.warmup_steps")
    parser.add_argument(
        "--perturbation-probability",
        type=float,
        default=None,
        help="train.perturbation_probability",
    )
    parser.add_argument("--mixed-precision", choices=("auto", "no", "fp16", "bf16"), default=None)
    parser.add_argument(
        "--image-size", type=int, default=None, help="train at this size (default: data's)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        help="continue from OUT's latest checkpoint (or the one given)",
    )


def train_config(args: argparse.Namespace, config: AppConfig) -> Any:
    """The [train] section with the flags applied (a flag beats the config file)."""
    from model.training.config import TrainConfig

    section = config.train
    updates = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "validate_every": args.validate_every,
        "ema": args.ema,
        "warmup_steps": args.warmup_steps,
        "condition_dropout": args.condition_dropout,
        "perturbation_probability": args.perturbation_probability,
        "foreground_only": False if getattr(args, "keep_background", False) else None,
        "mixed_precision": args.mixed_precision,
    }
    values = section.model_dump()
    values.update({key: value for key, value in updates.items() if value is not None})
    return TrainConfig(**values)


def train_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor train body|face|vae``."""
    if getattr(args, "tiny", False):
        return _distil_command(args, config)
    from model.training.trainer import TrainRun, train

    run = TrainRun(
        kind=args.train_kind,
        data=list(args.data),
        out=args.out,
        init=args.init,
        stage=getattr(args, "stage", "pretrain"),
        vae=getattr(args, "vae", None),
        clip=getattr(args, "clip", None),
        image_size=args.image_size,
        resume=args.resume,
        validation=list(getattr(args, "validation_data", None) or []),
        faces=getattr(args, "faces", False),
        decoder_only=getattr(args, "decoder_only", False),
    )
    result = train(run, train_config(args, config), config.model)
    loss = result.loss if result.losses else None
    print(json.dumps({"step": result.step, "loss": loss,
                      "final": str(result.final) if result.final else None}))  # fmt: skip
    return 0


def _distil_command(args: argparse.Namespace, config: AppConfig) -> int:
    """``anchor train vae --tiny``: model/training/distill.py; prints its figures as JSON."""
    from model.training.distill import TinyRun, distil_tiny_vae

    if args.decoder_only:
        raise AnchorError("--decoder-only applies to the AutoencoderKL, not to --tiny")
    run = TinyRun(
        data=list(args.data),
        out=args.out,
        init=args.init,
        faces=args.faces,
        encoder=args.tiny_encoder,
        image_size=args.image_size,
        channels=(args.tiny_channels,) * 4,
    )
    figures = distil_tiny_vae(run, train_config(args, config), config.model)
    print(json.dumps(figures))
    return 0


def _register_distill(commands: Any) -> None:
    distill = commands.add_parser(
        "distill",
        help="distil a trained body or face model into a 1-4 step consistency student",
        description=(
            "Latent consistency distillation (LCM) of the teacher bundle's body or face "
            "model: a skipping-step DDIM solver on the teacher at its CFG scale (baked into "
            "the student), an EMA target network, the student initialised from the teacher. "
            "The loop is anchor train's (accelerate, --resume, checkpoints, progress); "
            "OUT/final is the teacher's bundle with the student and the LCM scheduler it "
            "samples with. Hyper-parameters come from [train]; the flags override it."
        ),
    )
    what = distill.add_subparsers(dest="distill_what", metavar="WHAT", required=True)
    for kind in ("body", "face"):
        parser = what.add_parser(kind, help=f"distil the {kind} model")
        parser.add_argument(
            "--teacher", type=Path, required=True, help="the teacher bundle (anchor train's final/)"
        )
        _run_arguments(parser)
        parser.add_argument(
            "--guidance-scale", type=float, default=1.0,
            help="the teacher's CFG scale, baked into the student (1: no CFG)",
        )  # fmt: skip
        parser.add_argument(
            "--solver-steps", type=int, default=50, help="DDIM solver grid (LCM: 50 of 1000)"
        )
        parser.add_argument(
            "--target-decay", type=float, default=0.95, help="EMA decay of the target network"
        )
        parser.add_argument(
            "--student-steps", type=int, default=2, help="LCM steps bundle.json suggests"
        )
        parser.add_argument(
            "--strength", type=float, default=1.0,
            help="share of the schedule trained and sampled (LCM strength; 0.5: from t=499)",
        )  # fmt: skip
        parser.set_defaults(
            handler=distill_command,
            distill_kind=kind,
            validate_every=None,
            ema=None,
            condition_dropout=None,
        )


def distill_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor distill body|face``."""
    from model.training.student import DistillRun, distil_student

    run = DistillRun(
        kind=args.distill_kind,
        teacher=args.teacher,
        data=list(args.data),
        out=args.out,
        guidance_scale=args.guidance_scale,
        solver_steps=args.solver_steps,
        target_decay=args.target_decay,
        student_steps=args.student_steps,
        strength=args.strength,
        image_size=args.image_size,
        resume=args.resume,
    )
    final = distil_student(run, train_config(args, config), config.model)
    print(json.dumps({"final": str(final) if final else None}))
    return 0
