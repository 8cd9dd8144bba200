"""Who waits on what: the system call a process sleeps in, mapped to the IPC object and the other side.

/proc/PID/syscall gives the call and its six argument registers, /proc/PID/wchan the kernel function the task
sleeps in. That is enough for a read or write on a pipe, FIFO or queue (the descriptor is an argument). For the
rest the arguments point into the process's memory (procmem, where permitted): the descriptor set of poll,
ppoll, select and pselect6, the path of an open() that waits for a FIFO's other end, the signal set of
rt_sigtimedwait. An epoll's targets are its /proc/PID/fdinfo ``tfd:`` lines (as lsfd reads them), the signals
that end pause or sigsuspend the masks of /proc/PID/status, and a wait4 or waitid names children, found among
the scan's processes. Only processes sleeping in one of these calls pay for more than the first two reads.

``analyse`` then says who could release each waiter, how serious its wait is, and which groups of waiters are
deadlocked (see its docstring for the rules).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import struct
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

from ipcmon import health
from ipcmon.collect import procfs
from ipcmon.collect.fds import FdRef
from ipcmon.collect.procmem import Memory
from ipcmon.collect.signals import decode_mask
from ipcmon.model import (
    Deadlock,
    DeadlockMember,
    Keyed,
    MessageQueue,
    Pipe,
    Place,
    Process,
    Stuck,
    StuckState,
    Waiting,
    WaitKind,
    Watched,
    file_key,
    pipe_ref,
    sysv_object_key,
)
from ipcmon.safe import counted
from ipcmon.text import waiting_text

# Only the calls that block on IPC matter; numbers differ per architecture (arch/*/syscall*.tbl).
_SYSCALLS: dict[str, dict[int, str]] = {
    "x86_64": {
        0: "read", 1: "write", 2: "open", 7: "poll", 19: "readv", 20: "writev", 23: "select",
        34: "pause", 35: "nanosleep", 61: "wait4", 65: "semop", 69: "msgsnd", 70: "msgrcv", 85: "creat",
        128: "rt_sigtimedwait", 130: "rt_sigsuspend", 202: "futex", 220: "semtimedop",
        230: "clock_nanosleep", 232: "epoll_wait", 242: "mq_timedsend", 243: "mq_timedreceive",
        247: "waitid", 257: "openat", 270: "pselect6", 271: "ppoll", 275: "splice", 276: "tee",
        278: "vmsplice", 281: "epoll_pwait", 295: "preadv", 296: "pwritev", 327: "preadv2",
        328: "pwritev2", 437: "openat2", 441: "epoll_pwait2",
    },
    "aarch64": {
        22: "epoll_pwait", 56: "openat", 63: "read", 64: "write", 65: "readv", 66: "writev",
        72: "pselect6", 73: "ppoll", 75: "vmsplice", 76: "splice", 77: "tee", 95: "waitid",
        98: "futex", 101: "nanosleep", 115: "clock_nanosleep", 133: "rt_sigsuspend",
        137: "rt_sigtimedwait", 182: "mq_timedsend", 183: "mq_timedreceive", 188: "msgrcv",
        189: "msgsnd", 192: "semtimedop", 193: "semop", 260: "wait4", 437: "openat2", 441: "epoll_pwait2",
    },
}
SYSCALL_NAMES = _SYSCALLS.get(os.uname().machine, {})

_FD_READS = frozenset({"read", "readv", "preadv", "preadv2"})
_FD_WRITES = frozenset({"write", "writev", "pwritev", "pwritev2", "vmsplice"})
_SIGNAL_WAITS = frozenset({"pause", "rt_sigsuspend", "rt_sigtimedwait"})
_ON_A_DESCRIPTOR = _FD_READS | _FD_WRITES | {"mq_timedsend", "mq_timedreceive", "splice", "tee"}
_POLL_WAITS = frozenset({"poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait", "epoll_pwait2"})
_OPENS = frozenset({"open", "openat", "openat2", "creat"})
_CHILD_WAITS = frozenset({"wait4", "waitid"})
_FIFO_WCHANS = frozenset({"fifo_open", "wait_for_partner"})
"""Where open(2) of a FIFO sleeps until the other end is opened (fs/pipe.c)."""
_OPEN_FIFO_WCHANS = _FIFO_WCHANS | {"pipe_wait"}
"""The same for an open call: on older kernels wait_for_partner slept in pipe_wait, as reads and writes did."""

MAX_POLLED = 4096
"""A poll set or select's nfds larger than this is not read (unknown): a scan reads at most 32 KiB of it."""

# poll(2) and epoll(7) event bits that mean "readable" and "writable" (the same values for both).
_READ_EVENTS = 0x1 | 0x2 | 0x40 | 0x80  # POLLIN POLLPRI POLLRDNORM POLLRDBAND
_WRITE_EVENTS = 0x4 | 0x100 | 0x200  # POLLOUT POLLWRNORM POLLWRBAND
_AT_FDCWD = -100
_P_ALL, _P_PID, _P_PGID, _P_PIDFD = 0, 1, 2, 3

_IPC_FD_KINDS = frozenset({"pipe", "fifo", "mqueue"})


class Polled(NamedTuple):
    """One descriptor of a poll set, as read from the caller's memory or its epoll's fdinfo."""

    fd: int
    read: bool
    write: bool
    inode: int = -1
    """The target's inode as an epoll's ``tfd:`` line gives it (-1 when not given)."""


