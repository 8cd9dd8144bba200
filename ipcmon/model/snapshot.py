"""A Snapshot (one consistent pass over every mechanism) and an Event (one lifecycle step of an object)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ipcmon.model.attribution import Actor
from ipcmon.model.capacity import Capacity
from ipcmon.model.places import Namespace, Place
from ipcmon.model.records import (
    MessageQueue,
    Pipe,
    Process,
    ProcessSignals,
    SharedRegion,
    ShmSegment,
    Sysv,
    Waiting,
)
from ipcmon.model.vocabulary import EventName, Mechanism, StuckState, WaitKind


@dataclass(frozen=True, slots=True)
class Stuck:
    """One process blocked in a system call on IPC, how serious that is, and who could let it go."""

    pid: int
    comm: str
    waiting: Waiting
    state: StuckState
    """``deadlocked``, ``blocked`` or ``waiting`` (vocabulary.StuckState)."""
    releasers: tuple[int, ...]
    """Pids that could release it: the other end of its pipe, the other openers of its queue, the children it
    waits for, the process a FIFO's other end would come from; () when no process holds the other side."""
    release: str
    """Who could release it, in words: ``pid 12 python3 (holds the read end, fd 3)``, ``nobody: no process holds
    the read end``, ``anyone who opens /run/f.fifo for writing``. Raw: show it through safe.printable."""
    since: float | None = None
    """When the process last ran, as a Unix epoch (se.exec_start of /proc/PID/sched, sched_clock milliseconds,
    mapped onto the wall clock); None when the kernel does not say (no CONFIG_SCHED_DEBUG, not permitted)."""


@dataclass(frozen=True, slots=True)
class DeadlockMember:
    """One process of a deadlock: what it waits on and which members could release it."""

    pid: int
    comm: str
    waits_on: str
    """What it waits on in words, ``write pipe:[77]`` (text.waiting_text)."""
    released_by: tuple[int, ...]
    """The members that could release it (itself, in a one-member deadlock)."""
    kind: WaitKind | None = None
    """How it waits (``Waiting.kind``): ``open`` members are in the deadlock by inference (see describe)."""


@dataclass(frozen=True, slots=True)
class Deadlock:
    """Processes each blocked on IPC that only members of the group could release: none can make progress."""

    members: tuple[DeadlockMember, ...]

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(member.pid for member in self.members)

    @property
    def key(self) -> str:
        """Stable identity while the same processes stay deadlocked: ``deadlock:PID,PID``."""
        return "deadlock:" + ",".join(map(str, self.pids))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent pass over every mechanism asked for."""

    taken_at: float
    kinds: tuple[str, ...]
    processes: tuple[Process, ...] = ()
    hidden_processes: int = 0
    """Processes whose descriptors or mappings could not be read."""
    shm: tuple[ShmSegment, ...] = ()
    regions: tuple[SharedRegion, ...] = ()
    """memfd and anonymous shared regions (kind ``memfd`` of the scan)."""
    mqueues: tuple[MessageQueue, ...] = ()
    pipes: tuple[Pipe, ...] = ()
    signals: tuple[ProcessSignals, ...] = ()
    sysv: Sysv = field(default_factory=Sysv)
    notes: tuple[str, ...] = ()
    """Plain-language remarks about what could not be seen (no mqueue mount, not root…)."""
    shm_dir: str | None = None
    mqueue_dir: str | None = None
    """Where the mqueue filesystem is mounted, or None when it is not."""
    scan_seconds: float = 0.0
    stuck: tuple[Stuck, ...] = ()
    """Every process blocked in a system call on IPC, most serious first (deadlocked, blocked, waiting)."""
    deadlocks: tuple[Deadlock, ...] = ()
    """Groups of processes blocked on IPC that only members of the group could release."""
    capacity: Capacity | None = None
    """Every budget and how full it is (issue 14); None when the scan did not read them."""
    namespaces: tuple[Namespace, ...] = ()
    """Every (IPC, mount) namespace pair a scanned process runs in, the host's first (issue 15); () when not read."""


EventSource = Literal["inotify", "poll", "fanotify", "tracefs"]
"""How the change was seen: a scan's diff (``poll``), a directory entry event (``inotify``), or a kernel source that
also names the process that acted (``fanotify``, ``tracefs``: issue 16, ``Event.actor``)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle step of an IPC object: created, attached, detached, destroyed, and the rest."""

    time: float
    mechanism: Mechanism
    """``shm``, ``sem``, ``memfd``, ``anon``, ``mqueue``, ``pipe``, ``fifo``, ``signal``, ``sysv-*``, ``process``."""
    event: EventName
    """``created``, ``attached``, ``detached``, ``destroyed``, ``orphaned``… (README lists them all)."""
    object: str
    """What a person calls the object: its name, ``pipe:[INODE]``, or the pid for signals."""
    key: str
    """The object's stable key (``ShmSegment.object_key`` and friends), for per-object history."""
    pid: int | None = None
    comm: str | None = None
    source: EventSource = "poll"
    detail: str = ""
    """Extra facts in words: ``fd 3 rw``, ``8 → 9 messages``, ``SIGUSR1``."""
    place: Place | None = None
    """The object's namespace and container (its record's ``place``); None when not known or not placed."""
    actor: Actor | None = None
    """The process that did it, when an attribution source saw it (issue 16); None when unknown."""
