"""The ``anchor`` command line.

The commands live in ``app.commands`` (one module per layer's commands, each with a
``register(commands)`` function); ``anchor bench X`` in ``bench.cli`` (``register(bench)``),
one measurement module per X. Neither imports torch at import time, so ``anchor --help``
stays fast; the heavy imports happen inside the handlers.

A handler has the signature ``handler(args: argparse.Namespace, config: AppConfig) -> int``
and is attached with ``parser.set_defaults(handler=...)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from app.commands import clients, evaluation, model, motion, server, streaming, training
from app.config import ConfigError, load_config
from app.presets import PRESETS
from model.errors import AnchorError
from server.shutdown import Interrupted

COMMAND_MODULES = (model, motion, training, evaluation, streaming, server, clients)
# The measurements (``anchor bench X``): loaded by name, they measure the composed
# application and use its configuration, so this package never imports them statically.
BENCH_COMMANDS = "bench.cli"

log = logging.getLogger("anchor.cli")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one configuration field (repeatable), e.g. sampler.steps=4",
    )
    parser.add_argument(
        "--preset",
        default=None,
        choices=PRESETS,
        help="speed/quality preset over the config file (quality, live, cpu-tiny; README)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every package's subcommands."""
    parser = argparse.ArgumentParser(
        prog="anchor",
        description="Anchor Live: diffusion-rendered full-body avatars from SMPL-X motion.",
    )
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench_parser = commands.add_parser("bench", help="print performance figures (JSON with --json)")
    bench = bench_parser.add_subparsers(dest="bench", metavar="WHAT")
    bench_parser.set_defaults(handler=lambda args, config: _missing(bench_parser))
    for module in COMMAND_MODULES:
        module.register(commands)
    importlib.import_module(BENCH_COMMANDS).register(bench)
    return parser


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anchor`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        config = load_config(args.config, args.overrides, preset=args.preset)
    except ConfigError as err:
        print(f"anchor: {err}", file=sys.stderr)
        return 2
    try:
        return int(handler(args, config) or 0)
    except AnchorError as err:
        print(f"anchor: {err}", file=sys.stderr)
        return 1
    except Interrupted as err:
        print(f"anchor: stopped by {err}", file=sys.stderr)
        return 128 + err.signum


if __name__ == "__main__":
    sys.exit(main())
