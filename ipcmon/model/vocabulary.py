"""The words of the model: Literal vocabularies for kinds, mechanisms and events, and how a record's stable key
and label are written (one place for each format)."""

from __future__ import annotations

from typing import Literal, Protocol, cast, get_args

Access = Literal["r", "w", "rw", "-"]
"""How a descriptor was opened: read, write, both, or neither (``O_PATH``)."""

ShmState = Literal["held", "orphaned", "orphaned?", "deleted"]
"""``orphaned?``: no process ipcmon could read holds it, but one it could not read might (``health.qualify``):
a word ending in ``?`` is unknown, not fact."""
ShmKind = Literal["shm", "sem"]
PipeKind = Literal["pipe", "fifo"]
PipeFlag = Literal["no-reader", "no-writer", "no-reader?", "no-writer?", "full", "both-ends"]
"""``no-reader?``/``no-writer?``: no end of that side in any process ipcmon could read, and the kernel could not
be asked whether one exists elsewhere, while some process's descriptors could not be read: unknown, not fact."""
RegionKind = Literal["memfd", "anon"]

WaitKind = Literal["read", "write", "send", "receive", "open", "poll", "child", "signal", "sysv"]
"""How a process waits on IPC (``Waiting.kind``): ``read``/``write`` on a pipe or FIFO, ``send``/``receive`` on a
POSIX queue (mq_timedsend/mq_timedreceive), ``open`` of a FIFO nobody has open at the other end, ``poll`` (poll,
ppoll, select, pselect6, epoll_wait) over a set with IPC descriptors in it, ``child`` (wait4/waitid), ``signal``
(pause, sigsuspend, sigtimedwait), ``sysv`` (msgsnd/msgrcv/semop on a SysV object)."""

StuckState = Literal["deadlocked", "blocked", "waiting"]
"""How serious a wait on IPC is (``Stuck.state``), most serious first:

- ``deadlocked``: a member of a :class:`Deadlock`: only other members (or itself) could release it;
- ``blocked``: cannot go on until someone else acts, and nothing shows anyone will: a writer on a full pipe, a
  sender on a full queue, an open() of a FIFO nobody has open at the other end, a wait for a child that is
  itself blocked, a read that only the reader itself could satisfy;
- ``waiting``: idle in the ordinary way: reading or polling while a writer holds the other end, waiting for a
  signal or for a child that is running.
"""

ScanKind = Literal["shm", "memfd", "mqueue", "pipe", "signal", "sysv"]
"""What a scan can be limited to (``--kind``, ``Snapshot.kinds``); ``KINDS`` lists them in report order."""

Mechanism = Literal[
    "shm", "sem", "memfd", "anon", "mqueue", "pipe", "fifo", "signal", "sysv-shm", "sysv-msg", "sysv-sem", "process"
]
"""What an event is about: a record kind (the first part of its ``object_key``), or ``process`` for a deadlock."""

EventName = Literal[
    "created", "resized", "attached", "detached", "unlinked-while-held", "orphaned", "destroyed",
    "opened", "closed", "depth", "notify-registered", "notify-cleared",
    "writer-closed", "reader-closed", "full", "drained",
    "pending", "delivered", "handler-installed", "mask-blocked", "mask-unblocked",
    "waiting", "wait-ended", "deadlock", "deadlock-ended", "budget", "state", "sent",
]
"""Every lifecycle event name (README's table; ``ipcmon.live.events`` says which mechanism has which).

A signal added to or taken from a process's mask is ``mask-blocked``/``mask-unblocked``; a process that starts
or stops waiting in a system call on an object is ``waiting``/``wait-ended``: two things that once shared the
word "blocked". ``state`` is no change: ``ipcmon watch`` opens with one per deadlock and stuck process, what
was so before it started (``live.events.state_events``). ``budget``: an shm mount or a limit crossed its threshold,
either way (issue 14). ``sent``: a process (or the kernel) sent a signal to another, seen by tracefs (issue 16)."""

MECHANISMS: frozenset[str] = frozenset(get_args(Mechanism))

KINDS: tuple[str, ...] = ("shm", "memfd", "mqueue", "pipe", "signal", "sysv")
"""Mechanisms a scan can be limited to (``--kind``)."""


def file_key(mechanism: Mechanism, dev: int, inode: int) -> str:
    """The stable identity of a file-backed object: ``MECHANISM:DEV:INODE`` (``shm:25:1234``).

    A row key, an event's key, the action log's object; the same inode on another device is another object.
    """
    return f"{mechanism}:{dev}:{inode}"


class Keyed(Protocol):
    """Any record of an object: it has an ``object_key`` (file_key, sysv_object_key, ``signal:PID``)."""

    @property
    def object_key(self) -> str: ...


class _Placed(Protocol):
    @property
    def host(self) -> bool: ...
    @property
    def ipc(self) -> int | None: ...


def sysv_object_key(mechanism: Mechanism, ident: int, place: _Placed | None) -> str:
    """The stable identity of a SysV object: ``sysv-shm:ID`` in ipcmon's own IPC namespace (or an unknown one),
    ``sysv-shm:IPCNS:ID`` in another (ids are per IPC namespace, so the same id in two containers is two objects)."""
    if place is None or place.host or place.ipc is None:
        return f"{mechanism}:{ident}"
    return f"{mechanism}:{place.ipc}:{ident}"


def key_mechanism(key: str) -> Mechanism | None:
    """The mechanism an ``object_key`` belongs to (its first part), None for a key of no record kind."""
    mechanism = key.split(":", 1)[0]
    return cast(Mechanism, mechanism) if mechanism in MECHANISMS else None


def pipe_ref(kind: PipeKind, inode: int, path: str | None) -> str:
    """How events and waits name a pipe: ``pipe:[INODE]`` (as /proc/PID/fd links read) or ``fifo:PATH``."""
    return f"fifo:{path}" if kind == "fifo" else f"pipe:[{inode}]"


def sysv_key(key: int) -> str:
    """A SysV IPC key as ipcs(1) prints it: ``0x0000abcd`` (an unsigned 32 bits; /proc/sysvipc shows it signed)."""
    return f"0x{key & 0xFFFFFFFF:08x}"


def sysv_label(key: int, ident: int) -> str:
    """How a SysV object reads: ``key 0x0000abcd id 5``."""
    return f"key {sysv_key(key)} id {ident}"
