"""``anchor bench model``.

No torch import at module level (``anchor --help`` stays fast); handlers import lazily.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.config import AppConfig


def register(commands: Any, bench: Any) -> None:
    """Add ``model`` to ``anchor bench``."""
    model_bench = bench.add_parser(
        "model", help="ms per UNet+ControlNet call on a 16-frame window, per attention mode"
    )
    model_bench.add_argument("--json", action="store_true", help="print JSON")
    model_bench.add_argument("--repeats", type=int, default=3, help="timed runs per figure")
    model_bench.add_argument(
        "--latent-sizes",
        type=int,
        nargs="+",
        default=None,
        help="latent sizes (default: 16 32 for tiny, 64 for sd15)",
    )
    model_bench.set_defaults(handler=bench_command)


def bench_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench model``."""
    from model.bench import bench_model, format_report

    sizes = args.latent_sizes or ([16, 32] if config.model.preset == "tiny" else [64])
    report = bench_model(config.model, tuple(sizes), args.repeats)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
