"""`ipcmon watch`, `ipcmon leaks` and `ipcmon clean`: the lifecycle commands of the command line.

`watch` prints the events of a ``live.monitor.Monitor`` as lines or JSON lines; `leaks` and `clean` print and
remove what ``ipcmon.leaks`` finds. What each command needs beyond that is imported when it runs, so `leaks`
loads neither watchdog nor the text report for ``--json``, and nothing here loads Textual (issue 11).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from ipcmon.cli.arguments import (
    Command,
    Subcommands,
    add_places,
    add_scope,
    add_show_self,
    parse_duration_arg,
    parse_interval,
    place_selector,
    select_places,
)
from ipcmon.cli.journal import add_db_option
from ipcmon.safe import counted, printable
from ipcmon.text import PLACE_HEADER, human_age, human_bytes, place_cell, place_json, place_suffix

if TYPE_CHECKING:
    from ipcmon.actions import Removal
    from ipcmon.leaks import Leak
    from ipcmon.model import Event, Place
    from ipcmon.who import CreatorFacts, Known


def add_watch_parser(commands: Subcommands) -> argparse.ArgumentParser:
    watch = commands.add_parser(
        "watch",
        help="stream lifecycle events (created, attached, detached, destroyed…)",
        description="Opens with the state as it is: one 'state' line per deadlock and per deadlocked or blocked "
        "process (or one saying nothing is), then prints each change as it comes. As root, the creation and removal "
        "of segments and semaphores name the process that did it ('by 4242 python3', fanotify), and with tracefs "
        "mounted those of queues too, and each signal sent is a 'sent' event naming its sender, its target and what "
        "became of it. When a segment, semaphore or queue is destroyed, orphaned or unlinked while held, the line "
        "names who created it ('(created by 4242 python3 train.py at 12:03:07; that process exited at 12:05:40)', "
        "'created_by' in JSON): the creator its own 'created' event named, else, for an object that was there "
        "before watch started, the journal's. While no ipcmon record runs, watch writes what it sees to the "
        "journal.",
    )
    add_scope(watch)
    watch.add_argument("--json", action="store_true", help="one JSON object per line, flushed")
    watch.add_argument("--interval", type=parse_interval, default=1.0, metavar="S",
                       help="seconds between scans (default 1, at least 0.1); inotify reports shm and mqueue "
                            "creation and removal between scans")
    watch.add_argument("--history", type=int, default=10_000, metavar="N", help="events kept in memory")
    add_db_option(watch)
    watch.add_argument("--no-journal", action="store_true",
                       help="do not write the journal (by default watch writes it while no ipcmon record runs); "
                            "watch still reads it, read-only, to name who created an object it saw no creation of "
                            "when that object is destroyed, orphaned or unlinked while held")
    return watch


def add_leaks_parser(commands: Subcommands) -> argparse.ArgumentParser:
    leaks = commands.add_parser(
        "leaks",
        help="list orphaned segments and queues and unlinked segments still pinning memory",
        description="Exit status: 0 no leaks (or nothing matches --match), 1 leaks found, 2 error (a --container "
        "or --ns that matches nothing too).",
    )
    leaks.add_argument("--min-age", type=parse_duration_arg, default=0.0, metavar="DURATION",
                       help="only objects unchanged for at least this long (30s, 5m, 2h, 1d)")
    leaks.add_argument("--match", metavar="GLOB",
                       help="only names matching this glob, with or without the leading slash, or as ls /dev/shm "
                            "prints them (sem.NAME for semaphore /NAME), e.g. '/psm_*'")
    leaks.add_argument("--json", action="store_true", help="a JSON list")
    add_show_self(leaks)
    add_places(leaks)
    add_db_option(leaks)
    return leaks


def add_clean_parser(commands: Subcommands) -> argparse.ArgumentParser:
    clean = commands.add_parser(
        "clean",
        help="remove orphaned segments, semaphores and queues (dry run unless --yes)",
        description="Removes POSIX shm segments, semaphores and message queues that no process holds, and SysV "
        "segments with no attachment. Without --yes it only prints what it would remove. With --yes it re-checks "
        "each object is still orphaned immediately before removing it and never touches a held object; every "
        "object it removes or keeps is written to the action log. A deleted segment still held cannot be freed "
        "by clean: its holders must close it or exit. When the journal (ipcmon record) knows who created an "
        "object, the line after it says so.",
    )
    clean.add_argument("--min-age", type=parse_duration_arg, default=10.0, metavar="DURATION",
                       help="only objects unchanged for at least this long (default 10s, so that one created a "
                            "moment ago is not removed before its creator opens it; --min-age 0 takes every one)")
    clean.add_argument("--match", metavar="GLOB",
                       help="only names matching this glob, with or without the leading slash, or as ls /dev/shm "
                            "prints them (sem.NAME for semaphore /NAME), e.g. '/psm_*'")
    clean.add_argument("--yes", action="store_true", help="really remove them")
    # The global --read-only, accepted after the subcommand too (ipcmon clean --yes --read-only refuses).
    clean.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS,
                       help="refuse to remove anything, even with --yes (same as ipcmon --read-only)")
    add_places(clean)
    add_db_option(clean)
    return clean


def format_event(event: Event, created_by: CreatorFacts | None = None) -> str:
    """One readable line; every system string made printable. An object not on the host is followed by where it
    lives: ``/seg [web-1]`` (text.place_suffix). created_by (``watch``: for an ending, who.asks_creator) ends it:
    `` (created by 4242 python3 train.py at 12:03:07; that process exited at 12:05:40)``."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.time)) + f".{int(event.time % 1 * 1000):03d}"
    who = f"pid {event.pid} {printable(event.comm or '')}".rstrip() if event.pid is not None else ""
    if event.event == "sent":  # the detail names sender and target: SIGUSR1 4321 bash → 1234 python3: delivered
        return "  ".join([clock, f"{event.mechanism:<8}", f"{event.event:<19}", printable(event.detail)])
    parts = [clock, f"{event.mechanism:<8}", f"{event.event:<19}", printable(event.object) + place_suffix(event.place)]
    if event.actor is not None:
        parts.append(f"by {event.actor.pid} {printable(event.actor.comm or '?')}")
    if who:
        parts.append(who)
    if event.detail:
        parts.append(printable(event.detail))
    if event.source != "poll":
        parts.append(f"[{event.source}]")
    line = "  ".join(parts)
    if created_by is not None:
        from ipcmon.who import creator_text

        line += f" ({printable(creator_text(created_by))})"
    return line


