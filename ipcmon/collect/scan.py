"""One consistent pass over /proc and the IPC filesystems, producing a Snapshot."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import pickle
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

from ipcmon.collect import mqueue, pipes, procfs, shm, signals, sysv, waiting
from ipcmon.collect.fds import Devices, FdRef, MapRef, maps_token, read_fds, read_maps
from ipcmon.collect.procfs import Denied, Gone, PidFds
from ipcmon.collect.recall import Recall
from ipcmon.model import KINDS, MessageQueue, Pipe, Process, ProcessSignals, ShmSegment, Snapshot, Sysv
from ipcmon.safe import counted

MOUNT_MQUEUE_HINT = "mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue"


R = TypeVar("R")

ENV_PROC = "IPCMON_PROC"
ENV_SHM_DIR = "IPCMON_SHM_DIR"
ENV_MQUEUE_DIR = "IPCMON_MQUEUE_DIR"
"""A directory to list as the mqueue mount, or ``none`` to scan as if none were mounted."""


def _env_mqueue_dir() -> str | None:
    value = os.environ.get(ENV_MQUEUE_DIR, "")
    return value if value and value.lower() != "none" else None


def _env_find_mqueue() -> bool:
    return os.environ.get(ENV_MQUEUE_DIR, "").lower() != "none"


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """Where to look. The defaults are the system's, or the IPCMON_* environment variables (README.md,
    "Pointing ipcmon elsewhere"): every command and the dashboard build theirs from the defaults."""

    kinds: tuple[str, ...] = KINDS
    pids: frozenset[int] | None = None
    """Only these processes (and the objects they hold); None for every process."""
    proc: str = field(default_factory=lambda: os.environ.get(ENV_PROC) or procfs.PROC)
    shm_dir: str = field(default_factory=lambda: os.environ.get(ENV_SHM_DIR) or shm.SHM_DIR)
    mqueue_dir: str | None = field(default_factory=_env_mqueue_dir)
    """The mqueue mount to list; None to find it in /proc/self/mountinfo (unless find_mqueue is False)."""
    find_mqueue: bool = field(default_factory=_env_find_mqueue)
    """With mqueue_dir None, look the mount up; False scans as if none were mounted (queues only via fds)."""
    pipe_fill: bool = True
    """Borrow a descriptor of each pipe to read its fill (pidfd_getfd)."""


@dataclass(slots=True)
class _ProcessTables:
    processes: dict[int, Process] = field(default_factory=dict)
    fds: list[FdRef] = field(default_factory=list)
    maps: list[MapRef] = field(default_factory=list)
    signals: list[ProcessSignals] = field(default_factory=list)
    waits: dict[int, tuple[waiting.RawWait, list[FdRef]]] = field(default_factory=dict)
    hidden: int = 0
    blind: bool = False
    """Some process's descriptor table could not be read: its pipe ends are unknown."""


def find_mqueue_dir(proc: str = procfs.PROC) -> str | None:
    mount = procfs.find_mount("mqueue", proc)
    return mount.mount_point if mount else None


def scan(config: ScanConfig = ScanConfig(), *, fork: bool = False) -> Snapshot:
    """Read every mechanism in config.kinds once; vanished processes and objects simply drop out.

    With fork, a forked child reads about half of the processes at the same time (see read_forked): only
    for a caller with no threads and no descriptors it minds a copy of for a moment (``ipcmon snapshot``).
    """
    with collector_paused():
        return _scan(config, None, fork=fork)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a scan builds its records.

    A large scan allocates tens of thousands of records, none of them in a reference cycle (they are freed
    by reference counting), yet every 700 allocations the collector ran and walked them, and now and then
    the whole heap: a seventh of the scan's time. Paused, it runs once afterwards and finds the same.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


REFRESH_EVERY = 10
"""A Scanner reads each process in full at least once in this many scans, whatever the scheduler says."""
MAX_SIGNED_THREADS = 64
"""Processes with more threads are always read in full: checking every thread would cost about as much."""


class _Known(NamedTuple):
    """A process as the last scan read it, with the scheduler's account of it at that moment."""

    state: str
    signature: bytes
    read: _Read
    process: Process
    """As the snapshot showed it, its wait resolved."""


