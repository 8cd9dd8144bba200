"""Who did it, in the same words for every front end (issue 16): who sent a process its signals, and who created
an object, from the live sources' events and from the journal (``ipcmon.journal``, read-only).

The dashboard keeps what its Monitor sees and asks the journal per view (``ui.view.actors``); a one-shot command
(snapshot, clean, limits) asks the journal once for everything it shows (:func:`read_journal`), and ``watch`` once
per batch of events, for the objects whose end it reports and whose creation it did not see
(:class:`StreamCreators`). A missing journal reads as nothing, and a locked, corrupt or unreadable one as a note,
never an error: who did it is never worth failing a command over. The text functions return raw strings (comm,
cmdline and object names are untrusted): callers show them through ``safe.printable`` as every other field.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, TypeVar

from ipcmon import paths
from ipcmon.model import Actor, Attribution, Event, ProcessSignals, Snapshot

if TYPE_CHECKING:
    from ipcmon.journal import Creator

PER_TARGET = 16
"""Signals read or kept per target process (the newest)."""


def clock_at(epoch: float) -> str:
    """``12:03:07`` today, ``2026-11-28 12:03:07`` another day (local time)."""
    same_day = time.localtime(epoch)[:3] == time.localtime()[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", time.localtime(epoch))


Mark = Literal["blocked", "ignored"]
"""A signal its target blocks (it stays pending) or ignores: the interesting case, marked in the Signals table."""

MARK_GLYPH = "▲"
"""Shown with the mark's word (readable without colour): health's warn glyph."""

_SIGNAL = re.compile(r"^(SIG[A-Z0-9]+(?:[+-]\d+)?(?: \(glibc\))?|signal) ")
"""The signal name at the head of a ``sent`` event's detail (text.signal_name's forms)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One signal sent to a process: which, by whom, when, and what became of it."""

    time: float
    """Unix epoch."""
    signal: str
    """Its name (text.signal_name): ``SIGUSR1``."""
    target: int
    sender: Actor
    outcome: str
    """``delivered``, ``blocked, pending``, ``ignored``, ``already pending``…, with ``(N times)`` for a storm."""
    cause: str | None = None
    """For a signal the kernel sent: why (``child exited``), when the record says."""

    @property
    def mark(self) -> Mark | None:
        """``blocked`` or ``ignored`` when the target blocks or ignores it, else None."""
        if self.outcome.startswith("blocked"):
            return "blocked"
        if self.outcome.startswith("ignored"):
            return "ignored"
        return None


def sent_from_event(event: Event) -> Sent | None:
    """A ``sent`` event (``live.attribution.sent_event``) as a Sent; None for any other event.

    The event carries its sender (``actor``) and its target in its key (``signal:PID``); the signal and the outcome
    are the head and the tail of its detail (``SIGUSR1 4321 kill → 1234 sleep: blocked, pending``: no outcome holds
    ``": "``, so the last one ends the raw names)."""
    if event.event != "sent" or event.actor is None:
        return None
    try:
        target = int(event.key.rpartition(":")[2])
    except ValueError:
        return None
    found = _SIGNAL.match(event.detail)
    name = found.group(1) if found is not None else "signal"
    outcome = event.detail.rpartition(": ")[2] if ": " in event.detail else "?"
    cause = None
    actor = event.actor
    if actor.kernel and found is not None:
        rest = event.detail[found.end():]
        marker = f", in {actor.pid} "
        if rest.startswith("kernel (") and marker in rest:
            cause = rest[len("kernel ("):rest.index(marker)]
    return Sent(event.time, name, target, actor, outcome, cause)


def sent_from_attribution(record: Attribution) -> Sent | None:
    """A journal's ``sent`` attribution as a Sent (through the same words ``watch`` prints)."""
    if record.action != "sent":
        return None
    from ipcmon.live.attribution import sent_event

    return sent_from_event(sent_event(record))


def sender_text(sent: Sent) -> str:
    """``4321 bash``, ``kernel (child exited)``; raw."""
    if sent.sender.kernel:
        return f"kernel ({sent.cause})" if sent.cause else f"kernel (in {sent.sender.pid} {sent.sender.comm or '?'})"
    return f"{sent.sender.pid} {sent.sender.comm or '?'}"


def sent_text(sent: Sent) -> str:
    """``SIGTERM from 4321 bash at 12:03:07: delivered``; raw (comm is untrusted)."""
    return f"{sent.signal} from {sender_text(sent)} at {clock_at(sent.time)}: {sent.outcome}"