class FifoOpen(NamedTuple):
    """What an open(2) blocked on a FIFO names: its path and the FIFO's identity, each None when unknown."""

    path: str | None
    dev: int | None
    inode: int | None
    flags: int | None


class Kin(NamedTuple):
    """Where a process stands among the others, from /proc/PID/stat (read every scan, so never stale)."""

    pgrp: int
    session: int
    threads: int


@dataclass(frozen=True, slots=True)
class RawWait:
    """What /proc says a sleeping process is doing, before fds are resolved."""

    syscall: str
    args: tuple[int, ...]
    wchan: str
    cpu: int = -1
    """The CPU it last ran on (field 39 of /proc/PID/stat), for when it last ran (schedclock)."""
    polled: tuple[Polled, ...] | None = None
    """Poll family: every descriptor of the watched set; None when it could not be read."""
    fifo: FifoOpen | None = None
    """open() sleeping in fifo_open: what it opens."""
    signals: int | None = None
    """Signal waits: the signals that end the wait, bit N-1 for signal N; None when unknown."""
    pidfd_pid: int | None = None
    """waitid(P_PIDFD): the pid the pidfd refers to."""


# Calls whose object can only be told from the kernel function the task sleeps in.
_NEEDS_WCHAN = _OPENS | {"splice", "tee"}


def _int(arg: int) -> int:
    """A register holding a C int, as the kernel reads it: the low 32 bits, signed."""
    arg &= 0xFFFFFFFF
    return arg - (1 << 32) if arg & 0x80000000 else arg


def read_wchan(pid: int, proc: str = procfs.PROC) -> str:
    """The kernel function a task sleeps in; empty when unknown (the kernel prints 0 when it won't say)."""
    try:
        wchan = procfs.read_bytes(f"{proc}/{pid}/wchan", single=True).decode(errors="replace").strip()
    except (procfs.Gone, procfs.Denied):
        return ""
    return "" if wchan == "0" else wchan


def read_raw(
    pid: int, proc: str = procfs.PROC, *, fds: Sequence[FdRef] = (), cpu: int = -1
) -> RawWait | None:
    """The system call a sleeping process is in, or None when running, not in a call, or unreadable.

    wchan is read here only for the calls that need it to be resolved; for the others the scan reads it
    once the wait turned out to be on an IPC object (most sleeping processes are in poll or futex). What a
    call's arguments point at is read here too, right after the call (so that the process is most likely
    still in it), and only when it can matter: a poll set only of a process that holds a pipe, FIFO or queue
    descriptor (fds, its IPC descriptors); an open's path only when it sleeps in fifo_open.
    """
    try:
        line = procfs.read_bytes(f"{proc}/{pid}/syscall", single=True)
    except (procfs.Gone, procfs.Denied):
        return None
    fields = line.split()
    if not fields or not fields[0].lstrip(b"-").isdigit() or int(fields[0]) < 0:
        return None  # "running", or "-1 sp pc" (blocked outside a system call)
    number = int(fields[0])
    name = SYSCALL_NAMES.get(number, f"nr={number}")
    args = tuple(int(arg, 16) for arg in fields[1:7])
    wchan = read_wchan(pid, proc) if name in _NEEDS_WCHAN else ""
    if len(args) < 6:
        return RawWait(name, args, wchan, cpu)
    if name in _POLL_WAITS:
        if not any(ref.kind in _IPC_FD_KINDS for ref in fds):
            return RawWait(name, args, wchan, cpu)
        with Memory(pid, proc) as memory:
            found = RawWait(name, args, wchan, cpu, polled=_read_polled(pid, name, args, memory, proc))
    elif name in _OPENS and wchan in _OPEN_FIFO_WCHANS:
        with Memory(pid, proc) as memory:
            found = RawWait(name, args, wchan, cpu, fifo=_read_fifo(pid, name, args, memory, proc))
    elif name in _SIGNAL_WAITS:
        found = RawWait(name, args, wchan, cpu, signals=_read_signals(pid, name, args, proc))
    elif name == "waitid" and _int(args[0]) == _P_PIDFD:
        found = RawWait(name, args, wchan, cpu, pidfd_pid=_pidfd_pid(pid, _int(args[1]), proc))
    else:
        return RawWait(name, args, wchan, cpu)
    # What was read after the call must belong to it: a process that left the call (or entered another)
    # meanwhile may have reused the memory. The line holds the stack and instruction pointers too.
    try:
        if procfs.read_bytes(f"{proc}/{pid}/syscall", single=True) != line:
            return None
    except (procfs.Gone, procfs.Denied):
        return None
    return found


# --- what the arguments point at --------------------------------------------------------------------------

_POLLFD = struct.Struct("ihh")  # struct pollfd: int fd; short events; short revents
_LONG = struct.calcsize("l")


