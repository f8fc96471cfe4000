"""``anchor bench sampler``: the streaming package's commands.

No torch import at module level (``anchor --help`` stays fast); handlers import lazily.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from model.errors import AnchorError

if TYPE_CHECKING:
    from server.config import AppConfig


def register(commands: Any, bench: Any) -> None:
    """Add ``sampler`` to ``anchor bench``."""
    parser = bench.add_parser(
        "sampler",
        help="ms per committed frame, overhead and latency of offline, exact and low sampling",
        description=(
            "Runs offline, exact (stream-batched, unbatched, eager) and low sampling on the "
            "same clip with the configured model (tiny preset by default), frames pushed one "
            "at a time, and prints cost, overhead (wall / model time), stream-batch speedup "
            "and latency in frames for each mode."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--frames", type=int, default=64, help="clip length (default 64)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (sampler.steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.set_defaults(handler=bench_command)


def bench_command(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench sampler``."""
    from streaming.bench import bench_sampler, format_report

    if args.frames < 1:
        raise AnchorError(f"--frames must be >= 1, got {args.frames}")
    sampler = config.sampler
    if args.steps is not None:
        if args.steps < 1:
            raise AnchorError(f"--steps must be >= 1, got {args.steps}")
        sampler = sampler.model_copy(update={"steps": args.steps})
    report = bench_sampler(config.model, sampler, args.frames, args.threads)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
