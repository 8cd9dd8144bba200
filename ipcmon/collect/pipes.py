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
from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import Any, NamedTuple

from ipcmon.collect import procfs
from ipcmon.collect.collector import Collector, ScanInputs, held_by
from ipcmon.collect.fds import FdRef, comm_of
from ipcmon.collect.procfs import PidFds
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
    index: PipeIndex | None = None,
    settled: Collection[int] = (),
    turned: Collection[int] = (),
    proc: str = procfs.PROC,
    unseen: bool = False,
    threads: Mapping[int, int] | None = None,
    fds_by_pid: Mapping[int, list[FdRef]] | None = None,
    rotation: tuple[int, int] | None = None,
) -> tuple[Pipe, ...]:
    """Every pipe and FIFO that some readable process holds, grouped by (dev, inode), ordered by kind and inode.

    fds_by_pid: the same descriptors by pid, in scan order, each process's list the very list object of its read
    (a Scanner hands a process it took over its previous list again); grouped from fds when not given.

    With index (a Scanner's, kept from scan to scan: PipeIndex), only the pipes of processes whose descriptor list
    is not the one of the previous scan are looked at again (a process read in full, new or gone), with FIFOs and
    pipes whose fill was unknown; the others are the previous scan's records, and so is the whole tuple when none
    changed. A pipe looked at again whose ends and fill are what they were is still the previous record.
    An anonymous pipe whose every end belongs to a settled process (one that has not run since the previous
    scan) keeps its previous fill unread: none of its holders can have written to it or read from it. An end
    ipcmon does not see could have: one held by a process whose descriptor table it cannot read, one opened
    through /proc/PID/fd/N, one borrowed with pidfd_getfd(2). The Scanner's full read of each process in turn
    (its refresh_every) bounds how long such a change goes unseen: the pipe's fill is read again at its first
    holder's turn in each rotation (turned: the pids whose turn found them as they were, settled all the same;
    rotation: this scan's number and the scans in a rotation). A pipe that a holder's turn read fewer scans ago
    than a rotation is not read again at another holder's turn: the fill of the 5,000 pipes that a process holding
    all their read ends shares with 500 workers was read twice a rotation. (Reading
    every fill whenever an unreadable process had run was the exact rule, but one
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
    if fds_by_pid is None:
        fds_by_pid = _by_pid(fds)
    blocked = frozenset(wait.key for process in processes.values()
                        if (wait := process.waiting) is not None and wait.kind == "write" and wait.key is not None)
    still = frozenset(settled)
    build = _Build(processes, pidfds, fill, still.difference(turned) if turned else still, still, proc, unseen,
                   threads or {}, blocked)
    return (index if index is not None else PipeIndex()).update(fds_by_pid, build, turned, rotation)


def _by_pid(fds: Iterable[FdRef]) -> dict[int, list[FdRef]]:
    grouped: dict[int, list[FdRef]] = {}
    for ref in fds:
        grouped.setdefault(ref.pid, []).append(ref)
    return grouped


Identity = tuple[int, int]
"""A pipe's (dev, inode)."""


class _Build(NamedTuple):
    """What building one pipe's record needs besides its ends: the scan's, the same for every pipe."""

    processes: Mapping[int, Process]
    pidfds: PidFds
    fill: bool
    settled: frozenset[int]
    """The pids that have not run since the last scan, less those read again on their turn (still)."""
    still: frozenset[int]
    """Every pid that has not run since the last scan (settled, and those whose turn it is)."""
    proc: str
    unseen: bool
    threads: Mapping[int, int]
    blocked: frozenset[str]
    """The keys of the pipes some process is blocked writing to."""

    def context(self) -> tuple[Hashable, ...]:
        """What, when it changes, may change any pipe's record: every pipe is then looked at again."""
        return self.fill, self.proc, self.unseen, self.blocked