def _read_polled(pid: int, name: str, args: tuple[int, ...], memory: Memory, proc: str
                 ) -> tuple[Polled, ...] | None:
    """The watched set of a poll-family call; None when it cannot be read (or is larger than MAX_POLLED)."""
    if name in ("poll", "ppoll"):
        count = args[1] & 0xFFFFFFFF
        if count > MAX_POLLED:
            return None
        if count == 0:
            return ()
        data = memory.read(args[0], _POLLFD.size * count)
        if data is None:
            return None
        return tuple(Polled(fd, bool(events & _READ_EVENTS), bool(events & _WRITE_EVENTS))
                     for fd, events, _ in _POLLFD.iter_unpack(data) if fd >= 0)
    if name in ("select", "pselect6"):
        count = _int(args[0])
        if count > MAX_POLLED or count < 0:
            return None
        size = (count + 8 * _LONG - 1) // (8 * _LONG) * _LONG  # the kernel reads whole longs
        sets = []
        for address in args[1:4]:
            if address == 0 or size == 0:
                sets.append(0)
                continue
            data = memory.read(address, size)
            if data is None:
                return None
            sets.append(_bits(data))
        readable, writable, exceptional = sets
        return tuple(Polled(fd, bool(readable >> fd & 1), bool(writable >> fd & 1))
                     for fd in range(count) if (readable | writable | exceptional) >> fd & 1)
    return _epoll_targets(pid, _int(args[0]), proc)


def _bits(data: bytes) -> int:
    """An fd_set as one integer, bit N for descriptor N (an array of longs in the machine's byte order)."""
    if sys.byteorder == "little":
        return int.from_bytes(data, "little")
    value = 0
    for start in range(0, len(data), _LONG):
        value |= int.from_bytes(data[start:start + _LONG], "big") << (8 * start)
    return value


_TFD = re.compile(rb"^tfd:\s*(\d+)\s+events:\s*([0-9a-fA-F]+)\b.*?\bino:\s*([0-9a-fA-F]+)", re.MULTILINE)


def _epoll_targets(pid: int, epfd: int, proc: str) -> tuple[Polled, ...] | None:
    """An epoll's targets from its fdinfo ``tfd:`` lines (fs/eventpoll.c ep_show_fdinfo): descriptor, event
    mask, inode; None when unreadable."""
    if epfd < 0:
        return None
    try:
        data = procfs.read_bytes(f"{proc}/{pid}/fdinfo/{epfd}", single=True)
    except (procfs.Gone, procfs.Denied, OSError):
        return None
    found = []
    for fd, events, inode in _TFD.findall(data):
        mask = int(events, 16)
        found.append(Polled(int(fd), bool(mask & _READ_EVENTS), bool(mask & _WRITE_EVENTS), int(inode, 16)))
        if len(found) > MAX_POLLED:
            return None
    return tuple(found)


def _read_fifo(pid: int, name: str, args: tuple[int, ...], memory: Memory, proc: str) -> FifoOpen:
    """The path, identity and open flags of an open() waiting for a FIFO's other end, each None if unknown.

    The path is read from the caller's memory and resolved as the kernel did: relative to its working
    directory (AT_FDCWD) or to the directory descriptor given to openat, and in its own root (a container's
    FIFO is looked up through /proc/PID/root). stat(2) on the path identifies the FIFO without opening it
    (opening would be the very partner the process waits for).
    """
    dirfd = _AT_FDCWD
    flags: int | None
    if name == "open":
        address, flags = args[0], _int(args[1])
    elif name == "creat":
        address, flags = args[0], os.O_WRONLY
    else:
        dirfd, address = _int(args[0]), args[1]
        if name == "openat":
            flags = _int(args[2])
        else:  # openat2: flags are the first field (u64) of struct open_how
            how = memory.read(args[2], 8)
            flags = int.from_bytes(how, sys.byteorder) & 0xFFFFFFFF if how is not None else None
    raw_path = memory.read_string(address)
    if raw_path is None or not raw_path:
        return FifoOpen(None, None, None, flags)
    relative = os.fsdecode(raw_path)
    if raw_path.startswith(b"/"):
        path: str | None = relative
        lookup = f"{proc}/{pid}/root{relative}"
    else:
        base = f"{proc}/{pid}/cwd" if dirfd == _AT_FDCWD else f"{proc}/{pid}/fd/{dirfd}"
        lookup = f"{base}/{relative}"
        try:
            path = os.path.join(os.readlink(base), relative)
        except OSError:
            path = None
    try:
        st = os.stat(lookup)
    except OSError:
        return FifoOpen(path, None, None, flags)
    if not stat.S_ISFIFO(st.st_mode):
        return FifoOpen(path, None, None, flags)
    return FifoOpen(path, st.st_dev, st.st_ino, flags)


_DEFAULT_IGNORED = (signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH)
_STOPPING = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
_ALL_SIGNALS = (1 << 64) - 1
_ENDS_BY_DEFAULT = _ALL_SIGNALS & ~sum(1 << (number - 1) for number in (*_DEFAULT_IGNORED, *_STOPPING))
"""Signals whose default action ends the process (terminate, or core dump): any of them ends a wait in it."""
_KILL_STOP = (1 << (signal.SIGKILL - 1)) | (1 << (signal.SIGSTOP - 1))


def _read_signals(pid: int, name: str, args: tuple[int, ...], proc: str) -> int | None:
    """The signals that would end a signal wait, as a mask; None when unknown.

    rt_sigtimedwait: the set it was given (arg 0, read from its memory; SIGKILL and SIGSTOP cannot be
    waited for). pause and rt_sigsuspend: every signal not blocked (for sigsuspend, SigBlk is the temporary
    mask while it sleeps) that it catches, or that it does not ignore and whose default action ends the
    process. Stop signals do not end these calls (after SIGCONT the call goes on, signal(7)), so they are
    left out. Only the thread that /proc/PID/status describes (the main one) is considered.
    """
    if name == "rt_sigtimedwait":
        size = min(args[3], 8)
        if size <= 0:
            return None
        with Memory(pid, proc) as memory:
            data = memory.read(args[0], size)
        return None if data is None else int.from_bytes(data, sys.byteorder) & ~_KILL_STOP
    try:
        status = procfs.parse_status(procfs.read_bytes(f"{proc}/{pid}/status", single=True))
        blocked, ignored, caught = (int(status[key], 16) for key in (b"SigBlk", b"SigIgn", b"SigCgt"))
    except (procfs.Gone, procfs.Denied, OSError, KeyError, ValueError):
        return None
    ending = ~blocked & (caught | (_ENDS_BY_DEFAULT & ~ignored))
    return (ending | 1 << (signal.SIGKILL - 1)) & _ALL_SIGNALS


