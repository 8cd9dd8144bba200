"""`ipcmon snapshot`: every IPC object once, as tables (``ipcmon.report``) or one JSON object (``ipcmon.export``)."""

from __future__ import annotations

import argparse
import sys

from ipcmon.cli.arguments import Command, Subcommands, add_scope, place_selector, select_places


def add_parser(commands: Subcommands) -> argparse.ArgumentParser:
    snapshot = commands.add_parser("snapshot", help="print every IPC object once, as tables or JSON")
    add_scope(snapshot)
    snapshot.add_argument("--json", action="store_true", help="one JSON object (the contract in README.md)")
    snapshot.add_argument(
        "--all-signals",
        action="store_true",
        help="list every process in the signals table, not only those with something pending or blocked",
    )
    snapshot.add_argument(
        "--all-waits",
        action="store_true",
        help="list every process waiting on IPC in the Stuck table, not only those deadlocked or blocked",
    )
    return snapshot


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Scan once and print it; exit 0, or 1 when --container or --ns matches nothing. Only the printer the output
    needs is imported (fast start, issue 11)."""
    from ipcmon.collect import ScanConfig, scan

    # This process has no threads and no descriptors but stdio: it may fork a second reader (scan docs).
    selected = select_places(scan(ScanConfig(kinds=args.kind, pids=args.pid, hide_self=not args.show_self), fork=True),
                             place_selector(args), "ipcmon snapshot")
    if selected is None:
        return 1  # as for a --pid naming no process
    snapshot = selected
    if args.json:
        from ipcmon.export import dumps

        sys.stdout.write(dumps(snapshot) + "\n")
    else:
        from ipcmon.report import render

        sys.stdout.write(render(snapshot, all_signals=args.all_signals, all_waits=args.all_waits) + "\n")
    sys.stdout.flush()
    return 0


COMMANDS = (Command("snapshot", add_parser, cmd_snapshot),)
