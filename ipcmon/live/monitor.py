"""The Monitor: periodic scans diffed into lifecycle events, merged with inotify's creates and deletes between polls,
and with the attribution sources that name who acted (issue 16).

The inotify source (``live.inotify``, watchdog) is imported only when ``start()`` runs, so a Monitor that only
polls loads no watchdog. Its errors are recorded in ``errors``; the observer keeps going.

**Actors.** With ``actors`` (and ``start()``), the Attributor (``live.attribution``) runs too: fanotify on every shm
tmpfs of the scans (the host's and each container's, marked as namespaces appear) and tracefs for queues. The
``created``, ``destroyed`` and ``unlinked-while-held`` events of segments, semaphores and queues then name the
process that did it (``Event.actor``), matched by object key, else by name within MATCH_SECONDS. An event seen by
inotify waits up to HOLD for its attribution (which the Attributor holds SETTLE itself) and takes that source's name
(``fanotify``, ``tracefs``); a poll's event is matched with the attributions of the last RECENT_SECONDS (a creator
that exited before the poll is still named) and keeps ``poll``. Without root or tracefs, events are as without
actors and ``sources`` says what is missing.

**Order.** Events go out in the order the kernel made them, as far as can be known:

- an event waiting for its actor holds back every event after it (one queue, released from its head), so that no
  later event overtakes it;
- an unlink inotify reports is placed against the last poll's holders of that object, each checked at once: a
  holder that let go is reported ``detached`` *before* the unlink (it let go before it, or in the instant between
  the unlink and the check), one that still holds after it (``unlinked-while-held`` names them) and the poll that
  sees it let go reports that later; ``destroyed`` is always an object's last event;
- a poll's diff knows only that its changes happened since the previous scan, not in which order: for one object it
  puts them in the only order that is always possible (created, attached, unlinked-while-held, detached, destroyed:
  ``live.events``), and what a fast source already reported is not repeated.
"""

from __future__ import annotations

import collections
import dataclasses
import operator
import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ipcmon.collect import ScanConfig, Scanner
from ipcmon.collect.fds import holds_file
from ipcmon.collect.procfs import group_name, user_name
from ipcmon.collect.scan import find_mqueue_dir, restrict_to_pids, restrict_to_places
from ipcmon.collect.shm import file_name_of, name_of
from ipcmon.live.events import EventLog, PidSelection, diff, held_by
from ipcmon.model import (
    Attribution,
    Event,
    EventName,
    Holder,
    Mechanism,
    MessageQueue,
    Place,
    Process,
    ShmSegment,
    Snapshot,
    file_key,
)
from ipcmon.text import PlaceSelector, holder_detail, human_bytes

if TYPE_CHECKING:
    from ipcmon.live.attribution import Attributor, SourceStatus
    from ipcmon.live.inotify import DirectoryWatch

EventCallback = Callable[[Event], None]
BatchCallback = Callable[[list[Event]], None]

INOTIFY_BACKLOG = 2000
"""inotify events waiting in watchdog's queue beyond which they are skipped until it drains (issue 7)."""
ANNOUNCED_MAX = 4096
"""inotify events remembered so the next poll does not report them again. Under churn most are never
matched (the object was gone before the poll), so without a cap this grew to ~100k entries a minute
and made every poll slower (issue 7)."""
ANNOUNCED_SECONDS = 60.0
"""How long an inotify event is remembered for the poll that may find the same change (and the size of a segment
inotify saw made)."""
ENDED_SECONDS = 60.0
"""How long a name a poll found gone is remembered, for inotify's late word of its unlink."""

HOLD = 0.5
"""Seconds an event that an attribution source may name waits for it (the Attributor holds its records SETTLE)."""
RECENT_SECONDS = 60.0
"""Seconds an attribution is kept to name a poll's event (a poll comes at most an interval after the act)."""
RECENT_MAX = 4096
"""Attributions kept for matching at most (the oldest go first)."""
OUTBOX_MAX = 2000
"""Events queued to go out beyond which new ones wait for no actor: under a storm, what waits stays bounded (a storm's
acts are counted into key-less records by the Attributor and would name none of them anyway)."""
MATCH_SECONDS = 2.0
"""An attribution with no key names an event of the same name at most this far apart in time."""
_ACTS: dict[str, str] = {"created": "created", "destroyed": "removed", "unlinked-while-held": "removed"}
"""The events an attribution names, and the attribution's action for each."""
_ATTRIBUTED = frozenset({"shm", "sem", "mqueue"})


class Sink(Protocol):
    """Where a Monitor writes what it sees (``recorder.JournalWhenIdle``: the journal, while no recorder runs)."""

    def add(self, record: Attribution | Event) -> object: ...

    def note(self, text: str) -> None: ...

    def close(self) -> None: ...


