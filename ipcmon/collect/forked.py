"""The forked second reader: about half of the processes read in a child that pickles its results back."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import TypeVar

from ipcmon.collect import procfs

R = TypeVar("R")

FORK_MIN_PROCESSES = 200
"""Below this many processes a fork costs more than it saves."""


def read_forked(pids: list[int], reader: Callable[[int], R], proc: str = procfs.PROC) -> list[tuple[int, R]]:
    """reader(pid) for every pid, about half of them in a forked child that pickles its results back.

    Reading /proc is system calls and small parsing, and one Python thread can only do one at a time; a
    second process runs on the second core. The halves are balanced by descriptor count (the size of
    /proc/PID/fd is its number of open descriptors on Linux 6.2 and later). The child closes every
    descriptor but its pipe as soon as it starts and leaves with os._exit, running no cleanup of its
    parent's. When the fork fails or the child does not report, the parent reads its half itself.
    """
    if len(pids) < FORK_MIN_PROCESSES or len(os.sched_getaffinity(0)) < 2:
        return [(pid, reader(pid)) for pid in pids]
    # This process first, before it holds the pipe to the child: the pipe is not part of the machine's IPC.
    own = os.getpid()
    results = [(pid, reader(pid)) for pid in pids if pid == own]
    mine, theirs = _halves([pid for pid in pids if pid != own], proc)
    read_end, write_end = os.pipe()
    try:
        child = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return sorted(results + [(pid, reader(pid)) for pid in mine + theirs], key=_first)
    if child == 0:  # the child: read, report, and leave without running anything of the parent's
        status = 1
        try:
            os.closerange(3, write_end)
            os.closerange(write_end + 1, os.sysconf("SC_OPEN_MAX"))
            with open(write_end, "wb") as out:
                pickle.dump([(pid, reader(pid)) for pid in theirs], out, protocol=pickle.HIGHEST_PROTOCOL)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    report = open(read_end, "rb")  # noqa: SIM115 (closed before the wait below, whatever happens)
    try:
        results += [(pid, reader(pid)) for pid in mine]
        data = report.read()
    finally:
        report.close()  # first: a child still writing gets EPIPE and leaves, and the wait cannot hang
        os.waitpid(child, 0)
    try:
        reported: list[tuple[int, R]] = pickle.loads(data)
    except Exception:  # the child died or was killed before it reported: read its half here
        reported = [(pid, reader(pid)) for pid in theirs]
    return sorted(results + reported, key=_first)


def _first(pair: tuple[int, object]) -> int:
    return pair[0]


def _halves(pids: list[int], proc: str) -> tuple[list[int], list[int]]:
    """Two lists of pids with about the same work in each: a process (its maps, status and the rest) costs
    about as much as 50 descriptors."""
    weighted = []
    for pid in pids:
        try:
            weighted.append((os.stat(f"{proc}/{pid}/fd").st_size + 50, pid))
        except OSError:
            weighted.append((50, pid))
    weighted.sort(reverse=True)
    halves: tuple[list[int], list[int]] = ([], [])
    loads = [0, 0]
    for weight, pid in weighted:
        lighter = 0 if loads[0] <= loads[1] else 1
        halves[lighter].append(pid)
        loads[lighter] += weight
    return sorted(halves[0]), sorted(halves[1])