def _pidfd_pid(pid: int, fd: int, proc: str) -> int | None:
    """The process a pidfd refers to (the ``Pid:`` line of its fdinfo); None when unknown or gone (-1)."""
    try:
        data = procfs.read_bytes(f"{proc}/{pid}/fdinfo/{fd}", single=True)
    except (procfs.Gone, procfs.Denied, OSError):
        return None
    for line in data.splitlines():
        if line.startswith(b"Pid:"):
            try:
                target = int(line[4:])
            except ValueError:
                return None
            return target if target > 0 else None
    return None


# --- resolving: which object, which other side ------------------------------------------------------------

def _timed(syscall: str, args: tuple[int, ...]) -> bool:
    """Whether the call was given a timeout (so returns by itself): from the argument registers alone."""
    if len(args) < 6:
        return False
    if syscall == "poll":
        return _int(args[2]) >= 0
    if syscall in ("epoll_wait", "epoll_pwait"):
        return _int(args[3]) >= 0
    if syscall in ("ppoll", "rt_sigtimedwait"):
        return args[2] != 0
    if syscall in ("select", "pselect6", "mq_timedsend", "mq_timedreceive"):
        return args[4] != 0
    if syscall in ("epoll_pwait2", "semtimedop"):
        return args[3] != 0
    return False


def resolve(
    raw: RawWait,
    pid: int,
    fd_index: Mapping[tuple[int, int], FdRef],
    processes: Mapping[int, Process] | None = None,
    kin: Mapping[int, Kin] | None = None,
    children_of: Mapping[int, Sequence[int]] | None = None,
) -> Waiting | None:
    """Name the IPC object a raw wait is on; None when the call is not an IPC wait.

    processes, kin and children_of (pid → its children's pids) are the scan's, for wait4 and waitid.
    """
    syscall = raw.syscall
    timed = _timed(syscall, raw.args)
    if syscall in _SIGNAL_WAITS:
        names = decode_mask(f"{raw.signals:x}".encode()) if raw.signals is not None else ()
        return Waiting(syscall, None, raw.wchan, "signal", None, "signal", signals=names, timed=timed)
    if syscall in _ON_A_DESCRIPTOR:
        fd = _int(raw.args[0]) if raw.args else -1
        if syscall in ("splice", "tee") and raw.wchan.startswith("pipe_wait_writable"):
            fd = _int(raw.args[2]) if len(raw.args) > 2 else fd
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
            return Waiting(syscall, fd, raw.wchan, f"mqueue:{ref.path}", file_key("mqueue", ref.dev, ref.inode), kind,
                           timed=timed)
        return None
    if syscall in ("msgsnd", "msgrcv") and raw.args:
        msqid = raw.args[0]
        return Waiting(syscall, None, raw.wchan, f"sysv-msg:{msqid}",
                       sysv_object_key("sysv-msg", msqid, _ipc_place(pid, processes)), "sysv")
    if syscall in ("semop", "semtimedop") and raw.args:
        semid = raw.args[0]
        return Waiting(syscall, None, raw.wchan, f"sysv-sem:{semid}",
                       sysv_object_key("sysv-sem", semid, _ipc_place(pid, processes)), "sysv", timed=timed)
    if raw.wchan in _FIFO_WCHANS or (syscall in _OPENS and raw.wchan in _OPEN_FIFO_WCHANS):
        return _fifo_wait(raw)
    if syscall in _POLL_WAITS:
        return _poll_wait(raw, pid, fd_index, timed)
    if syscall in _CHILD_WAITS and processes is not None:
        return _child_wait(raw, pid, processes, kin or {}, children_of)
    return None


def _ipc_place(pid: int, processes: Mapping[int, Process] | None) -> Place | None:
    """The IPC namespace a process waits in, for the key of the SysV object it waits on (ids are per namespace:
    the same msqid in two containers is two queues); None when unknown, or ipcmon's own."""
    process = processes.get(pid) if processes is not None else None
    place = process.place if process is not None else None  # the scan's pre-pass read it (collect/namespaces.py)
    if place is None or place.host or place.ipc is None:
        return None
    return Place(ipc=place.ipc, mnt=None)


def _fifo_wait(raw: RawWait) -> Waiting:
    fifo = raw.fifo
    flags = fifo.flags if fifo is not None else None
    missing: Literal["reader", "writer"] | None = None
    if flags is not None:
        access = flags & os.O_ACCMODE
        missing = "writer" if access == os.O_RDONLY else "reader" if access == os.O_WRONLY else None
    path = fifo.path if fifo is not None else None
    key = (file_key("fifo", fifo.dev, fifo.inode)
           if fifo is not None and fifo.dev is not None and fifo.inode is not None else None)
    return Waiting(raw.syscall, None, raw.wchan, f"fifo:{path}" if path is not None else "fifo (path unknown)",
                   key, "open", path=path, missing=missing)


