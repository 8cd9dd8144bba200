"""IPC namespaces seen from the host (issue 15): which exist and which processes are in each, setns(2), and one
short-lived forked child that does a piece of work inside each of several others (reading their /proc/sysvipc
tables, or removing a SysV segment there).

/proc/sysvipc/shm, msg and sem show the IPC namespace of the process that opens them (ipc/util.c
sysvipc_proc_open takes ``current->nsproxy->ipc_ns``), and shmctl(2) acts in the caller's: to see or change another
namespace's SysV objects a process must enter it. ipcmon never enters one itself: a forked child does, and its
namespaces go with it when it exits. The child inherits the parent's memory, so it needs no program of its own
and costs about a millisecond; it closes every descriptor but its pipe and the namespaces' as soon as it starts
(the monitored pipes must not gain a holder), and leaves with os._exit, running nothing of its parent's.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import pickle
import select
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ipcmon.collect import procfs
from ipcmon.collect.namespaces import read_ns
from ipcmon.model import Place, Process, names_better
from ipcmon.safe import printable

R = TypeVar("R")

CLONE_NEWIPC = 0x08000000
"""sched.h: the IPC namespace, for setns(2)'s nstype."""

CHILD_TIMEOUT = 10.0
"""Seconds the parent waits for the child's report before it kills it (a read of /proc/sysvipc takes
milliseconds; only a stopped or starved child is slower)."""


MEMBERS_TRIED = 3
"""Member pids kept per namespace: the first that is still in it is entered (the others may have exited)."""


@dataclass(slots=True)
class IpcNamespaces:
    """Every IPC namespace the scanned processes run in, seen from ipcmon's own."""

    own: int | None
    """Inode of ipcmon's own IPC namespace; None when it cannot be told (a /proc without ``self``): then no
    other namespace is told apart either, and every process counts as in ipcmon's own."""
    of_pid: dict[int, int] = field(default_factory=dict)
    """pid → the inode of its IPC namespace, for the processes whose namespace could be read."""
    members: dict[int, list[int]] = field(default_factory=dict)
    """Each IPC namespace other than ipcmon's own → a few of its pids (MEMBERS_TRIED), in the order seen."""
    places: dict[int, Place] = field(default_factory=dict)
    """Each IPC namespace other than ipcmon's own → its place (``mnt`` None: SysV objects have no mount), with
    the container or unit of a member whose Process.place names one."""

    def namespace_of(self, pid: int) -> int | None:
        """The IPC namespace of a pid; ipcmon's own when it could not be read (as before issue 15)."""
        return self.of_pid.get(pid, self.own)


def place_words(place: Place) -> str:
    """How a note or the action log names a namespace: its label, and ``ipc:INODE`` unless that is the label
    (``4f3c2a1b9d8e ipc:4026532178``, ``ipc:4026532178``, ``host``). Made printable (labels are untrusted)."""
    label = printable(place.label)
    if place.host or place.ipc is None or label == f"ipc:{place.ipc}":
        return label
    return f"{label} ipc:{place.ipc}"


def own_namespace(proc: str = procfs.PROC) -> int | None:
    """Inode of ipcmon's own IPC namespace (/proc/self/ns/ipc, as namespaces.read_ns reads it); None when it cannot
    be read."""
    try:
        return read_ns("self", proc)[0]
    except (procfs.Gone, procfs.Denied):
        return None


def namespace_of(process: Process | None) -> int | None:
    """The inode of a process's IPC namespace, as the scan's pre-pass read it (Process.place, collect/namespaces.py);
    None when it could not be read (not permitted) or the process is not in the scan."""
    return process.place.ipc if process is not None and process.place is not None else None


