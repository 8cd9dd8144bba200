"""Which processes share their memory or their descriptor table with another process (kcmp(2)).

A Scanner takes over a process that has not run since the last scan, and reads it in full on its turn all the same
for one reason above all: another process may share its memory or descriptor table (clone(2) with CLONE_VM or
CLONE_FILES but not CLONE_THREAD) and change them while it sleeps. kcmp(2) tells whether two processes use the same
kernel object of a kind, and orders those objects (by their address, obfuscated: kernel/kcmp.c), so every process
kept sorted by its memory and by its descriptor table finds its sharers among its neighbours, with about log2(n)
calls (1-2 µs each) when it is placed.

A process found alone stays alone while it does not run: a new sharer of its memory or table can only be made by a
clone(2) of one of its own threads (execve(2) and unshare(2) give the caller new ones, never another process).
What this cannot see: a sharer that kcmp(2) refuses (PTRACE_MODE_READ: another user's process, to an ordinary user;
one that made itself non-dumpable), whose tables the same check refuses to a scan as well. And a race: a placed
process that runs execve(2) after its read, while a new one is placed, sits out of order until the next scan
places it again, so a search passing it may miss an equal; it needs a new sharer placed in those milliseconds.
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
        self.available = True
        """False once kcmp(2) said ENOSYS: nothing is placed, no process is alone (every turn reads in full)."""
        self.orders: dict[int, list[int]] = {kind: [] for kind in KINDS}
        self.starts: dict[int, int] = {}
        """Each placed pid's start time (clock ticks, /proc/PID/stat): another start is another process."""
        self.shared: set[int] = set()
        """Placed pids equal to a neighbour in either order."""

    def __len__(self) -> int:
        return len(self.starts)

    def alone(self) -> frozenset[int]:
        """The placed processes that share neither their memory nor their descriptor table with another."""
        return frozenset(self.starts.keys() - self.shared)

    def update(self, starts: Mapping[int, int], ran: Collection[int]) -> None:
        """Follow a scan. starts: the user processes it read (pid → start time; kernel threads, which have no memory
        or table of their own, are left out and never alone); ran: those of them read in full (they ran, or are new),
        whose memory or table may be new since (execve, unshare): placed again."""
        if not self.available:
            return
        for pid in [pid for pid, start in self.starts.items() if starts.get(pid) != start or pid in ran]:
            self._remove(pid)
        for pid, start in starts.items():
            if pid not in self.starts:
                self._place(pid, start)

    def _remove(self, pid: int) -> None:
        del self.starts[pid]
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

    def _place(self, pid: int, start: int) -> None:
        try:
            kcmp(pid, pid, KCMP_VM)  # refused (EPERM) or gone: never placed, never alone
        except OSError as error:
            if error.errno == errno.ENOSYS:
                self.available = False
            return
        for _ in range(3):  # a process placed earlier may be gone: dropped, and the search made again
            try:
                spots = [(kind, self._spot(pid, kind)) for kind in KINDS]
            except _Gone as gone:
                self._remove(gone.pid)
                continue
            except OSError:
                return  # this one is gone or refused now
            self.starts[pid] = start
            for kind, (index, equal) in spots:
                self.orders[kind].insert(index, pid)
                if equal is not None:
                    self.shared.update((pid, equal))
            return

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