MECHANISMS_BY_KIND: dict[str, frozenset[str]] = {
    "shm": frozenset({"shm", "sem"}),
    "mqueue": frozenset({"mqueue"}),
    "pipe": frozenset({"pipe", "fifo", "process"}),
    "signal": frozenset({"signal"}),
    "memfd": frozenset({"memfd", "anon"}),
    "sysv": frozenset({"sysv-shm", "sysv-msg", "sysv-sem"}),
}


def mechanisms_for(kinds: tuple[str, ...]) -> frozenset[str]:
    """The event mechanisms that belong to the selected kinds (``--kind``)."""
    result: set[str] = set()
    for kind in kinds:
        result |= MECHANISMS_BY_KIND.get(kind, frozenset())
    return frozenset(result)


@dataclasses.dataclass(frozen=True, slots=True)
class Named:
    """A segment or queue name as the last poll saw it: its key, its file, and its holders."""

    key: str
    dev: int
    inode: int
    holders: tuple[Holder, ...] = ()
    place: Place | None = None

    def held_now(self) -> bool:
        """Whether one of the last poll's holders still has the file open or mapped (asked at its unlink)."""
        return bool(self.split_holders()[0])

    def split_holders(self) -> tuple[list[Holder], list[Holder]]:
        """The last poll's holders that still have the file open or mapped, and those that let go (one Holder per
        process, the first of its holds), asked at its unlink.

        The poll may be up to an interval old: a holder that let go since must not make an unlink read as
        "unlinked-while-held" (the shm demo unmaps, then unlinks, faster than one scan). A holder the kernel
        will not show us counts as holding, as the poll said; a holder that came after the poll is not seen
        here, and the next poll reports the segment deleted but held.
        """
        holding: list[Holder] = []
        gone: list[Holder] = []
        seen: set[int] = set()
        for holder in self.holders:
            if holder.pid in seen:
                continue
            seen.add(holder.pid)
            (gone if holds_file(holder.pid, self.dev, self.inode) is False else holding).append(holder)
        return holding, gone


@dataclasses.dataclass(slots=True)
class _Waiting:
    """An event in the outgoing queue: it goes out once it has its actor, or needs none, or at its deadline."""

    event: Event
    deadline: float | None
    """time.monotonic() after which it goes out without an actor; None: it waits for nothing."""


