"""Reading /proc: whole-file byte reads, pid listing, stat/status parsing, and the one place errors get meaning.

A process that exits mid-scan is normal (``Gone``); a read the kernel refuses is counted and shown
(``Denied``). Nothing here raises anything else for those two cases.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import grp
import os
import pwd
import re
import resource
import signal
from collections.abc import Collection
from dataclasses import dataclass
from typing import NamedTuple

PROC = "/proc"

_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ESRCH, errno.ENOTDIR, errno.EINVAL})
_DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


class Gone(Exception):
    """The process or object disappeared while it was being read."""


class Denied(Exception):
    """The kernel refused the read (not root, or another user's process)."""


def is_gone(error: OSError) -> bool:
    """Whether a /proc read's error means its process (or the file) is gone: translate gives Gone."""
    return error.errno in _GONE_ERRNOS


def is_denied(error: OSError) -> bool:
    """Whether a /proc read's error means the kernel refused it: translate gives Denied."""
    return error.errno in _DENIED_ERRNOS


def translate(error: OSError) -> Exception:
    """Map an OSError from a /proc read to Gone or Denied; anything else is returned unchanged.

    Raise what it returns at once (``raise translate(error) from None``), never from a local name: an exception
    a local still holds refers through its traceback to that very frame, a reference cycle that kept a whole
    scan's tables alive until the garbage collector freed them, milliseconds later."""
    if error.errno in _GONE_ERRNOS:
        return Gone(str(error))
    if error.errno in _DENIED_ERRNOS:
        return Denied(str(error))
    return error


_CHUNK = 65536


def read_bytes(path: str, *, single: bool = False) -> bytes:
    """Read a whole file as bytes, raising Gone or Denied for a vanished or forbidden file.

    single: the kernel makes the file in one piece (single_open(): /proc/PID/stat, status, schedstat, wchan,
    syscall, fdinfo/N, task/TID/comm), so a read shorter than the buffer returned all of it and the empty
    read that would confirm the end is skipped: a scan makes a few thousand of these. Not for files made
    record by record (maps, mountinfo), where a short read may come before the end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise translate(error) from None
    try:
        chunks = []
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            if single and len(chunk) < _CHUNK:
                break
        return b"".join(chunks)
    except OSError as error:
        raise translate(error) from None
    finally:
        os.close(fd)


def _pread_all(fd: int) -> bytes:
    """A /proc file's whole text through an open descriptor, from offset 0 (the kernel makes it anew)."""
    chunks = [os.pread(fd, _CHUNK, 0)]
    while len(chunks[-1]) == _CHUNK:
        chunks.append(os.pread(fd, _CHUNK, _CHUNK * len(chunks)))
    return b"".join(chunks)


OPEN_FILES_MAX = 8192
"""The most /proc files an OpenProcFiles keeps open."""
KEPT_FD_FLOOR = 1024
"""Kept files get descriptor numbers from here up (fcntl F_DUPFD_CLOEXEC): the numbers below stay free for the rest
of the process, where select(2), which refuses 1024 and above, may still be used (a test harness, a library)."""
OPEN_FILES_WANTED = KEPT_FD_FLOOR + 2 * OPEN_FILES_MAX
"""The soft RLIMIT_NOFILE a long-running front end asks for (raise_open_files_limit)."""


def raise_open_files_limit() -> None:
    """Raise this process's soft RLIMIT_NOFILE towards OPEN_FILES_WANTED, within the hard limit, so that the Scanner
    can keep /proc files open above KEPT_FD_FLOOR (the dashboard, watch, record, the exporter). The usual soft 1024
    protects programs that use select(2); ipcmon waits with poll(2) (live.ready), and its kept files stay above the
    numbers select can take. Nothing happens when the soft limit is high enough, or on refusal."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (OSError, ValueError):
        pass


class OpenProcFiles:
    """Files of /proc/PID that a Scanner reads at every scan (stat, schedstat, status, and each thread's
    task/TID/stat and task/TID/schedstat), kept open from one scan to the next and read again with pread(2): one
    system call instead of open, read and close, and no path walk.

    An open /proc/PID file stays bound to the process it was opened for (fs/proc/base.c: its inode holds that
    process's struct pid): once the process is reaped a read fails with ESRCH, though the pid may name another
    process by then. So what is read through a kept file is the first process's, and ``alive(pid)`` (a read of its
    kept stat) tells whether that process still lives, which makes a pidfd opened just before it that process's.

    Kept files are numbered from KEPT_FD_FLOOR up, never below (the process's own numbers stay as low as they were:
    select(2) cannot take 1024 and above), and at most half of what RLIMIT_NOFILE's soft limit allows above it (and
    OPEN_FILES_MAX) are kept: none under the usual soft limit of 1024, unless the front end raised it
    (raise_open_files_limit). Past that, files are read by path and checked with ``alive``. Only for the real /proc.
    """

    def __init__(self, proc: str = PROC, budget: int | None = None) -> None:
        self.proc = proc
        if budget is None:
            soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            above = OPEN_FILES_MAX * 2 if soft == resource.RLIM_INFINITY else max(0, soft - KEPT_FD_FLOOR)
            budget = min(OPEN_FILES_MAX, above // 2)
        self.budget = budget
        self._fds: dict[tuple[int, str], int] = {}
        self._numbers: frozenset[str] | None = None
        self._seen: frozenset[int] = frozenset()
        """The pids the last scan read (retain): only their files are kept. A process first seen is read by path,
        as it would be without this: most are gone by the next scan on a machine that forks all the time, and
        opening, keeping and closing their files cost more than it saved."""
        self._threads: dict[int, frozenset[str]] = {}
        """The thread ids whose task files were last read, by pid (keep_threads)."""

    def __len__(self) -> int:
        return len(self._fds)

    def holds(self, pid: int) -> bool:
        """Whether pid's stat is kept: what is read of pid through this object is of one process."""
        return (pid, "stat") in self._fds

    def will_hold(self, pid: int) -> bool:
        """Whether pid's stat is kept, or will be when it is read (the last scan read it, and there is room)."""
        return (pid, "stat") in self._fds or (pid in self._seen and len(self._fds) < self.budget)

    def alive(self, pid: int) -> bool:
        """Whether the process pid's kept stat was opened for is still there (not reaped); False when none is kept."""
        fd = self._fds.get((pid, "stat"))
        if fd is None:
            return False
        try:
            os.pread(fd, 1, 0)
        except OSError:
            return False
        return True

    def read(self, pid: int, name: str) -> bytes:
        """The text of /proc/PID/NAME (a file the kernel makes in one piece: stat, schedstat, status), raising Gone
        or Denied as read_bytes does.

        Through the kept file when there is one, else by path, kept when the last scan read the process (retain)
        and there is room. When its process was reaped, the file is closed: a stat is read
        again by path (the pid may name a new process, whose stat is then kept), any other file is Gone (a process
        is read stat first: this one went while it was read). A file that cannot be kept
        (the budget is spent) is read by path, and with pid's stat kept, the process must still be alive after it
        (else Gone): the text is then that process's. A thread's file (``task/TID/…``) is kept only while half of the
        budget is left, so that processes with many threads leave room for every process's own stat and schedstat
        (what lets most processes be read with two pread(2): process._still)."""
        key = (pid, name)
        fd = self._fds.get(key)
        if fd is not None:
            try:
                return _pread_all(fd)
            except OSError as error:
                del self._fds[key]
                self._numbers = None
                os.close(fd)
                if error.errno != errno.ESRCH or name != "stat":
                    raise translate(error) from None  # ESRCH: Gone (the process being read was reaped meanwhile)
        try:
            fd = os.open(f"{self.proc}/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            raise translate(error) from None
        try:
            data = _pread_all(fd)
        except OSError as error:
            os.close(fd)
            raise translate(error) from None
        if pid in self._seen and len(self._fds) < (self.budget // 2 if name.startswith("task/") else self.budget):
            try:
                high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, KEPT_FD_FLOOR)
            except OSError:  # EMFILE, EINVAL: no number that high is allowed now
                high = -1
            os.close(fd)
            if high >= 0:
                self._fds[key] = high
                self._numbers = None
                return data
        else:
            os.close(fd)
        if name != "stat" and self.holds(pid) and not self.alive(pid):
            raise Gone(f"process {pid} was reaped while it was read")
        return data

    def numbers(self) -> frozenset[str]:
        """The descriptor numbers of the kept files, as /proc/self/fd names them (made again only after a change)."""
        if self._numbers is None:
            self._numbers = frozenset(str(fd) for fd in self._fds.values())
        return self._numbers

    def keep_threads(self, pid: int, tids: frozenset[str]) -> None:
        """pid's threads are now these (task/TID names): close the kept task files of its threads that ended, which
        would otherwise stay open (and fail) for as long as the process lives."""
        known = self._threads.get(pid)
        if known == tids or (known is None and not tids):
            return
        self._threads[pid] = tids
        for tid in known - tids if known is not None else ():
            for name in (f"task/{tid}/stat", f"task/{tid}/schedstat"):
                fd = self._fds.pop((pid, name), None)
                if fd is not None:
                    os.close(fd)
                    self._numbers = None

    def retain(self, pids: Collection[int]) -> None:
        """The scan read these processes: close the files of every other, and keep theirs from the next scan on."""
        self._seen = frozenset(pids)
        for key in [key for key in self._fds if key[0] not in self._seen]:
            os.close(self._fds.pop(key))
            self._numbers = None
        for pid in [pid for pid in self._threads if pid not in self._seen]:
            del self._threads[pid]

    def close(self) -> None:
        """Close every kept file."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._threads.clear()
        self._numbers = None


def pids(proc: str = PROC) -> list[int]:
    """Every pid listed in /proc right now, ascending."""
    return sorted(int(name) for name in os.listdir(proc) if name.isdigit())


def fd_flags(pid: int, fd: int, proc: str = PROC) -> int | None:
    """The open flags of one descriptor (the octal ``flags:`` line of /proc/PID/fdinfo/FD: O_NONBLOCK,
    O_APPEND…, proc(5)); None when it cannot be read (gone, denied, or no such line)."""
    try:
        data = read_bytes(f"{proc}/{pid}/fdinfo/{fd}", single=True)
    except (Gone, Denied, OSError):
        return None
    for line in data.splitlines():
        if line.startswith(b"flags:"):
            return int(line[6:].strip(), 8)
    return None


class Stat(NamedTuple):
    """The fields of /proc/PID/stat that ipcmon uses (a NamedTuple: a scan makes one per process, and a tuple is
    made in half the time of a frozen dataclass)."""

    comm: str
    state: str
    ppid: int
    start_ticks: int
    threads: int
    pgrp: int = 0
    session: int = 0
    processor: int = -1
    """The CPU it last ran on (field 39)."""
    flags: int = 0
    """The kernel's PF_* flags of the task (field 9; PF_KTHREAD: a kernel thread)."""


PF_KTHREAD = 0x00200000
"""Stat.flags of a kernel thread (include/linux/sched.h)."""


def parse_stat(data: bytes) -> Stat:
    """Parse /proc/PID/stat; split at the last ')' because comm may hold spaces and parentheses."""
    open_paren = data.index(b"(")
    close_paren = data.rindex(b")")
    comm = os.fsdecode(data[open_paren + 1 : close_paren])
    fields = data[close_paren + 2 :].split()
    # fields[0] is field 3 (state); pgrp and session are fields 5 and 6, flags field 9, num_threads field 20,
    # starttime field 22 and processor field 39.
    return Stat(comm, fields[0].decode(), int(fields[1]), int(fields[19]), int(fields[17]), int(fields[2]),
                int(fields[3]), int(fields[36]) if len(fields) > 36 else -1, int(fields[6]))


_STATUS_LINE = re.compile(rb"^([^:\n]+):[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def parse_status(data: bytes) -> dict[bytes, bytes]:
    """Parse /proc/PID/status into {key: value} (both bytes, value stripped), in one regex pass."""
    return dict(_STATUS_LINE.findall(data))


def parse_cmdline(data: bytes) -> tuple[str, ...]:
    """Split /proc/PID/cmdline at NULs (a trailing NUL ends the last argument)."""
    if not data:
        return ()
    if data.endswith(b"\0"):
        data = data[:-1]
    return tuple(os.fsdecode(arg) for arg in data.split(b"\0"))


@functools.cache
def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


@functools.cache
def boot_time(proc: str = PROC) -> float:
    for line in read_bytes(f"{proc}/stat").splitlines():
        if line.startswith(b"btime "):
            return float(line.split()[1])
    raise RuntimeError("no btime in /proc/stat")


def start_epoch(start_ticks: int, proc: str = PROC) -> float:
    return boot_time(proc) + start_ticks / clock_ticks()


@functools.cache
def overflow_uid(proc: str = PROC) -> int:
    """The uid /proc shows for a user not mapped into the reader's user namespace (kernel.overflowuid, 65534 by
    default; user_namespaces(7))."""
    try:
        return int(read_bytes(f"{proc}/sys/kernel/overflowuid"))
    except (Gone, Denied, OSError, ValueError):
        return 65534


@functools.lru_cache(maxsize=1024)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@functools.lru_cache(maxsize=1024)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


@dataclass(frozen=True, slots=True)
class Mount:
    mount_point: str
    fstype: str
    dev: int
    source: str


def _unescape_mount(field: bytes) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal (\\040)."""
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i : i + 1] == b"\\" and field[i + 1 : i + 4].isdigit():
            out.append(int(field[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def mounts(proc: str = PROC) -> list[Mount]:
    """Mounts visible to this process, from /proc/self/mountinfo."""
    try:
        data = read_bytes(f"{proc}/self/mountinfo")
    except (Gone, Denied):
        return []
    return list(_parse_mountinfo(data))


@functools.lru_cache(maxsize=4)
def _parse_mountinfo(data: bytes) -> tuple[Mount, ...]:
    """Every mount of a whole mountinfo file, kept for the last few distinct files: the same bytes give the same
    mounts, so a scan every second pays one read and a comparison until something is mounted or unmounted
    (parsing each line was a tenth of an idle scan)."""
    return tuple(mount for line in data.splitlines() if (mount := parse_mountinfo_line(line)) is not None)


def parse_mountinfo_line(line: bytes) -> Mount | None:
    """One line of a mountinfo file (proc(5)); None for a line not in its format."""
    left, sep, right = line.partition(b" - ")
    if not sep:
        return None
    left_fields = left.split()
    right_fields = right.split()
    if len(left_fields) < 5 or len(right_fields) < 2:
        return None
    major, _, minor = left_fields[2].partition(b":")
    if not (major.isdigit() and minor.isdigit()):
        return None
    return Mount(
        mount_point=_unescape_mount(left_fields[4]),
        fstype=right_fields[0].decode(errors="replace"),
        dev=os.makedev(int(major), int(minor)),
        source=_unescape_mount(right_fields[1]),
    )


def find_mount(fstype: str, proc: str = PROC) -> Mount | None:
    """The first mount of the given filesystem type, or None when it is not mounted."""
    for mount in mounts(proc):
        if mount.fstype == fstype:
            return mount
    return None


# Filesystem magic numbers from linux/magic.h, for statfs(2) f_type.
TMPFS_MAGIC = 0x01021994
MQUEUE_MAGIC = 0x19800202
PIPEFS_MAGIC = 0x50495045


class _Statfs(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type is the first word; the rest is not used here.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_long * 15)]


@functools.cache
def libc() -> ctypes.CDLL:
    # The C library is already loaded into every CPython process: CDLL(None) finds its symbols without
    # ctypes.util.find_library, which runs ldconfig in a subprocess (about a second on a busy machine).
    return ctypes.CDLL(None, use_errno=True)


def fs_type(path: str) -> int | None:
    """statfs(2) f_type of the filesystem holding path (following symlinks), None if unreadable."""
    buf = _Statfs()
    if libc().statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return None
    return int(buf.f_type) & 0xFFFFFFFF


def pin(pid: int) -> int | None:
    """A pidfd on the process that has this pid now, to tell later whether it is still the same one.

    None when the process is gone already (or pidfds are unavailable): then nothing can be checked.
    """
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def still_running(pidfd: int) -> bool:
    """Whether the pinned process has not been reaped, so its pid still names it and no other process.

    Signal 0 checks existence only; EPERM (another user's process, when not root) still means it exists.
    """
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SYS_PIDFD_GETFD = 438  # the same number on every architecture (asm-generic unified table)


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    """Duplicate another process's descriptor into this one (pidfd_getfd(2)), raising OSError.

    The copy shares the open file description, so no new pipe end or queue opener is created:
    counts of readers and writers stay what the workload made them.
    """
    result = libc().syscall(_SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return int(result)


class PidFds:
    """pidfds opened during one scan, to borrow descriptors with pidfd_getfd; close() releases them."""

    def __init__(self) -> None:
        self._pidfds: dict[int, int | None] = {}

    def borrow(self, pid: int, fd: int, expect: tuple[int, int] | None = None) -> int | None:
        """A duplicate of pid's descriptor fd, or None when the process is gone or not ours to touch.

        With expect (dev, inode), also None when the descriptor is no longer that file: the process closed it
        and reused the number, or exited and its pid now names another process (issue 7).
        """
        if pid not in self._pidfds:
            try:
                self._pidfds[pid] = os.pidfd_open(pid)
            except OSError:
                self._pidfds[pid] = None
        pidfd = self._pidfds[pid]
        if pidfd is None:
            return None
        try:
            borrowed = pidfd_getfd(pidfd, fd)
        except OSError:
            return None
        if expect is not None:
            st = os.fstat(borrowed)
            if (st.st_dev, st.st_ino) != expect:
                os.close(borrowed)
                return None
        return borrowed

    def close(self) -> None:
        for pidfd in self._pidfds.values():
            if pidfd is not None:
                os.close(pidfd)
        self._pidfds.clear()

    def __enter__(self) -> PidFds:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
