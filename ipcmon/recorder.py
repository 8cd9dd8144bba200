"""The recorder behind ``ipcmon record`` (issue 16): attributions, lifecycle events and actors' exits into the journal.

One loop: a ``Monitor`` scans every interval (and inotify reports creations and removals between scans); each event
goes to the journal, and so does every attribution the attribution source hands over. The processes named as actors
are remembered (pid and start time), and one that is gone from a scan, and from /proc, is written as a
``ProcessExit``, so that ``leaks`` can say that the creator exited without unlinking. The shm tmpfs of every
container its scans find is marked too (``Attributor.watch_shm_dir``), and each record of a segment is placed in the
namespace of its tmpfs.

**Who writes the journal.** ``ipcmon record`` holds an exclusive lock (flock(2)) on ``JOURNAL.recorder`` beside
the journal for its whole life: the kernel releases it when the process ends, SIGKILL included. The dashboard and
``watch`` write too (:class:`JournalWhenIdle`) while no recorder holds that lock, and only one of them at a time:
the writer holds ``JOURNAL.writer``. A recorder that starts takes the writer lock over (the others see its lock
within CHECK_EVERY and let go); while a recorder runs, the others only read.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ipcmon.collect import ScanConfig
from ipcmon.journal import Journal, Note, ProcessExit, prepare_directory, process_start_ticks
from ipcmon.live.monitor import Monitor, placed_by_tmpfs, tmpfs_places
from ipcmon.model import Actor, Attribution, Event, Place, Snapshot

RECORD_KINDS = ("shm", "mqueue", "sysv")
"""What the recorder's scans cover: the objects that can leak. Pipes and signal masks change all the time and say
nothing about who made what; signals come from the attribution source (``sent``)."""
ACTORS_MAX = 8192
"""Actors watched for their exit at most (the most recent): bounded whatever a storm of processes does."""
CHECK_EVERY = 1.0
"""Seconds between two looks of a JournalWhenIdle at the recorder's lock."""
WRITER_WAIT = 10.0
"""Seconds ``ipcmon record`` waits for a dashboard or watch that writes the journal to let go of it."""
JOURNALED = frozenset({"shm", "sem", "mqueue", "sysv-shm", "sysv-msg", "sysv-sem"})
"""The mechanisms whose events a JournalWhenIdle writes: those of RECORD_KINDS (what a recorder would write)."""


def recorder_lock_path(journal: str) -> str:
    """The file ``ipcmon record`` keeps locked beside the journal while it runs."""
    return journal + ".recorder"


def writer_lock_path(journal: str) -> str:
    """The file whoever writes the journal keeps locked (the recorder, or one dashboard or watch)."""
    return journal + ".writer"


def _open_lock(path: str, create: bool) -> int | None:
    """A descriptor on a lock file (made 0600 when create), None when it does not exist or cannot be opened."""
    try:
        if create:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def take_lock(path: str, *, wait: float = 0.0) -> int | None:
    """Take the exclusive lock on path (created 0600), waiting up to wait seconds; the descriptor that holds it
    (close it to let go; the kernel does when the process dies), or None when another process holds it."""
    fd = _open_lock(path, create=True)
    if fd is None:
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.05)
        except OSError:
            os.close(fd)
            return None


def recorder_running(journal: str) -> bool:
    """Whether an ``ipcmon record`` holds the journal's recorder lock now. A lock file this user cannot open counts
    as a recorder (the journal is not this user's to write)."""
    path = recorder_lock_path(journal)
    if not os.path.exists(path):
        return False
    fd = _open_lock(path, create=False)
    if fd is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)  # closing lets go of a shared lock taken just to look
    return False