class Scanner:
    """Scans again and again (the dashboard, ``watch``), re-reading only the processes that have run since.

    A process's descriptor table and mappings change only when one of its own threads runs (open, close,
    mmap, exec, receiving a descriptor): no other process can change them. /proc/PID/schedstat gives each
    thread's run time in nanoseconds and how many times it was put on a CPU, so when those are the same as
    at the last scan for every thread, and the process is not running now, its fds, maps, command line,
    owner and the system call it sleeps in are the ones read last time. Only what others can change is read
    again for it: stat (name, parent), status (pending signals), the fill of its pipes (see pipes.collect),
    and where a collector uses them, the size, owner, mode and link count of the files its descriptors point
    at. Each process is still read in full every ``refresh_every`` scans, for what that argument cannot see
    (a descriptor table shared with clone(CLONE_FILES) between two processes, which is rare).
    """

    def __init__(self, config: ScanConfig = ScanConfig(), *, refresh_every: int = REFRESH_EVERY) -> None:
        self.config = config
        self._memory = _Memory(refresh_every)

    def scan(self) -> Snapshot:
        with collector_paused():
            return _scan(self.config, self._memory)

    @property
    def reused(self) -> frozenset[int]:
        """The pids whose tables the last scan took over from the scan before it."""
        return frozenset(self._memory.reused)

    def remembered(self) -> dict[str, int]:
        """How much is kept between scans: one entry per process, pipe and segment of the last scan."""
        memory = self._memory
        return {"processes": len(memory.known), "pipes": len(memory.pipes), "shm": len(memory.shm)}


class _Memory:
    """What a Scanner keeps from one scan to the next."""

    def __init__(self, refresh_every: int) -> None:
        self.refresh_every = max(1, refresh_every)
        self.known: dict[int, _Known] = {}
        self.round = 0
        self.reused: set[int] = set()
        self.pipes: Recall[Pipe] = Recall()
        self.shm: Recall[ShmSegment] = Recall()

    def turn(self) -> None:
        """A new scan begins."""
        self.round += 1
        self.reused = set()
        self.pipes.turn()
        self.shm.turn()

    def done(self) -> None:
        """The scan is over."""
        self.pipes.done()
        self.shm.done()


def _scan(config: ScanConfig, memory: _Memory | None, *, fork: bool = False) -> Snapshot:
    started = time.perf_counter()
    taken_at = time.time()
    kinds = set(config.kinds)
    notes: list[str] = []

    shm_dir = config.shm_dir
    try:
        shm_dev: int | None = os.stat(shm_dir).st_dev
    except OSError:
        shm_dev = None
        if "shm" in kinds:
            notes.append(f"{shm_dir} does not exist: POSIX shared memory cannot be listed.")
    if "shm" in kinds and shm_dev is not None and (shm_note := shm.dir_note(shm_dir)) is not None:
        notes.append(shm_note)
    mqueue_dir = config.mqueue_dir
    if mqueue_dir is None and config.find_mqueue:
        mqueue_dir = find_mqueue_dir(config.proc)
    mqueue_dev: int | None = None
    if mqueue_dir is not None:
        try:
            mqueue_dev = os.stat(mqueue_dir).st_dev
        except OSError:
            mqueue_dir = None
    if mqueue_dir is None and "mqueue" in kinds:
        notes.append(
            "No mqueue filesystem is mounted: only queues some process holds open are listed. "
            f"To see all of them, mount it (as root): {MOUNT_MQUEUE_HINT}"
        )

    devices = Devices(shm_dev, mqueue_dev)
    tables = _read_processes(config, kinds, devices, memory, fork=fork)
    if tables.hidden:
        remedy = (
            "the kernel refuses even root here (a non-dumpable process, or another namespace)"
            if os.geteuid() == 0
            else "run as root to see them"
        )
        notes.append(
            f"{counted(tables.hidden, 'process', 'processes')} could not be fully read (not permitted): objects "
            f"only they hold may show as orphaned, and pipe ends they hold are missing; {remedy}."
        )

    segments: tuple[ShmSegment, ...] = ()
    queues: tuple[MessageQueue, ...] = ()
    pipe_list: tuple[Pipe, ...] = ()
    sysv_tables = Sysv()
    with PidFds() as pidfds:
        if "shm" in kinds and shm_dev is not None:
            segments = shm.collect(shm_dir, tables.processes, tables.fds, tables.maps, config.proc,
                                   recall=memory.shm if memory is not None else None)
        if "mqueue" in kinds:
            queues = mqueue.collect(mqueue_dir, tables.processes, tables.fds, pidfds, config.proc)
        if "pipe" in kinds:
            pipe_list = pipes.collect(
                tables.processes, tables.fds, pidfds, fill=config.pipe_fill,
                recall=memory.pipes if memory is not None else None,
                settled=memory.reused if memory is not None and not tables.blind else (),
            )
    if "sysv" in kinds:
        sysv_tables = sysv.collect(tables.processes, tables.maps, config.proc)
        if not sysv_tables.available:
            notes.append("/proc/sysvipc is missing: this kernel has no SysV IPC (or /proc is not mounted).")

    snapshot = Snapshot(
        taken_at=taken_at,
        kinds=tuple(kind for kind in KINDS if kind in kinds),
        processes=tuple(tables.processes.values()),
        hidden_processes=tables.hidden,
        shm=segments,
        mqueues=queues,
        pipes=pipe_list,
        signals=tuple(tables.signals),
        sysv=sysv_tables,
        notes=tuple(notes),
        shm_dir=shm_dir if shm_dev is not None else None,
        mqueue_dir=mqueue_dir,
        scan_seconds=time.perf_counter() - started,
        deadlocks=waiting.find_deadlocks(tables.processes.values(), pipe_list, queues),
    )
    if memory is not None:
        memory.done()
    if config.pids is not None:
        snapshot = restrict_to_pids(snapshot, config.pids)
    return snapshot


