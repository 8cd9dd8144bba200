"""One consistent pass over /proc and the IPC filesystems, producing a Snapshot."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ipcmon.collect import mqueue, pipes, procfs, shm, signals, sysv, waiting
from ipcmon.collect.fds import Devices, FdRef, MapRef, maps_token, read_fds, read_maps
from ipcmon.collect.procfs import Denied, Gone, PidFds
from ipcmon.model import KINDS, MessageQueue, Pipe, Process, ProcessSignals, ShmSegment, Snapshot, Sysv

MOUNT_MQUEUE_HINT = "mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue"


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
    waits: dict[int, waiting.RawWait] = field(default_factory=dict)
    hidden: int = 0


def find_mqueue_dir(proc: str = procfs.PROC) -> str | None:
    mount = procfs.find_mount("mqueue", proc)
    return mount.mount_point if mount else None


def scan(config: ScanConfig = ScanConfig()) -> Snapshot:
    """Read every mechanism in config.kinds once; vanished processes and objects simply drop out."""
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
    tables = _read_processes(config, kinds, devices)
    if tables.hidden:
        remedy = (
            "the kernel refuses even root here (a non-dumpable process, or another namespace)"
            if os.geteuid() == 0
            else "run as root to see them"
        )
        notes.append(
            f"{tables.hidden} processes could not be fully read (not permitted): objects only they hold "
            f"may show as orphaned, and pipe ends they hold are missing; {remedy}."
        )

    segments: tuple[ShmSegment, ...] = ()
    queues: tuple[MessageQueue, ...] = ()
    pipe_list: tuple[Pipe, ...] = ()
    sysv_tables = Sysv()
    with PidFds() as pidfds:
        if "shm" in kinds and shm_dev is not None:
            segments = shm.collect(shm_dir, tables.processes, tables.fds, tables.maps, config.proc)
        if "mqueue" in kinds:
            queues = mqueue.collect(mqueue_dir, tables.processes, tables.fds, pidfds)
        if "pipe" in kinds:
            pipe_list = pipes.collect(tables.processes, tables.fds, pidfds, fill=config.pipe_fill)
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


_DENIED = "denied"


def _read_processes(config: ScanConfig, kinds: Collection[str], devices: Devices) -> _ProcessTables:
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
    )
    # One thread: two threads reading /proc in parallel were measured no faster on a busy 2-core machine
    # (the kernel side of the reads is most of the cost and the GIL serialises the rest).
    for result in map(reader, pid_list):
        if result is None:
            continue
        if result == _DENIED:
            tables.hidden += 1
            continue
        assert isinstance(result, _Read)
        process = result.process
        tables.processes[process.pid] = process
        tables.hidden += process.hidden
        tables.fds.extend(result.fds)
        tables.maps.extend(result.maps)
        if result.signals is not None:
            tables.signals.append(result.signals)
        if result.wait is not None:
            tables.waits[process.pid] = result.wait
    _resolve_waits(tables, proc)
    return tables


def _read_process(
    pid: int,
    *,
    devices: Devices,
    proc: str,
    need_fds: bool,
    need_maps: bool,
    need_signals: bool,
    token: bytes | None,
) -> _Read | str | None:
    """Everything a scan needs from one process; None when it exited mid-read, _DENIED when refused."""
    # Pin the process first: if it is reaped while we read, its pid may already name another process
    # whose descriptors we would attribute to it (issue 7). Only real pids can be pinned.
    pinned = procfs.pin(pid) if proc == procfs.PROC else None
    try:
        stat = procfs.parse_stat(procfs.read_bytes(f"{proc}/{pid}/stat"))
        try:
            cmdline = procfs.parse_cmdline(procfs.read_bytes(f"{proc}/{pid}/cmdline"))
        except Denied:
            cmdline = ()
        uid: int | None = os.stat(f"{proc}/{pid}").st_uid
        hidden = False
        fds: list[FdRef] = []
        maps: list[MapRef] = []
        try:
            if need_fds:
                fds = read_fds(pid, devices, proc)
            if need_maps:
                maps = read_maps(pid, token, proc)
        except Denied:
            hidden = True
        process_signals = None
        if need_signals:
            status = procfs.parse_status(procfs.read_bytes(f"{proc}/{pid}/status"))
            process_signals = signals.from_status(pid, stat.comm, status, proc)
        raw = waiting.read_raw(pid, proc) if stat.state in ("S", "D") else None
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
    process = Process(
        pid=pid,
        ppid=stat.ppid,
        comm=stat.comm,
        cmdline=cmdline,
        uid=uid,
        user=procfs.user_name(uid) if uid is not None else None,
        start_ticks=stat.start_ticks,
        start_time=procfs.start_epoch(stat.start_ticks, proc),
        hidden=hidden,
    )
    return _Read(process, fds, maps, process_signals, raw)


def _resolve_waits(tables: _ProcessTables, proc: str) -> None:
    """Fill Process.waiting from the raw waits, now that every descriptor is known."""
    if not tables.waits:
        return
    fd_index = {(ref.pid, ref.fd): ref for ref in tables.fds}
    for pid, raw in tables.waits.items():
        resolved = waiting.resolve(raw, pid, fd_index)
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
