"""The ``anchor`` command line.

Each package contributes its own subcommands through a ``commands`` module with a
``register(commands, bench)`` function (argparse sub-parser collections). Those modules
must not import torch at import time, so ``anchor --help`` stays fast and this
module stays torch-free; the heavy imports happen inside the handlers.

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

from model.errors import AnchorError
from server.config import ConfigError, load_config
from server.presets import PRESETS

COMMAND_MODULES = (
    "model.commands",
    "model.motion.commands",
    "model.training.commands",
    "model.evaluation.commands",
    "streaming.commands",
    "server.commands",
    "clients.commands",
)

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
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue  # that package contributes no commands (yet)
            raise
        module.register(commands, bench)
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


if __name__ == "__main__":
    sys.exit(main())