class PipeIndex:
    """What pipes.collect keeps between a Scanner's scans: each process's pipe ends and the list they came from,
    the ends of each pipe, its record and the inputs it was built from, and the last result."""

    def __init__(self) -> None:
        self.lists: dict[int, list[FdRef]] = {}
        """Each process's descriptor list as the last scan had it (the object: compared by identity)."""
        self.ends: dict[int, list[FdRef]] = {}
        """The pipe and FIFO ends among them, by pid."""
        self.pipes: dict[Identity, list[FdRef]] = {}
        """Each pipe's ends, in scan order."""
        self.records: dict[Identity, tuple[Hashable, Pipe]] = {}
        """Each pipe's record and the inputs it was built from."""
        self.again: set[Identity] = set()
        """Looked at every scan: FIFOs (anyone may write to one by its path) and pipes whose fill is unknown."""
        self.result: tuple[Pipe, ...] = ()
        self.positions: dict[Identity, int] = {}
        """Where each record is in result."""
        self.context: tuple[Hashable, ...] | None = None
        self.looked_at = 0
        """How many pipes the last update looked at again (for tests: the cost of a scan follows change)."""
        self.looked_in: dict[Identity, int] = {}
        """The scan (ScanMemory.scans_begun) in which a holder's turn last read each pipe's fill."""

    def __len__(self) -> int:
        """The pipes it keeps a record of."""
        return len(self.records)

    def update(self, fds_by_pid: Mapping[int, list[FdRef]], build: _Build, turned: Collection[int] = (),
               rotation: tuple[int, int] | None = None) -> tuple[Pipe, ...]:
        """This scan's pipes, looking again only at those of the processes whose list changed or whose turn it is
        (collect; rotation: this scan's number and the scans a rotation has)."""
        context = build.context()
        if context != self.context:
            self.context = context
            return self._rebuild(fds_by_pid, build)
        lists = self.lists
        affected = set(self.again)
        changed = []
        for pid, listed_now in fds_by_pid.items():
            if lists.get(pid) is not listed_now or (pid in turned and rotation is None):
                changed.append(pid)
            elif pid in turned:
                assert rotation is not None
                # Its turn: the fill of each of its pipes that no holder's turn read in the last rotation.
                scan, every = rotation
                for ref in self.ends.get(pid, ()):
                    identity = (ref.dev, ref.inode)
                    if scan - self.looked_in.get(identity, -every) >= every:
                        self.looked_in[identity] = scan
                        affected.add(identity)
        changed.extend(pid for pid in lists if pid not in fds_by_pid)  # gone
        fresh: dict[Identity, list[FdRef]] = {}
        for pid in changed:
            for ref in self.ends.pop(pid, ()):
                affected.add((ref.dev, ref.inode))
            listed = fds_by_pid.get(pid)
            if listed is None:
                del lists[pid]
                continue
            lists[pid] = listed
            mine = [ref for ref in listed if ref.kind == "pipe" or ref.kind == "fifo"]
            if mine:
                self.ends[pid] = mine
                for ref in mine:
                    identity = (ref.dev, ref.inode)
                    affected.add(identity)
                    fresh.setdefault(identity, []).append(ref)
        self.looked_at = len(affected)
        if not affected:
            return self.result
        gone = frozenset(changed)
        renewed: dict[Identity, Pipe] = {}
        added = removed = False
        for identity in affected:
            refs = [ref for ref in self.pipes.get(identity, ()) if ref.pid not in gone]
            if identity in fresh:
                refs.extend(fresh[identity])
                refs.sort(key=_pid_of)  # scan order: by pid (stable: each process's own order kept)
            if not refs:
                removed |= self._forget(identity)
                continue
            added |= identity not in self.records
            self.pipes[identity] = refs
            renewed[identity] = self._look(identity, refs, build)
        if added or removed:
            return self._order()
        result = self.result
        positions = self.positions
        if any(result[positions[identity]] is not pipe for identity, pipe in renewed.items()):
            # A new tuple only when a record is new: the same one tells every later reader that nothing changed
            # (events.diff, waiting.analyse's keyed pipes).
            replaced = list(result)
            for identity, pipe in renewed.items():
                replaced[positions[identity]] = pipe
            self.result = tuple(replaced)
        return self.result

    def _rebuild(self, fds_by_pid: Mapping[int, list[FdRef]], build: _Build) -> tuple[Pipe, ...]:
        """Every pipe looked at again (the first scan, or a change of context)."""
        self.lists = dict(fds_by_pid)
        self.ends = {}
        pipes: dict[Identity, list[FdRef]] = {}
        for pid, listed in fds_by_pid.items():
            mine = [ref for ref in listed if ref.kind == "pipe" or ref.kind == "fifo"]
            if mine:
                self.ends[pid] = mine
                for ref in mine:
                    pipes.setdefault((ref.dev, ref.inode), []).append(ref)
        for identity in self.records.keys() - pipes.keys():
            self._forget(identity)
        self.pipes = pipes
        self.looked_at = len(pipes)
        for identity, refs in pipes.items():
            self._look(identity, refs, build)
        return self._order()

    def _forget(self, identity: Identity) -> bool:
        self.pipes.pop(identity, None)
        self.looked_in.pop(identity, None)
        self.again.discard(identity)
        return self.records.pop(identity, None) is not None

    def _order(self) -> tuple[Pipe, ...]:
        ordered = sorted(self.records.items(), key=_entry_order)
        self.positions = {identity: position for position, (identity, _) in enumerate(ordered)}
        self.result = tuple(entry[1] for _, entry in ordered)
        return self.result

    def _look(self, identity: Identity, refs: list[FdRef], build: _Build) -> Pipe:
        """One pipe's record from its ends, the previous one when nothing it was built from changed."""
        kept = self.records.get(identity)
        entry = _one(identity, refs, kept, build)
        self.records[identity] = entry
        pipe = entry[1]
        if pipe.kind == "fifo" or pipe.buffered is None:
            self.again.add(identity)
        else:
            self.again.discard(identity)
        return pipe


