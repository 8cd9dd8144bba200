"""Reading another process's memory through /proc/PID/mem: the arguments a blocked system call points at.

A process blocked in poll(2) names its descriptors in an array in its own memory, one blocked in open(2) names
its path there, and one in rt_sigtimedwait(2) its signal set: /proc/PID/syscall shows only the pointers. The
kernel lets a reader open /proc/PID/mem when it may ptrace-attach to the process (root, or the same user and a
process that is not non-dumpable; proc(5), ptrace(2) "Ptrace access mode checking"). Every failure (not
permitted, the process gone, an address not mapped, a short read) reads as None: unknown, never an error.
"""

from __future__ import annotations

import os

from ipcmon.collect import procfs

_LARGEST_ADDRESS = (1 << 63) - 1
"""pread(2) takes a signed offset: larger addresses (kernel space, garbage) cannot be asked for."""

PATH_MAX = 4096
"""The longest path the kernel accepts, with its NUL (include/uapi/linux/limits.h)."""


class Memory:
    """One process's memory, opened on the first read and closed by close() (or ``with``)."""

    def __init__(self, pid: int, proc: str = procfs.PROC) -> None:
        self._path = f"{proc}/{pid}/mem"
        self._fd: int | None = None
        self._failed = False

    def _open(self) -> int | None:
        if self._fd is None and not self._failed:
            try:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self._failed = True  # not permitted, or gone: every read of it is unknown
        return self._fd

    def read(self, address: int, size: int, *, short: bool = False) -> bytes | None:
        """size bytes at address in the process; None when they cannot all be read (with short, the bytes
        up to the first page that cannot be, if any)."""
        if address <= 0 or size <= 0 or address + size > _LARGEST_ADDRESS:
            return None
        fd = self._open()
        if fd is None:
            return None
        try:
            data = os.pread(fd, size, address)
        except OSError:
            return None  # EIO: not mapped; ESRCH/EPERM: the process went or changed credentials
        if len(data) == size or (short and data):
            return data
        return None

    def read_string(self, address: int, limit: int = PATH_MAX) -> bytes | None:
        """The NUL-terminated string at address (without its NUL); None when unreadable or longer than limit."""
        # Read to the end of the page first: a path is short, and the next page may not be mapped.
        first = min(limit, 4096 - address % 4096)
        data = self.read(address, first, short=True)
        if data is None:
            return None
        end = data.find(b"\0")
        if end >= 0:
            return data[:end]
        if len(data) < first or first == limit:
            return None
        rest = self.read(address + first, limit - first, short=True)
        if rest is None:
            return None
        end = rest.find(b"\0")
        return data + rest[:end] if end >= 0 else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
