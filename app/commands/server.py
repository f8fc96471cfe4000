"""``anchor serve``, ``anchor demo``, ``anchor token`` and ``anchor bench e2e``.

No torch at import time: the handlers import what they need.
"""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
from typing import Any

from app.config import AppConfig


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the avatar server (see --config)")
    serve.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="run session workers as Ray actors on the cluster at ADDRESS (auto, HOST:PORT, "
        "ray://HOST:PORT) or 'local' for a Ray instance in this process (cluster.ray_address)",
    )
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser(
        "demo", help="server with embedded defaults and a looping demo producer"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8765)
    demo.add_argument(
        "--tiny",
        action="store_true",
        help="random tiny networks instead of the trained demo model (clients/models/demo)",
    )
    demo.set_defaults(handler=_demo)

    token = commands.add_parser("token", help="mint a session token (server.token_secret)")
    token.add_argument("--session", required=True)
    token.add_argument("--role", required=True, choices=("producer", "viewer"))
    token.add_argument("--ttl", type=float, default=None, help="seconds (server.token_ttl_s)")
    token.set_defaults(handler=_token)


def _serve(args: argparse.Namespace, config: AppConfig) -> int:
    from server.app import serve_until_signal
    from streaming.factory import load_pipeline_factory

    if args.ray is not None:
        config = config.model_copy(
            update={"cluster": config.cluster.model_copy(update={"ray_address": args.ray})}
        )
    return asyncio.run(
        serve_until_signal(config.edge, partial(load_pipeline_factory, config.pipeline))
    )


def _demo(args: argparse.Namespace, config: AppConfig) -> int:
    from app.demo import demo_config, run_demo

    return asyncio.run(run_demo(demo_config(config, args.host, args.port, tiny=args.tiny)))


def _token(args: argparse.Namespace, config: AppConfig) -> int:
    from server.tokens import mint_token

    ttl = args.ttl if args.ttl is not None else config.server.token_ttl_s
    print(mint_token(config.server.token_secret, args.session, args.role, ttl))
    return 0
