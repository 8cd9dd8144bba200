"""A Snapshot (one consistent pass over every mechanism) and an Event (one lifecycle step of an object)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ipcmon.model.records import MessageQueue, Pipe, Process, ProcessSignals, SharedRegion, ShmSegment, Sysv
from ipcmon.model.vocabulary import EventName, Mechanism


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
    deadlocks: tuple[tuple[int, ...], ...] = ()
    """Groups of pids blocked on pipes or queues that only other members of the group could release."""


EventSource = Literal["inotify", "poll"]


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
