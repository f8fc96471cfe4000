"""``anchor synth-dataset``, ``anchor prepare``, ``anchor train`` and ``anchor bench train``.

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
    from server.config import AppConfig

log = logging.getLogger("anchor.training")


def register(commands: Any, bench: Any) -> None:
    """Add the training commands and ``train`` to ``anchor bench``."""
    _register_synth(commands)


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