def cmd_watch(args: argparse.Namespace) -> int:
    """Print the stuck state as it is (``state`` events: deadlocks, deadlocked and blocked processes), then each
    event as it comes, until SIGINT or SIGTERM, or until stdout's reader leaves; exit 0."""
    from ipcmon import journal
    from ipcmon.collect import ScanConfig
    from ipcmon.live.events import state_events
    from ipcmon.live.monitor import Monitor, mechanisms_for
    from ipcmon.who import Known, StreamCreators

    stop = threading.Event()
    output_lock = threading.Lock()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def say(text: str) -> None:
        with output_lock:
            sys.stderr.write(f"ipcmon watch: {printable(text)}\n")
            sys.stderr.flush()

    # Who created the objects whose end the events report (issue 16): the journal as it is now, read-only, opened
    # before this watch may write it (--no-journal or not), asked at most once per batch of events, and only about
    # the objects there before watch started (who.StreamCreators).
    path = args.db or journal.default_path()
    creators = StreamCreators(path, say=say)

    def emit(events: Sequence[Event]) -> None:
        """Print a batch of changes (a poll's, an inotify event's…) that go out together, in order."""
        made = creators.of(events)
        write([json.dumps(change_to_dict(event, creator)) if args.json else format_event(event, creator)
               for event, creator in zip(events, made, strict=True)])

    def write(lines: list[str]) -> None:
        with output_lock:
            try:
                sys.stdout.write("".join(f"{line}\n" for line in lines))
                sys.stdout.flush()
            except BrokenPipeError:
                stop.set()

    config = ScanConfig(kinds=args.kind, pids=args.pid, hide_self=not args.show_self)
    selector = place_selector(args)
    sink = None
    if not args.no_journal:
        from ipcmon.recorder import JournalWhenIdle

        sink = JournalWhenIdle(path, say=say)
    monitor = Monitor(config, history=args.history, on_events=emit, places=selector, senders=True, actors=True,
                      sink=sink)
    try:
        baseline, _ = monitor.poll()  # the baseline: events are what changes from here on
        if selector is not None and select_places(baseline, selector, "ipcmon watch") is None:
            return 1  # as for a --pid naming no process
        # Every object there before: with --pid, --container or --ns, one not selected now may be later (a selected
        # process opens it) and end in view.
        whole = monitor.unfiltered or baseline
        creators.begin([*(segment.object_key for segment in whole.shm), *(queue.object_key for queue in whole.mqueues)])
        # What is stuck already, first: on a machine that hung before watch started, no change would ever say it.
        write([json.dumps(event_to_dict(event)) if args.json else format_event(event)
               for event in state_events(baseline, mechanisms_for(config.kinds))])
        monitor.start()
        # On stderr, so that stdout holds nothing but events (JSON lines stay parseable); "watching" once every
        # source runs, so that what happens after it is seen.
        for source in monitor.sources:
            if not source.active:
                sys.stderr.write(f"{printable(source.name)}: {printable(source.reason)}\n")
        sys.stderr.write(journal_notes(Known(note=creators.note)))
        writing = ""
        if sink is not None:
            where = printable(sink.path)
            writing = (f"; writing the journal {where} (no ipcmon record runs)" if sink.check() else
                       f"; not writing the journal {where}: an ipcmon record (or a dashboard or watch) does")
        sys.stderr.write(f"watching {', '.join(args.kind)} every {args.interval:g}s (Ctrl-C to stop){writing}\n")
        sys.stderr.flush()
        while not stop.is_set():
            started = time.monotonic()
            monitor.poll()
            while monitor.notes:  # kernel events lost: said, and the poll has re-read the state
                with output_lock:
                    sys.stderr.write(f"note: {printable(monitor.notes.popleft())}\n")
                    sys.stderr.flush()
            stop.wait(max(args.interval - (time.monotonic() - started), 0.0))
    finally:
        monitor.stop()  # lets out what waits for its actor, and closes the sink: what was queued is written
        creators.close()
    return 0


