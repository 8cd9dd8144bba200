"""Who did it, as the dashboard shows it (issue 16): the last signals sent to each process, and who created an object.

Fed by the Monitor's ``sent`` events (kept per target, bounded: :class:`SentLog`) and, when a journal exists, by its
read API (``ipcmon.journal``, opened read-only: a missing, locked or corrupt journal reads as nothing, never an
error). No widgets. Names are kept raw (comm, cmdline, object names are untrusted); the text functions here return
raw strings that the callers show through ``safe.printable`` as every other detail line.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ipcmon.model import Actor, Attribution, Event

if TYPE_CHECKING:
    from ipcmon.journal import JournalReader

PER_TARGET = 16
"""Signals kept per target process (the newest)."""
TARGETS_MAX = 2048
"""Target processes kept at most; the one signalled least recently is forgotten first."""
JOURNAL_TTL = 2.0
"""Seconds one process's signals or one object's creator, read from the journal, are reused before reading again."""
JOURNAL_CACHE = 256
"""Journal answers kept (processes and objects together)."""
SENDERS_SHOWN = 8
"""Signals listed per process in the process view and the signal picker."""

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
    return f"{sent.signal} from {sender_text(sent)} at {_clock(sent.time)}: {sent.outcome}"


def sent_cell_text(sent: Sent, more: int = 0) -> str:
    """The Signals table's LAST SENT cell: ``▲ blocked SIGUSR1 ← 4321 kill`` for a blocked or ignored one (the
    glyph and the word: readable without colour), ``SIGTERM ← 4321 bash: delivered`` else; ``+N`` other signals."""
    head = f"{MARK_GLYPH} {sent.mark} " if sent.mark else ""
    tail = "" if sent.mark else f": {sent.outcome}"
    return f"{head}{sent.signal} ← {sender_text(sent)}{tail}" + (f" +{more}" if more else "")


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


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


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
        if any(_same(sent, old) for old in kept):
            return
        kept.append(sent)

    def to(self, pid: int) -> tuple[Sent, ...]:
        """The signals kept for pid, newest first."""
        kept = self._by_target.get(pid)
        return tuple(sorted(kept, key=lambda sent: sent.time, reverse=True)) if kept else ()

    def __len__(self) -> int:
        return len(self._by_target)


SAME_WITHIN = 0.05
"""Seconds within which one sender's two records of one signal to one process are one act: this dashboard's and a
recorder's (each maps the kernel's clock onto the wall clock on its own, so their times differ a little)."""


def _same(a: Sent, b: Sent) -> bool:
    """The same act seen twice (live, and again from the journal the dashboard or a recorder wrote)."""
    return a.signal == b.signal and a.sender.pid == b.sender.pid and abs(a.time - b.time) < SAME_WITHIN


@dataclass(frozen=True, slots=True)
class CreatorFacts:
    """Who created an object and whether it still runs."""

    actor: Actor
    time: float
    exited: bool | None
    exited_at: float | None = None


def creator_text(facts: CreatorFacts | None) -> str:
    """``created by 4242 python3 train.py at 12:03:07 (still running)`` or ``… (exited at 12:05:40)``; ``creator
    unknown`` for None. Raw (comm and cmdline are untrusted)."""
    if facts is None:
        return "creator unknown"
    actor = facts.actor
    command = " ".join(actor.cmdline) if actor.cmdline else ""
    who = f"{actor.pid} {actor.comm or '?'}" + (f" {command}" if command and command != actor.comm else "")
    if facts.exited is True:
        after = f"exited at {_clock(facts.exited_at)}" if facts.exited_at is not None else "exited"
    elif facts.exited is False:
        after = "still running"
    else:
        after = "whether it runs is unknown"
    return f"created by {who} at {_clock(facts.time)} ({after})"


def _runs(actor: Actor) -> bool | None:
    """Whether the actor (pid and start time) still runs; None when its start time is unknown."""
    from ipcmon.journal import process_start_ticks

    if actor.start_ticks is None:
        return None
    return process_start_ticks(actor.pid) == actor.start_ticks


class Attributions:
    """What the dashboard knows of who did what: the Monitor's ``sent`` events (``add``) and the journal, when one
    exists (``reader``, read-only). ``known`` is False when neither can say anything: the views then show nothing
    new (no LAST SENT column, no creator line)."""

    def __init__(self, reader: JournalReader | None = None, *, live: bool = False) -> None:
        self.reader = reader
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
            if not any(_same(sent, old) for old in kept):
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

    def creator(self, key: str, name: str | None, mechanism: str, events: Sequence[Event]) -> str | None:
        """``created by …`` / ``creator unknown`` for an object, from its history's ``created`` event that names
        its actor (the Monitor's attribution sources) or the journal; None when nothing could know (not ``known``)."""
        if not self.known:
            return None
        facts: CreatorFacts | None = None
        event = next((e for e in reversed(events) if e.event == "created" and e.actor is not None), None)
        if event is not None and event.actor is not None:
            facts = CreatorFacts(event.actor, event.time, None if (runs := _runs(event.actor)) is None else not runs)
        if facts is None:
            answer = self._ask(("creator", key), lambda reader: reader.creator(key=key, name=name, mechanism=mechanism))
            if answer is not None and not isinstance(answer, list):
                from ipcmon.journal import Creator

                if isinstance(answer, Creator):
                    record = answer.attribution
                    facts = CreatorFacts(record.actor, record.time, answer.exited, answer.exited_at)
        return creator_text(facts)

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
