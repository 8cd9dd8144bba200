"""`ipcmon watch`, `ipcmon leaks` and `ipcmon clean`: the lifecycle commands of the command line.

`watch` prints the events of a ``live.monitor.Monitor`` as lines or JSON lines; `leaks` and `clean` print and
remove what ``ipcmon.leaks`` finds. What each command needs beyond that is imported when it runs, so `leaks`
loads neither watchdog nor the text report for ``--json``, and nothing here loads Textual (issue 11).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from ipcmon.cli.arguments import (
    Command,
    Subcommands,
    add_scope,
    add_show_self,
    parse_duration_arg,
    parse_interval,
)
from ipcmon.safe import counted, printable
from ipcmon.text import human_age, human_bytes

if TYPE_CHECKING:
    from ipcmon.leaks import Leak
    from ipcmon.model import Event


def add_watch_parser(commands: Subcommands) -> argparse.ArgumentParser:
    watch = commands.add_parser(
        "watch",
        help="stream lifecycle events (created, attached, detached, destroyed…)",
        description="Opens with the state as it is: one 'state' line per deadlock and per deadlocked or blocked "
        "process (or one saying nothing is), then prints each change as it comes.",
    )
    add_scope(watch)
    watch.add_argument("--json", action="store_true", help="one JSON object per line, flushed")
    watch.add_argument("--interval", type=parse_interval, default=1.0, metavar="S",
                       help="seconds between scans (default 1, at least 0.1); inotify reports shm and mqueue "
                            "creation and removal between scans")
    watch.add_argument("--history", type=int, default=10_000, metavar="N", help="events kept in memory")
    return watch


def add_leaks_parser(commands: Subcommands) -> argparse.ArgumentParser:
    leaks = commands.add_parser(
        "leaks",
        help="list orphaned segments and queues and unlinked segments still pinning memory",
        description="Exit status: 0 no leaks, 1 leaks found, 2 error.",
    )
    leaks.add_argument("--min-age", type=parse_duration_arg, default=0.0, metavar="DURATION",
                       help="only objects unchanged for at least this long (30s, 5m, 2h, 1d)")
    leaks.add_argument("--match", metavar="GLOB", help="only names matching this glob, e.g. '/psm_*'")
    leaks.add_argument("--json", action="store_true", help="a JSON list")
    add_show_self(leaks)
    return leaks


def add_clean_parser(commands: Subcommands) -> argparse.ArgumentParser:
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
    return clean


def format_event(event: Event) -> str:
    """One readable line; every system string made printable."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.time)) + f".{int(event.time % 1 * 1000):03d}"
    who = f"pid {event.pid} {printable(event.comm or '')}".rstrip() if event.pid is not None else ""
    parts = [clock, f"{event.mechanism:<8}", f"{event.event:<19}", printable(event.object)]
    if who:
        parts.append(who)
    if event.detail:
        parts.append(printable(event.detail))
    if event.source == "inotify":
        parts.append("[inotify]")
    return "  ".join(parts)


def cmd_watch(args: argparse.Namespace) -> int:
    """Print the stuck state as it is (``state`` events: deadlocks, deadlocked and blocked processes), then each
    event as it comes, until SIGINT or SIGTERM, or until stdout's reader leaves; exit 0."""
    from ipcmon.collect import ScanConfig
    from ipcmon.live.events import state_events
    from ipcmon.live.monitor import Monitor

    stop = threading.Event()
    output_lock = threading.Lock()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def emit(event: Event) -> None:
        line = json.dumps(dataclasses.asdict(event)) if args.json else format_event(event)
        with output_lock:
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                stop.set()

    config = ScanConfig(kinds=args.kind, pids=args.pid, hide_self=not args.show_self)
    monitor = Monitor(config, history=args.history, on_event=emit)
    baseline, _ = monitor.poll()  # the baseline: events are what changes from here on
    # What is stuck already, first: on a machine that hung before watch started, no change would ever say it.
    for event in state_events(baseline):
        emit(event)
    # On stderr, so that stdout holds nothing but events (JSON lines stay parseable).
    sys.stderr.write(f"watching {', '.join(args.kind)} every {args.interval:g}s (Ctrl-C to stop)\n")
    sys.stderr.flush()
    monitor.start()
    try:
        while not stop.is_set():
            started = time.monotonic()
            monitor.poll()
            stop.wait(max(args.interval - (time.monotonic() - started), 0.0))
    finally:
        monitor.stop()
    return 0


def leak_to_dict(leak: Leak) -> dict[str, object]:
    """One leak as `ipcmon leaks --json` gives it: its fields and whether `clean` may remove it."""
    data = dataclasses.asdict(leak)
    data["removable"] = leak.removable
    return data


@dataclasses.dataclass(frozen=True, slots=True)
class _Found:
    leaks: list[Leak]
    hidden: int
    """Processes that could not be fully read."""
    levels: dict[str, str]
    """Each object's level as glyph and word (``✖ bad``, health.Hazard.level_text), by object key."""


