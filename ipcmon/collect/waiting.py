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
from ipcmon.model import MessageQueue, Pipe, Process, Waiting, file_key, pipe_ref

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
        return Waiting(syscall=syscall, fd=None, wchan=raw.wchan, object="signal", key=None)
    if syscall in _FD_READS | _FD_WRITES | {"mq_timedsend", "mq_timedreceive", "splice", "tee"}:
        fd = raw.args[0] if raw.args else -1
        if syscall in ("splice", "tee") and raw.wchan.startswith("pipe_wait_writable"):
            fd = raw.args[2] if len(raw.args) > 2 else fd
        ref = fd_index.get((pid, fd))
        if ref is None:
            return None
        if ref.kind == "pipe" or ref.kind == "fifo":
            return Waiting(syscall, fd, raw.wchan, pipe_ref(ref.kind, ref.inode, ref.path),
                           file_key(ref.kind, ref.dev, ref.inode))
        if ref.kind == "mqueue":
            return Waiting(syscall, fd, raw.wchan, f"mqueue:{ref.path}", file_key("mqueue", ref.dev, ref.inode))
        return None
    if syscall in ("msgsnd", "msgrcv") and raw.args:
        msqid = raw.args[0]
        return Waiting(syscall, None, raw.wchan, f"sysv-msg:{msqid}", f"sysv-msg:{msqid}")
    if syscall in ("semop", "semtimedop") and raw.args:
        semid = raw.args[0]
        return Waiting(syscall, None, raw.wchan, f"sysv-sem:{semid}", f"sysv-sem:{semid}")
    if raw.wchan in ("fifo_open", "wait_for_partner"):
        return Waiting(syscall, None, raw.wchan, "fifo (waiting for the other end to open)", None)
    return None


def _release_pids(wait: Waiting, pid: int, pipes: Mapping[str, Pipe], queues: Mapping[str, MessageQueue]) -> set[int]:
    """Processes that could release a waiter: the other end of its pipe, the other openers of its queue."""
    if wait.key is None:
        return set()
    pipe = pipes.get(wait.key)
    if pipe is not None:
        reading = wait.syscall in _FD_READS
        ends = pipe.writers if reading else pipe.readers
        return {end.pid for end in ends}
    queue = queues.get(wait.key)
    if queue is not None:
        wanted = "w" if wait.syscall == "mq_timedreceive" else "r"
        return {holder.pid for holder in queue.holders if wanted in holder.access}
    return set()


def find_deadlocks(
    processes: Iterable[Process], pipes: Iterable[Pipe], queues: Iterable[MessageQueue]
) -> tuple[tuple[int, ...], ...]:
    """Groups of processes each blocked on a pipe or queue that only other members of the group can release.

    Start from every waiter on a pipe or queue, then repeatedly drop any whose releasers include a
    process that is not stuck; what remains cannot make progress on its own. A process blocked
    writing to a full pipe it alone reads is a group of one.
    """
    pipe_by_key = {pipe.object_key: pipe for pipe in pipes}
    queue_by_key = {queue.object_key: queue for queue in queues}
    releasers: dict[int, set[int]] = {}
    for process in processes:
        wait = process.waiting
        if wait is None or wait.key is None:
            continue
        found = _release_pids(wait, process.pid, pipe_by_key, queue_by_key)
        if found:
            releasers[process.pid] = found
    stuck = set(releasers)
    changed = True
    while changed:
        changed = False
        for pid in list(stuck):
            if not releasers[pid] <= stuck:
                stuck.discard(pid)
                changed = True
    # Split what remains into groups that wait on each other (connected through releasers).
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
    return tuple(groups)