class _Read(NamedTuple):
    """What one process contributed to a scan."""

    process: Process
    fds: list[FdRef]
    maps: list[MapRef]
    signals: ProcessSignals | None
    wait: waiting.RawWait | None
    """To be resolved once every descriptor is known (None when reused: the process has it resolved)."""
    state: str = ""
    signature: bytes | None = None
    """The scheduler's account of the process before its tables were read (Scanner only)."""
    reused: bool = False
    """The fds, maps, command line, owner and wait are the previous scan's (nothing of it has run since)."""
    fds_hidden: bool = False
    """Its descriptor table could not be read."""
    signal_section: bytes = b""
    """The lines of /proc/PID/status that ``signals`` was decoded from."""


_DENIED = "denied"


def _read_processes(
    config: ScanConfig, kinds: Collection[str], devices: Devices, memory: _Memory | None = None, *, fork: bool = False
) -> _ProcessTables:
    proc = config.proc
    tables = _ProcessTables()
    try:
        pid_list = procfs.pids(proc)
    except OSError:
        return tables
    reader = functools.partial(
        _read_process,
        devices=devices,
        proc=proc,
        need_fds=any(kind in kinds for kind in ("shm", "mqueue", "pipe")),
        need_maps="shm" in kinds or "sysv" in kinds,
        need_signals="signal" in kinds,
        token=maps_token(devices.shm_dev) if devices.shm_dev is not None else None,
        remember=memory is not None,
    )
    known: dict[int, _Known] = {}
    if memory is not None:
        memory.turn()
        known, memory.known = memory.known, {}
    remembered: list[_Read] = []
    # Threads do not help: two threads reading /proc were measured twice as slow as one (every read
    # releases the GIL and the threads spend their time handing it over). A forked child does (read_forked).
    if fork and memory is None and proc == procfs.PROC:
        results: Iterable[tuple[int, _Read | str | None]] = read_forked(pid_list, reader, proc)
    else:
        results = ((pid, reader(pid, previous=_previous(memory, known, pid))) for pid in pid_list)
    for pid, result in results:
        if result is None:
            continue
        if result == _DENIED:
            tables.hidden += 1
            tables.blind = True
            continue
        assert isinstance(result, _Read)
        process = result.process
        tables.processes[pid] = process
        tables.hidden += process.hidden
        tables.blind = tables.blind or result.fds_hidden
        tables.fds.extend(result.fds)
        tables.maps.extend(result.maps)
        if result.signals is not None:
            tables.signals.append(result.signals)
        if result.wait is not None:
            tables.waits[pid] = (result.wait, result.fds)
        if result.signature is not None:
            remembered.append(result)
    _resolve_waits(tables, proc)
    if memory is not None:
        for result in remembered:
            pid = result.process.pid
            assert result.signature is not None
            memory.known[pid] = _Known(result.state, result.signature, result, tables.processes[pid])
            if result.reused:
                memory.reused.add(pid)
    return tables


