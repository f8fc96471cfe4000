"""The `anchor` console script: every subcommand answers --help, errors are one clean line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _subcommand_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_every_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    paths = list(_subcommand_paths(build_parser()))
    assert ("bench",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exited:
            main([*path, "--help"])
        assert exited.value.code == 0, path
        assert "usage: anchor " + " ".join(path) in capsys.readouterr().out


def test_console_script_runs_and_config_errors_are_one_line(tmp_path: Path) -> None:
    anchor = Path(sys.executable).with_name("anchor")
    assert anchor.exists(), "the project is not installed with its console script"
    result = subprocess.run(
        [str(anchor), "--set", "sampler.steps=0", "bench"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("anchor: invalid configuration: sampler.steps")
    assert "Traceback" not in result.stderr
