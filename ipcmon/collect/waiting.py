"""Who waits on what: /proc/PID/syscall and /proc/PID/wchan mapped to the IPC object a process is blocked on.

A process sleeping in write(4) where fd 4 is a pipe waits on that pipe; one in mq_timedsend waits on its
queue; pause, sigsuspend and sigtimedwait wait for a signal. A set of processes in which every waiter
can only be released by another waiter of the set is reported as a deadlock candidate.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ipcmon.collect import procfs
from ipcmon.collect.fds import FdRef
from ipcmon.model import (
    Deadlock,
    DeadlockMember,
    MessageQueue,
    Pipe,
    Process,
    Stuck,
    StuckState,
    Waiting,
    WaitKind,
    file_key,
    pipe_ref,
)
from ipcmon.text import waiting_text

# Only the calls that block on IPC matter; numbers differ per architecture (arch/*/syscall*.tbl).
_SYSCALLS: dict[str, dict[int, str]] = {
    "x86_64": {
        0: "read", 1: "write", 2: "open", 7: "poll", 19: "readv", 20: "writev", 23: "select",
        34: "pause", 35: "nanosleep", 61: "wait4", 65: "semop", 69: "msgsnd", 70: "msgrcv",
        128: "rt_sigtimedwait", 130: "rt_sigsuspend", 202: "futex", 220: "semtimedop",
        230: "clock_nanosleep", 232: "epoll_wait", 242: "mq_timedsend", 243: "mq_timedreceive",
        247: "waitid", 257: "openat", 270: "pselect6", 271: "ppoll", 275: "splice", 276: "tee",
        278: "vmsplice", 281: "epoll_pwait", 295: "preadv", 296: "pwritev", 327: "preadv2",
        328: "pwritev2", 441: "epoll_pwait2",
    },
    "aarch64": {
        22: "epoll_pwait", 56: "openat", 63: "read", 64: "write", 65: "readv", 66: "writev",
        72: "pselect6", 73: "ppoll", 75: "vmsplice", 76: "splice", 77: "tee", 95: "waitid",
        98: "futex", 101: "nanosleep", 115: "clock_nanosleep", 133: "rt_sigsuspend",
        137: "rt_sigtimedwait", 182: "mq_timedsend", 183: "mq_timedreceive", 188: "msgrcv",
        189: "msgsnd", 192: "semtimedop", 193: "semop", 260: "wait4", 441: "epoll_pwait2",
    },
}
SYSCALL_NAMES = _SYSCALLS.get(os.uname().machine, {})

_FD_READS = frozenset({"read", "readv", "preadv", "preadv2"})
_FD_WRITES = frozenset({"write", "writev", "pwritev", "pwritev2", "vmsplice"})
_SIGNAL_WAITS = frozenset({"pause", "rt_sigsuspend", "rt_sigtimedwait"})


@dataclass(frozen=True, slots=True)
class RawWait:
    """What /proc says a sleeping process is doing, before fds are resolved."""

    syscall: str
    args: tuple[int, ...]
    wchan: str


# Calls whose object can only be told from the kernel function the task sleeps in.
_NEEDS_WCHAN = frozenset({"open", "openat", "splice", "tee"})


def read_wchan(pid: int, proc: str = procfs.PROC) -> str:
    """The kernel function a task sleeps in; empty when unknown (the kernel prints 0 when it won't say)."""
    try:
        wchan = procfs.read_bytes(f"{proc}/{pid}/wchan", single=True).decode(errors="replace").strip()
    except (procfs.Gone, procfs.Denied):
        return ""
    return "" if wchan == "0" else wchan


def read_raw(pid: int, proc: str = procfs.PROC) -> RawWait | None:
    """The system call a sleeping process is in, or None when running, not in a call, or unreadable.

    wchan is read here only for the calls that need it to be resolved; for the others the scan reads it
    once the wait turned out to be on an IPC object (most sleeping processes are in poll or futex).
    """
    try:
        fields = procfs.read_bytes(f"{proc}/{pid}/syscall", single=True).split()
    except (procfs.Gone, procfs.Denied):
        return None
    if not fields or not fields[0].lstrip(b"-").isdigit() or int(fields[0]) < 0:
        return None  # "running", or "-1 sp pc" (blocked outside a system call)
    number = int(fields[0])
    name = SYSCALL_NAMES.get(number, f"nr={number}")
    args = tuple(int(arg, 16) for arg in fields[1:7])
    return RawWait(name, args, read_wchan(pid, proc) if name in _NEEDS_WCHAN else "")


def resolve(raw: RawWait, pid: int, fd_index: Mapping[tuple[int, int], FdRef]) -> Waiting | None:
    """Name the IPC object a raw wait is on; None when the call is not an IPC wait."""
    syscall = raw.syscall
    if syscall in _SIGNAL_WAITS:
        return Waiting(syscall=syscall, fd=None, wchan=raw.wchan, object="signal", key=None, kind="signal")
    if syscall in _FD_READS | _FD_WRITES | {"mq_timedsend", "mq_timedreceive", "splice", "tee"}:
        fd = raw.args[0] if raw.args else -1
        if syscall in ("splice", "tee") and raw.wchan.startswith("pipe_wait_writable"):
            fd = raw.args[2] if len(raw.args) > 2 else fd
        ref = fd_index.get((pid, fd))
        if ref is None:
            return None
        if ref.kind == "pipe" or ref.kind == "fifo":
            writing = syscall in _FD_WRITES or (
                syscall in ("splice", "tee") and raw.wchan.startswith("pipe_wait_writable"))
            return Waiting(syscall, fd, raw.wchan, pipe_ref(ref.kind, ref.inode, ref.path),
                           file_key(ref.kind, ref.dev, ref.inode), "write" if writing else "read")
        if ref.kind == "mqueue":
            kind: WaitKind = "send" if syscall == "mq_timedsend" else "receive"
            return Waiting(syscall, fd, raw.wchan, f"mqueue:{ref.path}", file_key("mqueue", ref.dev, ref.inode), kind)
        return None
    if syscall in ("msgsnd", "msgrcv") and raw.args:
        msqid = raw.args[0]
        return Waiting(syscall, None, raw.wchan, f"sysv-msg:{msqid}", f"sysv-msg:{msqid}", "sysv")
    if syscall in ("semop", "semtimedop") and raw.args:
        semid = raw.args[0]
        return Waiting(syscall, None, raw.wchan, f"sysv-sem:{semid}", f"sysv-sem:{semid}", "sysv")
    if raw.wchan in ("fifo_open", "wait_for_partner"):
        return Waiting(syscall, None, raw.wchan, "fifo (waiting for the other end to open)", None, "open")
    return None


def _release(wait: Waiting, pid: int, pipes: Mapping[str, Pipe], queues: Mapping[str, MessageQueue]
             ) -> tuple[tuple[int, ...], str]:
    """Who could release a waiter, as pids and in words: the other end of its pipe, the other openers of its queue."""
    if wait.key is None:
        return (), "unknown"
    pipe = pipes.get(wait.key)
    if pipe is not None:
        reading = wait.kind == "read"
        ends = pipe.writers if reading else pipe.readers
        side = "write" if reading else "read"
        if not ends:
            return (), f"nobody: no process holds the {side} end"
        pids = tuple(sorted({end.pid for end in ends}))
        words = ", ".join(f"pid {end.pid} {end.comm} (holds the {side} end, fd {end.fd})" for end in ends)
        return pids, words
    queue = queues.get(wait.key)
    if queue is not None:
        wanted = "w" if wait.kind == "receive" else "r"
        holders = [holder for holder in queue.holders if wanted in holder.access and holder.fd is not None]
        if not holders:
            return (), f"nobody: no process has it open for {'sending' if wanted == 'w' else 'receiving'}"
        pids = tuple(sorted({holder.pid for holder in holders}))
        return pids, ", ".join(f"pid {holder.pid} {holder.comm} (fd {holder.fd})" for holder in holders)
    return (), "unknown"


_BLOCKING_KINDS = frozenset({"write", "send", "open"})
"""Waits that mean the other side is not keeping up (or not there): a full pipe or queue, a FIFO never opened."""


def analyse(
    processes: Iterable[Process], pipes: Iterable[Pipe], queues: Iterable[MessageQueue]
) -> tuple[tuple[Stuck, ...], tuple[Deadlock, ...]]:
    """Every process blocked on IPC with who could release it (most serious first), and the deadlocks among them.

    A deadlock is a group of processes each blocked on a pipe or queue that only members of the group could
    release: start from every waiter with known releasers, then repeatedly drop any whose releasers include a
    process that is not stuck; what remains cannot make progress on its own. A process blocked reading a pipe
    whose only writer is itself is a group of one.
    """
    pipe_by_key = {pipe.object_key: pipe for pipe in pipes}
    queue_by_key = {queue.object_key: queue for queue in queues}
    waiters = [process for process in processes if process.waiting is not None]
    released: dict[int, tuple[tuple[int, ...], str]] = {}
    for process in waiters:
        assert process.waiting is not None
        released[process.pid] = _release(process.waiting, process.pid, pipe_by_key, queue_by_key)
    groups = _deadlock_groups({pid: set(pids) for pid, (pids, _) in released.items() if pids})
    in_group = {pid for group in groups for pid in group}
    by_pid = {process.pid: process for process in waiters}
    deadlocks = tuple(
        Deadlock(tuple(
            DeadlockMember(pid, by_pid[pid].comm, waiting_text(by_pid[pid]),
                           tuple(sorted(set(released[pid][0]) & set(group))))
            for pid in group
        ))
        for group in groups
    )
    stuck = []
    for process in waiters:
        wait = process.waiting
        assert wait is not None
        pids, words = released[process.pid]
        if process.pid in in_group:
            state: StuckState = "deadlocked"
        elif wait.kind in _BLOCKING_KINDS or (wait.key is not None and not pids and wait.kind != "signal"):
            state = "blocked"
        else:
            state = "waiting"
        stuck.append(Stuck(process.pid, process.comm, wait, state, pids, words))
    order = {"deadlocked": 0, "blocked": 1, "waiting": 2}
    stuck.sort(key=lambda entry: (order[entry.state], entry.pid))
    return tuple(stuck), deadlocks


def _deadlock_groups(releasers: dict[int, set[int]]) -> list[tuple[int, ...]]:
    """The groups of pids whose releasers are all inside the group, connected through releasers."""
    stuck = set(releasers)
    changed = True
    while changed:
        changed = False
        for pid in list(stuck):
            if not releasers[pid] <= stuck:
                stuck.discard(pid)
                changed = True
    groups: list[tuple[int, ...]] = []
    seen: set[int] = set()
    for pid in sorted(stuck):
        if pid in seen:
            continue
        group: set[int] = set()
        frontier = [pid]
        while frontier:
            current = frontier.pop()
            if current in group:
                continue
            group.add(current)
            frontier.extend(releasers[current] & stuck)
            frontier.extend(other for other in stuck if current in releasers[other])
        seen |= group
        groups.append(tuple(sorted(group)))
    return groups