def _previous(memory: _Memory | None, known: dict[int, _Known], pid: int) -> _Known | None:
    """What the last scan read of pid, unless it is this process's turn to be read in full."""
    if memory is None or not (pid + memory.round) % memory.refresh_every:
        return None
    return known.get(pid)


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


def _read_process(
    pid: int,
    *,
    devices: Devices,
    proc: str,
    need_fds: bool,
    need_maps: bool,
    need_signals: bool,
    token: bytes | None,
    remember: bool = False,
    previous: _Known | None = None,
) -> _Read | str | None:
    """Everything a scan needs from one process; None when it exited mid-read, _DENIED when refused.

    With remember, the scheduler's signature is read first; given the previous read of the same process
    with the same signature, its tables are taken over (Scanner).
    """
    # Pin the process first: if it is reaped while we read, its pid may already name another process
    # whose descriptors we would attribute to it (issue 7). Only real pids can be pinned.
    pinned = procfs.pin(pid) if proc == procfs.PROC else None
    try:
        stat = procfs.parse_stat(procfs.read_bytes(f"{proc}/{pid}/stat"))
        signature = run_signature(pid, stat, proc) if remember else None
        if (
            previous is not None
            and signature is not None
            and signature == previous.signature
            and stat.start_ticks == previous.process.start_ticks
            and stat.state == previous.state
        ):
            result = _take_over(previous, stat, signature)
        else:
            result = _read_tables(pid, stat, devices, proc, need_fds, need_maps, token)._replace(signature=signature)
        if need_signals:
            result = _read_signals(result, stat, previous, proc)
        if pinned is not None and not procfs.still_running(pinned):
            return None  # exited mid-scan, and what we read may mix it with a successor on its pid
    except (Gone, FileNotFoundError, ProcessLookupError):
        return None  # exited mid-scan: it drops out whole
    except Denied:
        return _DENIED
    except (ValueError, IndexError):
        return None  # a record cut short by the process exiting
    finally:
        if pinned is not None:
            os.close(pinned)
    return result


def _read_tables(
    pid: int,
    stat: procfs.Stat,
    devices: Devices,
    proc: str,
    need_fds: bool,
    need_maps: bool,
    token: bytes | None,
) -> _Read:
    try:
        cmdline = procfs.parse_cmdline(procfs.read_bytes(f"{proc}/{pid}/cmdline"))
    except Denied:
        cmdline = ()
    uid = os.stat(f"{proc}/{pid}").st_uid
    fds: list[FdRef] = []
    maps: list[MapRef] = []
    fds_hidden = maps_hidden = False
    if need_fds:
        try:
            fds = read_fds(pid, devices, proc)
        except Denied:
            fds_hidden = True
    if need_maps and not fds_hidden:
        try:
            maps = read_maps(pid, token, proc)
        except Denied:
            maps_hidden = True
    process = Process(
        pid=pid,
        ppid=stat.ppid,
        comm=stat.comm,
        cmdline=cmdline,
        uid=uid,
        user=procfs.user_name(uid),
        start_ticks=stat.start_ticks,
        start_time=procfs.start_epoch(stat.start_ticks, proc),
        hidden=fds_hidden or maps_hidden,
    )
    raw = waiting.read_raw(pid, proc) if stat.state in ("S", "D") else None
    return _Read(process, fds, maps, None, raw, stat.state, fds_hidden=fds_hidden)