def ipc_namespaces(processes: Mapping[int, Process], proc: str = procfs.PROC) -> IpcNamespaces:
    """Which IPC namespaces the processes are in, one place for each other than ipcmon's own, and a few member
    pids to enter each by: the one function that answers "which IPC namespaces exist" for the scan and for clean.
    """
    found = IpcNamespaces(own_namespace(proc))
    if found.own is None:
        return found
    for pid, process in processes.items():
        inode = namespace_of(process)
        if inode is None:
            continue
        found.of_pid[pid] = inode
        if inode == found.own:
            continue
        pids = found.members.setdefault(inode, [])
        if len(pids) < MEMBERS_TRIED:
            pids.append(pid)
        known = found.places.get(inode)
        if known is None or names_better(process.place, known):
            place = process.place
            found.places[inode] = Place(ipc=inode, mnt=None, container=place.container if place else None,
                                        unit=place.unit if place else None)
    return found


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace open at fd (setns(2)), raising OSError with its errno:
    EPERM without CAP_SYS_ADMIN (not root), EBADF for a bad descriptor, EINVAL when fd is not a namespace
    of type nstype. os.setns where Python has it (3.12), else the C library's through ctypes."""
    native = getattr(os, "setns", None)
    if native is not None:
        native(fd, nstype)
        return
    if _c_setns()(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@functools.cache
def _c_setns() -> Any:
    """The C library's setns, looked up once (dlsym takes the loader's lock: never first in a forked child)."""
    return procfs.libc().setns


def open_namespace(pid: int, inode: int, kind: str = "ipc", proc: str = procfs.PROC) -> int:
    """A descriptor of /proc/PID/ns/KIND, checked to be the namespace with this inode (the process could have
    exited and its pid been reused since it was seen), raising OSError: ESRCH when it is no longer there,
    EACCES when not permitted (another user's process, when not root)."""
    fd = os.open(f"{proc}/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_ino != inode:
            raise OSError(errno.ESRCH, f"process {pid} is no longer in {kind} namespace {inode}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_any(inode: int, pids: Iterable[int], proc: str) -> int | OSError:
    """A descriptor of the IPC namespace inode through the first of its member pids that still is one; the
    first error (the most telling: a refusal rather than a departure) when none could be opened."""
    first: OSError | None = None
    for pid in pids:
        try:
            return open_namespace(pid, inode, "ipc", proc)
        except OSError as error:
            if first is None or (first.errno in (errno.ESRCH, errno.ENOENT) and error.errno == errno.EACCES):
                first = error
    return first or OSError(errno.ESRCH, f"no process is left in ipc namespace {inode}")


def in_ipc_namespaces(
    members: Mapping[int, Sequence[int]],
    work: Callable[[int], R],
    *,
    proc: str = procfs.PROC,
    timeout: float = CHILD_TIMEOUT,
) -> dict[int, R | OSError]:
    """work(inode) run inside each IPC namespace, in one forked child: IPC namespace inode → a few of its
    member pids (one that is still there is entered) → what work returned, or the OSError that kept it from
    running (EPERM: not root; ESRCH: no member left; EACCES: another user's; ETIMEDOUT: the child did not report
    in time; its own errors). Namespaces are entered in the order given; an empty mapping forks nothing.

    work runs in the child: it may raise OSError (reported for that namespace), must return something that
    pickles, and must not start threads or take locks another thread of the parent might hold (logging).
    """
    results: dict[int, R | OSError] = {}
    descriptors: dict[int, int] = {}
    try:
        for inode, pids in members.items():
            opened = _open_any(inode, pids, proc)
            if isinstance(opened, OSError):
                results[inode] = opened
            else:
                descriptors[inode] = opened
        if descriptors:
            results.update(_run_forked(descriptors, work, timeout))
    finally:
        for fd in descriptors.values():
            os.close(fd)
    return {inode: results[inode] for inode in members}


def _run_forked(descriptors: Mapping[int, int], work: Callable[[int], R], timeout: float) -> dict[int, R | OSError]:
    if not hasattr(os, "setns"):
        _c_setns()  # looked up before the fork: dlsym takes the loader's lock, which another thread could hold
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.fork()
    except OSError as error:
        os.close(read_end)
        os.close(write_end)
        return {inode: error for inode in descriptors}
    if child == 0:  # the child: enter, work, report, and leave without running anything of the parent's
        status = 1
        try:
            _close_all_but({write_end, *descriptors.values()})
            report: list[tuple[int, bool, object]] = []
            for inode, fd in descriptors.items():
                try:
                    setns(fd, CLONE_NEWIPC)
                    report.append((inode, True, work(inode)))
                except OSError as error:
                    report.append((inode, False, (error.errno, error.strerror)))
                except Exception as error:  # a bug in work: said for its namespace, the others still reported
                    report.append((inode, False, (errno.EIO, f"{type(error).__name__}: {error}")))
            view = memoryview(pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL))
            while view:
                view = view[os.write(write_end, view):]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    data: bytes | None = None
    try:
        data = _read_until(read_end, time.monotonic() + timeout)
    finally:
        os.close(read_end)  # first: a child still writing gets EPIPE and leaves
        if data is None:
            _kill(child)
        os.waitpid(child, 0)
    reported: dict[int, R | OSError] = {}
    if data is not None:
        try:
            for inode, worked, value in pickle.loads(data):
                reported[inode] = value if worked else OSError(*value)
        except Exception:  # the child died mid-report: what is missing is said below
            reported = {}
    lost = OSError(errno.ETIMEDOUT if data is None else errno.EIO,
                   "the namespace reader did not report in time" if data is None else "the namespace reader died")
    return {inode: reported.get(inode, lost) for inode in descriptors}


def _close_all_but(keep: set[int]) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything the child writes until it closes its end, or None when the deadline passes first."""
    chunks: list[bytes] = []
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            if not poller.poll(left * 1000):
                continue
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
