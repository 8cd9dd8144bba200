"""`ipcmon record` and `ipcmon history`: write the journal (issue 16) in the foreground, and read what it knows.

`record` is what the systemd unit (contrib/systemd/ipcmon-record.service) runs; `history` prints every record the
journal holds about one object or one process. The journal, the recorder and the attribution sources are imported
only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterable
from types import FrameType
from typing import TYPE_CHECKING

from ipcmon import who
from ipcmon.cli.arguments import Command, Subcommands, parse_duration_arg, parse_interval
from ipcmon.model import Actor
from ipcmon.safe import counted, printable

if TYPE_CHECKING:
    from ipcmon.journal import JournalReader, ProcessExit
    from ipcmon.model import Attribution, Event
    from ipcmon.recorder import AttributionSource


def parse_size_arg(text: str) -> int:
    """'100M' → bytes (``ipcmon.journal.parse_size``), at least ``journal.MIN_MAX_SIZE``."""
    from ipcmon.journal import MIN_MAX_SIZE, parse_size

    try:
        size = parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if size < MIN_MAX_SIZE:
        raise argparse.ArgumentTypeError(f"the journal needs at least {MIN_MAX_SIZE // 1024}K")
    return size


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """``--db PATH``: the journal to use instead of ``$IPCMON_JOURNAL`` or the default path."""
    parser.add_argument("--db", metavar="PATH",
                        help="the journal database (default: $IPCMON_JOURNAL, else /var/lib/ipcmon/journal.db for "
                             "root, else $XDG_STATE_HOME/ipcmon/journal.db)")


def add_record_parser(commands: Subcommands) -> argparse.ArgumentParser:
    record = commands.add_parser(
        "record",
        help="record who created, removed and signalled what, and every lifecycle event, into the journal",
        description="Runs in the foreground (the systemd unit runs it as a service) until SIGTERM or SIGINT, then "
        "writes what is pending and exits 0. Writes to an SQLite journal that leaks and history read.",
    )
    add_db_option(record)
    record.add_argument("--interval", type=parse_interval, default=1.0, metavar="S",
                        help="seconds between scans (default 1); inotify reports creations and removals between")
    record.add_argument("--keep", type=parse_duration_arg, default=None, metavar="AGE",
                        help="drop records older than this (default 7d)")
    record.add_argument("--max-size", type=parse_size_arg, default=None, metavar="SIZE",
                        help="the most the journal may take on disk, database and log together (default 100M): the "
                             "oldest records go first")
    return record


def add_history_parser(commands: Subcommands) -> argparse.ArgumentParser:
    history = commands.add_parser(
        "history",
        help="everything the journal knows about an object or a process",
        description="NAME is a POSIX name, with or without its leading slash, or as leaks --match spells it "
        "(sem.NAME or sem:/NAME for a semaphore, mqueue:/NAME for a queue), or an object key (shm:DEV:INODE); "
        "pid:N is a process. Exit status: 0 found, 1 the journal knows nothing of it, 2 no journal or unreadable.",
    )
    history.add_argument("what", metavar="NAME|pid:N")
    add_db_option(history)
    history.add_argument("--json", action="store_true", help="one JSON object")
    history.add_argument("--limit", type=int, default=1000, metavar="N", help="newest records of each sort (1000)")
    return history


# --- record ---------------------------------------------------------------------------------------------------


def _attribution_source(shm_dir: str) -> AttributionSource:
    """The Attributor, started on the host's shm tmpfs (containers' are marked as the scans find them), with what
    each source gives or why it does not run said on stderr."""
    from ipcmon.live.attribution import Attributor

    attributor = Attributor([shm_dir])
    attributor.start()
    for status in attributor.status():
        if status.active:
            sys.stderr.write(f"ipcmon record: {printable(status.name)}: on\n")
        else:
            sys.stderr.write(f"ipcmon record: {printable(status.name)}: off: {printable(status.reason)}\n")
    return attributor


def cmd_record(args: argparse.Namespace) -> int:
    """Record until SIGTERM or SIGINT, then flush and exit 0 (a journal that cannot be written is said, and recording
    goes on in memory)."""
    from ipcmon import journal
    from ipcmon.collect import ScanConfig
    from ipcmon.recorder import RECORD_KINDS, Recorder
    from ipcmon.text import human_age, human_bytes

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    path = args.db or journal.default_path()

    def say(text: str) -> None:
        sys.stderr.write(f"ipcmon record: {printable(text)}\n")
        sys.stderr.flush()

    from ipcmon.recorder import WRITER_WAIT, recorder_lock_path, take_lock, writer_lock_path

    try:
        journal.prepare_directory(path)
    except OSError as error:
        say(f"the journal's directory cannot be made: {error}")
    # Held until this process ends (the kernel lets go of it, SIGKILL included): the dashboard and watch see it and
    # leave the journal to this recorder (recorder.py).
    lock = take_lock(recorder_lock_path(path))
    if lock is None:
        say(f"another ipcmon record is writing {path} (it holds {recorder_lock_path(path)}): not starting")
        return 1
    writer = take_lock(writer_lock_path(path), wait=WRITER_WAIT)  # a dashboard or watch writing lets go
    if writer is None:
        say(f"a dashboard or watch still writes {path} after {WRITER_WAIT:g}s: recording anyway")
    store = journal.Journal(
        path,
        keep=journal.DEFAULT_KEEP if args.keep is None else args.keep,
        max_size=journal.DEFAULT_MAX_SIZE if args.max_size is None else args.max_size,
        on_problem=say,
    )
    store.start()
    config = ScanConfig(kinds=RECORD_KINDS)
    source = _attribution_source(config.shm_dir)
    recorder = Recorder(store, interval=args.interval, config=config, source=source, say=say)
    recorder.start()  # the baseline first: "recording" is said once every change from then on is recorded
    where = "in memory" if store.problem is not None else printable(path)
    say(f"recording {', '.join(RECORD_KINDS)} every {args.interval:g}s to {where} (keeping {human_age(store.keep)}, "
        f"at most {human_bytes(store.max_size)}); SIGTERM or Ctrl-C stops")
    try:
        recorder.run(stop)
    finally:
        stopper = getattr(source, "stop", None)
        if callable(stopper):
            stopper()
        store.stop()
        for fd in (writer, lock):
            if fd is not None:
                os.close(fd)
    say(f"stopped: {store.written:,} records written, {store.dropped:,} dropped"
        + (f", {len(store.memory):,} left in memory ({store.problem})" if store.problem is not None else ""))
    return 0


# --- history --------------------------------------------------------------------------------------------------


def _actor_text(actor: Actor) -> str:
    """``4242 python3 train.py --fast`` (who.actor_text), ``the kernel (in 4242 python3)``; printable."""
    return printable(who.doer_text(actor))


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}"


SAME_ACT_SECONDS = 2.0
"""A poll's or inotify's event this close to an attribution of the same act on the same object is that act; two
exits of one process this close, recorded by two journal writers, are one exit."""
SAME_ACT: dict[str, frozenset[str]] = {"created": frozenset({"created"}), "removed": frozenset({"destroyed"})}
"""The events that tell an attributed act again, by attribution action: fanotify or tracefs name who created or
removed an object, inotify or a poll saw it come or go (and the size it came with)."""


def _acts_seen_twice(attributions: list[Attribution], events: list[Event]) -> dict[int, Event]:
    """The events that an attribution of the same act also records (SAME_ACT), by id() of that attribution.

    fanotify names the creator and inotify the size, of one creation; fanotify names the remover and a poll (or
    inotify) saw the object go: history prints each pair as one line (its JSON keeps both records, each with its
    source). An event that names another actor stays a line of its own."""
    seen: dict[int, Event] = {}
    taken: set[int] = set()
    for record in attributions:
        names = SAME_ACT.get(record.action)
        if names is None:
            continue
        for event in events:
            if (event.event in names and id(event) not in taken
                    and (event.actor is None or event.actor.pid == record.actor.pid)
                    and event.mechanism == record.mechanism
                    and (event.key == record.key or event.object == record.object)
                    and abs(event.time - record.time) <= SAME_ACT_SECONDS):
                seen[id(record)] = event
                taken.add(id(event))
                break
    return seen


def _distinct_exits(exits: Iterable[ProcessExit]) -> list[ProcessExit]:
    """Each process's exit once, its earliest record: one exit may be read twice (its actor known both by pid alone
    and with its start time), or recorded by two journal writers (a recorder, then a dashboard), one of them
    without the start time."""
    kept: list[ProcessExit] = []
    for record in sorted(exits, key=lambda x: (x.time, x.start_ticks is None)):
        if not any(_same_exit(record, other) for other in kept):
            kept.append(record)
    return kept


def _same_exit(one: ProcessExit, other: ProcessExit) -> bool:
    """The same pid, and the same start time, or one unknown and the two SAME_ACT_SECONDS apart at most."""
    if one.pid != other.pid:
        return False
    if one.start_ticks is not None and other.start_ticks is not None:
        return one.start_ticks == other.start_ticks
    return abs(one.time - other.time) <= SAME_ACT_SECONDS


def _attribution_line(record: Attribution, event: Event | None = None) -> str:
    """One line; with the event of the same act (SAME_ACT: its detail, its source) folded in."""
    if record.action == "sent":
        from ipcmon.live.attribution import sent_outcome
        from ipcmon.text import signal_name

        name = signal_name(record.signal) if record.signal is not None else "signal ?"
        target = f"{record.target} {printable(record.target_comm or '')}".rstrip()
        what = f"{name} → {target}: {sent_outcome(record)}"  # ' (N times)' included
        count = ""
    else:
        what = f"{record.action} {printable(record.object)}"
        count = f" ({record.count:,} times)" if record.count > 1 else ""
    by = _actor_text(record.actor)
    detail = f"  {printable(event.detail)}" if event is not None and event.detail else ""
    sources = record.source if event is None else f"{record.source}, {event.source}"
    return f"{_when(record.time)}  {record.mechanism:<8} {what}{count} by {by}{detail}  [{sources}]"


def _event_line(event: Event) -> str:
    who = f"  pid {event.pid} {printable(event.comm or '')}".rstrip() if event.pid is not None else ""
    by = f" by {_actor_text(event.actor)}" if event.actor is not None else ""
    detail = f"  {printable(event.detail)}" if event.detail else ""
    return (f"{_when(event.time)}  {event.mechanism:<8} {event.event} {printable(event.object)}{by}{who}{detail}  "
            f"[{event.source}]")


def _exit_line(record: ProcessExit) -> str:
    gone = Actor(record.pid, record.comm, record.cmdline)
    return f"{_when(record.time)}  process  exited {_actor_text(gone)}  [scan]"


def _attribution_json(record: Attribution) -> dict[str, object]:
    return {"type": "attribution", "time": record.time, "action": record.action, "mechanism": record.mechanism,
            "object": record.object, "key": record.key, "source": record.source, "actor": who.actor_json(record.actor),
            "place": None if record.place is None else record.place.label, "signal": record.signal,
            "target": record.target, "target_comm": record.target_comm, "result": record.result,
            "blocked": record.blocked, "ignored": record.ignored, "count": record.count}


def _event_json(event: Event) -> dict[str, object]:
    return {"type": "event", "time": event.time, "mechanism": event.mechanism, "event": event.event,
            "object": event.object, "key": event.key, "pid": event.pid, "comm": event.comm, "source": event.source,
            "detail": event.detail, "place": None if event.place is None else event.place.label,
            "actor": who.actor_json(event.actor)}


def _exit_json(record: ProcessExit) -> dict[str, object]:
    return {"type": "exit", "time": record.time, "pid": record.pid, "start_ticks": record.start_ticks,
            "comm": record.comm, "cmdline": list(record.cmdline) if record.cmdline is not None else None}


Entry = tuple[float, int, str, dict[str, object]]
"""One history record: time, an order among records of the same time, its line ('' when another record's line
says it) and its JSON."""


def _object_history(reader: JournalReader, what: str, limit: int) -> list[Entry]:
    key = what if what.count(":") == 2 and what.split(":")[1].isdigit() else None
    name = None if key is not None else what
    attributions = reader.attributions_for_object(key=key, name=name, limit=limit)
    events = reader.events_for_object(key=key, name=name, limit=limit)
    if name is not None:
        # The name's records are found by name; records of the same objects tied to them only by key follow.
        keys = {record.key for record in attributions if record.key} | {event.key for event in events}
        for other in sorted(keys):
            attributions += [r for r in reader.attributions_for_object(key=other, limit=limit) if r not in attributions]
            events += [e for e in reader.events_for_object(key=other, limit=limit) if e not in events]
    seen = _acts_seen_twice(attributions, events)
    entries: list[Entry] = [(r.time, 0, _attribution_line(r, seen.get(id(r))), _attribution_json(r))
                            for r in attributions]
    told = {id(event) for event in seen.values()}
    entries += [(e.time, 1, "" if id(e) in told else _event_line(e), _event_json(e)) for e in events]
    actors = {(r.actor.pid, r.actor.start_ticks) for r in attributions}
    actors |= {(e.actor.pid, e.actor.start_ticks) for e in events if e.actor is not None}
    # Each exit once: an actor known by pid alone and the same one known with its start time name the same exits.
    exits = _distinct_exits(x for pid, start_ticks in actors for x in reader.exits_of(pid)
                            if start_ticks is None or x.start_ticks == start_ticks)
    entries += [(x.time, 2, _exit_line(x), _exit_json(x)) for x in exits]
    return entries


def _process_history(reader: JournalReader, pid: int, limit: int) -> list[Entry]:
    """What pid did, the signals sent to it, the events naming it and its exits. A pid the kernel gave to several
    processes over the journal's life gathers all of them: pid_reuse() tells."""
    done = reader.attributions_by_process(pid, limit=limit)
    received = reader.signals_to(pid, limit=limit)
    attributions = done + [r for r in received if r not in done]
    events = reader.events_of_process(pid, limit=limit)
    seen = _acts_seen_twice(attributions, events)
    told = {id(event) for event in seen.values()}
    entries: list[Entry] = [(r.time, 0, _attribution_line(r, seen.get(id(r))), _attribution_json(r))
                            for r in attributions]
    entries += [(e.time, 1, "" if id(e) in told else _event_line(e), _event_json(e)) for e in events]
    entries += [(x.time, 2, _exit_line(x), _exit_json(x)) for x in _distinct_exits(reader.exits_of(pid))]
    return entries


