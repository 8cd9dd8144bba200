"""`ipcmon watch`, `ipcmon leaks` and `ipcmon clean`: the lifecycle commands of the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time
from types import FrameType

from ipcmon import actions as audit
from ipcmon.actions import remove_orphans
from ipcmon.collect import ScanConfig, scan
from ipcmon.leaks import Leak, find_leaks, matching, unlink_refusal
from ipcmon.model import Event
from ipcmon.report import format_table
from ipcmon.safe import counted, printable
from ipcmon.text import human_age, human_bytes


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

    monitor = Monitor(ScanConfig(kinds=args.kind, pids=args.pid), history=args.history, on_event=emit)
    monitor.poll()  # the baseline: events are what changes from here on
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
    data = dataclasses.asdict(leak)
    data["removable"] = leak.removable
    return data


def _find(args: argparse.Namespace) -> tuple[list[Leak], int] | None:
    """The leaks the options select and the count of hidden processes; None after printing an error."""
    try:
        snapshot = scan(ScanConfig(kinds=("shm", "mqueue", "sysv")))
    except OSError as error:
        sys.stderr.write(f"ipcmon {args.command}: {printable(str(error))}\n")
        return None
    return matching(find_leaks(snapshot, min_age=args.min_age), args.match), snapshot.hidden_processes


def _leak_rows(leaks: list[Leak]) -> list[tuple[str, ...]]:
    return [
        (
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
    found = _find(args)
    if found is None:
        return 2
    leaks, hidden = found
    if args.json:
        sys.stdout.write(json.dumps([leak_to_dict(leak) for leak in leaks]) + "\n")
    elif not leaks:
        sys.stdout.write("no leaks found\n")
    else:
        lines = format_table(("KIND", "PROBLEM", "NAME", "BYTES", "AGE", "HINT"), _leak_rows(leaks))
        sys.stdout.write("\n".join(lines) + "\n")
        pinned = sum(leak.bytes or 0 for leak in leaks)
        sys.stdout.write(f"{counted(len(leaks), 'leak', 'leaks')}, {human_bytes(pinned)} in all. "
                         "Remove the orphaned ones with: ipcmon clean --yes [--match GLOB]\n")
    if hidden and not args.json:
        sys.stderr.write(f"note: {counted(hidden, 'process', 'processes')} could not be fully read; objects they "
                         "hold may be listed as orphaned.\n")
    return 1 if leaks else 0


def cmd_clean(args: argparse.Namespace) -> int:
    read_only = audit.read_only(getattr(args, "read_only", False))
    if args.yes and read_only:
        sys.stderr.write(f"ipcmon clean: refusing to remove anything: {audit.READ_ONLY_REASON}.\n")
        return 2
    found = _find(args)
    if found is None:
        return 2
    leaks, hidden = found
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
    for removal in remove_orphans(candidates):
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
        sys.stderr.write(f"logged to {printable(audit.log_path())}\n")
    return 0 if not failed else 1