class Monitor:
    """Scans on demand (never two at once), turns each scan into events, and merges inotify events and, with
    ``actors``, who did it (the module docstring says how, and in which order events go out).

    ``poll()`` is meant to be called from one loop or worker; ``start()``/``stop()`` run the inotify
    observer and the attribution sources, whose events arrive on ``on_event`` from their threads (one at a time,
    in order).
    """

    def __init__(
        self,
        config: ScanConfig = ScanConfig(),
        *,
        history: int = 10_000,
        on_event: EventCallback | None = None,
        on_events: BatchCallback | None = None,
        places: PlaceSelector | None = None,
        senders: bool = False,
        actors: bool = False,
        sink: Sink | None = None,
    ) -> None:
        """on_event: called with each event as it goes out; on_events: with the events that go out together (a
        poll's, an inotify event's, those released by an attribution), once per batch, after on_event for each, so
        that a front end can do its per-event work in one go (``watch`` asks the journal once per batch).
        senders: with the signal kind, ``start()`` also runs the tracefs source of ``live.attribution`` and
        reports each signal sent as a ``sent`` event naming its sender (root and tracefs needed: ``sources``
        says why not). actors: ``start()`` runs fanotify on the shm tmpfs (shm kind) and tracefs for queues
        (mqueue kind), and events name who created and removed (module docstring). sink: every event and
        attribution is also handed to it (the journal while no recorder runs), and the notes on lost events."""
        self.config = config
        self.places = places
        """``--container``/``--ns``: the snapshot is restricted to those places (collect.scan.restrict_to_places)
        and the events to theirs (:meth:`_in_places`); None for every place."""
        self._host: Place | None = None
        """The host's place (the last scan's), given to inotify's events: it watches the host's directories."""
        # With --pid, every process is still scanned and diffed: an object a selected process opens was not
        # created then, nor destroyed when it lets go, and inotify events name no process. The events are then
        # kept by PidSelection and the snapshot restricted to the selection.
        self.scanner = Scanner(dataclasses.replace(config, pids=None))
        self.selection = PidSelection(config.pids) if config.pids is not None else None
        self._full: Snapshot | None = None
        self.log = EventLog(history)
        self.snapshot: Snapshot | None = None
        self.errors: collections.deque[str] = collections.deque(maxlen=100)
        self.notes: collections.deque[str] = collections.deque(maxlen=100)
        """What the user should know about the events (``N events lost: …``), oldest first; the caller pops them."""
        self._on_event = on_event
        self._on_events = on_events
        self._scan_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._out_lock = threading.RLock()
        """Held while events leave (queue released, log, on_event): they go out one at a time, in order."""
        self._inotify: DirectoryWatch | None = None
        self._senders = senders
        self._actors = actors
        self._sink = sink
        self._attributor: Attributor | None = None
        self._marked: set[str] = set()
        self._shm_places: dict[int, Place] = {}
        """st_dev of each shm tmpfs → its namespace's place (the last scan's), to place fanotify's records."""
        self._names: dict[str, Named] = {}
        """path → (object key, held) from the last snapshot and inotify, to name deletions."""
        self._ended: dict[str, float] = {}
        """path → when (time.monotonic) a poll last found its name gone: the poll reported its end (``destroyed``,
        ``unlinked-while-held``), so inotify's later word of the unlink is not a second end (ENDED_SECONDS)."""
        self._names_from: tuple[tuple[ShmSegment, ...], tuple[MessageQueue, ...], dict[str, Named]] | None = None
        """The segments and queues _names was last made from (compared by identity), and what it was made."""
        self._named_records: dict[int, tuple[ShmSegment | MessageQueue, str, Named]] = {}
        """The last snapshot's named segments and queues by record identity, with their path and Named: a Scanner
        hands the same record again for an object that did not change (collect.recall), whose Named is then kept."""
        self._holder_texts: dict[int, tuple[ShmSegment | MessageQueue, tuple[str, ...] | None, str, str]] = {}
        """Likewise for each held record: its last holder's command line as the last snapshot had it, its
        last_holders text and its key."""
        self._holders_from: tuple[tuple[ShmSegment, ...], tuple[MessageQueue, ...], dict[int, Process]] | None = None
        """The tables _holder_texts was made from, and the process record of each last holder then."""
        self._announced: dict[tuple[str, str, int | None], float] = {}
        """(key, event, pid) already reported by inotify, so the next poll does not report it twice."""
        self._created_sizes: OrderedDict[str, tuple[int, float]] = OrderedDict()
        """The size (bytes) inotify's ``created`` of a segment said, by key, and when: the poll that then finds it
        another size says ``resized`` (a segment is created empty, and ftruncate(2) sizes it just after)."""
        self._mechanisms = mechanisms_for(config.kinds)
        self._outbox: collections.deque[_Waiting] = collections.deque()
        self._recent: OrderedDict[tuple[str, ...], Attribution] = OrderedDict()
        """Attributions by (action, key) and (action, mechanism, name), for the events that come after them."""
        self._waiting_for = frozenset[str]()
        """The mechanisms whose events wait for an actor: those an active source covers."""
        self._timer: threading.Timer | None = None
        self._lost = 0
        self.last_holders: dict[str, str] = {}
        """object key → "last held by PID COMMAND" for shm segments and queues, while they exist."""

    # --- polling -------------------------------------------------------------------------------

    def poll(self) -> tuple[Snapshot, list[Event]]:
        """Scan now and return the snapshot and the new events (also logged and sent to on_event, after the events
        that wait for their actor: the returned ones are named with the attributions seen so far).

        With ``config.pids``, the snapshot is restricted to those processes and the objects they hold, and the
        events to those of PidSelection."""
        with self._scan_lock:
            full = self.scanner.scan()
            # diff is pure and only poll() writes self.snapshot: compute it before taking the state lock, which
            # the inotify thread needs for every event (holding it through the diff stalled that thread).
            changes = diff(self._full, full)
            snapshot = full if self.config.pids is None else restrict_to_pids(full, self.config.pids)
            if self.places is not None:
                snapshot = restrict_to_places(snapshot, self.places.matches)
            with self._state_lock:
                events = self._poll_events(changes, full)
                if self.selection is not None:
                    events = self.selection.keep(events, full)
                if self.places is not None:
                    kept = {process.pid for process in snapshot.processes}
                    keys = {record.object_key for records in (snapshot.shm, snapshot.regions, snapshot.mqueues,
                                                              snapshot.pipes, snapshot.sysv.shm, snapshot.sysv.msg,
                                                              snapshot.sysv.sem) for record in records}
                    events = [event for event in events if self._in_places(event, kept, keys)]
                self._host = next((namespace.place for namespace in full.namespaces if namespace.place.host), None)
                self._full = full
                self.snapshot = snapshot
                self._remember_names(full)
                self._remember_holders(full)
                cutoff = time.time() - ANNOUNCED_SECONDS
                self._announced = {k: t for k, t in self._announced.items() if t > cutoff}
                sizes = self._created_sizes  # in the order inotify saw them: the old ones first
                while sizes and next(iter(sizes.values()))[1] <= cutoff:
                    sizes.popitem(last=False)
        self._mark_namespaces(full)
        self._take_attributions()
        events = [self._named(event) for event in events]
        self._deliver(events, wait=False)
        self._check_lost()
        return snapshot, events

    def _poll_events(self, changes: list[Event], full: Snapshot) -> list[Event]:
        """The poll's events that inotify did not report first (_fresh). A segment's ``created`` that inotify said
        with another size than the poll finds becomes the ``resized`` in between (from the size inotify saw)."""
        events = []
        sizes: dict[str, int] | None = None
        for event in changes:
            if self._fresh(event):
                events.append(event)
                continue
            said = self._created_sizes.pop(event.key, None) if event.event == "created" else None
            if said is None or (event.key, "destroyed", None) in self._announced:
                continue
            if sizes is None:
                sizes = {segment.object_key: segment.size for segment in full.shm}
            size = sizes.get(event.key)
            if size is not None and size != said[0]:
                events.append(dataclasses.replace(event, event="resized",
                                                  detail=f"{human_bytes(said[0])} → {human_bytes(size)}"))
        return events

    def _in_places(self, event: Event, pids: set[int], keys: set[str]) -> bool:
        """Whether an event is about the selected places: its place is one, or (a pipe, a region, a deadlock: no
        place of their own) it is about an object of the restricted snapshot (keys) or names one of its processes
        (pids)."""
        assert self.places is not None
        if event.place is not None:
            return self.places.matches(event.place)
        return event.key in keys or (event.pid is not None and event.pid in pids)

    def _fresh(self, event: Event) -> bool:
        if event.mechanism not in self._mechanisms and event.mechanism != "process":
            return False
        if event.event != "destroyed" and (event.key, "destroyed", None) in self._announced:
            return False  # a scan that began before inotify saw the object go: destroyed is its last event
        return self._announced.pop((event.key, event.event, event.pid), None) is None

    def _announce(self, event: Event, now: float) -> None:
        self._announced[(event.key, event.event, event.pid)] = now
        if len(self._announced) > ANNOUNCED_MAX:
            del self._announced[next(iter(self._announced))]  # the oldest (dicts keep insertion order)

    def _remember_holders(self, snapshot: Snapshot) -> None:
        """Who held each object last, so a leak can name the process that made it (ipcmon leaks' hint)."""
        processes = {process.pid: process for process in snapshot.processes}
        last = self._holders_from
        if last is not None and last[0] is snapshot.shm and last[1] is snapshot.mqueues and all(
            processes.get(pid) is process for pid, process in last[2].items()
        ):
            # The very same records as the last poll (a Scanner's, when none changed), each last holder the very
            # same process record (taken over: it has not run, so it has not exec'd): the texts are the last ones.
            return
        commands = {pid: process.cmdline for pid, process in processes.items()}
        alive: set[str] = set()
        records: list[ShmSegment | MessageQueue] = [*snapshot.shm, *snapshot.mqueues]
        before, now = self._holder_texts, {}
        for record in records:
            kept = before.get(id(record))
            same = kept is not None and kept[0] is record
            key = kept[3] if kept is not None and same else record.object_key
            alive.add(key)
            if record.holders:
                holder = record.holders[-1]
                cmdline = commands.get(holder.pid)
                if kept is not None and same and kept[1] == cmdline:
                    now[id(record)] = kept  # the same record (the same holders) and the same command line
                    continue  # (and last_holders has its text)
                command = " ".join(cmdline or ()) or holder.comm
                text = f"last held by {holder.pid} {command}"
                now[id(record)] = (record, cmdline, text, key)
                self.last_holders[key] = text
        self._holder_texts = now
        held_by = {entry[0].holders[-1].pid for entry in now.values()}
        self._holders_from = (snapshot.shm, snapshot.mqueues,
                              {pid: processes[pid] for pid in held_by if pid in processes})
        for key in self.last_holders.keys() - alive:
            del self.last_holders[key]  # destroyed: forget it, so the map stays as small as the system

    def _remember_names(self, snapshot: Snapshot) -> None:
        moment = time.monotonic()
        self._ended = {path: when for path, when in self._ended.items() if moment - when < ENDED_SECONDS}
        tables = (snapshot.shm, snapshot.mqueues)
        if self._names_from is not None and all(map(operator.is_, tables[:2], self._names_from[:2])):
            # The very same records as the last poll (a Scanner's, when none changed): the same names, less and more
            # what inotify said since (as made afresh).
            self._names = dict(self._names_from[2])
            return
        names: dict[str, Named] = {}
        before, now = self._named_records, {}
        records: list[ShmSegment | MessageQueue] = [*snapshot.shm, *snapshot.mqueues]
        for record in records:
            kept = before.get(id(record))
            if kept is not None and kept[0] is record:
                now[id(record)] = kept  # a record is immutable: its Named is what it was (no new entry to collect)
                names[kept[1]] = kept[2]
                continue
            if isinstance(record, ShmSegment):
                if record.state == "deleted":
                    continue
                path = record.path
                named = Named(record.object_key, record.dev, record.inode, record.holders, record.place)
            elif record.path is not None:
                path = record.path
                named = Named(record.object_key, record.dev, record.inode, record.holders, record.place)
            else:
                continue
            now[id(record)] = (record, path, named)
            names[path] = named
        self._named_records = now
        # Only names the last snapshot had: this poll's diff said their end. (One inotify saw made since the scan
        # began is not in either, and its unlink is still news.)
        self._ended.update((path, moment) for path in {entry[1] for entry in before.values()} - names.keys())
        while len(self._ended) > ANNOUNCED_MAX:  # a storm of unlinks: the first ended go first (late words are rare)
            del self._ended[next(iter(self._ended))]
        self._names = names
        self._names_from = (*tables, dict(names))

    # --- inotify and the attribution sources ---------------------------------------------------------------

    def start(self) -> None:
        """Start watching the shm directory and the mqueue mount (whichever exist and are in ``config.kinds``), and
        the attribution sources asked for (``senders``, ``actors``)."""
        signals = self._senders and "signal" in self.config.kinds
        shm = self._actors and "shm" in self.config.kinds
        queues = self._actors and "mqueue" in self.config.kinds
        if (signals or shm or queues) and self._attributor is None:
            from ipcmon.live.attribution import Attributor

            directories = [self.config.shm_dir] if shm else []
            self._marked.update(directories)
            self._attributor = Attributor(directories, signals=signals, queues=queues,
                                          on_wake=self._on_attributions)
            self._attributor.start()
            if self._full is not None:
                self._mark_namespaces(self._full)
            self._update_waiting()
        if self._inotify is not None:
            return
        from ipcmon.live.inotify import DirectoryWatch  # watchdog: only a Monitor that watches loads it

        directories = [
            directory
            for kind, directory in (("shm", self.config.shm_dir), ("mqueue", self._mqueue_dir()))
            if kind in self.config.kinds and directory is not None
        ]
        watch = DirectoryWatch(self._on_inotify, self._on_error)
        if watch.start(directories):
            self._inotify = watch

    def stop(self) -> None:
        """Stop watching (and wait for the observer thread), stop the sources, let out what waits for an actor and
        close the sink; a Monitor that was never started is fine."""
        watch, self._inotify = self._inotify, None
        if watch is not None:
            watch.stop()
        attributor = self._attributor
        if attributor is not None:
            attributor.stop()  # what it held comes through _on_attributions before it is let go
            self._on_attributions()
            self._attributor = None
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._release(everything=True)
        if self._sink is not None:
            self._sink.close()  # what was queued is written

    @property
    def unfiltered(self) -> Snapshot | None:
        """The last scan whole, before ``--pid``, ``--container`` or ``--ns`` kept part of it (``snapshot``); None
        before the first poll."""
        return self._full

    @property
    def sources(self) -> list[SourceStatus]:
        """The attribution sources started (``senders``, ``actors``), each active or with why not; empty when
        none."""
        return self._attributor.status() if self._attributor is not None else []

    def _mark_namespaces(self, snapshot: Snapshot) -> None:
        """Mark each container's shm tmpfs as it appears (fanotify), and know each tmpfs's place."""
        self._shm_places = tmpfs_places(snapshot)
        attributor = self._attributor
        if attributor is None or not (self._actors and "shm" in self.config.kinds):
            return
        added = False
        for namespace in snapshot.namespaces:
            path = namespace.shm_dir
            if path is not None and path not in self._marked and not namespace.place.host:
                self._marked.add(path)
                attributor.watch_shm_dir(path)
                added = True
        if added:
            self._update_waiting()

    def _update_waiting(self) -> None:
        attributor = self._attributor
        if attributor is None:
            return
        active = {status.name for status in attributor.status() if status.active}
        waiting: set[str] = set()
        if f"fanotify {self.config.shm_dir}" in active:
            waiting |= {"shm", "sem"}
        if "tracefs queues" in active:
            waiting.add("mqueue")
        self._waiting_for = frozenset(waiting)

    def _take_attributions(self) -> list[Attribution]:
        """Drain the Attributor: each record is kept for matching, handed to the sink, and its act names the events
        waiting for it. Returns the ``sent`` records."""
        attributor = self._attributor
        if attributor is None:
            return []
        records = [placed_by_tmpfs(record, self._shm_places) for record in attributor.drain()]
        if not records:
            return []
        sent = []
        with self._out_lock:
            for record in records:
                if self._sink is not None:
                    self._sink.add(record)
                if record.action == "sent":
                    sent.append(record)
                    continue
                for match in _match_keys(record):
                    self._recent[match] = record
                    self._recent.move_to_end(match)
                while len(self._recent) > RECENT_MAX:
                    self._recent.popitem(last=False)
                for waiting in self._outbox:
                    if waiting.deadline is not None and waiting.event.actor is None:
                        named = self._named(waiting.event, record)
                        if named is not waiting.event:
                            waiting.event, waiting.deadline = named, None
            cutoff = time.time() - RECENT_SECONDS
            while self._recent and next(iter(self._recent.values())).time < cutoff:
                self._recent.popitem(last=False)
        return sent

    def _named(self, event: Event, record: Attribution | None = None) -> Event:
        """The event with its actor, when an attribution (record, else one of the recent ones) names it."""
        action = _ACTS.get(event.event)
        if action is None or event.mechanism not in _ATTRIBUTED or event.actor is not None:
            return event
        if record is None:
            found = self._recent.get((action, event.key))
            if found is None:
                candidate = self._recent.get((action, event.mechanism, event.object))
                if candidate is not None and (candidate.key is None or candidate.key == event.key) and \
                        abs(candidate.time - event.time) <= MATCH_SECONDS:
                    found = candidate
            record = found
            if record is None:
                return event
        elif record.action != action or record.mechanism != event.mechanism:
            return event
        elif record.key is not None:
            if record.key != event.key:
                return event
        elif record.object != event.object or abs(record.time - event.time) > MATCH_SECONDS:
            return event
        if action == "removed":  # one unlink names one event: a destroyed after it is the last holder's doing
            for match in _match_keys(record):
                if self._recent.get(match) is record:
                    del self._recent[match]
        source = record.source if event.source == "inotify" else event.source
        place = event.place if event.place is not None else record.place
        return dataclasses.replace(event, actor=record.actor, source=source, place=place)

    def _on_attributions(self) -> None:
        """The Attributor's wake-up (on its thread): its ``sent`` records become events, the others name the events
        waiting for them, and what waited long enough goes out."""
        from ipcmon.live.attribution import sent_event

        sent = [sent_event(record) for record in self._take_attributions() if not routine(record)]
        if sent and self.config.hide_self:  # ipcmon hides itself: the signals sent to it too (a resize's SIGWINCH)
            own = own_tasks()
            sent = [event for event in sent if _target(event) not in own]
        if self.selection is not None:
            sent = [event for event in sent if self.selection.wants(event)]  # sent by or to a selected one
        if self.places is not None:  # --container/--ns: sent by or to a process there
            snapshot = self.snapshot
            kept = {process.pid for process in snapshot.processes} if snapshot is not None else set()
            sent = [event for event in sent if _target(event) in kept or (event.pid is not None and event.pid in kept)]
        self._deliver(sent, wait=False)
        self._check_lost()

    def _check_lost(self) -> None:
        """Say once per growth that the kernel dropped events (a full fanotify queue, trace overruns): the state is
        right again after the next poll, but who did those acts is unknown."""
        attributor = self._attributor
        if attributor is None:
            return
        lost = attributor.lost
        if lost <= self._lost:
            return
        text = (f"{lost - self._lost:,} kernel events lost (a full fanotify queue or trace buffer): the state is "
                "re-read by the poll, but who did those acts is unknown")
        self._lost = lost
        self.notes.append(text)
        if self._sink is not None:
            self._sink.note(text)

    def _deliver(self, events: list[Event], *, wait: bool) -> None:
        """Queue events to go out in order (wait: those an active source may name wait up to HOLD for it), and let
        out what can go."""
        if events:
            deadline = time.monotonic() + HOLD
            with self._out_lock:
                for event in events:
                    waits = (wait and event.actor is None and event.event in _ACTS
                             and event.mechanism in self._waiting_for and len(self._outbox) < OUTBOX_MAX)
                    self._outbox.append(_Waiting(event, deadline if waits else None))
        self._release()

    def _release(self, *, everything: bool = False) -> None:
        """Let out the events at the head of the queue that have their actor, need none, or waited HOLD; arm a timer
        for the next deadline."""
        with self._out_lock:
            now = time.monotonic()
            out: list[Event] = []
            while self._outbox:
                head = self._outbox[0]
                if not everything and head.deadline is not None and head.deadline > now:
                    break
                out.append(self._outbox.popleft().event)
            if out:
                with self._state_lock:
                    self.log.extend(out)
                for event in out:
                    if self._sink is not None:
                        self._sink.add(event)
                    if self._on_event is not None:
                        try:
                            self._on_event(event)
                        except Exception as error:  # a handler that raises must not end a source's thread
                            self.errors.append(f"{event.source}: {type(error).__name__}: {error}")
                if self._on_events is not None:
                    try:
                        self._on_events(out)
                    except Exception as error:  # as for on_event
                        self.errors.append(f"{out[0].source}: {type(error).__name__}: {error}")
            if self._outbox and self._timer is None and not everything:
                head = self._outbox[0]
                delay = max((head.deadline or now) - now, 0.0) + 0.01
                self._timer = threading.Timer(delay, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _on_timer(self) -> None:
        with self._out_lock:
            self._timer = None
        self._take_attributions()
        self._release()

    @property
    def inotify_backlog(self) -> int:
        """inotify events received but not yet handled (0 when not watching): how far behind a burst it is."""
        watch = self._inotify
        return watch.backlog() if watch is not None else 0

    def _mqueue_dir(self) -> str | None:
        if self.config.mqueue_dir is not None:
            return self.config.mqueue_dir
        return find_mqueue_dir(self.config.proc) if self.config.find_mqueue else None

    def _on_error(self, error: BaseException) -> None:
        self.errors.append(f"inotify: {type(error).__name__}: {error}")

    def _on_inotify(self, path: str, created: bool) -> None:
        if self.inotify_backlog > INOTIFY_BACKLOG:
            return  # far behind a burst: skip it (the next poll reports these objects) so the queue drains
        directory, _, file_name = path.rpartition("/")
        # The observer watches exactly config.shm_dir and the mqueue directory, and builds each path from the
        # watched one: a string comparison tells them apart (realpath cost syscalls on every event).
        mechanism: Mechanism
        if directory == self.config.shm_dir.rstrip("/"):
            mechanism, name = name_of(file_name)  # a semaphore by its sem_open(3) name: sem.NAME is /NAME
        else:
            mechanism, name = "mqueue", "/" + file_name
        now = time.time()
        events: list[Event] = []
        with self._state_lock:
            if created:
                try:
                    st = os.stat(path)
                except OSError:
                    return  # created and gone again before we looked: the next poll has nothing to say either
                key = file_key(mechanism, st.st_dev, st.st_ino)
                known = self._names.get(path)
                if known is not None and known.key == key:
                    return  # a poll already saw it (the inotify event came late)
                self._names[path] = Named(key, st.st_dev, st.st_ino)
                self._ended.pop(path, None)
                self._announced.pop((key, "destroyed", None), None)  # a new object on a reused inode
                # A queue's st_size is the length of its status text in the mqueue filesystem (QSIZE:… NOTIFY:…),
                # nothing of its own: its limits come with the next poll's record.
                detail = "" if mechanism == "mqueue" else f"{st.st_size} bytes"
                if mechanism != "mqueue":
                    self._created_sizes[key] = (st.st_size, now)
                    self._created_sizes.move_to_end(key)
                    if len(self._created_sizes) > ANNOUNCED_MAX:
                        self._created_sizes.popitem(last=False)
                events.append(Event(now, mechanism, "created", name, key, source="inotify", detail=detail,
                                    place=self._host))
            else:
                known = self._names.pop(path, None)
                if known is None and self._ended.pop(path, None) is not None:
                    return  # a poll already found it gone and said so (the inotify event came late)
                key = known.key if known is not None else f"{mechanism}:?:{name}"
                holding, gone = known.split_holders() if known is not None else ([], [])
                if known is not None and not known.holders:
                    holding = self._creator_holding(known)  # made since the last poll: its creator may hold it
                # Those who let go did so before the unlink (or in the instant after it): their detach goes first,
                # and the next poll does not repeat it (the module docstring's order).
                for holder in gone:
                    holds = [h for h in known.holders if h.pid == holder.pid] if known is not None else []
                    detach: EventName = "closed" if mechanism == "mqueue" else "detached"
                    events.append(Event(now, mechanism, detach, name, key, holder.pid, holder.comm, "inotify",
                                        ", ".join(holder_detail(h) for h in holds), self._host))
                if holding:
                    events.append(Event(now, mechanism, "unlinked-while-held", name, key, source="inotify",
                                        detail=held_by(holding), place=self._host))
                else:
                    events.append(Event(now, mechanism, "destroyed", name, key, source="inotify", place=self._host))
            if self.places is not None and not self.places.matches(self._host):
                return  # another place's (the host's directories, not the selected container's)
            if self.selection is not None:
                # Not about the selection (yet): a segment a selected process creates is selected by the next
                # poll, which, not told of this event, then reports its creation itself.
                events = [event for event in events if self.selection.wants(event)]
            for event in events:
                self._announce(event, now)
        events = [self._named(event) for event in events]
        self._deliver(events, wait=True)

    def _creator_holding(self, known: Named) -> list[Holder]:
        """The creator of an object made since the last poll (its attribution), as a holder when it still has it."""
        creator = self._recent.get(("created", known.key))
        if creator is None or holds_file(creator.actor.pid, known.dev, known.inode) is not True:
            return []
        return [Holder(creator.actor.pid, creator.actor.comm or "?", None, False, "r")]

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def tmpfs_places(snapshot: Snapshot) -> dict[int, Place]:
    """st_dev of each shm tmpfs listed in the snapshot → the place of its namespace (Snapshot.namespaces)."""
    return {namespace.shm_dev: namespace.place for namespace in snapshot.namespaces
            if namespace.shm_dev is not None and namespace.shm_dir is not None}


def placed_by_tmpfs(record: Attribution, places: dict[int, Place]) -> Attribution:
    """A fanotify record with the place of the tmpfs its key names (``shm:DEV:INODE``), when it has none."""
    if record.place is not None or record.key is None or record.mechanism not in ("shm", "sem"):
        return record
    try:
        dev = int(record.key.split(":")[1])
    except (IndexError, ValueError):
        return record
    place = places.get(dev)
    return record if place is None else dataclasses.replace(record, place=place)


def _match_keys(record: Attribution) -> list[tuple[str, ...]]:
    """Where an attribution is found by the events it names: by its key, and by its name (a key-less record)."""
    action = record.action
    keys: list[tuple[str, ...]] = [(action, record.mechanism, record.object)]
    if record.key is not None:
        keys.append((action, record.key))
    return keys


def apply_inotify(snapshot: Snapshot, event: Event) -> Snapshot | None:
    """The snapshot with an inotify create or delete of a shm segment or semaphore applied at once.

    A full scan is what tells a new segment's holders, and on a busy machine it takes hundreds of
    milliseconds; this shows the segment the moment it exists. Its creator opened it to create it, so it
    is shown ``held``, with its holders left for the next scan to name. None when the event changes
    nothing shown (another mechanism, already there, or gone again).
    """
    if event.source not in ("inotify", "fanotify") or event.mechanism not in ("shm", "sem") or snapshot.shm_dir is None:
        return None
    segments = list(snapshot.shm)
    index = next((i for i, segment in enumerate(segments) if segment.object_key == event.key), None)
    if event.event == "created":
        if index is not None:
            return None
        path = os.path.join(snapshot.shm_dir, file_name_of(event.mechanism, event.object))
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if file_key(event.mechanism, st.st_dev, st.st_ino) != event.key:
            return None  # replaced again since the event
        segments.append(
            ShmSegment(
                name=event.object, path=path, kind="sem" if event.mechanism == "sem" else "shm",
                size=st.st_size, allocated=st.st_blocks * 512, mode=st.st_mode & 0o7777, uid=st.st_uid,
                gid=st.st_gid, owner=user_name(st.st_uid), group=group_name(st.st_gid), mtime=st.st_mtime,
                ctime=st.st_ctime, dev=st.st_dev, inode=st.st_ino, state="held",
            )
        )
        segments.sort(key=lambda segment: (segment.name, segment.inode))
    elif index is None:
        return None
    elif event.event == "destroyed":
        del segments[index]
    elif event.event == "unlinked-while-held":
        old = segments[index]
        segments[index] = dataclasses.replace(old, state="deleted", pinned_bytes=old.allocated)
    else:
        return None
    return dataclasses.replace(snapshot, shm=tuple(segments))


def routine(record: Attribution) -> bool:
    """A signal the kernel sends on every child's exit (SIGCHLD): the machine's background noise, left out of the
    ``sent`` events (every shell and service gets one per command it runs). The journal keeps it."""
    return record.actor.kernel and record.signal == signal.SIGCHLD


def own_tasks() -> frozenset[int]:
    """This process's pid and its threads' ids (/proc/self/task): the targets of a signal sent to ipcmon."""
    try:
        return frozenset(int(tid) for tid in os.listdir("/proc/self/task") if tid.isdigit()) | {os.getpid()}
    except OSError:
        return frozenset({os.getpid()})


def _target(event: Event) -> int | None:
    """The target pid of a ``sent`` event (its key is ``signal:PID``)."""
    _, _, pid = event.key.partition(":")
    return int(pid) if pid.isdigit() else None
