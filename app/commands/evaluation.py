"""``anchor eval``: the paper's metrics of a generated video against its ground truth.

No torch import at module level (``anchor --help`` stays fast); the handler imports lazily.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.config import AppConfig


def register(commands: Any) -> None:
    """Adds ``eval`` to the ``anchor`` parser."""
    evaluate = commands.add_parser(
        "eval",
        help="SSIM, PSNR, L1, flicker, LPIPS, FID, FVD and LMD of a video against ground truth",
        description=(
            "Compares --pred with --gt frame by frame (same frame count and size). LPIPS, FID, "
            "FVD and LMD need local weight files from the [eval] config section; LMD also "
            "needs the driving motion, rendered with the [render] section."
        ),
    )
    evaluate.add_argument(
        "--pred", type=Path, required=True, help="generated video (or PNG folder)"
    )
    evaluate.add_argument(
        "--gt", type=Path, required=True, help="ground-truth video (or PNG folder)"
    )
    evaluate.add_argument("--motion", type=Path, default=None, help="driving motion file (for LMD)")
    evaluate.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metrics, each then required (default: all that can be computed): "
        "ssim,psnr,l1,flicker,lpips,fid,fvd,lmd",
    )
    evaluate.add_argument(
        "--camera-frames",
        type=int,
        default=None,
        help="frames the render's session camera was framed on (default: min(sampler."
        "window_size, 16), the first window of anchor generate)",
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=eval_command)


def eval_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor eval``."""
    from model.errors import AnchorError
    from model.evaluation.evaluate import Evaluator, format_table, json_safe, parse_metrics
    from model.evaluation.video import read_video

    metrics = parse_metrics(args.metrics)
    camera_frames = args.camera_frames or min(config.sampler.window_size, 16)
    if camera_frames < 1:
        raise AnchorError(f"--camera-frames must be >= 1, got {camera_frames}")
    pred, gt = read_video(args.pred), read_video(args.gt)
    evaluator = Evaluator(config.eval, config.render)
    report = evaluator.evaluate(pred, gt, args.motion, metrics, camera_frames)
    report = {"pred": str(args.pred), "gt": str(args.gt), **report}
    print(json.dumps(json_safe(report), indent=2) if args.json else format_table(report))
    return 0