class JournalWhenIdle:
    """A Monitor's sink (``live.monitor.Sink``): the journal at path, written while no ``ipcmon record`` runs (the
    module docstring says how that is told). The journal is opened and closed on a thread of its own, and ``add``
    only queues: the caller (a UI, a watch) never waits. Events of mechanisms outside JOURNALED are not written."""

    def __init__(self, path: str, *, say: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._say = say or (lambda text: None)
        self._lock = threading.Lock()
        self._journal: Journal | None = None
        self._writer_fd: int | None = None
        self._checked = -CHECK_EVERY
        self.writing = False
        """Whether this process writes the journal now."""

    def add(self, record: Attribution | Event) -> object:
        if isinstance(record, Event) and record.mechanism not in JOURNALED:
            return False
        journal = self._current()
        return journal.add(record) if journal is not None else False

    def note(self, text: str) -> None:
        journal = self._current()
        if journal is not None:
            journal.add(Note(time.time(), text))

    def check(self) -> bool:
        """Look at the locks now: whether this process writes the journal."""
        with self._lock:
            self._checked = -CHECK_EVERY
        return self._current() is not None

    def _current(self) -> Journal | None:
        """The journal while this process is the writer: looked at every CHECK_EVERY (a recorder that started takes
        over, one that died leaves it to us)."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= CHECK_EVERY:
                self._checked = now
                self._decide()
            return self._journal

    def _decide(self) -> None:
        if recorder_running(self.path):
            if self._journal is not None:
                self._let_go()
            return
        if self._journal is not None:
            return
        try:
            prepare_directory(self.path)
        except OSError:
            return  # no journal can be made here: Journal would say why, but there is nothing to write to
        fd = take_lock(writer_lock_path(self.path))
        if fd is None:
            return  # another dashboard or watch writes it
        self._writer_fd = fd
        self._journal = Journal(self.path, on_problem=self._say)
        self.writing = True
        threading.Thread(target=self._journal.start, name="ipcmon-journal-open", daemon=True).start()

    def _let_go(self) -> None:
        journal, self._journal = self._journal, None
        fd, self._writer_fd = self._writer_fd, None
        self.writing = False

        def close() -> None:
            if journal is not None:
                journal.stop()
            if fd is not None:
                os.close(fd)

        threading.Thread(target=close, name="ipcmon-journal-close", daemon=True).start()

    def close(self) -> None:
        """Write what is queued and let go of the journal (waits for the writer: call it at exit)."""
        with self._lock:
            journal, self._journal = self._journal, None
            fd, self._writer_fd = self._writer_fd, None
            self.writing = False
        if journal is not None:
            with contextlib.suppress(Exception):
                journal.stop(timeout=5)
        if fd is not None:
            os.close(fd)


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
        self._marked: set[str] = set()
        self._places: dict[int, Place] = {}
        self.exits = 0
        """Process exits written since start."""
        self._gone: collections.OrderedDict[int, None] = collections.OrderedDict()
        """Pids of actors gone before they could be read whose exit is written (bounded: ACTORS_MAX)."""

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

    def _gone_already(self, actor: Actor) -> None:
        """An actor that had exited before it could be read (no start time: a short-lived creator, the common leak)
        gets its exit written now, once, with no start time (JournalReader.exited ties it to its acts by time)."""
        if actor.start_ticks is not None or actor.kernel or actor.pid in self._gone:
            return
        if process_start_ticks(actor.pid) is not None:
            return  # its pid names a live process now: whether it is the same one cannot be told
        self._gone[actor.pid] = None
        while len(self._gone) > ACTORS_MAX:
            self._gone.popitem(last=False)
        self.journal.add(ProcessExit(time.time(), actor.pid, None, actor.comm, actor.cmdline))
        self.exits += 1

    def drain(self) -> None:
        """Hand what the attribution source saw to the journal."""
        if self.source is None:
            return
        for attribution in self.source.drain():
            attribution = placed_by_tmpfs(attribution, self._places)
            self.journal.add(attribution)
            self.watch_actor(attribution.actor)
            self._gone_already(attribution.actor)
        lost = self.source.lost
        if lost > self._lost:
            self._say(f"{lost - self._lost:,} kernel events lost (queue overflow): the scans repair the state, but "
                      "who did those acts is unknown")
            self._lost = lost

    def poll(self) -> None:
        """One cycle: drain, scan (the Monitor hands its events to the journal), then write the actors gone."""
        self.drain()
        snapshot, _ = self.monitor.poll()
        self._mark_namespaces(snapshot)
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

    def _mark_namespaces(self, snapshot: Snapshot) -> None:
        """Mark every shm tmpfs the scan listed (the host's is marked at start; containers' as they appear), and know
        the place of each, for the source's records."""
        self._places = tmpfs_places(snapshot)
        marker = getattr(self.source, "watch_shm_dir", None)
        if marker is None:
            return
        for namespace in snapshot.namespaces:
            path = namespace.shm_dir
            if path is not None and path not in self._marked:
                self._marked.add(path)
                if not namespace.place.host:  # the host's /dev/shm: the source was started with it
                    marker(path)
                    self._say_status(f"fanotify {path}")

    def _say_status(self, name: str) -> None:
        status = getattr(self.source, "status", None)
        for source in status() if callable(status) else ():
            if source.name == name:
                self._say(f"{source.name}: on" if source.active else f"{source.name}: off: {source.reason}")

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
