"""Pipes and FIFOs: descriptors grouped by inode into readers and writers, with their fill and hazards.

The fill is read through a borrowed copy of an existing end (pidfd_getfd + FIONREAD/F_GETPIPE_SZ). Opening
the FIFO or /proc/PID/fd/N instead would add a reader or writer, which could wake a process blocked in
open(2) or hide a missing-reader hazard; borrowing adds neither.
"""

from __future__ import annotations

import array
import fcntl
import os
import termios
from collections import defaultdict
from collections.abc import Iterable, Mapping

from ipcmon.collect.fds import FdRef
from ipcmon.collect.procfs import PidFds
from ipcmon.model import Pipe, PipeEnd, PipeFlag, PipeKind, Process


def read_fill(fd: int) -> tuple[int | None, int | None]:
    """(bytes buffered, capacity) of the pipe behind fd; reads no data."""
    try:
        buffered = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, buffered, True)
        count: int | None = buffered[0]
    except OSError:
        count = None
    try:
        capacity: int | None = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except OSError:
        capacity = None
    return count, capacity


def flags_for(
    readers: Iterable[PipeEnd], writers: Iterable[PipeEnd], buffered: int | None, capacity: int | None
) -> tuple[PipeFlag, ...]:
    reader_pids = {end.pid for end in readers}
    writer_pids = {end.pid for end in writers}
    flags: list[PipeFlag] = []
    if not reader_pids:
        flags.append("no-reader")
    if not writer_pids:
        flags.append("no-writer")
    if buffered is not None and capacity and buffered >= capacity:
        flags.append("full")
    if reader_pids & writer_pids:
        flags.append("both-ends")
    return tuple(flags)


def collect(
    processes: Mapping[int, Process],
    fds: Iterable[FdRef],
    pidfds: PidFds,
    *,
    fill: bool = True,
) -> tuple[Pipe, ...]:
    """Every pipe and FIFO that some readable process holds, grouped by (dev, inode)."""
    grouped: dict[tuple[int, int], list[FdRef]] = defaultdict(list)
    for ref in fds:
        if ref.kind in ("pipe", "fifo"):
            grouped[(ref.dev, ref.inode)].append(ref)

    pipes = []
    for (dev, inode), refs in grouped.items():
        readers = []
        writers = []
        for ref in refs:
            process = processes.get(ref.pid)
            end = PipeEnd(pid=ref.pid, comm=process.comm if process else "", fd=ref.fd)
            if "r" in ref.access:
                readers.append(end)
            if "w" in ref.access:
                writers.append(end)
        buffered = capacity = None
        if fill:
            for ref in refs:
                borrowed = pidfds.borrow(ref.pid, ref.fd, (dev, inode))
                if borrowed is None:
                    continue
                try:
                    buffered, capacity = read_fill(borrowed)
                finally:
                    os.close(borrowed)
                break
        kind: PipeKind = "fifo" if refs[0].kind == "fifo" else "pipe"
        pipes.append(
            Pipe(
                inode=inode,
                dev=dev,
                kind=kind,
                path=refs[0].path,
                buffered=buffered,
                capacity=capacity,
                readers=tuple(readers),
                writers=tuple(writers),
                flags=flags_for(readers, writers, buffered, capacity),
            )
        )
    pipes.sort(key=lambda pipe: (pipe.kind, pipe.inode))
    return tuple(pipes)
