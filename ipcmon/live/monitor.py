"""The Monitor: periodic scans diffed into lifecycle events, merged with inotify's creates and deletes between polls.

The inotify source (``live.inotify``, watchdog) is imported only when ``start()`` runs, so a Monitor that only
polls loads no watchdog. Its errors are recorded in ``errors``; the observer keeps going.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ipcmon.collect import ScanConfig, Scanner
from ipcmon.collect.fds import holds_file
from ipcmon.collect.procfs import group_name, user_name
from ipcmon.collect.scan import find_mqueue_dir, restrict_to_pids, restrict_to_places
from ipcmon.collect.shm import file_name_of, name_of
from ipcmon.live.events import EventLog, PidSelection, diff
from ipcmon.model import Event, EventName, Mechanism, MessageQueue, Place, ShmSegment, Snapshot, file_key
from ipcmon.text import PlaceSelector

if TYPE_CHECKING:
    from ipcmon.live.attribution import Attributor, SourceStatus
    from ipcmon.live.inotify import DirectoryWatch

EventCallback = Callable[[Event], None]

INOTIFY_BACKLOG = 2000
"""inotify events waiting in watchdog's queue beyond which they are skipped until it drains (issue 7)."""
ANNOUNCED_MAX = 4096
"""inotify events remembered so the next poll does not report them again. Under churn most are never
matched (the object was gone before the poll), so without a cap this grew to ~100k entries a minute
and made every poll slower (issue 7)."""

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
    """A segment or queue name as the last poll saw it: its key, its file, and the pids that held it."""

    key: str
    dev: int
    inode: int
    holders: frozenset[int]

    def held_now(self) -> bool:
        """Whether one of the last poll's holders still has the file open or mapped (asked at its unlink).

        The poll may be up to an interval old: a holder that let go since must not make an unlink read as
        "unlinked-while-held" (the shm demo unmaps, then unlinks, faster than one scan). A holder the kernel
        will not show us counts as holding, as the poll said; a holder that came after the poll is not seen
        here, and the next poll reports the segment deleted but held.
        """
        return any(holds_file(pid, self.dev, self.inode) is not False for pid in self.holders)