def sent_cell_text(sent: Sent, more: int = 0) -> str:
    """The Signals table's LAST SENT cell: ``▲ SIGUSR1 ← 4321 kill, blocked`` for a blocked or ignored one (the
    glyph and the word: readable without colour), ``SIGTERM ← 4321 bash: delivered`` else; ``+N`` other signals.
    The signal and its sender come first: what a narrow column keeps."""
    if sent.mark:
        return f"{MARK_GLYPH} {sent.signal} ← {sender_text(sent)}, {sent.mark}" + (f" +{more}" if more else "")
    return f"{sent.signal} ← {sender_text(sent)}: {sent.outcome}" + (f" +{more}" if more else "")


SAME_WITHIN = 0.05
"""Seconds within which one sender's two records of one signal to one process are one act: a dashboard's and a
recorder's (each maps the kernel's clock onto the wall clock on its own, so their times differ a little)."""


def same_act(a: Sent, b: Sent) -> bool:
    """The same signal seen twice (live, and again from the journal a dashboard or a recorder wrote)."""
    return a.signal == b.signal and a.sender.pid == b.sender.pid and abs(a.time - b.time) < SAME_WITHIN


def last_per_signal(sents: Iterable[Sent]) -> list[Sent]:
    """The newest of each signal, newest first (sents: any order)."""
    newest: dict[str, Sent] = {}
    for sent in sents:
        if sent.signal not in newest or sent.time > newest[sent.signal].time:
            newest[sent.signal] = sent
    return sorted(newest.values(), key=lambda sent: sent.time, reverse=True)


def shown_in_cell(sents: Sequence[Sent]) -> tuple[Sent, int] | None:
    """What the table shows of a process's signals: the newest marked one (blocked or ignored) if any, else the
    newest; and how many other signals it had. None when none."""
    last = last_per_signal(sents)
    if not last:
        return None
    chosen = next((sent for sent in last if sent.mark), last[0])
    return chosen, len(last) - 1


@dataclass(frozen=True, slots=True)
class CreatorFacts:
    """Who created an object and whether it still runs."""

    actor: Actor
    time: float
    exited: bool | None
    exited_at: float | None = None
    source: str | None = None
    """``fanotify`` or ``tracefs``: the source that saw the creation; None when not said."""


COMMAND_MAX = 100
"""Characters of a command line shown after the comm; a longer one ends in ``…``."""


def actor_text(actor: Actor) -> str:
    """``4242 python3 train.py``: the pid, the comm, and the command line's arguments (the whole command line when
    its program is not named as the comm: a process that renamed itself), at most COMMAND_MAX characters of it.
    Raw."""
    comm = actor.comm or "?"
    argv = list(actor.cmdline or ())
    if argv and os.path.basename(argv[0]) == comm:
        argv = argv[1:]
    command = " ".join(argv)
    if len(command) > COMMAND_MAX:
        command = command[:COMMAND_MAX - 1] + "…"
    return f"{actor.pid} {comm}" + (f" {command}" if command else "")


def doer_text(actor: Actor) -> str:
    """Who did an act: actor_text, or ``the kernel (in 4242 python3)`` for what the kernel did in a process's context
    (a SIGPIPE, a SIGCHLD). Raw."""
    if actor.kernel:
        return f"the kernel (in {actor.pid} {actor.comm or '?'})"
    return actor_text(actor)


def creator_text(facts: CreatorFacts | None, *, unlinked: bool = False) -> str:
    """``created by 4242 python3 train.py at 12:03:07; that process exited at 12:05:40``, ``…; that process is
    still running``, ``created by … at 12:03:07`` when whether it runs is unknown, or ``creator unknown`` for None.
    unlinked: the object was never unlinked (a leak), said after an exit (``… exited at 12:05:40 without
    unlinking``). Raw."""
    if facts is None:
        return "creator unknown"
    return f"created by {creator_words(facts, unlinked=unlinked)}"


def creator_words(facts: CreatorFacts, *, unlinked: bool = False) -> str:
    """creator_text after its ``created by``: for a ``created by`` label (the dashboard's detail). Raw."""
    text = f"{actor_text(facts.actor)} at {clock_at(facts.time)}"
    if facts.exited is True:
        when = f"at {clock_at(facts.exited_at)}" if facts.exited_at is not None else "(when is unknown)"
        return f"{text}; that process exited {when}" + (" without unlinking" if unlinked else "")
    if facts.exited is False:
        return f"{text}; that process is still running"
    return text


