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


def _add_dashboard_options(parser: argparse.ArgumentParser) -> None:
    """Options of `ipcmon` with no subcommand: the live dashboard (README "Dashboard")."""
    parser.epilog = "With no COMMAND, ipcmon opens the live dashboard (q quits, ? lists the keys)."
    dashboard = parser.add_argument_group("dashboard (no COMMAND)")
    dashboard.add_argument("--interval", type=parse_interval, default=1.0, metavar="S",
                           help="seconds between scans (default 1, at least 0.1); + and - change it live")
    dashboard.add_argument("--read-only", action="store_true",
                           help="disable every action that changes the system (sending signals, removing orphans)")
    _add_scope(parser)
    dashboard.add_argument("--demo", action="append", default=[], metavar="NAME",
                           help="start this demo workload in the dashboard (repeatable, or 'all')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipcmon",
        description="See Linux IPC live: POSIX shared memory, message queues, pipes and FIFOs, signals, SysV IPC.",
    )
    parser.add_argument("--version", action="version", version=f"ipcmon {__version__}")
    _add_dashboard_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    snapshot = commands.add_parser("snapshot", help="print every IPC object once, as tables or JSON")
    _add_scope(snapshot)
    snapshot.add_argument("--json", action="store_true", help="one JSON object (the contract in README.md)")
    snapshot.add_argument(
        "--all-signals",
        action="store_true",
        help="list every process in the signals table, not only those with something pending or blocked",
    )
    _add_lifecycle_commands(commands)
    _add_demo_command(commands)
    return parser


def _add_lifecycle_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser("watch", help="stream lifecycle events (created, attached, detached, destroyed…)")
    _add_scope(watch)
    watch.add_argument("--json", action="store_true", help="one JSON object per line, flushed")
    watch.add_argument("--interval", type=parse_interval, default=1.0, metavar="S",
                       help="seconds between scans (default 1, at least 0.1); inotify reports shm and mqueue "
                            "creation and removal between scans")
    watch.add_argument("--history", type=int, default=10_000, metavar="N", help="events kept in memory")

    leaks = commands.add_parser(
        "leaks",
        help="list orphaned segments and queues and unlinked segments still pinning memory",
        description="Exit status: 0 no leaks, 1 leaks found, 2 error.",
    )
    leaks.add_argument("--min-age", type=parse_duration_arg, default=0.0, metavar="DURATION",
                       help="only objects unchanged for at least this long (30s, 5m, 2h, 1d)")
    leaks.add_argument("--match", metavar="GLOB", help="only names matching this glob, e.g. '/psm_*'")
    leaks.add_argument("--json", action="store_true", help="a JSON list")

    clean = commands.add_parser(
        "clean",
        help="remove orphaned segments and queues (dry run unless --yes)",
        description="Removes POSIX shm segments, semaphores and message queues that no process holds. "
        "Without --yes it only prints what it would remove. With --yes it re-checks each object is still "
        "orphaned immediately before unlinking it and never touches a held object.",
    )
    clean.add_argument("--min-age", type=parse_duration_arg, default=0.0, metavar="DURATION",
                       help="only objects unchanged for at least this long")
    clean.add_argument("--match", metavar="GLOB", help="only names matching this glob, e.g. '/psm_*'")
    clean.add_argument("--yes", action="store_true", help="really remove them")
    # The global --read-only, accepted after the subcommand too (ipcmon clean --yes --read-only refuses).
    clean.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS,
                       help="refuse to remove anything, even with --yes (same as ipcmon --read-only)")


def _add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run demo workloads that walk each IPC mechanism through its lifecycle, narrated",
        description="Runs demo workloads in the foreground, narrating each step. Ctrl-C stops them: they "
        "remove what they created (all but leak, by design) and ipcmon exits 0. 'all' runs the lesson demos "
        "together; not leak (it leaves orphans on purpose) nor stress (it is load, not a lesson).",
    )
    demo.add_argument("--list", action="store_true", help="describe each demo in one line")
    demo.add_argument("--step", type=float, default=None, metavar="S", help="seconds between steps")
    demo.add_argument("name", nargs="?", metavar="NAME", help="a demo (see --list), or all")
    demo.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                      help="passed to the demo, e.g. stress's --processes 500 --duration 60")


def cmd_demo(args: argparse.Namespace) -> int:
    from ipcmon.demos import DEMOS, LESSONS, run_foreground

    if args.list or args.name is None:
        width = max(map(len, DEMOS))
        sys.stdout.write("".join(f"{demo.name:<{width}}  {demo.description}\n" for demo in DEMOS.values()))
        return 0
    if args.name != "all" and args.name not in DEMOS:
        sys.stderr.write(f"ipcmon demo: no demo {args.name!r} (ipcmon demo --list shows them)\n")
        return 2
    return run_foreground(LESSONS if args.name == "all" else (args.name,), args.step, args.args)


def parse_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0.1:
        raise argparse.ArgumentTypeError("the interval must be at least 0.1 seconds")
    return value


def parse_duration_arg(text: str) -> float:
    from ipcmon.leaks import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "snapshot":
            return cmd_snapshot(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command in ("watch", "leaks", "clean"):
            from ipcmon.cli import lifecycle

            return int(getattr(lifecycle, f"cmd_{args.command}")(args))
        return cmd_dashboard(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ipcmon snapshot | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from ipcmon.collect import ScanConfig, scan

    # This process has no threads and no descriptors but stdio: it may fork a second reader (scan docs).
    snapshot = scan(ScanConfig(kinds=args.kind, pids=args.pid), fork=True)
    if args.json:
        from ipcmon.export import dumps

        sys.stdout.write(dumps(snapshot) + "\n")
    else:
        from ipcmon.report import render

        sys.stdout.write(render(snapshot, all_signals=args.all_signals) + "\n")
    sys.stdout.flush()
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ipcmon.ui.app import make_app  # Textual is imported here and nowhere else on the CLI path

    try:
        app = make_app(None, args.interval, args.read_only, args.kind, args.pid, args.demo)
    except ValueError as error:  # an unknown --demo name
        sys.stderr.write(f"ipcmon: {error}\n")
        return 2
    app.run()
    return int(app.return_code or 0)
