"""Who did it (issue 16): the process behind a creation, an open, a removal or a signal, as a kernel source saw it.

Records only. ``ipcmon.live.attribution`` fills them from fanotify(7) (shm tmpfs: segments and semaphores) and a
private tracefs instance (``signal:signal_generate``; ``syscalls:sys_enter_mq_open``/``sys_enter_mq_unlink``), and
``ipcmon.journal`` keeps them in SQLite across restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ipcmon.model.places import Place
from ipcmon.model.vocabulary import Mechanism

AttributionSource = Literal["fanotify", "tracefs"]
"""Which kernel facility saw the act."""

Action = Literal["created", "opened", "closed", "removed", "renamed", "sent"]
"""What the actor did: ``created`` (FAN_CREATE, mq_open with O_CREAT that made the queue), ``opened``
(FAN_OPEN, mq_open), ``closed`` (FAN_CLOSE_*), ``removed`` (FAN_DELETE: unlink, shm_unlink, sem_unlink; mq_unlink),
``renamed`` (FAN_MOVED_FROM/TO), ``sent`` (a signal: signal_generate)."""

SignalResult = Literal["delivered", "ignored", "already pending", "queue full", "delivered without info"]
"""signal_generate's result (include/trace/events/signal.h, enum trace_signal_result). Whether a delivered signal
is blocked, and so left pending, is read from the target's mask, not from the event (Attribution.blocked)."""


@dataclass(frozen=True, slots=True)
class Actor:
    """A process that acted, read from /proc as soon as its act was seen (it may already have exited)."""

    pid: int
    """Host pid (the thread group id)."""
    comm: str | None
    """Command name (the trace's, or /proc/PID/comm); None when it had exited before it could be read. Raw:
    untrusted, show it through safe.printable."""
    cmdline: tuple[str, ...] | None = None
    """/proc/PID/cmdline; None when it could not be read (exited, not permitted). Raw: untrusted."""
    uid: int | None = None
    start_ticks: int | None = None
    """Start time in clock ticks since boot (field 22 of /proc/PID/stat): with the pid, who it was even after the pid
    is reused (ProcessKey); None when it had exited before it could be read."""
    place: Place | None = None
    """Its namespaces and container (issue 15); None when unknown."""
    kernel: bool = False
    """The kernel sent it on its own account (SIGCHLD at a child's exit, SIGPIPE, SIGSEGV…): pid is the task that
    was running, not a sender that chose to."""


@dataclass(frozen=True, slots=True)
class Attribution:
    """One act on an IPC object or process, with the process that did it."""

    time: float
    """When it happened, as a Unix epoch (the kernel's timestamp mapped onto the wall clock where the source has
    one, else when it was read)."""
    action: Action
    mechanism: Mechanism
    """``shm``, ``sem``, ``mqueue`` or ``signal``."""
    object: str
    """The object in words: its POSIX name (``/foo``), or for a signal the target ``PID COMM``. Raw: untrusted."""
    actor: Actor
    source: AttributionSource
    key: str | None = None
    """The object's ``object_key`` when it could be tied to one (``shm:DEV:INODE``, ``signal:PID``); None when not
    (a queue whose name could not be read: ``creator unknown``)."""
    place: Place | None = None
    """The object's namespace (the tmpfs or mqueue mount's), issue 15; None when unknown."""
    signal: int | None = None
    """For ``sent``: the signal number."""
    target: int | None = None
    """For ``sent``: the target's host pid."""
    target_comm: str | None = None
    """For ``sent``: the target's command name as the trace recorded it. Raw: untrusted."""
    result: SignalResult | None = None
    blocked: bool | None = None
    """For ``sent``: the target blocks the signal (it stays pending), read from its mask just after; None when
    unknown."""
    ignored: bool | None = None
    """For ``sent``: the target ignores the signal (SIG_IGN); None when unknown."""
    count: int = 1
    """How many such acts this record stands for: a storm of the same act by the same actor on objects of one
    pattern is coalesced into one record (issue 16, bad input) and counted."""
    cause: str | None = None
    """For ``sent`` by the kernel: why, where the signal's code says it (``child exited``, ``address not mapped``,
    ``write to a pipe with no reader``); None when the record does not tell."""