def creator_cell_text(facts: CreatorFacts | None) -> str:
    """A table's CREATED BY cell (snapshot): ``4242 python3``, ``4242 python3, exited`` when the creator is known to
    have exited, ``?`` when nobody knows. Raw."""
    if facts is None:
        return "?"
    return f"{facts.actor.pid} {facts.actor.comm or '?'}" + (", exited" if facts.exited is True else "")


def facts_of(creator: Creator | None) -> CreatorFacts | None:
    """The journal's answer (``journal.Creator``) as CreatorFacts."""
    if creator is None:
        return None
    return CreatorFacts(creator.attribution.actor, creator.attribution.time, creator.exited, creator.exited_at,
                        creator.attribution.source)


def created_by_json(facts: CreatorFacts | None) -> dict[str, object] | None:
    """The ``created_by`` of an object in JSON (leaks, snapshot, watch): the creator's ``pid``, ``comm``,
    ``cmdline`` (a list), ``uid``, ``start_ticks`` (clock ticks since boot), ``time`` (Unix epoch), ``source``
    (``fanotify``, ``tracefs``), and ``exited`` (true, false, null: unknown) with ``exited_at`` (epoch or null);
    null when nobody knows."""
    if facts is None:
        return None
    actor = facts.actor
    return {"pid": actor.pid, "comm": actor.comm, "cmdline": None if actor.cmdline is None else list(actor.cmdline),
            "uid": actor.uid, "start_ticks": actor.start_ticks, "time": facts.time, "source": facts.source,
            "exited": facts.exited, "exited_at": facts.exited_at}


def actor_json(actor: Actor | None) -> dict[str, object] | None:
    """An actor in JSON (history, watch, snapshot): ``pid``, ``comm``, ``cmdline`` (a list), ``uid``,
    ``start_ticks`` (clock ticks since boot), ``kernel``, ``place`` (its label); raw names (JSON escapes them); null
    for None."""
    if actor is None:
        return None
    return {"pid": actor.pid, "comm": actor.comm, "cmdline": list(actor.cmdline) if actor.cmdline is not None else None,
            "uid": actor.uid, "start_ticks": actor.start_ticks, "kernel": actor.kernel,
            "place": None if actor.place is None else actor.place.label}


def sent_json(sent: Sent) -> dict[str, object]:
    """One signal a process got, in JSON: ``signal`` (name), ``time`` (epoch), ``sender`` (actor_json),
    ``outcome`` (``delivered``, ``blocked, pending``…), ``cause`` (the kernel's reason, or null)."""
    return {"signal": sent.signal, "time": sent.time, "outcome": sent.outcome, "cause": sent.cause,
            "sender": actor_json(sent.sender)}


def runs(actor: Actor) -> bool | None:
    """Whether the actor (pid and start time) still runs; None when its start time is unknown."""
    from ipcmon.journal import process_start_ticks

    if actor.start_ticks is None:
        return None
    return process_start_ticks(actor.pid) == actor.start_ticks


@dataclass(frozen=True, slots=True)
class Known:
    """What the journal said, once, for a one-shot command: creators by object key and the signals each process
    got (newest first, since it started)."""

    creators: dict[str, CreatorFacts | None] = field(default_factory=dict)
    """Object key → its creator, None when the journal does not know; empty when no journal was read."""
    sent: dict[int, tuple[Sent, ...]] = field(default_factory=dict)
    """pid → the signals it got, newest first (a pid with none is left out)."""
    journal: str | None = None
    """The journal read; None when there is none or it could not be read."""
    note: str = ""
    """Why the journal could not be read ('' when there is none at all, or it was read)."""
    warnings: tuple[str, ...] = ()
    """What the journal's reader says of its gaps (a full disk, records dropped in the last day)."""


def read_journal(db: str | None, objects: Sequence[tuple[str, str, str]] = (),
                 processes: Iterable[tuple[int, float | None]] = ()) -> Known:
    """Ask the journal (db, else ``journal.default_path()``) who created each object (key, name, mechanism) and
    which signals each process (pid, start time as epoch or None) got since it started. Never raises: a missing
    journal is an empty Known, a locked, corrupt or unreadable one an empty Known with its note."""
    path = db or paths.journal_path()
    if not os.path.exists(path):
        return Known()  # no journal: nothing to say, and sqlite3 is never imported
    from ipcmon import journal

    reader, problem = journal.open_reader(path)
    if reader is None:
        return Known(note=problem)
    started = dict(processes)
    try:
        with reader:
            answers = reader.creators(objects) if objects else []
            received = reader.signals_to_each(started, PER_TARGET) if started else {}
            warnings = tuple(reader.warnings(time.time() - 86400)) if objects or received else ()
    except journal.JournalError as error:
        return Known(note=str(error))
    except Exception as error:  # reading the journal must never make a command fail
        return Known(note=f"the journal {path} cannot be read ({type(error).__name__}: {error})")
    creators = {key: facts_of(answer) for (key, _, _), answer in zip(objects, answers, strict=True)}
    sent: dict[int, tuple[Sent, ...]] = {}
    for pid, records in received.items():
        since = started.get(pid)
        kept = [item for item in map(sent_from_attribution, records)
                if item is not None and (since is None or item.time >= since - 1.0)]
        if kept:
            sent[pid] = tuple(sorted(kept, key=lambda item: item.time, reverse=True))
    return Known(creators, sent, path, warnings=warnings)


