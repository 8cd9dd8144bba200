"""Budgets: how full each shm tmpfs is and every kernel limit an IPC object counts against (issue 14).

Records only, filled by ``ipcmon.collect.capacity``. Numbers are as the kernel counts them; None means unknown
(not permitted, not mounted, not readable), never zero, and ``unlimited`` says a limit is RLIM_INFINITY or 0-for-
none where the kernel reads it so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ipcmon.model.places import Place

BudgetArea = Literal["shm", "mqueue", "pipe", "signal", "sysv"]
"""Which mechanism a budget limits."""

BudgetUnit = Literal["bytes", "pages", "queues", "signals", "ids", "semaphores", "messages"]
"""What a budget's numbers count."""


@dataclass(frozen=True, slots=True)
class HolderUsage:
    """A process and the shared memory bytes it keeps on one mount (each object counted once per holder)."""

    pid: int
    comm: str
    bytes: int
    """Allocated bytes of the segments (named or deleted) it holds on the mount."""


@dataclass(frozen=True, slots=True)
class ShmMount:
    """One tmpfs that holds POSIX shared memory: the shm directory, and each container's /dev/shm."""

    path: str
    dev: int
    size: int | None
    """Total bytes (statvfs f_blocks × f_frsize)."""
    used: int | None
    """Bytes in use (f_blocks − f_bfree, × f_frsize)."""
    available: int | None
    """Bytes an unprivileged writer can still allocate (f_bavail × f_frsize)."""
    inodes_used: int | None
    inodes_total: int | None
    named: int = 0
    """Allocated bytes of named segments (in the directory)."""
    deleted: int = 0
    """Allocated bytes of segments unlinked but still held (not in the directory, still on the mount)."""
    semaphores: int = 0
    """Allocated bytes of named semaphores (sem.NAME files)."""
    other: int | None = None
    """Used bytes that are none of the above: files in subdirectories, unlinked files held only by processes
    ipcmon cannot read, pages that changed during the scan (every regular file directly in the directory is a
    segment); never below zero; None when used is unknown."""
    top_holders: tuple[HolderUsage, ...] = ()
    """The processes that pin the most bytes on it, most first (at most 5)."""
    place: Place | None = None
    """The namespace it is /dev/shm of (the first, host first, of those sharing it); None when not known."""

    @property
    def fill(self) -> float | None:
        """used / size, 0.0–1.0; None when unknown."""
        if self.used is None or not self.size:
            return None
        return self.used / self.size


@dataclass(frozen=True, slots=True)
class Budget:
    """One limit and how much of it is used: a sysctl for the whole system, or a per-user limit for one uid."""

    area: BudgetArea
    name: str
    """The kernel's name for the limit: ``fs.mqueue.queues_max``, ``RLIMIT_MSGQUEUE``, ``fs.pipe-user-pages-soft``,
    ``kernel.shmmni``…"""
    unit: BudgetUnit
    used: int | None
    """What counts against it now; None when unknown."""
    limit: int | None
    """The limit; None when unknown or unlimited (see unlimited)."""
    uid: int | None = None
    """The user a per-user limit is for; None for a system-wide one."""
    user: str | None = None
    unlimited: bool = False
    next_needs: int | None = None
    """What the next default-sized object would take of it (a default queue's reservation), when that is known."""
    note: str = ""
    """What else a person should know, in words: ``lowest of 2 values in force``, ``not readable: …``."""
    per_object: bool = False
    """A cap on each object, not a pool that fills (fs.mqueue.msg_max, fs.pipe-max-size, kernel.shmmax,
    kernel.msgmnb, SEMMSL…): used is the largest object's. It cannot run out, so it has no fill and no hazard."""

    @property
    def fill(self) -> float | None:
        """used / limit, 0.0–1.0; None when either is unknown, it is unlimited, or it is a per-object cap."""
        if self.used is None or self.limit is None or self.unlimited or self.limit <= 0 or self.per_object:
            return None
        return self.used / self.limit


@dataclass(frozen=True, slots=True)
class Capacity:
    """Every budget of one scan."""

    shm_mounts: tuple[ShmMount, ...] = ()
    budgets: tuple[Budget, ...] = ()
    memory_total: int | None = None
    """MemTotal of /proc/meminfo, bytes."""
    shmem: int | None = None
    """Shmem of /proc/meminfo, bytes: all tmpfs and shared memory in the machine's memory."""
    memory_available: int | None = None
    """MemAvailable of /proc/meminfo, bytes."""
    notes: tuple[str, ...] = ()
    """What could not be read, in words."""


@dataclass(frozen=True, slots=True)
class Filler:
    """One of the largest objects charged to a budget (`ipcmon limits`): what to look at first when it fills."""

    budget: str
    """The shm mount's path (``/dev/shm``) or ``RLIMIT_MSGQUEUE``."""
    uid: int | None
    """For RLIMIT_MSGQUEUE, the user charged (the queue's owner: the kernel charges its creator); else None."""
    mechanism: str
    """``shm``, ``sem`` or ``mqueue``."""
    name: str
    key: str
    bytes: int
    """Memory it takes on the mount (allocated, or pinned once deleted), or what it reserves of RLIMIT_MSGQUEUE
    (collect.capacity.mq_reservation)."""
    state: str
    """``held``, ``orphaned``, ``deleted``…; for a queue ``held`` or ``orphaned`` (no process has it open)."""
    place: Place | None = None
