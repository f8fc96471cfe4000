"""``anchor send``, ``anchor view``, ``anchor bot`` and ``anchor bench audio2motion``.

No torch (and no aiortc) at import time: the handlers import what they need.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from app.config import AppConfig


def register(commands: Any) -> None:
    send = commands.add_parser(
        "send", help="replay a motion file (or JSON-lines frames on stdin) to a session"
    )
    send.add_argument("motion", help="TalkSHOW .npy, EMAGE .npz, SHOW .pkl, anchor .npz, or -")
    send.add_argument("--url", required=True, help="ws://HOST:PORT/sessions/ID/motion")
    send.add_argument("--token", required=True, help="producer token (anchor token)")
    send.add_argument("--fps", type=float, default=30.0, help="0 = as fast as credits allow")
    send.add_argument("--loop", action="store_true", help="replay the file forever")
    send.add_argument("--start-at", type=int, default=0, metavar="SEQ")
    send.add_argument("--audio", default=None, metavar="WAV", help="audio to play with it")
    send.add_argument("--identity", default="default")
    send.add_argument("--retries", type=int, default=10, help="reconnect attempts in a row")
    send.set_defaults(handler=_send)

    view = commands.add_parser("view", help="headless WebRTC viewer that records what it receives")
    view.add_argument("url", help="viewer page http://HOST:PORT/sessions/ID or its ws:// .../view")
    view.add_argument("--token", required=True, help="viewer token (anchor token)")
    view.add_argument("--record", default=None, metavar="OUT.mp4")
    view.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    view.set_defaults(handler=_view)

    bot = commands.add_parser("bot", help="speech in (WAV, WebRTC peer, WebSocket PCM) -> avatar")
    bot.add_argument("--url", required=True, help="ws://HOST:PORT/sessions/ID/motion")
    bot.add_argument("--token", required=True, help="producer token (anchor token)")
    bot.add_argument("--audio", required=True, metavar="SOURCE", help="a WAV file, webrtc or ws")
    bot.add_argument("--listen", default="127.0.0.1:8770", help="HOST:PORT for webrtc/ws sources")
    bot.add_argument("--identity", default="default")
    bot.add_argument("--seed", type=int, default=None, help="generator seed (audio2motion.seed)")
    bot.set_defaults(handler=_bot)


def _send(args: argparse.Namespace, config: AppConfig) -> int:
    from clients.producer import with_token
    from clients.sender import send_command
    from server.shutdown import cancel_on_signals

    report = asyncio.run(
        cancel_on_signals(
            send_command(
                args.motion,
                with_token(args.url, args.token),
                args.fps,
                args.loop,
                args.start_at,
                args.audio,
                config.server.audio_sample_rate,
                args.identity,
                args.retries,
                # Two messages per frame with audio: stay at 3/4 of the server's rate limit.
                0.75 * config.server.rate_limit_per_s,
                sys.stdin,
            )
        )
    )
    ended = report.runs[-1] if report.runs else {}
    summary = {
        "sent": report.sent,
        "accepted": len(report.accepted),
        "resent": report.resent,
        "connections": report.connections,
        "recording": ended.get("recording"),
    }
    print(json.dumps(summary))
    return 0


def _view(args: argparse.Namespace, config: AppConfig) -> int:
    from pathlib import Path

    from clients.producer import with_token
    from clients.viewer import view_command, view_url

    record = Path(args.record) if args.record else None
    url = with_token(view_url(args.url), args.token)
    from server.shutdown import cancel_on_signals

    stats = asyncio.run(
        cancel_on_signals(view_command(url, record, args.seconds, config.render.fps))
    )
    print(json.dumps({**stats, "recording": str(record) if record else None}))
    return 0


def _bot(args: argparse.Namespace, config: AppConfig) -> int:
    from clients.bot import AnchorBot
    from clients.bot_sources import WavSource, WebRtcSource, WebSocketPcmSource
    from clients.producer import with_token
    from model.audio2motion import create_generator
    from model.errors import AnchorError

    if config.server.audio_sample_rate != 16000:
        raise AnchorError("anchor bot sends 16 kHz speech: server.audio_sample_rate must be 16000")
    host, _, port = args.listen.rpartition(":")
    source: Any
    if args.audio == "ws":
        source = WebSocketPcmSource(host, int(port))
    elif args.audio == "webrtc":
        source = WebRtcSource(host, int(port))
    else:
        source = WavSource(args.audio)
    speech = config.audio2motion
    if args.seed is not None:
        speech = speech.model_copy(update={"seed": args.seed})
    generator = create_generator(speech, fps=config.render.fps)
    bot = AnchorBot(with_token(args.url, args.token), generator, config.render.fps, args.identity)
    stats = asyncio.run(bot.run(source))
    ended = stats.ended or {}
    summary = {"frames": len(stats.frames), "clears": stats.clears, **ended}
    print(json.dumps(summary))
    return 0