def leak_to_dict(leak: Leak, place: Place | None = None) -> dict[str, object]:
    """One leak as `ipcmon leaks --json` gives it: its fields (``ipcmon.leaks.Leak``), ``removable``, whether
    `clean` may remove it as this user, and where it lives (``namespace``, ``container``, ``place``: as in
    snapshot --json, null when not known)."""
    data = dataclasses.asdict(leak)
    data["removable"] = leak.removable
    data.update(place_json(place))
    return data


def event_to_dict(event: Event) -> dict[str, object]:
    """One event as ``watch --json`` writes it: its fields, and its place as ``namespace``, ``container`` and
    ``place`` (text.place_json) instead of the nested record, and ``actor`` (who did it: pid, comm, cmdline, uid,
    start_ticks, kernel, place; null when unknown). Its opening ``state`` lines are this; each change adds
    ``created_by`` (:func:`change_to_dict`)."""
    data = {field.name: getattr(event, field.name) for field in dataclasses.fields(event) if field.name != "place"}
    data.update(place_json(event.place))
    from ipcmon.who import actor_json

    data["actor"] = actor_json(event.actor)
    return data


def change_to_dict(event: Event, created_by: CreatorFacts | None) -> dict[str, object]:
    """One change as ``watch --json`` writes it: event_to_dict's, and ``created_by``, in every change (who created
    the object, who.created_by_json): null but for a ``destroyed``, ``orphaned`` or ``unlinked-while-held`` of a
    segment, semaphore or queue whose creator is known (who.StreamCreators)."""
    from ipcmon.who import created_by_json

    return {**event_to_dict(event), "created_by": created_by_json(created_by)}


