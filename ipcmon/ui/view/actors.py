"""Who did it, as the dashboard keeps it (issue 16): the last signals sent to each process, and who created an object.

The records and their words are ``ipcmon.who``'s, shared with the command line. Fed by the Monitor's ``sent`` events
(kept per target, bounded: :class:`SentLog`) and, when a journal exists, by its
read API (``ipcmon.journal``, opened read-only: a missing, locked or corrupt journal reads as nothing, never an
error). No widgets. Names are kept raw (comm, cmdline, object names are untrusted); the text functions here return
raw strings (``who``'s) that the callers show through ``safe.printable`` as every other detail line.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from ipcmon.model import Actor, Event, Snapshot
from ipcmon.who import (
    PER_TARGET,
    CreatorFacts,
    Sent,
    facts_of,
    runs,
    same_act,
    sent_from_attribution,
    sent_from_event,
)

if TYPE_CHECKING:
    from ipcmon.journal import JournalReader

TARGETS_MAX = 2048
"""Target processes kept at most; the one signalled least recently is forgotten first."""
JOURNAL_TTL = 2.0
"""Seconds one process's signals or one object's creator, read from the journal, are reused before reading again."""
JOURNAL_CACHE = 256
"""Journal answers kept (processes and objects together)."""
SENDERS_SHOWN = 8
"""Signals listed per process in the process view and the signal picker."""

class SentLog:
    """The newest PER_TARGET signals sent to each process, for at most TARGETS_MAX processes (bounded whatever the
    storm). Written and read on the UI thread."""

    def __init__(self) -> None:
        self._by_target: collections.OrderedDict[int, collections.deque[Sent]] = collections.OrderedDict()

    def add(self, sent: Sent) -> None:
        kept = self._by_target.get(sent.target)
        if kept is None:
            kept = self._by_target[sent.target] = collections.deque(maxlen=PER_TARGET)
            if len(self._by_target) > TARGETS_MAX:
                self._by_target.popitem(last=False)
        else:
            self._by_target.move_to_end(sent.target)
        if any(same_act(sent, old) for old in kept):
            return
        kept.append(sent)

    def to(self, pid: int) -> tuple[Sent, ...]:
        """The signals kept for pid, newest first."""
        kept = self._by_target.get(pid)
        return tuple(sorted(kept, key=lambda sent: sent.time, reverse=True)) if kept else ()

    def __len__(self) -> int:
        return len(self._by_target)


class Attributions:
    """What the dashboard knows of who did what: the Monitor's ``sent`` events (``add``) and the journal, when one
    exists (``reader``, read-only). ``known`` is False when neither can say anything: the views then show nothing
    new (no LAST SENT column, no creator line)."""

    def __init__(self, reader: JournalReader | None = None, *, live: bool = False, path: str | None = None) -> None:
        self.reader = reader
        self.path = path
        """The journal's path (None: the default one), for a reader of its own on another thread (the export)."""
        self.live = live
        """The Monitor runs an attribution source (tracefs signals): what it sees comes through ``add``."""
        self.sent = SentLog()
        self._cache: collections.OrderedDict[object, tuple[float, object]] = collections.OrderedDict()
        self.journal_problem = ""
        """Why the journal could not be read last (locked, corrupt), in words; '' when it could."""

    @property
    def known(self) -> bool:
        return self.reader is not None or self.live

    def add(self, events: Iterable[Event]) -> bool:
        """Keep the ``sent`` events among these; True when there was one."""
        added = False
        for event in events:
            if event.event == "sent":
                sent = sent_from_event(event)
                if sent is not None:
                    self.sent.add(sent)
                    added = True
        return added

    def seed(self, pids: Iterable[tuple[int, float]]) -> None:
        """Fill the per-target store from the journal for these (pid, start time) processes: the signals they got
        before the dashboard started (once, at the first scan)."""
        for pid, started in pids:
            for sent in self._journal_sent(pid, started):
                self.sent.add(sent)

    def sent_to(self, pid: int, started: float | None = None) -> tuple[Sent, ...]:
        """The signals sent to pid that this dashboard saw and the journal holds (since ``started``, the process's
        start: an earlier process had the pid), newest first, each act once."""
        kept = list(self.sent.to(pid))
        for sent in self._journal_sent(pid, started):
            if not any(same_act(sent, old) for old in kept):
                kept.append(sent)
        kept.sort(key=lambda sent: sent.time, reverse=True)
        return tuple(kept[:PER_TARGET])

    def _journal_sent(self, pid: int, started: float | None) -> list[Sent]:
        records = self._ask(("sent", pid), lambda reader: reader.signals_to(pid, PER_TARGET))
        if not isinstance(records, list):
            return []
        found = [sent_from_attribution(record) for record in records
                 if started is None or record.time >= started - 1.0]
        return [sent for sent in found if sent is not None]

    def creator(self, key: str, name: str | None, mechanism: str, events: Sequence[Event]) -> CreatorFacts | None:
        """Who created an object, from its history's ``created`` event that names its actor (the Monitor's
        attribution sources) or the journal; None when neither knows (or nothing could: not ``known``)."""
        if not self.known:
            return None
        facts: CreatorFacts | None = None
        event = next((e for e in reversed(events) if e.event == "created" and e.actor is not None), None)
        if event is not None and event.actor is not None:
            running = runs(event.actor)
            facts = CreatorFacts(event.actor, event.time, None if running is None else not running)
        if facts is None:
            answer = self._ask(("creator", key), lambda reader: reader.creator(key=key, name=name, mechanism=mechanism))
            if answer is not None and not isinstance(answer, list):
                from ipcmon.journal import Creator

                if isinstance(answer, Creator):
                    facts = facts_of(answer)
        return facts

    def seen(self, snapshot: Snapshot, events: Sequence[Event]) -> tuple[list[tuple[str, Actor, float, str]],
                                                                        dict[int, tuple[Sent, ...]]]:
        """What this dashboard saw itself, for who.with_live: the snapshot's POSIX objects whose ``created`` event
        named its actor (key, actor, time, source; the newest per object, from a log newest first), and the signals
        kept for each of its processes. On the UI thread (the event log and SentLog are written there); reads nothing
        from the kernel."""
        keys = {segment.object_key for segment in snapshot.shm} | {queue.object_key for queue in snapshot.mqueues}
        created = {event.key: (event.key, event.actor, event.time, event.source) for event in reversed(events)
                   if event.event == "created" and event.actor is not None and event.key in keys}
        sent = {process.pid: kept for process in snapshot.processes if (kept := self.sent.to(process.pid))}
        return list(created.values()), sent

    def _ask(self, what: object, question: Callable[[JournalReader], object]) -> object:
        """The journal's answer to question(reader), reused for JOURNAL_TTL seconds; None when there is no journal
        or it cannot be read now (locked, corrupt: said in journal_problem, asked again later)."""
        reader = self.reader
        if reader is None:
            return None
        now = time.monotonic()
        cached = self._cache.get(what)
        if cached is not None and now - cached[0] < JOURNAL_TTL:
            return cached[1]
        try:
            answer = question(reader)
            self.journal_problem = ""
        except Exception as error:  # JournalError and anything else: reading the journal never fails a view
            self.journal_problem = str(error)
            answer = None
        self._cache[what] = (now, answer)
        self._cache.move_to_end(what)
        if len(self._cache) > JOURNAL_CACHE:
            self._cache.popitem(last=False)
        return answer

    def close(self) -> None:
        reader, self.reader = self.reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # a broken connection: nothing to close
                pass