class Monitor:
    """Scans on demand (never two at once), turns each scan into events, and merges inotify events.

    ``poll()`` is meant to be called from one loop or worker; ``start()``/``stop()`` run the inotify
    observer, whose events arrive on ``on_event`` from the observer's thread.
    """

    def __init__(
        self,
        config: ScanConfig = ScanConfig(),
        *,
        history: int = 10_000,
        on_event: EventCallback | None = None,
        places: PlaceSelector | None = None,
        senders: bool = False,
    ) -> None:
        """senders: with the signal kind, ``start()`` also runs the tracefs source of ``live.attribution`` and
        reports each signal sent as a ``sent`` event naming its sender (root and tracefs needed: ``sources``
        says why not)."""
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
        self._on_event = on_event
        self._scan_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._inotify: DirectoryWatch | None = None
        self._senders = senders
        self._attributor: Attributor | None = None
        self._names: dict[str, Named] = {}
        """path → (object key, held) from the last snapshot and inotify, to name deletions."""
        self._announced: dict[tuple[str, str], float] = {}
        """(key, event) already reported by inotify, so the next poll does not report it twice."""
        self._mechanisms = mechanisms_for(config.kinds)
        self.last_holders: dict[str, str] = {}
        """object key → "last held by PID COMMAND" for shm segments and queues, while they exist."""

    # --- polling -------------------------------------------------------------------------------

    def poll(self) -> tuple[Snapshot, list[Event]]:
        """Scan now and return the snapshot and the new events (also logged and sent to on_event).

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
                events = [event for event in changes if self._fresh(event)]
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
                cutoff = time.time() - 60
                self._announced = {k: t for k, t in self._announced.items() if t > cutoff}
                self.log.extend(events)
        if self._on_event is not None:
            for event in events:
                self._on_event(event)
        return snapshot, events

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
        return self._announced.pop((event.key, event.event), None) is None

    def _remember_holders(self, snapshot: Snapshot) -> None:
        """Who held each object last, so a leak can name the process that made it (ipcmon leaks' hint)."""
        commands = {process.pid: process.cmdline for process in snapshot.processes}
        alive: set[str] = set()
        records: list[ShmSegment | MessageQueue] = [*snapshot.shm, *snapshot.mqueues]
        for record in records:
            key = record.object_key
            alive.add(key)
            if record.holders:
                holder = record.holders[-1]
                command = " ".join(commands.get(holder.pid, ())) or holder.comm
                self.last_holders[key] = f"last held by {holder.pid} {command}"
        for key in self.last_holders.keys() - alive:
            del self.last_holders[key]  # destroyed: forget it, so the map stays as small as the system

    def _remember_names(self, snapshot: Snapshot) -> None:
        names: dict[str, Named] = {}
        for segment in snapshot.shm:
            if segment.state != "deleted":
                names[segment.path] = Named(segment.object_key, segment.dev, segment.inode,
                                            frozenset(holder.pid for holder in segment.holders))
        for queue in snapshot.mqueues:
            if queue.path is not None:
                names[queue.path] = Named(queue.object_key, queue.dev, queue.inode,
                                          frozenset(holder.pid for holder in queue.holders))
        self._names = names

    # --- inotify -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching the shm directory and the mqueue mount (whichever exist and are in ``config.kinds``), and
        with ``senders`` the signals sent."""
        if self._senders and "signal" in self.config.kinds and self._attributor is None:
            from ipcmon.live.attribution import Attributor

            self._attributor = Attributor([], signals=True, queues=False, on_wake=self._on_attributions)
            self._attributor.start()
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
        """Stop watching (and wait for the observer thread); a Monitor that was never started is fine."""
        watch, self._inotify = self._inotify, None
        if watch is not None:
            watch.stop()
        attributor = self._attributor
        if attributor is not None:
            attributor.stop()  # what it held comes through _on_attributions before it is let go
            self._attributor = None

    @property
    def sources(self) -> list[SourceStatus]:
        """The attribution sources started (``senders``), each active or with why not; empty when none."""
        return self._attributor.status() if self._attributor is not None else []

    def _on_attributions(self) -> None:
        """The Attributor's wake-up (on its thread): its ``sent`` records become events, logged and handed on."""
        from ipcmon.live.attribution import sent_event

        attributor = self._attributor
        if attributor is None:
            return
        events = [sent_event(record) for record in attributor.drain() if record.action == "sent"]
        if self.selection is not None:
            events = [event for event in events if self.selection.wants(event)]  # sent by or to a selected one
        if not events:
            return
        with self._state_lock:
            self.log.extend(events)
        if self._on_event is not None:
            for event in events:
                try:
                    self._on_event(event)
                except Exception as error:  # a handler that raises must not end the source's thread
                    self.errors.append(f"attribution: {type(error).__name__}: {error}")

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
                self._names[path] = Named(key, st.st_dev, st.st_ino, frozenset())
                event = Event(now, mechanism, "created", name, key, source="inotify", detail=f"{st.st_size} bytes",
                              place=self._host)
            else:
                known = self._names.pop(path, None)
                key = known.key if known is not None else f"{mechanism}:?:{name}"
                verb: EventName = "unlinked-while-held" if known is not None and known.held_now() else "destroyed"
                event = Event(now, mechanism, verb, name, key, source="inotify", place=self._host)
            if self.places is not None and not self.places.matches(event.place):
                return  # another place's (the host's directories, not the selected container's)
            if self.selection is not None and not self.selection.wants(event):
                # Not about the selection (yet): a segment a selected process creates is selected by the next
                # poll, which, not told of this event, then reports its creation itself.
                return
            self._announced[(event.key, event.event)] = now
            if len(self._announced) > ANNOUNCED_MAX:
                del self._announced[next(iter(self._announced))]  # the oldest (dicts keep insertion order)
            self.log.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def apply_inotify(snapshot: Snapshot, event: Event) -> Snapshot | None:
    """The snapshot with an inotify create or delete of a shm segment or semaphore applied at once.

    A full scan is what tells a new segment's holders, and on a busy machine it takes hundreds of
    milliseconds; this shows the segment the moment it exists. Its creator opened it to create it, so it
    is shown ``held``, with its holders left for the next scan to name. None when the event changes
    nothing shown (another mechanism, already there, or gone again).
    """
    if event.source != "inotify" or event.mechanism not in ("shm", "sem") or snapshot.shm_dir is None:
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