def _pid_of(ref: FdRef) -> int:
    return ref.pid


def _entry_order(item: tuple[Identity, tuple[Hashable, Pipe]]) -> tuple[str, int]:
    pipe = item[1][1]
    return pipe.kind, pipe.inode


def _one(
    identity: Identity, refs: list[FdRef], kept: tuple[Hashable, Pipe] | None, build: _Build
) -> tuple[Hashable, Pipe]:
    """(inputs, record) of one pipe or FIFO; kept: the previous scan's."""
    kind: PipeKind = "fifo" if refs[0].kind == "fifo" else "pipe"
    settled = build.settled
    if kept is not None and kind == "pipe" and _unchanged(refs, kept, build.still, build.unseen):
        # Nobody who holds it has run, so each of these ends was the previous record's: with as many ends,
        # every one, and no holder can have changed its fill, its flags or its name (the test below, made
        # before any tuple is built).
        if settled is build.still or _unchanged(refs, kept, settled, build.unseen):
            return kept
        # A holder's turn (Scanner rotation): only its fill is read again, which an end no scanned process holds
        # may have changed.
        return _refilled(identity, kept, refs, build)
    processes = build.processes
    ends = tuple([(ref.pid, ref.fd, ref.access, comm_of(processes, ref.pid)) for ref in refs])
    self_pipe = _self_held(refs) and (build.threads.get(refs[0].pid, 1) > 1 or _all_nonblocking(refs, build.proc))
    writer_blocked = bool(build.blocked) and file_key(kind, identity[0], identity[1]) in build.blocked
    # The path too: anyone may rename a FIFO (its holders' links say so).
    inputs = (ends, self_pipe, writer_blocked, build.unseen, refs[0].path)
    prior = kept[1] if kept is not None and kept[0] == inputs and kept[1].kind == kind else None
    if prior is not None and kind == "pipe" and prior.buffered is not None and all(
        ref.pid in settled for ref in refs
    ):
        return inputs, prior  # nobody who holds it has run: the fill is what it was
    state = _fill(refs, identity, kind, build.pidfds) if build.fill else _UNKNOWN_FILL
    if prior is not None and (prior.buffered, prior.capacity) == (state.buffered, state.capacity) and (
        prior.flags == _flags(prior.readers, prior.writers, state, self_pipe, build.unseen, writer_blocked)
    ):
        return inputs, prior
    return inputs, _pipe(identity, kind, refs, ends, state, self_pipe, build.unseen, writer_blocked)


def _refilled(identity: Identity, kept: tuple[Any, Pipe], refs: list[FdRef], build: _Build) -> tuple[Hashable, Pipe]:
    """The kept (inputs, record) of a pipe whose holders have not run, with its fill read again: the same record
    when the fill and what the kernel says of its ends are as they were."""
    inputs, prior = kept
    ends, self_pipe, writer_blocked, unseen, _ = inputs
    state = _fill(refs, identity, "pipe", build.pidfds) if build.fill else _UNKNOWN_FILL
    if (prior.buffered, prior.capacity) == (state.buffered, state.capacity) and (
        prior.flags == _flags(prior.readers, prior.writers, state, self_pipe, unseen, writer_blocked)
    ):
        return kept
    return inputs, _pipe(identity, "pipe", refs, ends, state, self_pipe, unseen, writer_blocked)


def _unchanged(refs: list[FdRef], kept: tuple[Any, Pipe], settled: frozenset[int] | set[int], unseen: bool) -> bool:
    """Whether an anonymous pipe is the previous scan's record as it stands: every end belongs to a settled
    process (its descriptor table is the previous scan's, so each end was among the record's ends), as many ends
    as then (so none has gone), its fill was known, and the hidden processes are as they were (kept: the inputs
    and record Recall kept; the inputs' fourth is ``unseen``)."""
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
                   index=inputs.kept("pipes", PipeIndex), settled=inputs.settled, turned=inputs.turned,
                   proc=inputs.config.proc,
                   unseen=inputs.hidden > 0, threads=inputs.threads, fds_by_pid=inputs.fds_by_pid,
                   rotation=(memory.scans_begun, memory.refresh_every) if (memory := inputs.memory) else None)


def _restrict(pipes: tuple[Pipe, ...], wanted: Collection[int]) -> tuple[Pipe, ...]:
    return tuple(pipe for pipe in pipes if held_by(pipe.readers, wanted) or held_by(pipe.writers, wanted))


COLLECTOR = Collector(kind="pipe", snapshot_field="pipes", needs=frozenset({"fds"}), build=_build, restrict=_restrict)