@dataclasses.dataclass(frozen=True, slots=True)
class _Found:
    leaks: list[Leak]
    """Every leak whose name matches --match (all without it), whatever its age, most serious first (in the order
    of health.hazards, as snapshot lists them)."""
    matched: int | None
    """Objects (leaks or not) whose name matches --match; None without --match."""
    hidden: int
    """Processes that could not be fully read."""
    levels: dict[str, str]
    """Each object's level as glyph and word (``✖ bad``, health.Hazard.level_text), by object key."""
    budgets: list[str]
    """Each shm mount and budget past its threshold (health.capacity_hazards), as a line: level, object, problem."""
    unknown: list[str] = dataclasses.field(default_factory=list)
    """Names (--match selects) of objects no readable process holds but one ipcmon could not read may
    (``orphaned?``: health.qualify): neither leaks nor removable, and said so."""
    places: dict[str, Place] = dataclasses.field(default_factory=dict)
    """Each object's place by key (health.object_places): a leak not on the host is named with it in the table and
    its JSON (clean's lines name it from Leak.place)."""


def _find(args: argparse.Namespace) -> _Found | None:
    """The leaks --match selects, how many objects it matched, the count of hidden processes and the levels;
    None after printing an error."""
    from ipcmon import health
    from ipcmon.collect import ScanConfig, scan
    from ipcmon.leaks import count_matching, find_leaks, matches, matching

    try:
        # Pipes and signals too, for their budgets (issue 14): leaks lists every budget past its threshold.
        snapshot = scan(ScanConfig(kinds=("shm", "mqueue", "pipe", "signal", "sysv"),
                                   hide_self=not getattr(args, "show_self", False)))
    except OSError as error:
        sys.stderr.write(f"ipcmon {args.command}: {printable(str(error))}\n")
        return None
    selected = select_places(snapshot, place_selector(args), f"ipcmon {args.command}")
    if selected is None:
        return None
    snapshot = selected
    levels: dict[str, str] = {}
    order: dict[str, int] = {}
    for position, hazard in enumerate(health.hazards(snapshot)):  # most serious first: an object keeps its worst
        levels.setdefault(hazard.key, hazard.level_text)
        order.setdefault(hazard.key, position)
    matched = None if args.match is None else count_matching(snapshot, args.match)
    budgets = [f"{hazard.level_text}  {hazard.mechanism}  {printable(hazard.object)}  {printable(hazard.problem)}"
               for hazard in sorted(health.capacity_hazards(snapshot), key=health.rank)]
    unknown = [name + place_suffix(place)
               for kind, name, place in (*((s.kind, s.name, s.place) for s in snapshot.shm if s.state == "orphaned?"),
                                         *(("mqueue", q.name, q.place) for q in snapshot.mqueues if q.maybe_held))
               if args.match is None or matches(kind, name, args.match)]
    # The leaks in the hazards' order (health.rank: level, then the bytes at stake, then memory before queues), as
    # snapshot lists them; a leak without a hazard would go last, oldest first as find_leaks gives them.
    leaks = sorted(matching(find_leaks(snapshot), args.match), key=lambda leak: order.get(leak.key, len(order)))
    return _Found(leaks, matched, snapshot.hidden_processes, levels, budgets, unknown,
                  health.object_places(snapshot))


_UNKNOWN_WORDS = ("no process ipcmon can read holds {them}, but a process it cannot read may (orphaned?): not "
                  "listed as {leaks}; run as root to know")


def _unknown_line(unknown: list[str]) -> str:
    """``2 objects (/a, /b): no process ipcmon can read holds them, but …``; '' for none."""
    if not unknown:
        return ""
    names = ", ".join(printable(name) for name in unknown[:5]) + (", …" if len(unknown) > 5 else "")
    words = _UNKNOWN_WORDS.format(them="it" if len(unknown) == 1 else "them",
                                  leaks="a leak" if len(unknown) == 1 else "leaks")
    return f"{counted(len(unknown), 'object', 'objects')} ({names}): {words}\n"


def _old_enough(leak: Leak, min_age: float) -> bool:
    return min_age <= 0 or (leak.age is not None and leak.age >= min_age)  # unknown is not "old"