def _poll_wait(raw: RawWait, pid: int, fd_index: Mapping[tuple[int, int], FdRef], timed: bool) -> Waiting | None:
    """A poll-family wait over a set with IPC descriptors in it; None when it has none or is unknown."""
    if raw.polled is None:
        return None
    merged: dict[int, tuple[FdRef, bool, bool]] = {}
    others = 0
    for entry in raw.polled:
        ref = fd_index.get((pid, entry.fd))
        if ref is None or ref.kind not in _IPC_FD_KINDS or (entry.inode >= 0 and entry.inode != ref.inode):
            others += 1
            continue
        previous = merged.get(entry.fd)
        read, write = entry.read, entry.write
        if previous is not None:
            read, write = read or previous[1], write or previous[2]
        merged[entry.fd] = (ref, read, write)
    if not merged:
        return None
    watched = []
    for fd, (ref, read, write) in sorted(merged.items()):
        # An end can only become readable if it was opened for reading (pipe_poll, mqueue_poll_file).
        read, write = read and "r" in ref.access, write and "w" in ref.access
        if not (read or write):  # waits only for a hang-up or an error, which the other side causes
            read, write = "r" in ref.access, "w" in ref.access and "r" not in ref.access
        events = ",".join(word for word, wanted in (("read", read), ("write", write)) if wanted)
        if ref.kind == "pipe" or ref.kind == "fifo":
            obj, key = pipe_ref(ref.kind, ref.inode, ref.path), file_key(ref.kind, ref.dev, ref.inode)
        else:
            obj, key = f"mqueue:{ref.path}", file_key("mqueue", ref.dev, ref.inode)
        watched.append(Watched(fd, obj, key, events))
    epfd = _int(raw.args[0]) if raw.syscall.startswith("epoll") else None
    first = watched[0]
    return Waiting(raw.syscall, epfd, raw.wchan, first.object, first.key, "poll", watched=tuple(watched),
                   timed=timed, other_watched=others)


def _child_wait(raw: RawWait, pid: int, processes: Mapping[int, Process], kin: Mapping[int, Kin],
                children_of: Mapping[int, Sequence[int]] | None) -> Waiting:
    """wait4 or waitid: the children it waits for, found by parent pid (and process group) in the scan."""
    args = raw.args
    mine = children_of.get(pid, ()) if children_of is not None else tuple(
        other.pid for other in processes.values() if other.ppid == pid)
    own_pid = os.getpid()
    if pid == os.getppid() and own_pid not in processes:
        mine = (*mine, own_pid)  # ipcmon hides itself (ScanConfig.hide_self), yet its parent (a shell) waits for it
    own = kin.get(pid)

    def in_group(group: int) -> tuple[int, ...]:
        return tuple(child for child in mine if (found := kin.get(child)) is not None and found.pgrp == group)

    children: tuple[int, ...] = ()
    if raw.syscall == "wait4" and args:
        wanted = _int(args[0])
        if wanted == -1:
            children = tuple(mine)
        elif wanted > 0:
            children = (wanted,)
        elif wanted == 0:
            children = in_group(own.pgrp) if own is not None else ()
        else:
            children = in_group(-wanted)
    elif len(args) > 1:
        idtype, ident = _int(args[0]), _int(args[1])
        if idtype == _P_ALL:
            children = tuple(mine)
        elif idtype == _P_PID and ident > 0:
            children = (ident,)
        elif idtype == _P_PGID:
            group = ident if ident > 0 else own.pgrp if own is not None else None
            children = in_group(group) if group is not None else ()
        elif idtype == _P_PIDFD and raw.pidfd_pid is not None:
            children = (raw.pidfd_pid,)
    children = tuple(sorted(children))
    if not children:
        words = "a child (none seen)"
    elif len(children) == 1:
        words = f"child {children[0]}"
    else:
        words = "children " + ", ".join(map(str, children))
    return Waiting(raw.syscall, None, raw.wchan, words, None, "child", children=children)


# --- who could release whom, and deadlocks -----------------------------------------------------------------

class _Release(NamedTuple):
    pids: tuple[int, ...]
    """Processes that could release the waiter."""
    words: str
    edge: bool
    """It can take part in a deadlock: it has no timeout and only pids could release it, as far as the scan
    can tell (see analyse)."""
    unseen: bool = False
    """No releaser in sight, but a process ipcmon could not read may be one (UNSEEN_QUEUE)."""


UNSEEN_END = "a process ipcmon cannot read (the kernel blocks this call only while some process holds the {side} end)"
"""Who releases a pipe's blocked reader (writer) when no writer (reader) is in sight: a read with no writer left
returns end-of-file and a write with no reader fails (pipe(7)), so the other end is in a process whose
descriptors could not be read."""


def _pipe_release(pipe: Pipe, reading: bool) -> tuple[tuple[int, ...], str]:
    ends = pipe.writers if reading else pipe.readers
    side = "write" if reading else "read"
    if not ends:
        return (), UNSEEN_END.format(side=side)
    pids = tuple(sorted({end.pid for end in ends}))
    return pids, ", ".join(f"pid {end.pid} {end.comm} (holds the {side} end, fd {end.fd})" for end in ends)


UNSEEN_QUEUE = ("nobody ipcmon can see; a process ipcmon cannot read may have it open for {how} (run as root to "
                "know)")
"""Who releases a queue's blocked receiver (sender) when nobody in sight has it open the other way and a process
ipcmon could not read might (MessageQueue.maybe_held)."""


