"""``anchor serve``, ``anchor demo``, ``anchor token`` and ``anchor bench e2e``.

No torch at import time: the handlers import what they need.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from server.config import AppConfig


def register(commands: Any, bench: Any) -> None:
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

    e2e = bench.add_parser("e2e", help="glass-to-glass latency, delivered fps, server RSS")
    e2e.add_argument("--json", action="store_true")
    e2e.add_argument("--frames", type=int, default=90, help="frames per measurement")
    e2e.add_argument("--viewers", default="1,4", help="viewer counts to measure")
    e2e.add_argument(
        "--demo-model",
        action="store_true",
        help="the trained demo bundle (128 px, faces) as `anchor demo` runs it, not tiny",
    )
    e2e.set_defaults(handler=_bench_e2e)

    fanout = bench.add_parser(
        "fanout", help="server CPU per viewer: direct aiortc viewers vs through Janus"
    )
    fanout.add_argument("--json", action="store_true")
    fanout.add_argument("--frames", type=int, default=150, help="frames per measurement")
    fanout.add_argument("--viewers", default="1,4,16", help="viewer counts to measure")
    fanout.set_defaults(handler=_bench_fanout)


def _serve(args: argparse.Namespace, config: AppConfig) -> int:
    from server.app import serve_until_signal

    if args.ray is not None:
        config = config.model_copy(
            update={"cluster": config.cluster.model_copy(update={"ray_address": args.ray})}
        )
    return asyncio.run(serve_until_signal(config))


def _demo(args: argparse.Namespace, config: AppConfig) -> int:
    from server.demo import DEMO_MODEL, demo_config, run_demo, with_demo_model

    demo = demo_config(config, args.host, args.port)
    if not args.tiny and (DEMO_MODEL / "bundle.json").is_file():
        demo = with_demo_model(demo)
    return asyncio.run(run_demo(demo))


def _token(args: argparse.Namespace, config: AppConfig) -> int:
    from server.tokens import mint_token

    ttl = args.ttl if args.ttl is not None else config.server.token_ttl_s
    print(mint_token(config.server.token_secret, args.session, args.role, ttl))
    return 0


def _bench_e2e(args: argparse.Namespace, config: AppConfig) -> int:
    from server.bench_e2e import run_bench

    counts = [int(part) for part in args.viewers.split(",") if part]
    results = asyncio.run(run_bench(config, counts, args.frames, args.demo_model))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        cold = results["cold_start"]
        print(f"cold start (first session): glass-to-glass median {cold['latency_ms_median']} ms")
        for row in results["runs"]:
            print(
                f"{row['viewers']} viewer(s): glass-to-glass median {row['latency_ms_median']} ms "
                f"(p90 {row['latency_ms_p90']}), delivered {row['delivered_fps']} fps "
                f"(distinct frames {row['distinct_fps']}, {row['skipped_frames']} skipped), "
                f"server RSS {row['server_rss_mb']} MB"
            )
    return 0


def _bench_fanout(args: argparse.Namespace, config: AppConfig) -> int:
    from server.bench_fanout import format_table, run_bench

    counts = [int(part) for part in args.viewers.split(",") if part]
    results = asyncio.run(run_bench(config, counts, args.frames))
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0