def _find(args: argparse.Namespace) -> _Found | None:
    """The leaks the options select, the count of hidden processes and the levels; None after printing an error."""
    from ipcmon import health
    from ipcmon.collect import ScanConfig, scan
    from ipcmon.leaks import find_leaks, matching

    try:
        snapshot = scan(ScanConfig(kinds=("shm", "mqueue", "sysv"), hide_self=not getattr(args, "show_self", False)))
    except OSError as error:
        sys.stderr.write(f"ipcmon {args.command}: {printable(str(error))}\n")
        return None
    levels: dict[str, str] = {}
    for hazard in health.hazards(snapshot):  # most serious first: an object keeps its worst level
        levels.setdefault(hazard.key, hazard.level_text)
    return _Found(matching(find_leaks(snapshot, min_age=args.min_age), args.match), snapshot.hidden_processes, levels)


LEAK_HEADERS = ("LEVEL", "KIND", "PROBLEM", "NAME", "BYTES", "AGE", "HINT")


def _leak_rows(leaks: list[Leak], levels: dict[str, str]) -> list[tuple[str, ...]]:
    return [
        (
            levels.get(leak.key, "?"),
            leak.mechanism,
            leak.problem,
            printable(leak.name),
            human_bytes(leak.bytes),
            human_age(leak.age),
            printable(leak.hint) or "-",
        )
        for leak in leaks
    ]


def cmd_leaks(args: argparse.Namespace) -> int:
    """Print the leaks; exit 0 when there are none, 1 when there are, 2 when the scan failed."""
    found = _find(args)
    if found is None:
        return 2
    leaks, hidden = found.leaks, found.hidden
    if args.json:
        sys.stdout.write(json.dumps([leak_to_dict(leak) for leak in leaks]) + "\n")
    elif not leaks:
        sys.stdout.write("no leaks found\n")
    else:
        from ipcmon.report import format_table

        lines = format_table(LEAK_HEADERS, _leak_rows(leaks, found.levels))
        sys.stdout.write("\n".join(lines) + "\n")
        pinned = sum(leak.bytes or 0 for leak in leaks)
        removable = sum(leak.removable for leak in leaks)
        advice = (f"{counted(removable, 'is', 'are')} orphaned: remove with ipcmon clean --yes [--match GLOB]"
                  if removable else "none can be removed by name: their memory goes when the holders exit")
        sys.stdout.write(f"{counted(len(leaks), 'leak', 'leaks')}, {human_bytes(pinned)} in all; {advice}.\n")
    if hidden and not args.json:
        sys.stderr.write(f"note: {counted(hidden, 'process', 'processes')} could not be fully read; objects they "
                         "hold may be listed as orphaned.\n")
    return 1 if leaks else 0


def cmd_clean(args: argparse.Namespace) -> int:
    """List (dry run) or remove the orphaned POSIX objects; exit 0, 1 when one could not be removed, 2 on error."""
    from ipcmon import actions
    from ipcmon.leaks import unlink_refusal

    read_only = actions.read_only(getattr(args, "read_only", False))
    if args.yes and read_only:
        sys.stderr.write(f"ipcmon clean: refusing to remove anything: {actions.READ_ONLY_REASON}.\n")
        return 2
    found = _find(args)
    if found is None:
        return 2
    leaks, hidden = found.leaks, found.hidden
    candidates = [leak for leak in leaks if leak.removable]
    if not candidates:
        sys.stdout.write("nothing to remove\n")
        return 0
    if hidden:
        sys.stderr.write(f"warning: {counted(hidden, 'process', 'processes')} could not be fully read; they may "
                         "hold objects listed here.\n")
    if not args.yes:
        sys.stdout.write("would remove (dry run; add --yes to remove):\n")
        for leak in candidates:
            refusal = unlink_refusal(leak.path) if leak.path else None
            sys.stdout.write(f"  {leak.mechanism:<6} {printable(leak.name)}  {human_bytes(leak.bytes)}  "
                             f"age {human_age(leak.age)}" + (f"  (cannot: {refusal})" if refusal else "") + "\n")
        return 0
    failed = 0
    log_problem = None
    for removal in actions.remove_orphans(candidates):
        name = printable(removal.leak.name)
        log_problem = log_problem or removal.log_problem
        if removal.removed:
            sys.stdout.write(f"removed {removal.leak.mechanism} {name}\n")
        else:
            failed += 1
            sys.stdout.write(f"kept {removal.leak.mechanism} {name}: {printable(removal.reason)}\n")
    sys.stdout.flush()
    if log_problem:
        sys.stderr.write(f"warning: {log_problem}\n")
    else:
        sys.stderr.write(f"logged to {printable(actions.log_path())}\n")
    return 0 if not failed else 1


COMMANDS = (
    Command("watch", add_watch_parser, cmd_watch),
    Command("leaks", add_leaks_parser, cmd_leaks),
    Command("clean", add_clean_parser, cmd_clean),
)
