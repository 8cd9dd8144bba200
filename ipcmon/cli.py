"""Command line: `ipcmon` (dashboard) and its subcommands; Textual is imported only on the TUI path."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ipcmon import __version__
from ipcmon.model import KINDS


def parse_kinds(text: str) -> tuple[str, ...]:
    """'shm,pipe' → ('shm', 'pipe'); 'all' → every kind."""
    if text.strip() in ("", "all"):
        return KINDS
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind {', '.join(unknown)} (choose from {', '.join(KINDS)})")
    return kinds


def parse_pids(text: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of pids: {text!r}") from None


def _add_scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kind",
        type=parse_kinds,
        default=KINDS,
        metavar="KINDS",
        help=f"comma-separated mechanisms to show: {','.join(KINDS)} (default: all)",
    )
    parser.add_argument("--pid", type=parse_pids, default=None, metavar="PIDS",
                        help="only these processes (comma-separated) and the objects they hold")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipcmon",
        description="See Linux IPC live: POSIX shared memory, message queues, pipes and FIFOs, signals, SysV IPC.",
    )
    parser.add_argument("--version", action="version", version=f"ipcmon {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    snapshot = commands.add_parser("snapshot", help="print every IPC object once, as tables or JSON")
    _add_scope(snapshot)
    snapshot.add_argument("--json", action="store_true", help="one JSON object (the contract in README.md)")
    snapshot.add_argument(
        "--all-signals",
        action="store_true",
        help="list every process in the signals table, not only those with something pending or blocked",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "snapshot":
            return cmd_snapshot(args)
        parser.print_help()
        return 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ipcmon snapshot | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from ipcmon.collect import ScanConfig, scan

    snapshot = scan(ScanConfig(kinds=args.kind, pids=args.pid))
    if args.json:
        from ipcmon.export import dumps

        sys.stdout.write(dumps(snapshot) + "\n")
    else:
        from ipcmon.report import render

        sys.stdout.write(render(snapshot, all_signals=args.all_signals) + "\n")
    sys.stdout.flush()
    return 0