def _queue_release(queue: MessageQueue, receiving: bool, hidden: bool = False) -> tuple[tuple[int, ...], str]:
    wanted = "w" if receiving else "r"
    holders = [holder for holder in queue.holders if wanted in holder.access and holder.fd is not None]
    how = "sending" if receiving else "receiving"
    if not holders and (hidden or queue.maybe_held):
        return (), UNSEEN_QUEUE.format(how=how)
    if not holders:
        return (), f"nobody: no process has it open for {how}"
    pids = tuple(sorted({holder.pid for holder in holders}))
    return pids, ", ".join(f"pid {holder.pid} {holder.comm} (fd {holder.fd})" for holder in holders)


_SIGNALS_NAMED = 6
"""How many of the signals that would end a signal wait its release words name before giving their count."""


def _release(wait: Waiting, pid: int, pipes: Mapping[str, Pipe], queues: Mapping[str, MessageQueue],
             threads: int, unseen: Collection[int | None] = ()) -> _Release:
    """Who could release a waiter, as pids and in words, and whether the wait can be a deadlock's edge."""
    if wait.kind == "poll":
        return _poll_release(wait, pid, pipes, queues, threads)
    if wait.kind == "child":
        return _Release(wait.children, "", bool(wait.children) and threads == 1)
    if wait.kind == "open":
        path = wait.path or "the FIFO (path unknown)"
        if wait.missing is None:
            return _Release((), f"anyone who opens {path} at its other end", False)
        side = "writing" if wait.missing == "writer" else "reading"
        return _Release((), f"anyone who opens {path} for {side}", False)
    if wait.kind == "signal":
        if not wait.signals:
            return _Release((), "a signal sent to it", False)
        if len(wait.signals) <= _SIGNALS_NAMED:
            return _Release((), "a signal sent to it: " + ", ".join(wait.signals), False)
        # pause() ends on any of the fifty-odd signals neither blocked nor ignored: their count, and the first few.
        shown = ", ".join(wait.signals[:_SIGNALS_NAMED])
        return _Release((), f"a signal sent to it: any of {len(wait.signals)} ({shown}, …)", False)
    if wait.key is None:
        return _Release((), "unknown", False)
    pipe = pipes.get(wait.key)
    if pipe is not None:
        pids, words = _pipe_release(pipe, wait.kind == "read")
    else:
        queue = queues.get(wait.key)
        if queue is None:
            return _Release((), "unknown", False)
        hidden = queue.maybe_held or any(health.could_hold(uid, queue.uid, queue.mode) for uid in unseen)
        pids, words = _queue_release(queue, wait.kind == "receive", hidden)
        if not pids and hidden:
            return _Release(pids, words, False, unseen=True)
    # A process whose main thread waits may be released by another of its threads, or by a signal handler
    # writing to a pipe it holds: only a single-threaded one can be sure to wait on others.
    return _Release(pids, words, bool(pids) and not wait.timed and threads == 1)


def _poll_release(wait: Waiting, pid: int, pipes: Mapping[str, Pipe], queues: Mapping[str, MessageQueue],
                  threads: int) -> _Release:
    every: set[int] = set()
    parts = []
    known = True
    for watched in wait.watched:
        pipe = pipes.get(watched.key) if watched.key is not None else None
        queue = queues.get(watched.key) if watched.key is not None and pipe is None else None
        found: list[tuple[tuple[int, ...], str]] = []
        for event in watched.events.split(","):
            if pipe is not None:
                found.append(_pipe_release(pipe, event == "read"))
            elif queue is not None:
                found.append(_queue_release(queue, event == "read"))
        if not found:
            known = False
            parts.append(f"{watched.object}: unknown")
            continue
        for pids, words in found:
            every.update(pids)
            parts.append(f"{watched.object}: {words}")
    if wait.timed:
        parts.append("or its timeout")
    elif wait.other_watched:
        parts.append(f"or {counted(wait.other_watched, 'other descriptor', 'other descriptors')} it watches")
    # A poll takes part in a deadlock only when nothing but these processes could end it: no timeout, every
    # watched descriptor an IPC one the scan knows the ends of, and not itself among the releasers (a
    # wake-up pipe: its signal handler or another thread writes to it).
    edge = (known and bool(every) and not wait.timed and wait.other_watched == 0 and pid not in every
            and threads == 1)
    return _Release(tuple(sorted(every)), "; ".join(parts), edge)


_BLOCKING_KINDS = frozenset({"write", "send", "open"})
"""Waits that mean the other side is not keeping up (or not there): a full pipe or queue, a FIFO never opened."""
_ORDER: dict[str, int] = {"deadlocked": 0, "blocked": 1, "waiting": 2}


