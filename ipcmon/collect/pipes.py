"""Pipes and FIFOs: descriptors grouped by inode into readers and writers, with their fill and hazards.

The fill is read through a borrowed copy of an existing end (pidfd_getfd + FIONREAD/F_GETPIPE_SZ). Opening
the FIFO or /proc/PID/fd/N instead would add a reader or writer, which could wake a process blocked in
open(2) or hide a missing-reader hazard; borrowing adds neither.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import termios
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from typing import Any, NamedTuple

from ipcmon.collect import procfs
from ipcmon.collect.collector import Collector, ScanInputs, held_by
from ipcmon.collect.fds import FdRef, comm_of
from ipcmon.collect.procfs import PidFds
from ipcmon.collect.recall import Recall
from ipcmon.health import pipe_flags
from ipcmon.model import Pipe, PipeEnd, PipeFlag, PipeKind, Process, file_key


class Fill(NamedTuple):
    """What a borrowed end tells of its pipe: the bytes buffered, the capacity, and whether the kernel knows of any
    reader or writer at all (every process's ends, also those of processes ipcmon could not read)."""

    buffered: int | None
    capacity: int | None
    readers: bool | None = None
    """Some end is open for reading: from a write end, poll(2) sets POLLERR exactly when none is (fs/pipe.c
    pipe_poll); a read end is one itself. None when not asked."""
    writers: bool | None = None
    """Some end is open for writing: from a read end, POLLHUP is set when none is. For a FIFO, only once a writer
    has come and gone since the end was opened, so no POLLHUP there says nothing (None)."""


_UNKNOWN_FILL = Fill(None, None)


def read_ends(fd: int, access: str, kind: PipeKind) -> tuple[bool | None, bool | None]:
    """(readers, writers) of the pipe behind fd, an end opened with access ("r", "w", "rw"), as Fill says; a
    zero-timeout poll(2), which reads and writes nothing."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLOUT)
    try:
        events = poller.poll(0)
    except OSError:
        return None, None
    revents = events[0][1] if events else 0
    readers: bool | None = True if "r" in access else not revents & select.POLLERR if "w" in access else None
    writers: bool | None = True if "w" in access else None
    if "r" in access and "w" not in access:
        hangup = bool(revents & select.POLLHUP)
        writers = False if hangup else True if kind == "pipe" else None
    return readers, writers


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


def collect(
    processes: Mapping[int, Process],
    fds: Iterable[FdRef],
    pidfds: PidFds,
    *,
    fill: bool = True,
    recall: Recall[Pipe] | None = None,
    settled: Collection[int] = (),
    proc: str = procfs.PROC,
    unseen: bool = False,
    threads: Mapping[int, int] | None = None,
) -> tuple[Pipe, ...]:
    """Every pipe and FIFO that some readable process holds, grouped by (dev, inode).

    With recall (a Scanner's), a pipe whose ends and fill are what they were is the previous scan's record.
    An anonymous pipe whose every end belongs to a settled process (one that has not run since the previous
    scan) keeps its previous fill unread: none of its holders can have written to it or read from it. An end
    ipcmon does not see could have: one held by a process whose descriptor table it cannot read, one opened
    through /proc/PID/fd/N, one borrowed with pidfd_getfd(2). The Scanner's full read of each process in turn
    (its refresh_every) bounds how long such a change goes unseen: the pipe's fill is read again at each of
    its holders' turns. (Reading every fill whenever an unreadable process had run was the exact rule, but one
    such process that wakes every second, any other user's daemon to an ordinary user, made it every fill at
    every scan: 100 ms of a 5,000-pipe scan.) A FIFO's fill is always
    read: anyone may open it by its path, write, and go.

    A pipe that one process alone holds, with a read and a write end, is a wake-up pipe (health.wakeup_pipe)
    when that process has several threads (threads: pid → thread count; a channel between its own threads, as
    watchdog's, ipcmon's own among them), else when the open flags of its ends (/proc/PID/fdinfo, every scan:
    they are few) are all O_NONBLOCK (an event loop's self-pipe).
    A pipe some process is blocked writing to (its Process.waiting, resolved before the collectors run) is
    full (health.pipe_flags).

    A pipe with no reader (or no writer) among the ends seen asks the kernel, through the borrowed end, whether
    one exists anywhere (Fill): with unseen (some process's descriptors could not be read) that is the only way
    to know, and without an answer the flag reads ``no-reader?`` (health.pipe_flags; issue 13).
    """
    grouped: dict[tuple[int, int], list[FdRef]] = defaultdict(list)
    for ref in fds:
        if ref.kind == "pipe" or ref.kind == "fifo":
            grouped[(ref.dev, ref.inode)].append(ref)
    comms: dict[int, str] = {}
    settled = settled if isinstance(settled, (set, frozenset)) else frozenset(settled)
    blocked = {wait.key for process in processes.values()
               if (wait := process.waiting) is not None and wait.kind == "write" and wait.key is not None}

    pipes = []
    for identity, refs in grouped.items():
        kind: PipeKind = "fifo" if refs[0].kind == "fifo" else "pipe"
        if recall is not None and kind == "pipe":
            kept = recall.previous(identity)
            if kept is not None and _unchanged(refs, kept, settled, unseen):
                # Nobody who holds it has run, so each of these ends was the previous record's: with as many ends,
                # every one, and no holder can have changed its fill, its flags or its name (the test below, made
                # before any tuple is built: most pipes of a large machine take this path).
                pipes.append(recall.keep(identity, kept[0], kept[1]))
                continue
        for ref in refs:
            if ref.pid not in comms:  # once per holder, not once per end: the same few comms
                comms[ref.pid] = comm_of(processes, ref.pid)
        ends = tuple([(ref.pid, ref.fd, ref.access, comms[ref.pid]) for ref in refs])
        self_pipe = _self_held(refs) and ((threads is not None and threads.get(refs[0].pid, 1) > 1)
                                          or _all_nonblocking(refs, proc))
        writer_blocked = bool(blocked) and file_key(kind, identity[0], identity[1]) in blocked
        inputs = (ends, self_pipe, writer_blocked, unseen)
        prior = recall.get(identity, inputs) if recall is not None else None
        if prior is not None and prior.kind != kind:
            prior = None
        if prior is not None and kind == "pipe" and prior.buffered is not None and all(
            ref.pid in settled for ref in refs
        ):
            pipe = prior  # nobody who holds it has run: the fill is what it was
        else:
            state = _fill(refs, identity, kind, pidfds) if fill else _UNKNOWN_FILL
            if prior is not None and (prior.buffered, prior.capacity) == (state.buffered, state.capacity) and (
                prior.flags == _flags(prior.readers, prior.writers, state, self_pipe, unseen, writer_blocked)
            ):
                pipe = prior
            else:
                pipe = _pipe(identity, kind, refs, ends, state, self_pipe, unseen, writer_blocked)
        pipes.append(pipe if recall is None else recall.keep(identity, inputs, pipe))
    pipes.sort(key=_order)
    return tuple(pipes)


def _unchanged(refs: list[FdRef], kept: tuple[Any, Pipe], settled: frozenset[int] | set[int], unseen: bool) -> bool:
    """Whether an anonymous pipe is the previous scan's record as it stands: every end belongs to a settled
    process (its descriptor table is the previous scan's, so each end was among the record's ends), as many ends
    as then (so none has gone), its fill was known, and the hidden processes are as they were (kept: the inputs
    and record Recall kept; the inputs end with ``unseen``)."""
    inputs, record = kept
    if record.buffered is None or inputs[3] != unseen or len(inputs[0]) != len(refs):
        return False
    return settled.issuperset([ref.pid for ref in refs])


def _self_held(refs: list[FdRef]) -> bool:
    """One process holds every end, among them a read end and a write end."""
    pid = refs[0].pid
    if len(refs) > 1 and refs[1].pid != pid:
        return False  # the common case, told cheaply: a scan asks this of every pipe
    for ref in refs:
        if ref.pid != pid:
            return False
    return any("r" in ref.access for ref in refs) and any("w" in ref.access for ref in refs)


def _all_nonblocking(refs: list[FdRef], proc: str) -> bool:
    """Every end has O_NONBLOCK (an end whose flags cannot be read counts as blocking)."""
    for ref in refs:
        flags = procfs.fd_flags(ref.pid, ref.fd, proc)
        if flags is None or not flags & os.O_NONBLOCK:
            return False
    return True


def _fill(refs: list[FdRef], identity: tuple[int, int], kind: PipeKind, pidfds: PidFds) -> Fill:
    """Through the first end that can be borrowed; unknown when none can."""
    for ref in refs:
        borrowed = pidfds.borrow(ref.pid, ref.fd, identity)
        if borrowed is None:
            continue
        try:
            buffered, capacity = read_fill(borrowed)
            # Only a pipe missing a side in sight asks (a poll for every pipe is thousands of system calls a scan).
            if any("r" in end.access for end in refs) and any("w" in end.access for end in refs):
                return Fill(buffered, capacity)
            return Fill(buffered, capacity, *read_ends(borrowed, ref.access, kind))
        finally:
            os.close(borrowed)
    return _UNKNOWN_FILL


def _pipe(
    identity: tuple[int, int],
    kind: PipeKind,
    refs: list[FdRef],
    ends: tuple[tuple[int, int, str, str], ...],
    state: Fill,
    self_pipe: bool = False,
    unseen: bool = False,
    writer_blocked: bool = False,
) -> Pipe:
    readers = []
    writers = []
    for pid, fd, access, comm in ends:
        end = PipeEnd(pid=pid, comm=comm, fd=fd)
        if "r" in access:
            readers.append(end)
        if "w" in access:
            writers.append(end)
    return Pipe(
        inode=identity[1],
        dev=identity[0],
        kind=kind,
        path=refs[0].path,
        buffered=state.buffered,
        capacity=state.capacity,
        readers=tuple(readers),
        writers=tuple(writers),
        flags=_flags(readers, writers, state, self_pipe, unseen, writer_blocked),
    )


def _flags(
    readers: Iterable[PipeEnd], writers: Iterable[PipeEnd], state: Fill, self_pipe: bool, unseen: bool,
    writer_blocked: bool = False,
) -> tuple[PipeFlag, ...]:
    return pipe_flags(readers, writers, state.buffered, state.capacity, self_pipe=self_pipe,
                      kernel_readers=state.readers, kernel_writers=state.writers, unseen=unseen,
                      writer_blocked=writer_blocked)


def _order(pipe: Pipe) -> tuple[str, int]:
    return pipe.kind, pipe.inode


def _build(inputs: ScanInputs) -> tuple[Pipe, ...]:
    return collect(inputs.processes, inputs.fds, inputs.pidfds, fill=inputs.config.pipe_fill,
                   recall=inputs.recall("pipes"), settled=inputs.settled, proc=inputs.config.proc,
                   unseen=inputs.hidden > 0, threads=inputs.threads)


def _restrict(pipes: tuple[Pipe, ...], wanted: Collection[int]) -> tuple[Pipe, ...]:
    return tuple(pipe for pipe in pipes if held_by(pipe.readers, wanted) or held_by(pipe.writers, wanted))


COLLECTOR = Collector(kind="pipe", snapshot_field="pipes", needs=frozenset({"fds"}), build=_build, restrict=_restrict)
