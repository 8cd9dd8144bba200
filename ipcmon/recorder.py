"""The recorder behind ``ipcmon record`` (issue 16): attributions, lifecycle events and actors' exits into the journal.

One loop: a ``Monitor`` scans every interval (and inotify reports creations and removals between scans); each event
goes to the journal, and so does every attribution the attribution source hands over. The processes named as actors
are remembered (pid and start time), and one that is gone from a scan, and from /proc, is written as a
``ProcessExit``, so that ``leaks`` can say that the creator exited without unlinking.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ipcmon.collect import ScanConfig
from ipcmon.journal import Journal, ProcessExit, process_start_ticks
from ipcmon.live.monitor import Monitor
from ipcmon.model import Actor, Attribution, Event

RECORD_KINDS = ("shm", "mqueue", "sysv")
"""What the recorder's scans cover: the objects that can leak. Pipes and signal masks change all the time and say
nothing about who made what; signals come from the attribution source (``sent``)."""
ACTORS_MAX = 8192
"""Actors watched for their exit at most (the most recent): bounded whatever a storm of processes does."""


class AttributionSource(Protocol):
    """What the recorder needs of ``live.attribution.Attributor``."""

    def drain(self) -> list[Attribution]: ...

    @property
    def lost(self) -> int: ...


class Recorder:
    """Scans, drains the attribution source and writes both to a journal until ``stop`` is set."""

    def __init__(
        self,
        journal: Journal,
        *,
        interval: float = 1.0,
        config: ScanConfig | None = None,
        source: AttributionSource | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.journal = journal
        self.interval = interval
        self.source = source
        self.monitor = Monitor(config or ScanConfig(kinds=RECORD_KINDS), history=1000, on_event=self._on_event)
        self._say = say or (lambda text: None)
        self._actors: collections.OrderedDict[tuple[int, int], Actor] = collections.OrderedDict()
        self._actors_lock = threading.Lock()
        self._lost = 0
        self.exits = 0
        """Process exits written since start."""

    def _on_event(self, event: Event) -> None:
        self.journal.add(event)
        if event.actor is not None:
            self.watch_actor(event.actor)

    def watch_actor(self, actor: Actor) -> None:
        """Remember a process that acted, so that its exit is written when a scan no longer finds it."""
        if actor.start_ticks is None or actor.kernel:
            return
        key = (actor.pid, actor.start_ticks)
        with self._actors_lock:
            self._actors[key] = actor
            self._actors.move_to_end(key)
            while len(self._actors) > ACTORS_MAX:
                self._actors.popitem(last=False)

    def drain(self) -> None:
        """Hand what the attribution source saw to the journal."""
        if self.source is None:
            return
        for attribution in self.source.drain():
            self.journal.add(attribution)
            self.watch_actor(attribution.actor)
        lost = self.source.lost
        if lost > self._lost:
            self._say(f"{lost - self._lost:,} kernel events lost (queue overflow): the scans repair the state, but "
                      "who did those acts is unknown")
            self._lost = lost

    def poll(self) -> None:
        """One cycle: drain, scan (the Monitor hands its events to the journal), then write the actors gone."""
        self.drain()
        snapshot, _ = self.monitor.poll()
        while self.monitor.errors:  # inotify's: the scans go on, and the gap is said
            self._say(self.monitor.errors.popleft())
        alive = {(process.pid, process.start_ticks) for process in snapshot.processes}
        now = time.time()
        with self._actors_lock:
            gone = [key for key in self._actors if key not in alive and process_start_ticks(key[0]) != key[1]]
            actors = [self._actors.pop(key) for key in gone]
        for actor in actors:
            self.journal.add(ProcessExit(now, actor.pid, actor.start_ticks, actor.comm, actor.cmdline))
            self.exits += 1

    def start(self) -> None:
        """Watch with inotify and take the first scan, the baseline: from here on every change is recorded."""
        self.monitor.start()
        self.poll()

    def run(self, stop: threading.Event) -> None:
        """poll() every interval (inotify between) until stop is set, then drain once more and stop watching (start()
        first, or run() starts). The journal is the caller's to stop (it flushes)."""
        if self.monitor.snapshot is None:
            self.start()
        try:
            took = 0.0
            while not stop.wait(max(self.interval - took, 0.0)):
                started = time.monotonic()
                self.poll()
                took = time.monotonic() - started
            self.drain()
        finally:
            self.monitor.stop()