def analyse(
    processes: Iterable[Process],
    pipes: Iterable[Pipe],
    queues: Iterable[MessageQueue],
    kin: Mapping[int, Kin] | None = None,
    unseen: Collection[int | None] = (),
    memory: WaitMemory | None = None,
) -> tuple[tuple[Stuck, ...], tuple[Deadlock, ...]]:
    """Every process blocked on IPC with who could release it (most serious first), and the deadlocks among them.

    kin (pid → process group, session, thread count) is the scan's; without it every process counts as
    single-threaded and unrelated to the others. unseen: the uids of processes the scan could not read
    (health.unseen_uids; empty as root): a queue one of them could open (health.could_hold) may have a
    sender or receiver out of sight, so a wait on it with none in sight is not blocked.

    A deadlock is a group of processes each blocked in a way that only members of the group could end: start
    from every waiter that can be an edge, then repeatedly drop any whose releasers include a process that is
    not in the set; what remains cannot make progress on its own. The edges:

    - a read or write on a pipe or FIFO: the processes holding the other end; a send or receive on a queue: the
      processes that have it open the other way; without a timeout;
    - wait4/waitid: the children it waits for (any one of them ending releases it);
    - poll, ppoll, select, pselect6, epoll_wait: the other ends of every descriptor it watches, but only when
      it has no timeout (a finite timeout makes an idle loop, not a deadlock), every descriptor of the set is
      a pipe, FIFO or queue whose ends the scan knows, and none of the releasers is itself (a wake-up pipe);
    - open() of a FIFO: nobody has its other end open, so the scan cannot see who would open it. Two or more
      processes each blocked so, on two or more different FIFOs, that share a process group or a parent (or
      are parent and child), are taken as waiting for each other to open: the classic order mistake of two
      programs each opening first what the other opens second. That is an inference, and the deadlock's
      wording says so (text.deadlock_summary);
    - signal waits and SysV operations are never edges (anyone permitted could send or operate).

    Only the thread /proc/PID/syscall describes is seen (the main one), so a process with several threads is
    never an edge: another thread may be about to release it. A process that reads a pipe whose only writer is
    itself is a deadlock of one.

    memory (a Scanner's, kept from scan to scan: WaitMemory): the record of each process waiting for a signal,
    which depends on that process alone (never an edge, nobody else's state in its words): a process record that is
    the very same object as at the last scan (collect.process: nothing of it moved) keeps its record (a large
    machine's thousand workers in pause(2), every scan); and the pipes and queues by key, kept while the scan
    hands the very same tuple again (pipes.PipeIndex does when no pipe changed).
    """
    kin = kin or {}
    alone = memory.alone if memory is not None else None
    # Built only if a wait needs it: most are pause(), wait4()…
    pipe_by_key = _ByKey.again(memory.pipes if memory is not None else None, pipes)
    queue_by_key = _ByKey.again(memory.queues if memory is not None else None, queues)
    if memory is not None:
        memory.pipes, memory.queues = pipe_by_key, queue_by_key
    all_processes = {process.pid: process for process in processes}
    waiters = {pid: process for pid, process in all_processes.items() if process.waiting is not None}
    kept: list[Stuck] = []
    if alone is not None:
        before = dict(alone)
        alone.clear()
        for pid, process in list(waiters.items()):
            found = before.get(pid)
            if found is not None and found[0] is process:
                kept.append(found[1])
                alone[pid] = found
                del waiters[pid]

    def threads(pid: int) -> int:
        found = kin.get(pid)
        return found.threads if found is not None else 1

    released: dict[int, _Release] = {}
    for pid, process in waiters.items():
        assert process.waiting is not None
        released[pid] = _release(process.waiting, pid, pipe_by_key, queue_by_key, threads(pid), unseen)
    opening = _fifo_open_groups(waiters, all_processes, kin)
    for group in opening:
        for pid in group:
            others = tuple(other for other in group if other != pid)
            released[pid] = released[pid]._replace(pids=others, edge=True)
    groups = _deadlock_groups({pid: set(entry.pids) for pid, entry in released.items() if entry.edge})
    in_group = {pid: group for group in groups for pid in group}
    fifo_members = {pid for group in opening for pid in group}

    states: dict[int, StuckState] = {found.pid: found.state for found in kept}
    for pid, process in waiters.items():
        wait = process.waiting
        assert wait is not None
        pids = released[pid].pids
        if pid in in_group:
            states[pid] = "deadlocked"
        elif released[pid].edge and pids and set(pids) <= in_group.keys():
            states[pid] = "blocked"  # only deadlocked processes could release it: it waits on the deadlock
        elif wait.kind in _BLOCKING_KINDS or (wait.kind == "receive" and wait.key is not None and set(pids) <= {pid}
                                              and not released[pid].unseen):
            # A queue's receiver with no sender in sight waits for one to come; a pipe's reader with no writer in
            # sight has one the scan cannot see (UNSEEN_END), and only itself as writer is a deadlock of one.
            states[pid] = "blocked"
        else:
            states[pid] = "waiting"
    # A wait for children is blocked when every child it waits for is itself blocked (or deadlocked).
    changed = True
    while changed:
        changed = False
        for pid, process in waiters.items():
            wait = process.waiting
            assert wait is not None
            if wait.kind == "child" and states[pid] == "waiting" and wait.children and all(
                states.get(child) in ("blocked", "deadlocked") for child in wait.children
            ):
                states[pid] = "blocked"
                changed = True

    stuck = []
    for pid, process in waiters.items():
        wait = process.waiting
        assert wait is not None
        entry = released[pid]
        words = entry.words
        if wait.kind == "child":
            words = _children_words(wait.children, all_processes, states)
        elif pid in fifo_members:
            words += "; " + ", ".join(
                f"pid {other} {all_processes[other].comm} may (it is blocked opening "
                f"{_waits_on(all_processes[other])} itself)" for other in entry.pids)
        record = Stuck(pid, process.comm, wait, states[pid], entry.pids, words, wait.since)
        stuck.append(record)
        if alone is not None and wait.kind == "signal":
            alone[pid] = (process, record)
    stuck.extend(kept)
    stuck.sort(key=lambda found: (_ORDER[found.state], found.pid))

    deadlocks = tuple(
        Deadlock(tuple(
            DeadlockMember(pid, waiters[pid].comm, waiting_text(waiters[pid]),
                           tuple(sorted(set(released[pid].pids) & set(group))), _kind(waiters[pid]))
            for pid in group
        ))
        for group in groups
    )
    return tuple(stuck), deadlocks


