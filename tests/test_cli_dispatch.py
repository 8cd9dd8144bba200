"""The command table of ipcmon.cli: every command reachable through it, the dashboard with none, usage errors kept."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest

import ipcmon.cli
from ipcmon.cli import COMMANDS, build_parser, main
from tests.helpers import REPO


def test_the_table_lists_every_command_in_help_order() -> None:
    assert list(COMMANDS) == ["snapshot", "limits", "watch", "leaks", "clean", "record", "history", "exporter", "demo"]
    assert all(command.name == name for name, command in COMMANDS.items())


REQUIRED = {"history": ("pid:1",)}
"""The positional arguments a command cannot be run without."""


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_is_dispatched_to_its_entry(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []

    def record(args: argparse.Namespace) -> int:
        seen.append(args)
        return 42

    monkeypatch.setitem(COMMANDS, name, COMMANDS[name]._replace(run=record))
    assert main([name, *REQUIRED.get(name, ())]) == 42
    assert [args.command for args in seen] == [name]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_its_own_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([name, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ipcmon {name} ")


def test_no_command_opens_the_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(ipcmon.cli.dashboard, "cmd_dashboard", lambda args: seen.append(args) or 0)
    assert main(["--read-only", "--interval", "2"]) == 0
    assert [(args.command, args.read_only, args.interval) for args in seen] == [(None, True, 2.0)]


@pytest.mark.parametrize(("error", "status"), [(KeyboardInterrupt, 130), (BrokenPipeError, 0)])
def test_interrupt_and_a_vanished_reader_end_the_command_quietly(
    error: type[BaseException], status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setitem(COMMANDS, "snapshot", COMMANDS["snapshot"]._replace(run=fail))
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # main closes stderr after a broken pipe
    assert main(["snapshot"]) == status


def test_an_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "ipcmon", "bogus"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "ipcmon: error: argument COMMAND: invalid choice: 'bogus' "
        "(choose from 'snapshot', 'limits', 'watch', 'leaks', 'clean', 'record', 'history', 'exporter', 'demo')"
    )