LEAK_HEADERS = ("LEVEL", "KIND", "PROBLEM", "NAME", "SIZE", "ALLOC", "QUEUED", "AGE", "HINT")
"""SIZE: the object's size; ALLOC: memory it takes (allocated, or pinned once deleted); QUEUED: bytes in a
queue's messages. '-' where a column does not apply, '?' where it is unknown."""


def leak_table(leaks: list[Leak], levels: dict[str, str], places: dict[str, Place]) -> list[str]:
    """The leaks as a table; with a CONTAINER column after NAME when one of them lives off the host (issue 15)."""
    from ipcmon.report import format_table

    rows = _leak_rows(leaks, levels)
    headers: tuple[str, ...] = LEAK_HEADERS
    where = [places.get(leak.key) for leak in leaks]
    if any(place is not None and not place.host for place in where):
        at = LEAK_HEADERS.index("NAME") + 1
        headers = (*LEAK_HEADERS[:at], PLACE_HEADER, *LEAK_HEADERS[at:])
        rows = [(*row[:at], place_cell(place), *row[at:]) for row, place in zip(rows, where, strict=True)]
    return format_table(headers, rows)


def _leak_rows(leaks: list[Leak], levels: dict[str, str]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for leak in leaks:
        queue = leak.mechanism == "mqueue"
        rows.append((
            levels.get(leak.key, "?"),
            leak.mechanism,
            leak.problem,
            printable(leak.name),
            "-" if queue else human_bytes(leak.size),
            "-" if queue else human_bytes(leak.allocated),
            human_bytes(leak.queued) if queue else "-",
            human_age(leak.age),
            printable(leak.hint) or "-",
        ))
    return rows


def _nothing_matches(pattern: str) -> str:
    return f"nothing matches {printable(pattern)}\n"


def _closing_line(leaks: list[Leak], pattern: str | None, where: Sequence[str] = ()) -> str:
    """What the leaks add up to, and the remedy for each sort: clean for those it may remove (with where, the
    ``--container``/``--ns`` options given, so that the same names elsewhere are not taken too), the holders for
    deleted ones, root for other users' orphans."""
    import shlex

    from ipcmon.leaks import CLEAN_MIN_AGE

    allocated = sum(leak.allocated or 0 for leak in leaks)
    queued = sum(leak.queued or 0 for leak in leaks)
    amounts = [f"{human_bytes(allocated)} of memory"] + ([f"{human_bytes(queued)} queued"] if queued else [])
    removable = [leak for leak in leaks if leak.removable]
    deleted = [leak for leak in leaks if leak.problem == "deleted-but-held"]
    others = len(leaks) - len(removable) - len(deleted)
    advice = []
    if removable:
        match = shlex.quote(pattern) if pattern is not None else "GLOB"
        options = "".join(" " + shlex.quote(word) for word in where)
        young = sum(not _old_enough(leak, CLEAN_MIN_AGE) for leak in removable)
        advice.append(f"{counted(len(removable), 'orphan', 'orphans')} can be removed: ipcmon clean --yes --match "
                      f"{printable(match)}{printable(options)}"
                      + (f" ({young} changed in the last {CLEAN_MIN_AGE:g}s: clean leaves them unless --min-age 0)"
                         if young else ""))
    if deleted:
        it = "it; its holders (HINT) must close it" if len(deleted) == 1 else \
            "them; their holders (HINT) must close them"
        advice.append(f"{counted(len(deleted), 'deleted segment', 'deleted segments')} still held: clean cannot "
                      f"free {it} or exit")
    if others:
        advice.append(f"{counted(others, 'orphan is', 'orphans are')} not yours to remove (run as root)")
    return f"{counted(len(leaks), 'leak', 'leaks')}, {' and '.join(amounts)} in all; {'; '.join(advice)}.\n"


def _leak_creators(leaks: list[Leak], db: str | None) -> Known:
    """Ask the journal who created each POSIX leak (who.read_journal: never fails)."""
    from ipcmon.who import read_journal

    return read_journal(db, [(leak.key, leak.name, leak.mechanism) for leak in leaks
                             if leak.mechanism in ("shm", "sem", "mqueue")])


def creator_line(leak: Leak, known: Known, *, named: bool = True) -> str:
    """``  /name: created by 4242 python3 train.py at 12:03:07; that process exited at 12:05:40 without
    unlinking\n`` (named), or ``      created by …\n`` under a line that names it: printable; '' when the journal was
    not asked about it."""
    from ipcmon.who import creator_text

    if leak.key not in known.creators:
        return ""
    said = printable(creator_text(known.creators[leak.key], unlinked=leak.problem != "deleted-but-held"))
    return f"  {printable(leak.name)}: {said}\n" if named else f"      {said}\n"


def journal_notes(known: Known, what: str = "creators") -> str:
    """The notes on stderr about a journal that could not be read, and its gaps: printable lines."""
    lines = [f"note: {known.note}: {what} unknown"] if known.note else []
    return "".join(f"{printable(line)}\n" for line in [*lines, *(f"note: {warning}" for warning in known.warnings)])


def cmd_leaks(args: argparse.Namespace) -> int:
    """Print the leaks; exit 0 when there are none (or --match names nothing), 1 when there are, 2 on error."""
    found = _find(args)
    if found is None:
        return 2
    leaks = [leak for leak in found.leaks if _old_enough(leak, args.min_age)]
    known = _leak_creators(leaks, getattr(args, "db", None))
    if args.json:
        from ipcmon.who import created_by_json

        rows = [{**leak_to_dict(leak, found.places.get(leak.key)),
                 "created_by": created_by_json(known.creators.get(leak.key))} for leak in leaks]
        sys.stdout.write(json.dumps(rows) + "\n")
        if found.matched == 0:
            sys.stderr.write(_nothing_matches(args.match))
    elif found.matched == 0:
        sys.stdout.write(_nothing_matches(args.match))
    elif not leaks:
        sys.stdout.write("no leaks found" + (f" among {counted(found.matched, 'object', 'objects')} matching "
                                             f"{printable(args.match)}" if found.matched else "") + "\n")
    else:
        lines = leak_table(leaks, found.levels, found.places)
        sys.stdout.write("\n".join(lines) + "\n")
        if known.journal is not None and known.creators:
            sys.stdout.write(f"who created them (journal {printable(known.journal)}):\n")
            sys.stdout.write("".join(creator_line(leak, known) for leak in leaks))
        selector = place_selector(args)
        sys.stdout.write(_closing_line(leaks, args.match, selector.options() if selector is not None else ()))
    if not args.json and found.matched != 0:
        sys.stdout.write(_unknown_line(found.unknown))
    if found.budgets and not args.json and args.match is None:
        # Budgets are no leaks (nothing to remove, no effect on the exit status, not in --json's list of leaks):
        # they are what makes the next creation fail, so they are said after the leaks (issue 14).
        sys.stdout.write(f"\nbudgets past their threshold ({len(found.budgets)}; ipcmon limits shows them all):\n")
        sys.stdout.write("".join(f"{line}\n" for line in found.budgets))
    sys.stderr.write(journal_notes(known))
    if found.hidden and not args.json:
        sys.stderr.write(f"note: {counted(found.hidden, 'process', 'processes')} could not be fully read; "
                         + ("the kernel refuses even root: objects only they hold may be listed as orphaned.\n"
                            if os.geteuid() == 0 else "objects they could hold read orphaned? and are no leaks.\n"))
    return 1 if leaks else 0


def _where(leak: Leak) -> str:
    """`` in LABEL ipc:INODE`` for an object of another namespace than ipcmon's own (issue 15); '' otherwise."""
    if leak.place is None or leak.place.host:
        return ""
    from ipcmon.collect.ipcns import place_words

    return f" in {place_words(leak.place)}"


def _clean_line(leak: Leak, note: str = "") -> str:
    amount = f"{human_bytes(leak.queued)} queued" if leak.mechanism == "mqueue" else \
        f"{human_bytes(leak.allocated)} allocated"
    return f"  {leak.mechanism:<8} {printable(leak.name)}{_where(leak)}  {amount}  age {human_age(leak.age)}{note}\n"


def cmd_clean(args: argparse.Namespace) -> int:
    """List (dry run) or remove the orphans; exit 0, 1 when an orphan it went for was kept, 2 on error or when
    read-only mode refuses --yes.

    Orphans changed within --min-age and deleted-but-held segments are left alone (and, with --yes, logged
    as kept); only the rest are tried.
    """
    from ipcmon import actions

    read_only = actions.read_only(getattr(args, "read_only", False))
    if args.yes and read_only:
        sys.stderr.write(f"ipcmon clean: refusing to remove anything: {actions.READ_ONLY_REASON}.\n")
    found = _find(args)
    if found is None:
        return 2
    refused = 2 if args.yes and read_only else 0
    if found.matched == 0:
        sys.stdout.write(_nothing_matches(args.match))
        return refused
    candidates: list[Leak] = []
    left: list[tuple[Leak, str]] = []
    for leak in found.leaks:
        if leak.problem != "orphaned":
            left.append((leak, leak.refusal or "not an orphan"))
        elif not _old_enough(leak, args.min_age):
            changed = "its age is unknown" if leak.age is None else f"changed {human_age(leak.age)} ago"
            left.append((leak, f"{changed}, under --min-age {args.min_age:g}s"))
        else:
            candidates.append(leak)
    if not candidates:
        sys.stdout.write("nothing to remove\n")
    sys.stdout.write(_unknown_line(found.unknown))  # never tried, so never logged: they are not known orphans
    if found.hidden and candidates:
        sys.stderr.write(f"warning: {counted(found.hidden, 'process', 'processes')} could not be fully read; they "
                         "may hold objects listed here.\n")
    known = _leak_creators([*candidates, *(leak for leak, _ in left)], getattr(args, "db", None))
    sys.stderr.write(journal_notes(known))
    if not args.yes:
        if candidates:
            sys.stdout.write("would remove (dry run; add --yes to remove):\n")
            for leak in candidates:
                sys.stdout.write(_clean_line(leak, f"  (cannot: {printable(leak.refusal)})" if leak.refusal else "")
                                 + creator_line(leak, known, named=False))
        if left:
            sys.stdout.write("left alone:\n")
            for leak, reason in left:
                sys.stdout.write(_clean_line(leak, f"  (kept: {printable(reason)})") + creator_line(leak, known,
                                                                                                   named=False))
        return 0
    failed = 0
    if candidates or left:
        # Every object --yes went for is one line of the action log: removed, or kept and why (read-only too).
        if read_only:  # the --read-only flag: remove_orphans itself sees only the environment variable
            tried = actions.refuse((leak, actions.READ_ONLY_REASON) for leak in candidates)
        else:
            tried = actions.remove_orphans(candidates)
        failed = sum(not removal.removed for removal in tried)
        _report_removals([*tried, *actions.refuse(left)], known)
    return refused or (1 if failed else 0)


def _report_removals(results: list[Removal], known: Known) -> None:
    """One line per object removed or kept, and who created it when the journal knows; then where the log is, or
    why it could not be written."""
    from ipcmon import actions

    log_problem = None
    for removal in results:
        name = printable(removal.leak.name) + _where(removal.leak)
        log_problem = log_problem or removal.log_problem
        if removal.removed:
            sys.stdout.write(f"removed {removal.leak.mechanism} {name}\n")
        else:
            sys.stdout.write(f"kept {removal.leak.mechanism} {name}: {printable(removal.reason)}\n")
        sys.stdout.write(creator_line(removal.leak, known, named=False))
    sys.stdout.flush()
    if log_problem:
        sys.stderr.write(f"warning: {log_problem}\n")
    else:
        sys.stderr.write(f"logged to {printable(actions.log_path())}\n")


COMMANDS = (
    Command("watch", add_watch_parser, cmd_watch),
    Command("leaks", add_leaks_parser, cmd_leaks),
    Command("clean", add_clean_parser, cmd_clean),
)
