"""The clients' commands are registered and ``anchor bench audio2motion`` prints its figures."""

from __future__ import annotations

import json

import pytest

from app.cli import build_parser, main


def test_commands_are_registered() -> None:
    parser = build_parser()
    for argv in (
        ["send", "clip.npy", "--url", "ws://x/sessions/a/motion", "--token", "t"],
        ["view", "http://x/sessions/a", "--token", "t", "--record", "out.mp4"],
        ["bot", "--url", "ws://x/sessions/a/motion", "--token", "t", "--audio", "ws"],
        ["bench", "audio2motion", "--json"],
    ):
        assert parser.parse_args(argv).handler is not None


def test_bench_audio2motion_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "audio2motion", "--json", "--no-bot"]) == 0
    results = json.loads(capsys.readouterr().out)
    generator = results["generator"]
    assert generator["audio_seconds"] == 20.0
    assert generator["rtf_20ms_chunks"] > 0 and generator["rtf_whole"] > 0


def test_bot_refuses_a_server_audio_rate_it_cannot_feed(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--set", "server.audio_sample_rate=48000", "bot", "--url", "ws://x/s", "--token", "t"]
    assert main([*argv, "--audio", "ws"]) == 1
    assert "server.audio_sample_rate must be 16000" in capsys.readouterr().err