Record = TypeVar("Record", bound=Keyed)


class WaitMemory:
    """What analyse keeps from one of a Scanner's scans to the next: each signal waiter's process and record
    (alone), and the pipes and queues by key (their tuples compared by identity)."""

    def __init__(self) -> None:
        self.alone: dict[int, tuple[Process, Stuck]] = {}
        self.pipes: _ByKey[Pipe] | None = None
        self.queues: _ByKey[MessageQueue] | None = None

    def __len__(self) -> int:
        """The signal waiters whose record it keeps."""
        return len(self.alone)


class _ByKey(Mapping[str, Record]):
    """Records by object key, the table made at the first look (a large machine's 5,000 pipes, every scan)."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._records = records
        self._keyed: dict[str, Record] | None = None

    @classmethod
    def again(cls, previous: _ByKey[Record] | None, records: Iterable[Record]) -> _ByKey[Record]:
        """previous itself when it keys the very same records object, else a new one."""
        return previous if previous is not None and previous._records is records else cls(records)

    def _table(self) -> dict[str, Record]:
        if self._keyed is None:
            self._keyed = {record.object_key: record for record in self._records}
        return self._keyed

    def __getitem__(self, key: str) -> Record:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


def _kind(process: Process) -> WaitKind | None:
    return process.waiting.kind if process.waiting is not None else None


def _waits_on(process: Process) -> str:
    wait = process.waiting
    return (wait.path or "a FIFO") if wait is not None else "?"


def _children_words(children: tuple[int, ...], processes: Mapping[int, Process],
                    states: Mapping[int, StuckState]) -> str:
    """``child 42 python3 (itself blocked: write pipe:[9])``, one part per child."""
    if not children:
        return "any of its children ending (none seen)"
    parts = []
    for child in children:
        process = processes.get(child)
        if process is None:
            parts.append(f"child {child} (ipcmon itself)" if child == os.getpid() else f"child {child} (not seen)")
            continue
        state = states.get(child)
        if state is None:
            how = "not blocked on IPC"
        elif state == "waiting":
            how = f"waiting: {waiting_text(process)}"
        else:
            how = f"itself {state}: {waiting_text(process)}"
        parts.append(f"child {child} {process.comm} ({how})")
    return ", ".join(parts)


def _fifo_open_groups(waiters: Mapping[int, Process], processes: Mapping[int, Process],
                      kin: Mapping[int, Kin]) -> list[tuple[int, ...]]:
    """Groups of related single-threaded processes blocked opening two or more different FIFOs (see analyse)."""
    opening = [pid for pid, process in waiters.items()
               if process.waiting is not None and process.waiting.kind == "open"
               and (found := kin.get(pid)) is not None and found.threads == 1]
    if len(opening) < 2:
        return []

    def related(a: int, b: int) -> bool:
        first, second = processes[a], processes[b]
        if first.ppid == b or second.ppid == a or (first.ppid == second.ppid and first.ppid > 1):
            return True
        kin_a, kin_b = kin[a], kin[b]
        return kin_a.pgrp > 0 and kin_a.pgrp == kin_b.pgrp  # one pipeline or job; a session is a whole login

    groups = []
    seen: set[int] = set()
    for pid in opening:
        if pid in seen:
            continue
        group = {pid}
        frontier = [pid]
        while frontier:
            current = frontier.pop()
            for other in opening:
                if other not in group and related(current, other):
                    group.add(other)
                    frontier.append(other)
        seen |= group
        fifos = set()
        for member in group:
            wait = waiters[member].waiting
            assert wait is not None
            fifos.add(wait.key or wait.path or f"unknown:{member}")
        if len(group) > 1 and len(fifos) > 1:
            groups.append(tuple(sorted(group)))
    return groups


def _deadlock_groups(releasers: dict[int, set[int]]) -> list[tuple[int, ...]]:
    """The deadlocks: groups of pids that wait on each other in a cycle, every releaser of each stuck too.

    First the closed set: drop, again and again, every pid that some process not in the set could release. Each
    pid left can only be released from inside the set. Of those, only the ones on a cycle (a strongly connected
    group of two or more, or one that only itself could release) are a deadlock's members; the others merely
    wait on a deadlocked process (a shell waiting for a deadlocked child) and are blocked, not members.
    """
    stuck = set(releasers)
    changed = True
    while changed:
        changed = False
        for pid in list(stuck):
            if not releasers[pid] <= stuck:
                stuck.discard(pid)
                changed = True

    def reach(start: int) -> set[int]:
        found: set[int] = set()
        frontier = list(releasers[start] & stuck)
        while frontier:
            current = frontier.pop()
            if current not in found:
                found.add(current)
                frontier.extend(releasers[current] & stuck)
        return found

    reachable = {pid: reach(pid) for pid in stuck}
    groups: list[tuple[int, ...]] = []
    seen: set[int] = set()
    for pid in sorted(stuck):
        if pid in seen or pid not in reachable[pid]:
            continue  # grouped already, or not on a cycle
        group = {other for other in reachable[pid] if pid in reachable[other]}
        seen |= group
        groups.append(tuple(sorted(group)))
    return groups
