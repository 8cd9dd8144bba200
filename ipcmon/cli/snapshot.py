"""`ipcmon snapshot`: every IPC object once, as tables (``ipcmon.report``) or one JSON object (``ipcmon.export``),
with who created its POSIX objects and who signalled its processes when the journal says (issue 16)."""

from __future__ import annotations

import argparse
import sys

from ipcmon.cli.arguments import Command, Subcommands, add_scope, place_selector, select_places
from ipcmon.cli.journal import add_db_option


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
    add_db_option(snapshot)
    return snapshot


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Scan once and print it; exit 0, or 1 when --container or --ns matches nothing. Only the printer the output
    needs is imported (fast start, issue 11)."""
    from ipcmon.collect import ScanConfig, scan
    from ipcmon.who import read_journal_of

    # This process has no threads and no descriptors but stdio: it may fork a second reader (scan docs).
    selected = select_places(scan(ScanConfig(kinds=args.kind, pids=args.pid, hide_self=not args.show_self), fork=True),
                             place_selector(args), "ipcmon snapshot")
    if selected is None:
        return 1  # as for a --pid naming no process
    snapshot = selected
    if args.json:
        from ipcmon.export import dumps

        # Every process of the signals list has its "received", so the journal is asked about each one.
        known = read_journal_of(snapshot, args.db, snapshot.signals)
        sys.stdout.write(dumps(snapshot, known=known) + "\n")
    else:
        from ipcmon.report import render, shown_signals

        known = read_journal_of(snapshot, args.db, shown_signals(snapshot, args.all_signals))
        sys.stdout.write(render(snapshot, all_signals=args.all_signals, all_waits=args.all_waits, known=known) + "\n")
    sys.stdout.flush()
    from ipcmon.cli.lifecycle import journal_notes

    sys.stderr.write(journal_notes(known, "creators and senders"))
    return 0


COMMANDS = (Command("snapshot", add_parser, cmd_snapshot),)