def read_journal_of(snapshot: Snapshot, db: str | None, processes: Iterable[ProcessSignals]) -> Known:
    """read_journal about a snapshot: who created its POSIX segments, semaphores and queues, and which signals these
    processes got since they started (never fails; nothing when there is no journal)."""
    objects: list[tuple[str, str, str]] = [(segment.object_key, segment.name, segment.kind) for segment in snapshot.shm]
    objects += [(queue.object_key, queue.name, "mqueue") for queue in snapshot.mqueues]
    started = {process.pid: process.start_time for process in snapshot.processes}
    return read_journal(db, objects, [(signals.pid, started.get(signals.pid)) for signals in processes])


def with_live(known: Known, created: Iterable[tuple[str, Actor, float, str]],
              sent: Mapping[int, Sequence[Sent]]) -> Known:
    """known, with what a live dashboard saw itself: the creators its events named, as (object key, actor, time,
    source: ``fanotify``, ``tracefs``), win over the journal's (whether each still runs is read now: ``runs``); the
    signals it saw join the journal's, each act once (``same_act``), newest first, PER_TARGET per process."""
    creators = dict(known.creators)
    for key, actor, when, source in created:
        running = runs(actor)
        creators[key] = CreatorFacts(actor, when, None if running is None else not running,
                                     source=source if source in ("fanotify", "tracefs") else None)
    merged = dict(known.sent)
    for pid, seen in sent.items():
        kept = list(merged.get(pid, ()))
        kept += [item for item in seen if not any(same_act(item, old) for old in kept)]
        if kept:
            merged[pid] = tuple(sorted(kept, key=lambda item: item.time, reverse=True)[:PER_TARGET])
    return replace(known, creators=creators, sent=merged)


ENDINGS: frozenset[str] = frozenset({"destroyed", "orphaned", "unlinked-while-held"})
"""The events that say an object ended or is in trouble: the ones ``watch`` names the creator of."""
ATTRIBUTED: frozenset[str] = frozenset({"shm", "sem", "mqueue"})
"""The mechanisms whose creators the sources see and the journal keeps (POSIX segments, semaphores, queues)."""
CREATORS_KEPT = 4096
"""Objects whose creator a stream remembers (those whose ``created`` it saw, and the journal's answers), each; the
least recently used go first."""
_V = TypeVar("_V")


def asks_creator(event: Event) -> bool:
    """Whether the event is one whose creator ``watch`` names: a ``destroyed``, ``orphaned`` or
    ``unlinked-while-held`` of a POSIX segment, semaphore or queue."""
    return event.event in ENDINGS and event.mechanism in ATTRIBUTED


