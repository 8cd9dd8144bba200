"""The process behind an act (issue 16): an Actor read from /proc as soon as the act is seen, and a signal's origin.

A short-lived creator is the common leak case: it may have exited before its act is read, and then only what the
kernel source recorded (the pid, the trace's comm) is known; the other fields are None. Actors are cached for a
second per pid, so that a storm of acts by one process reads /proc once, not ten thousand times; a pid reused within
that second would be misnamed (the start time is read once, when first seen).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable

from ipcmon.collect import procfs
from ipcmon.model import Actor

CACHE_SECONDS = 1.0
UNKNOWN_COMM = "<...>"
"""What ftrace prints for a task whose command name fell out of its saved_cmdlines (a busy machine): no name."""
CACHE_MAX = 4096
"""At most this many pids are remembered; beyond, the cache is emptied (and refilled as acts come)."""


def read_actor(pid: int, comm: str | None = None, proc: str = procfs.PROC) -> Actor:
    """pid's comm, cmdline, uid and start time from /proc; comm (the kernel source's) is kept over /proc's when
    given (unless it is the trace's UNKNOWN_COMM). A field that cannot be read (exited, not permitted) is None; never
    raises for a vanished process."""
    if comm == UNKNOWN_COMM:
        comm = None
    start_ticks: int | None = None
    cmdline: tuple[str, ...] | None = None
    uid: int | None = None
    try:
        stat = procfs.parse_stat(procfs.read_bytes(f"{proc}/{pid}/stat", single=True))
        start_ticks = stat.start_ticks
        comm = comm if comm is not None else stat.comm
    except (procfs.Gone, procfs.Denied, OSError, ValueError, IndexError):
        return Actor(pid, comm)
    try:
        cmdline = procfs.parse_cmdline(procfs.read_bytes(f"{proc}/{pid}/cmdline"))
    except (procfs.Gone, procfs.Denied, OSError):
        pass
    try:
        status = procfs.parse_status(procfs.read_bytes(f"{proc}/{pid}/status", single=True))
        uid = int(status[b"Uid"].split()[0])
    except (procfs.Gone, procfs.Denied, OSError, KeyError, ValueError, IndexError):
        pass
    return Actor(pid, comm, cmdline, uid, start_ticks)


class ActorCache:
    """Actors by pid, each read once per CACHE_SECONDS (clock: a monotonic time source, in seconds)."""

    def __init__(self, clock: Callable[[], float], proc: str = procfs.PROC) -> None:
        self._clock = clock
        self._proc = proc
        self._cache: dict[int, tuple[float, Actor]] = {}

    def get(self, pid: int, comm: str | None = None, *, fallback: str | None = None, kernel: bool = False) -> Actor:
        """pid's Actor (see read_actor), named comm when given, else /proc's name, else fallback when /proc could not
        be read (the process is gone). Neither name counts when it is UNKNOWN_COMM."""
        if comm == UNKNOWN_COMM:
            comm = None  # the trace did not know it: /proc's, or none
        now = self._clock()
        cached = self._cache.get(pid)
        if cached is None or cached[0] < now:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            cached = (now + CACHE_SECONDS, read_actor(pid, None, self._proc))
            self._cache[pid] = cached
        actor = cached[1]
        if comm is None and actor.start_ticks is None and fallback != UNKNOWN_COMM:
            comm = fallback
        if (comm is not None and comm != actor.comm) or kernel:
            actor = dataclasses.replace(actor, comm=comm if comm is not None else actor.comm, kernel=kernel)
        return actor


# siginfo si_code values (include/uapi/asm-generic/siginfo.h): 0 and below are how a signal was sent, positive ones
# are per-signal reasons the kernel gives.
SI_USER, SI_KERNEL, SI_QUEUE, SI_TIMER, SI_MESGQ = 0, 0x80, -1, -2, -3
SI_ASYNCIO, SI_SIGIO, SI_TKILL, SI_DETHREAD, SI_ASYNCNL = -4, -5, -6, -7, -60

USER_CODES = frozenset({SI_USER, SI_QUEUE, SI_TKILL})
"""kill(2), sigqueue(3), tkill/tgkill(2): a process chose to send it."""

_KERNEL_CODES = {
    SI_TIMER: "a POSIX timer expired",
    SI_MESGQ: "a message arrived on an empty queue (mq_notify)",
    SI_ASYNCIO: "asynchronous I/O completed",
    SI_SIGIO: "I/O is possible",
    SI_DETHREAD: "another thread called exec",
    SI_ASYNCNL: "an asynchronous name lookup completed",
}

_REASONS: dict[int, dict[int, str]] = {
    signal.SIGCHLD: {1: "child exited", 2: "child killed", 3: "child dumped core", 4: "traced child trapped",
                     5: "child stopped", 6: "stopped child continued"},
    signal.SIGSEGV: {1: "address not mapped", 2: "no permission for the mapped address", 3: "bounds check failed",
                     4: "protection key check failed"},
    signal.SIGBUS: {1: "misaligned address", 2: "address does not exist", 3: "hardware error",
                    4: "hardware memory error", 5: "hardware memory error"},
    signal.SIGFPE: {1: "integer divide by zero", 2: "integer overflow", 3: "floating-point divide by zero",
                    4: "floating-point overflow", 5: "floating-point underflow", 6: "inexact floating-point result",
                    7: "invalid floating-point operation", 8: "subscript out of range"},
    signal.SIGILL: {1: "illegal opcode", 2: "illegal operand", 3: "illegal addressing mode", 4: "illegal trap",
                    5: "privileged opcode", 6: "privileged register", 7: "coprocessor error",
                    8: "internal stack error"},
    signal.SIGTRAP: {1: "breakpoint", 2: "trace trap", 3: "branch trap", 4: "hardware breakpoint"},
    signal.SIGIO: {1: "input available", 2: "output possible", 3: "message input", 4: "I/O error",
                   5: "high priority input", 6: "device disconnected"},
    signal.SIGSYS: {1: "a seccomp filter refused a system call"},
}

_SELF_SENT: dict[int, str] = {
    signal.SIGPIPE: "write to a pipe or socket with no reader",
    signal.SIGXFSZ: "file size limit exceeded",
}
"""Signals the kernel raises on the task at fault with send_sig(…, 0), which records them as SI_USER from the task
itself (kernel/signal.c): a process that kill()s itself with one of these is taken for the kernel too."""

_KERNEL_PRIVATE: dict[int, str] = {
    signal.SIGALRM: "a timer expired (alarm, setitimer)",
    signal.SIGXCPU: "CPU time limit exceeded",
    signal.SIGKILL: "killed by the kernel (out of memory, or a fatal fault)",
    signal.SIGHUP: "the terminal hung up",
    signal.SIGWINCH: "the terminal was resized",
}


def signal_origin(sig: int, code: int, self_sent: bool) -> tuple[bool, str | None]:
    """(sent by the kernel, the cause in words or None) from signal_generate's sig and code (siginfo si_code).

    SI_USER, SI_QUEUE and SI_TKILL are a process's choice (kill, sigqueue, tgkill), except SIGPIPE and SIGXFSZ a
    task sends itself (the kernel's send_sig); SI_KERNEL, the other negative codes and every positive code (CLD_*,
    SEGV_*, BUS_*…) are the kernel's, with the cause the code names."""
    if code in USER_CODES:
        if self_sent and code == SI_USER and sig in _SELF_SENT:
            return True, _SELF_SENT[sig]
        return False, None
    if code == SI_KERNEL:
        return True, _KERNEL_PRIVATE.get(sig)
    if code < 0:
        return True, _KERNEL_CODES.get(code)
    return True, _REASONS.get(sig, {}).get(code)


def target_masks(tid: int, sig: int, *, group: bool = False, proc: str = procfs.PROC
                 ) -> tuple[int | None, bool | None, bool | None]:
    """(its process id, it blocks sig, it ignores sig) for the task a signal went to, read from /proc/TID/status
    (SigIgn is the process's; SigBlk each thread's own); (None, None, None) when it is gone or cannot be read.

    group: the signal was sent to the whole process (signal_generate's ``grp``), which any thread that does not block
    it takes: it is blocked only when every thread blocks it."""
    try:
        status = procfs.parse_status(procfs.read_bytes(f"{proc}/{tid}/status", single=True))
        tgid = int(status[b"Tgid"])
        blocked = int(status[b"SigBlk"], 16)
        ignored = int(status[b"SigIgn"], 16)
        threads = int(status.get(b"Threads", b"1"))
    except (procfs.Gone, procfs.Denied, OSError, KeyError, ValueError):
        return None, None, None
    bit = 1 << (sig - 1) if sig > 0 else 0
    if group and threads > 1 and blocked & bit:
        blocked = _blocked_by_every_thread(tgid, bit, proc)
    return tgid, bool(blocked & bit), bool(ignored & bit)


def _blocked_by_every_thread(tgid: int, bit: int, proc: str) -> int:
    """bit when every thread of tgid blocks it (a thread that exits mid-read is left out), else 0."""
    try:
        tids = os.listdir(f"{proc}/{tgid}/task")
    except OSError:
        return bit
    for tid in tids:
        try:
            status = procfs.parse_status(procfs.read_bytes(f"{proc}/{tgid}/task/{tid}/status", single=True))
            if not int(status[b"SigBlk"], 16) & bit:
                return 0
        except (procfs.Gone, procfs.Denied, OSError, KeyError, ValueError):
            continue
    return bit
