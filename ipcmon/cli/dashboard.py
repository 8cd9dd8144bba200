"""`ipcmon` with no command: the live dashboard's options, and opening it (the one place the CLI loads Textual)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ipcmon.cli.arguments import add_scope, parse_interval, place_selector, select_places

if TYPE_CHECKING:
    from ipcmon.ui.exit_signals import HeldSignals


def add_options(parser: argparse.ArgumentParser) -> None:
    """Options of `ipcmon` with no subcommand: the live dashboard (README "Dashboard")."""
    parser.epilog = "With no COMMAND, ipcmon opens the live dashboard (q quits, ? lists the keys)."
    dashboard = parser.add_argument_group("dashboard (no COMMAND)")
    dashboard.add_argument("--interval", type=parse_interval, default=1.0, metavar="S",
                           help="seconds between scans (default 1, at least 0.1); + and - change it live")
    dashboard.add_argument("--read-only", action="store_true",
                           help="disable every action that changes the system (sending signals, removing orphans)")
    add_scope(parser)
    dashboard.add_argument("--demo", action="append", default=[], metavar="NAME",
                           help="start this demo workload in the dashboard (repeatable, or 'all')")


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Run the dashboard until q; its return code, 2 for an unknown ``--demo`` name, or 1 when ``--container`` or
    ``--ns`` matches nothing (checked by one scan before the dashboard opens, as ``--pid`` is). A SIGTERM, SIGHUP or
    SIGINT from here on ends it with status 0 (ui.exit_signals)."""

    from ipcmon.ui.exit_signals import HeldSignals  # no Textual: held before it is imported (only here: every other
    # command leaves ipcmon.ui unloaded, tests/test_import_hygiene.py)

    held = HeldSignals()
    held.hold()
    try:
        return _run_dashboard(args, held)
    finally:
        held.ignore()  # from here the process only exits


def _run_dashboard(args: argparse.Namespace, held: HeldSignals) -> int:
    selector = place_selector(args)
    if selector is not None:
        from ipcmon.collect import ScanConfig, scan

        if select_places(scan(ScanConfig(kinds=args.kind, hide_self=not args.show_self)), selector, "ipcmon") is None:
            return 1
    from ipcmon.ui.app import make_app  # Textual is imported here and nowhere else on the CLI path

    try:
        app = make_app(None, args.interval, args.read_only, args.kind, args.pid, args.demo, show_self=args.show_self,
                       places=selector, freeze_gc=True, held=held)
    except ValueError as error:  # an unknown --demo name
        sys.stderr.write(f"ipcmon: {error}\n")
        return 2
    if held.received:
        return 0  # asked to stop before the dashboard opened
    app.run()
    return int(app.return_code or 0)