class StreamCreators:
    """Who created the object of each ending (:func:`asks_creator`) in a stream of events (``ipcmon watch``): for an
    object the stream saw made, the actor its ``created`` event named (nobody when it named none: the journal knows
    no more of a creation this process saw); for one that was there when the stream began (:meth:`begin`), the
    journal's answer; for any other, nobody.

    The journal (the one at path when the stream starts; one made later holds only what the stream saw) is read
    read-only, at most once per batch of events (one ``creators()`` call for the objects of a poll) and only about
    the objects there at the start, each of them once (the answer is kept for the object's life, CREATORS_KEPT at
    most): a storm of objects made and removed while it runs never reaches it. A missing journal is nothing; one that
    cannot be read is ``note`` at start, and one that fails later is said once (``say``) and not asked again, so
    that the events are never slowed by it. One batch at a time (a lock makes it so)."""

    def __init__(self, path: str, *, say: Callable[[str], None] | None = None, kept: int = CREATORS_KEPT) -> None:
        from ipcmon import journal

        self.path = path
        self._say = say or (lambda text: None)
        self._kept = kept
        self._lock = threading.Lock()
        self._reader, self.note = journal.open_reader(path)
        """note: why the journal cannot be read ('' when it can, or there is none)."""
        self._before: set[str] = set()
        """Keys of the objects there when the stream began, while they last: those the journal is asked about."""
        self._seen: collections.OrderedDict[str, tuple[Actor, float, str]] = collections.OrderedDict()
        """Object key → the actor, time and source of the ``created`` event this stream saw, when it named one."""
        self._answers: collections.OrderedDict[str, CreatorFacts | None] = collections.OrderedDict()
        """Object key → the journal's answer."""
        self.queries = 0
        """creators() calls made on the journal."""

    @property
    def reading(self) -> bool:
        """Whether the journal is read (it exists and could be opened, and has not failed since)."""
        return self._reader is not None

    def begin(self, keys: Iterable[str]) -> None:
        """The keys of the segments, semaphores and queues there when the stream begins (its first scan): the objects
        whose creation it cannot see."""
        with self._lock:
            self._before = set(keys)

    def of(self, events: Sequence[Event]) -> list[CreatorFacts | None]:
        """Who created the object of each event (in order): CreatorFacts for an ending whose creator is known, None
        for any other event or an unknown creator. Whether each creator still runs is read now (its pid and start
        time), so that a creator that exited since it was first named is said to have."""
        with self._lock:
            found: list[CreatorFacts | _Ask | None] = []
            asked: dict[str, tuple[str, str, str]] = {}
            gone: set[str] = set()
            for event in events:
                key = event.key
                if event.mechanism in ATTRIBUTED and event.event == "created":
                    self._forget(key)  # a new object (on a reused inode, if the key was known)
                    gone.discard(key)
                    if event.actor is not None:
                        self._keep(self._seen, key, (event.actor, event.time, event.source))
                if not asks_creator(event):
                    found.append(None)
                elif key in self._seen:
                    actor, made, source = self._seen[key]
                    found.append(_facts_now(CreatorFacts(actor, made, None,
                                                         source=source if source in ("fanotify", "tracefs") else None)))
                elif key in self._answers:
                    answer = self._answers[key]
                    found.append(None if answer is None else _facts_now(answer))
                elif key in self._before and self._reader is not None:
                    asked.setdefault(key, (key, event.object, event.mechanism))
                    found.append(_Ask(key))
                else:
                    found.append(None)
                if event.event == "destroyed":
                    gone.add(key)
            answers = self._ask(list(asked.values())) if asked else {}
            for key, answer in answers.items():
                if key not in gone:
                    self._keep(self._answers, key, answer)
            for key in gone:  # the object's last event: forget it, so the maps stay as small as the system
                self._forget(key)
            return [answers.get(item.key) if isinstance(item, _Ask) else item for item in found]

    def _forget(self, key: str) -> None:
        self._before.discard(key)
        self._seen.pop(key, None)
        self._answers.pop(key, None)

    def _ask(self, objects: list[tuple[str, str, str]]) -> dict[str, CreatorFacts | None]:
        """The journal's answers for these (key, name, mechanism); empty (and the journal let go, said once) when
        it fails."""
        reader = self._reader
        if reader is None:
            return {}
        self.queries += 1
        try:
            answers = reader.creators(objects)
        except Exception as error:  # JournalError and anything else: reading the journal never fails a command
            from ipcmon.journal import JournalError

            self.close()
            why = str(error) if isinstance(error, JournalError) else \
                f"the journal {self.path} cannot be read ({type(error).__name__}: {error})"
            self._say(f"{why}: creators unknown from now on")
            return {}
        return {key: facts_of(answer) for (key, _, _), answer in zip(objects, answers, strict=True)}

    def _keep(self, kept: collections.OrderedDict[str, _V], key: str, value: _V) -> None:
        kept[key] = value
        kept.move_to_end(key)
        while len(kept) > self._kept:
            kept.popitem(last=False)

    def close(self) -> None:
        """Let go of the journal (idempotent)."""
        reader, self._reader = self._reader, None
        with contextlib.suppress(Exception):  # a broken connection: nothing to close
            if reader is not None:
                reader.close()


@dataclass(frozen=True, slots=True)
class _Ask:
    """An event whose creator the journal is asked for, in StreamCreators.of's answer being built."""

    key: str


def _facts_now(facts: CreatorFacts) -> CreatorFacts:
    """The facts, with a creator said to run (or not known to) asked again whether it runs now."""
    if facts.exited is True:
        return facts
    running = runs(facts.actor)
    if running is None or facts.exited is (not running):
        return facts
    return replace(facts, exited=not running)