def pid_reuse(pid: int, entries: list[Entry]) -> str:
    """``pid 4242 named 2 processes in the journal (start ticks 100, 250): …``; '' when one or unknown."""
    ticks: set[int] = set()
    for _, _, _, data in entries:
        actor = data.get("actor")
        if data["type"] == "exit" and data["pid"] == pid and isinstance(data["start_ticks"], int):
            ticks.add(data["start_ticks"])
        elif isinstance(actor, dict) and actor["pid"] == pid and isinstance(actor["start_ticks"], int):
            ticks.add(actor["start_ticks"])
    if len(ticks) < 2:
        return ""
    return (f"pid {pid} named {len(ticks)} processes in the journal (start ticks {', '.join(map(str, sorted(ticks)))}):"
            " --json gives each record's start_ticks")


def cmd_history(args: argparse.Namespace) -> int:
    """Print the journal's records about an object or a process, oldest first; exit 0 found, 1 none, 2 no journal."""
    from ipcmon import journal

    path = args.db or journal.default_path()
    reader, problem = journal.open_reader(path)
    if reader is None:
        sys.stderr.write(f"ipcmon history: {printable(problem or f'no journal at {path}')} (ipcmon record writes "
                         "one)\n")
        return 2
    what: str = args.what
    reuse = ""
    try:
        with reader:
            if what.startswith("pid:"):
                try:
                    pid = int(what[4:])
                except ValueError:
                    sys.stderr.write(f"ipcmon history: not a pid: {printable(what)}\n")
                    return 2
                entries = _process_history(reader, pid, args.limit)
                reuse = pid_reuse(pid, entries)
            else:
                entries = _object_history(reader, what, args.limit)
            first = min((entry[0] for entry in entries), default=time.time())
            warnings = reader.warnings(first)  # the gaps that may hide some of this object's or process's acts
    except journal.JournalError as error:
        sys.stderr.write(f"ipcmon history: {printable(str(error))}\n")
        return 2
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    if args.json:
        sys.stdout.write(json.dumps({"journal": path, "query": what, "records": [entry[3] for entry in entries],
                                     "warnings": warnings}) + "\n")
    elif not entries:
        sys.stdout.write(f"the journal {printable(path)} knows nothing of {printable(what)}\n")
    else:
        lines = [entry[2] for entry in entries if entry[2]]  # a record folded into another's line has none
        sys.stdout.write(f"{printable(what)}: {counted(len(lines), 'record', 'records')} in the journal "
                         f"{printable(path)}\n")
        sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stderr.write("".join(f"note: {printable(warning)}\n" for warning in (*warnings, *([reuse] if reuse else []))))
    return 0 if entries else 1


COMMANDS = (
    Command("record", add_record_parser, cmd_record),
    Command("history", add_history_parser, cmd_history),
)