def _take_over(previous: _Known, stat: procfs.Stat, signature: bytes) -> _Read:
    """The previous read of a process that has not run since, with its name and parent as they are now.

    What others can change about the files its descriptors point at (size, owner, mode, links) is read again
    by the collectors that use it (fds.refresh).
    """
    old = previous.read
    process = previous.process
    # Reparented when its parent exited. (Its name cannot change without it running: the kernel refuses a
    # write to another process's /proc/PID/comm. Compared all the same, it costs nothing.)
    if (process.comm, process.ppid) != (stat.comm, stat.ppid):
        process = replace(process, comm=stat.comm, ppid=stat.ppid)
    return old._replace(process=process, signals=None, wait=None, signature=signature, reused=True)


def _read_signals(result: _Read, stat: procfs.Stat, previous: _Known | None, proc: str) -> _Read:
    """Add the signal masks; a single-threaded process whose status shows the same masks keeps its record."""
    pid = result.process.pid
    data = procfs.read_bytes(f"{proc}/{pid}/status")
    section = signals.mask_section(data)
    if previous is not None and section and section == previous.read.signal_section:
        old = previous.read.signals
        if old is not None and len(old.threads) == 1 and old.comm == stat.comm:
            return result._replace(signals=old, signal_section=section)
    # The section holds every line from_status reads: parsing 7 lines instead of 55 is a tenth of the time.
    process_signals = signals.from_status(pid, stat.comm, procfs.parse_status(section or data), proc)
    return result._replace(signals=process_signals, signal_section=section)


_UNSIGNED_STATES = frozenset("RZX")
"""Running now (its run time may not be accounted yet), or a dead leader whose threads may live on."""


def run_signature(pid: int, stat: procfs.Stat, proc: str = procfs.PROC) -> bytes | None:
    """Each thread's run time (ns) and run count from schedstat; equal signatures mean no thread has run.

    None when it cannot tell: the process is running or is a zombie leader, has too many threads to check,
    or the kernel keeps no run statistics (it then prints "0 0 0" for every task).
    """
    if stat.state in _UNSIGNED_STATES or stat.threads > MAX_SIGNED_THREADS:
        return None
    try:
        if stat.threads == 1:
            parts = [procfs.read_bytes(f"{proc}/{pid}/schedstat")]
        else:
            task = f"{proc}/{pid}/task/"
            parts = [name.encode() + b" " + procfs.read_bytes(f"{task}{name}/schedstat")
                     for name in sorted(os.listdir(task))]
    except (Gone, Denied, OSError):
        return None
    if any(part.split()[-1:] == [b"0"] for part in parts):
        return None  # never on a CPU yet, or no statistics kept
    return b"".join(parts)


def _resolve_waits(tables: _ProcessTables, proc: str) -> None:
    """Fill Process.waiting from the raw waits, now that every descriptor is known."""
    for pid, (raw, fds) in tables.waits.items():
        resolved = waiting.resolve(raw, pid, {(pid, ref.fd): ref for ref in fds})
        if resolved is not None:
            if not resolved.wchan:
                resolved = replace(resolved, wchan=waiting.read_wchan(pid, proc))
            tables.processes[pid] = replace(tables.processes[pid], waiting=resolved)





def restrict_to_pids(snapshot: Snapshot, wanted: Collection[int]) -> Snapshot:
    """Keep only the given processes and the objects at least one of them holds."""

    def held(holders: Iterable[object]) -> bool:
        return any(getattr(holder, "pid", None) in wanted for holder in holders)

    return replace(
        snapshot,
        processes=tuple(p for p in snapshot.processes if p.pid in wanted),
        shm=tuple(s for s in snapshot.shm if held(s.holders)),
        mqueues=tuple(q for q in snapshot.mqueues if held(q.holders)),
        pipes=tuple(p for p in snapshot.pipes if held(p.readers) or held(p.writers)),
        signals=tuple(s for s in snapshot.signals if s.pid in wanted),
        sysv=replace(
            snapshot.sysv,
            shm=tuple(s for s in snapshot.sysv.shm if held(s.holders) or s.cpid in wanted),
            msg=tuple(m for m in snapshot.sysv.msg if m.lspid in wanted or m.lrpid in wanted),
            sem=(),
        ),
    )
