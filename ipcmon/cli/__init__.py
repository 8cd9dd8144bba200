"""Command line: `ipcmon` (the dashboard) and its subcommands, dispatched through one table of commands.

Each command module adds its own sub-parser and ends in its ``COMMANDS`` entries; ``main`` parses, looks the
command up in ``COMMANDS`` and runs it. The modules import what a command needs only when it runs, so a
one-shot command (snapshot, limits, leaks, watch) never loads Textual, nor the printer its output does not use.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ipcmon import __version__, health
from ipcmon.cli import dashboard, demo, exporter, journal, lifecycle, limits, snapshot
from ipcmon.cli.arguments import Command, missing_pids
from ipcmon.safe import printable

COMMANDS: dict[str, Command] = {
    command.name: command
    for group in (snapshot, limits, lifecycle, journal, exporter, demo)
    for command in group.COMMANDS
}
"""`ipcmon COMMAND` → its entry, in the order `ipcmon --help` lists them. No command opens the dashboard."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the dashboard's options, then one sub-parser per entry of ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="ipcmon",
        description="See Linux IPC live: POSIX shared memory, memfd and anonymous shared memory, message queues, "
        "pipes and FIFOs, signals, SysV IPC.",
    )
    parser.add_argument("--version", action="version", version=f"ipcmon {__version__}")
    dashboard.add_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


SCANNING_ON = frozenset({None, "watch", "record", "exporter"})
"""The commands that scan again and again (the dashboard is None): they raise their soft RLIMIT_NOFILE."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ipcmon ARGV…` (``sys.argv[1:]`` when None) and return its exit status (the console script's entry).

    A usage error exits 2 through argparse; Ctrl-C outside a command's own handling returns 130.
    """
    args = build_parser().parse_args(argv)
    missing = missing_pids(getattr(args, "pid", None))
    if missing:
        # As ps -p does, a pid that names no process is an error, not an empty (and misleading) scan.
        sys.stderr.write(f"ipcmon: no such process: {', '.join(map(str, missing))}\n")
        return 1
    threshold_problem = health.budget_threshold_problem()
    if threshold_problem:
        sys.stderr.write(f"ipcmon: warning: {printable(threshold_problem)}\n")
    if args.command in SCANNING_ON:
        from ipcmon.collect.procfs import raise_open_files_limit

        raise_open_files_limit()  # the Scanner keeps /proc files open above fd 1024 (procfs.OpenProcFiles)
    run = dashboard.cmd_dashboard if args.command is None else COMMANDS[args.command].run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ipcmon snapshot | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 0
