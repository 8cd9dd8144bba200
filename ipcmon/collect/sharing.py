"""Which processes share their memory or their descriptor table with another process (kcmp(2)).

A Scanner takes over a process that has not run since the last scan, and reads it in full on its turn all the same
for one reason above all: another process may share its memory or descriptor table (clone(2) with CLONE_VM or
CLONE_FILES but not CLONE_THREAD) and change them while it sleeps. kcmp(2) tells whether two processes use the same
kernel object of a kind, and orders those objects (by their address, obfuscated: kernel/kcmp.c), so every process
kept sorted by its memory and by its descriptor table finds its sharers among its neighbours, with about log2(n)
calls (1-2 µs each) when it is placed.

A process found alone stays alone while it does not run: a new sharer of its memory or table can only be made by a
clone(2) of one of its own threads (execve(2) and unshare(2) give the caller new ones, never another process).
Every user process the scan read is placed (running, with many threads, or never yet on a CPU alike). What cannot be
placed is a process kcmp(2) refuses (PTRACE_MODE_READ). To an ordinary user that is another user's process, and one
of their own that made itself non-dumpable (prctl(PR_SET_DUMPABLE)) or is otherwise hidden from the scan: while one
of their own is, none of their processes is alone (``withheld``). A process of another user could share one of
theirs only if a privileged process cloned it and then changed its credentials without execve(2), which ipcmon
does not look for. Root is refused only by a security module or by a process of an ancestor user namespace
(this sandbox's pid 1), which no process it can read was cloned from with CLONE_FILES or CLONE_VM in practice: root's
refusals withhold nothing. And a race: a placed process that runs execve(2) after its read, while a new one is
placed, sits out of order until the next scan places it again, so a search passing it may miss an equal; it needs
a new sharer placed in those milliseconds.

kcmp(2) is not used at all (``available`` False) when it refuses ipcmon its own process (a seccomp profile, as
Docker's default, answers EPERM) or when /proc is not of ipcmon's pid namespace (its pids would name other
processes to kcmp(2)).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Collection, Mapping

from ipcmon.collect import procfs

KCMP_VM = 1
"""kcmp(2) type: the address space (mm_struct)."""
KCMP_FILES = 2
"""kcmp(2) type: the descriptor table (files_struct)."""
KINDS = (KCMP_VM, KCMP_FILES)

_SYS_KCMP = {"x86_64": 312, "aarch64": 272, "riscv64": 272, "ppc64le": 354, "ppc64": 354, "s390x": 343}
"""kcmp(2)'s system call number by machine (the kernel's syscall tables); absent: unknown here (ENOSYS)."""

_syscall: Callable[..., int] | None = None


def kcmp(pid1: int, pid2: int, kind: int) -> int:
    """kcmp(2) of two processes' kernel objects of kind (KCMP_VM, KCMP_FILES): 0 when both use the same one, 1 when
    pid1's sorts first, 2 when pid2's does.

    Raises OSError: ESRCH when a process is gone, EPERM when either is refused (ptrace access mode read, as
    /proc/PID/fd is), ENOSYS without CONFIG_KCMP or on a machine whose system call number is not known here."""
    global _syscall
    number = _SYS_KCMP.get(os.uname().machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"kcmp: system call number unknown on {os.uname().machine}")
    if _syscall is None:
        _syscall = procfs.libc().syscall
    result = _syscall(number, pid1, pid2, kind, 0, 0)
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    if result > 2:
        raise OSError(errno.EINVAL, f"kcmp: no order ({result})")
    return result


class Sharing:
    """Every process placed so far, sorted by its memory and by its descriptor table (kcmp(2)), and which of them
    share either with another: a Scanner's, updated after each scan (scan._read_processes)."""

    def __init__(self) -> None:
        self.available: bool | None = None
        """Whether kcmp(2) can be used (tried at the first update: usable); False: nothing is placed, no process is
        alone (every turn reads in full)."""
        self.orders: dict[int, list[int]] = {kind: [] for kind in KINDS}
        self.starts: dict[int, int] = {}
        """Each placed pid's start time (clock ticks, /proc/PID/stat): another start is another process."""
        self.uids: dict[int, int | None] = {}
        """Each placed pid's owner."""
        self.shared: set[int] = set()
        """Placed pids equal to a neighbour in either order."""
        self.withheld: frozenset[int | None] = frozenset()
        """Owners (uids) with a process the last update could not place or the scan could not read: none of their
        processes is alone (ordinary users only; see the module's docstring)."""

    def __len__(self) -> int:
        return len(self.starts)

    def alone(self) -> frozenset[int]:
        """The placed processes that share neither their memory nor their descriptor table with another (none of an
        owner in ``withheld``)."""
        withheld = self.withheld
        return frozenset(pid for pid in self.starts.keys() - self.shared if self.uids[pid] not in withheld)

    def update(self, starts: Mapping[int, tuple[int, int | None]], ran: Collection[int],
               unread: Collection[int | None] = ()) -> None:
        """Follow a scan. starts: the user processes it read, pid → (start time in clock ticks, owner's uid); kernel
        threads, which have no memory or table of their own, are left out and never alone. ran: those of them read
        in full (they ran, or are new), whose memory or table may be new since (execve, unshare): placed again.
        unread: the owners of the processes the scan could not read in full (hidden)."""
        if self.available is None:
            self.available = _usable()
        if not self.available:
            return
        for pid in [pid for pid, start in self.starts.items() if starts.get(pid, (None,))[0] != start or pid in ran]:
            self._remove(pid)
        refused: set[int | None] = set(unread)
        for pid, (start, uid) in starts.items():
            if pid not in self.starts and not self._place(pid, start, uid):
                refused.add(uid)
        self.withheld = frozenset(refused) if os.geteuid() != 0 else frozenset()

    def _remove(self, pid: int) -> None:
        del self.starts[pid]
        del self.uids[pid]
        if pid not in self.shared:
            for order in self.orders.values():
                order.remove(pid)
            return
        self.shared.discard(pid)
        partners = set()
        for order in self.orders.values():
            index = order.index(pid)
            del order[index]
            partners.update(order[max(index - 1, 0):index + 1])  # its equals, if any, were beside it
        for partner in partners & self.shared:
            if not self._beside_an_equal(partner):
                self.shared.discard(partner)

    def _place(self, pid: int, start: int, uid: int | None) -> bool:
        """Place pid in both orders; False when it cannot be (refused, or gone: never alone)."""
        try:
            kcmp(pid, pid, KCMP_VM)
        except OSError:
            return False
        for _ in range(3):  # a process placed earlier may be gone: dropped, and the search made again
            try:
                spots = [(kind, self._spot(pid, kind)) for kind in KINDS]
            except _Gone as gone:
                self._remove(gone.pid)
                continue
            except OSError:
                return False  # this one is gone or refused now
            self.starts[pid] = start
            self.uids[pid] = uid
            for kind, (index, equal) in spots:
                self.orders[kind].insert(index, pid)
                if equal is not None:
                    self.shared.update((pid, equal))
            return True
        return False

    def _spot(self, pid: int, kind: int) -> tuple[int, int | None]:
        """Where pid goes in the order of kind (a binary search), and a placed pid using the same object, if any."""
        order = self.orders[kind]
        low, high = 0, len(order)
        equal = None
        while low < high:
            middle = (low + high) // 2
            answer = _compare(pid, order[middle], kind)
            if answer == 0:
                return middle, order[middle]
            if answer == 1:
                high = middle
            else:
                low = middle + 1
        for neighbour in order[max(low - 1, 0):low + 1]:
            if _compare(pid, neighbour, kind) == 0:
                equal = neighbour
        return low, equal

    def _beside_an_equal(self, pid: int) -> bool:
        for kind, order in self.orders.items():
            index = order.index(pid)
            for neighbour in order[max(index - 1, 0):index] + order[index + 1:index + 2]:
                try:
                    if kcmp(pid, neighbour, kind) == 0:
                        return True
                except OSError:
                    return True  # cannot tell: not alone
        return False


def _usable() -> bool:
    """Whether kcmp(2) answers for ipcmon's own process, and /proc's pids are those of ipcmon's pid namespace."""
    try:
        kcmp(os.getpid(), os.getpid(), KCMP_VM)
        return os.readlink(f"{procfs.PROC}/self") == str(os.getpid())
    except OSError:
        return False


class _Gone(Exception):
    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.pid = pid


def _compare(pid: int, placed: int, kind: int) -> int:
    """kcmp(2) of a process being placed with a placed one; raises _Gone when the placed one is gone (ESRCH with
    the other still there) or refused now, OSError when the one being placed is."""
    try:
        return kcmp(pid, placed, kind)
    except OSError:
        try:
            kcmp(pid, pid, kind)
        except OSError:
            raise
        raise _Gone(placed) from None

