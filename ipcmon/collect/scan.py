"""One consistent pass over /proc and the IPC filesystems, producing a Snapshot: the scan, the Scanner's
repeated scans, and the notes saying what could not be seen.

The scan never names a mechanism: it reads every process once for what the collectors of the scan need,
then hands the result to each collector of the table (collectors.py) in turn.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ipcmon import health
from ipcmon.collect import capacity, namespaces, procfs, schedclock, waiting
from ipcmon.collect.collector import Collector, ScanInputs
from ipcmon.collect.collectors import COLLECTORS
from ipcmon.collect.config import SHM_DIR, Places, ScanConfig, find_mqueue_dir, locate
from ipcmon.collect.fds import Devices, FdRef, MapRef, maps_token, read_fds
from ipcmon.collect.forked import read_forked
from ipcmon.collect.memory import ScanMemory
from ipcmon.collect.mqueue import MOUNT_MQUEUE_HINT
from ipcmon.collect.process import ProcessRead, ReadPlan, RememberedProcess, Unread, read_process, run_signature
from ipcmon.collect.procfs import Denied, Gone, PidFds
from ipcmon.model import Holder, Namespace, Place, Process, ProcessSignals, Snapshot, Sysv
from ipcmon.safe import counted

__all__ = [  # the names callers outside collect import from here
    "MOUNT_MQUEUE_HINT", "ScanConfig", "Scanner", "collector_paused", "find_mqueue_dir", "read_forked",
    "restrict_to_pids", "restrict_to_places", "run_signature", "scan",
]


_DEFAULT_CONFIG = ScanConfig()
"""The environment as it was at import, as before: ScanConfig() as a default argument was built then."""


def scan(config: ScanConfig = _DEFAULT_CONFIG, *, fork: bool = False) -> Snapshot:
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


class Scanner:
    """Scans again and again (the dashboard, ``watch``), re-reading only the processes that have run since.

    A process's descriptor table and mappings change only when one of its own threads runs (open, close,
    mmap, exec, receiving a descriptor): no other process can change them. /proc/PID/schedstat gives each
    thread's run time in nanoseconds and how many times it was put on a CPU, so when those are the same as
    at the last scan for every thread, and the process is not running now, its fds, maps, command line,
    owner and the system call it sleeps in are the ones read last time. Only what others can change is read
    again for it: stat (name, parent), status (pending signals; not even that for a sleeper that blocks nothing,
    which a signal would wake: process._settled_signals), the fill of its pipes (see pipes.collect), and where a
    collector uses them, the size, owner, mode and link count of the files its descriptors point at. Each process
    still has a turn, for what that argument cannot see (memory or a descriptor table shared with clone(CLONE_VM,
    CLONE_FILES) between two processes, which is rare; a limit set from outside with prlimit(2); a write into a
    pipe through an end no scanned process holds; a FIFO renamed): every ``refresh_every`` scans, or by default
    about every memory.REFRESH_SECONDS (30 s) whatever the interval between scans. The turn of a process that
    kcmp(2) shows shares neither its memory nor its table (sharing.Sharing) reads only its command line, status,
    FIFOs' paths and pipes' fills (process._alone_turn); any other is read in full, and when that finds a process
    that has not run exactly as it was, it keeps its records (``turned``; process._confirmed).
    """

    def __init__(self, config: ScanConfig = _DEFAULT_CONFIG, *, refresh_every: int | None = None) -> None:
        self.config = config
        self._memory = ScanMemory(refresh_every)

    def scan(self) -> Snapshot:
        with collector_paused():
            return _scan(self.config, self._memory)

    def close(self) -> None:
        """Close the /proc files kept open between scans (also done when the Scanner is collected)."""
        self._memory.close()

    @property
    def reused(self) -> frozenset[int]:
        """The pids whose tables the last scan took over from the scan before it."""
        return frozenset(self._memory.reused)

    @property
    def turned(self) -> frozenset[int]:
        """Of reused, the pids read in full on their turn of the rotation that were found as they were."""
        return frozenset(self._memory.turned)

    def remembered(self) -> dict[str, int]:
        """How much is kept between scans: one entry per process (twice: its read, and its place in kcmp(2)'s orders),
        and per record of the last scan that a collector keeps (by Snapshot field, ``shm``…, or the name it keeps it
        under: ``pipes``, ``waiting.alone``)."""
        memory = self._memory
        return {"processes": len(memory.processes), "sharing": len(memory.sharing),
                **{name: len(kept) for name, kept in memory.records.items()}, **memory.kept_sizes()}


@dataclass(slots=True)
class _ProcessTables:
    """Every process's contribution to one scan, put together."""

    processes: dict[int, Process] = field(default_factory=dict)
    fds: list[FdRef] = field(default_factory=list)
    fds_by_pid: dict[int, list[FdRef]] = field(default_factory=dict)
    maps: list[MapRef] = field(default_factory=list)
    signals: list[ProcessSignals] = field(default_factory=list)
    waits: dict[int, tuple[waiting.RawWait, list[FdRef]]] = field(default_factory=dict)
    kin: dict[int, waiting.Kin] = field(default_factory=dict)
    hidden: int = 0


def _scan(config: ScanConfig, memory: ScanMemory | None, *, fork: bool = False) -> Snapshot:
    started = time.perf_counter()
    taken_at = time.time()
    collectors = [collector for collector in COLLECTORS if collector.kind in config.kinds]
    places = locate(config)
    notes = [note for collector in collectors for note in collector.notes(config, places)]
    pid_list = _pids(config)
    # Before any process is read: which namespaces each runs in, and every shm tmpfs and mqueue mount (issue 15).
    # Pointed at a directory of its own (IPCMON_SHM_DIR, IPCMON_MQUEUE_DIR), it lists that one alone.
    own_mqueue = config.mqueue_dir is not None and procfs.fs_type(config.mqueue_dir) != procfs.MQUEUE_MAGIC
    located = places

    def discover(known: dict[int, tuple[int, int]] | None) -> tuple[namespaces.World, Places, Devices]:
        world = namespaces.discover(pid_list, located, config.proc, known=known,
                                    look_shm=os.path.normpath(config.shm_dir) == SHM_DIR,
                                    look_mqueue=config.find_mqueue and not own_mqueue)
        places = replace(located, shm_dirs=world.shm_dirs, mqueue_dirs=world.mqueue_dirs)
        devices = Devices(places.shm_dev, places.mqueue_dev, shm_devs=[mount.dev for mount in world.shm_dirs],
                          mqueue_devs=[mount.dev for mount in world.mqueue_dirs])
        return world, places, devices

    world, places, devices = discover(memory.namespaces if memory is not None else None)
    tables = _read_processes(config, collectors, devices, memory, fork=fork, pid_list=pid_list, world=world)
    if memory is not None:
        confirmed = _confirmed_places(world, tables, memory, config.proc)
        if confirmed is None:
            # A process is in other namespaces than the last scan said: read everything again, from namespaces read
            # afresh (rare: setns(2), unshare(2), or a pid now naming a process elsewhere).
            world, places, devices = discover(None)
            tables = _read_processes(config, collectors, devices, memory, pid_list=pid_list, world=world)
            confirmed = _confirmed_places(world, tables, memory, config.proc) or {}
        memory.namespaces = confirmed
    if tables.hidden:
        notes.append(hidden_note(tables.hidden))
    notes.extend(world.notes)
    # Root is refused a process's namespaces only where it is refused the process (a non-dumpable one in another
    # user namespace), which the note above counts; anyone else is refused every other user's.
    if world.unknown and (os.geteuid() != 0 or world.unknown > tables.hidden):
        notes.append(namespaces.unknown_note(world.unknown, privileged=os.geteuid() == 0))

    records: dict[str, Any] = {}
    with PidFds() as pidfds:
        inputs = ScanInputs(
            config, places, tables.processes, tables.fds, tables.maps, tables.signals, pidfds,
            settled=memory.reused if memory is not None else (),
            turned=memory.turned if memory is not None else (),
            memory=memory, notes=notes, hidden=tables.hidden,
            threads={pid: kin.threads for pid, kin in tables.kin.items()},
            fds_by_pid=tables.fds_by_pid,
            kept_fds=memory.files.numbers() if memory is not None else (),
        )
        for collector in collectors:
            records[collector.snapshot_field] = collector.build(inputs)

    snapshot = replace(
        Snapshot(
            taken_at=taken_at,
            kinds=tuple(collector.kind for collector in collectors),
            processes=tuple(tables.processes.values()),
            hidden_processes=tables.hidden,
            notes=tuple(notes),
            shm_dir=places.shm_dir if places.shm_dev is not None else None,
            mqueue_dir=places.mqueue_dir,
            namespaces=world.namespaces,
        ),
        **records,
    )
    if "sysv" in records:
        snapshot = replace(snapshot, namespaces=sysv_read(snapshot.namespaces, records["sysv"]))
    # What processes that could not be read might hold is unknown (issue 13): said once, for every front end.
    snapshot = health.qualify(snapshot, privileged=os.geteuid() == 0)
    # Who waits on whom crosses mechanisms: it reads the pipes and queues the collectors built (if asked for).
    unseen = frozenset() if os.geteuid() == 0 else health.unseen_uids(snapshot)  # as health.qualify reasons
    waits = memory.kept("waiting", waiting.WaitMemory) if memory is not None else None
    stuck, deadlocks = waiting.analyse(snapshot.processes, snapshot.pipes, snapshot.mqueues, tables.kin, unseen,
                                       waits)
    # Budgets are machine-wide: read from the whole scan, before --pid narrows it (restrict_to_pids keeps them).
    limits = None
    if memory is not None:
        limits = capacity.LimitMemory(memory.recall("capacity.limits"), memory.turn,
                                      memory.recall("capacity.tallies"))
    budgets = capacity.collect(snapshot, proc=config.proc, shm_dir=places.shm_dir, shm_dev=places.shm_dev,
                               hidden=tables.hidden, limits=limits, shm_mounts=places.shm_mounts())
    snapshot = replace(snapshot, scan_seconds=time.perf_counter() - started, stuck=stuck, deadlocks=deadlocks,
                       capacity=budgets)
    if memory is not None:
        memory.end_scan()
    if config.pids is not None:
        snapshot = restrict_to_pids(snapshot, config.pids)
    return snapshot


def _read_processes(
    config: ScanConfig,
    collectors: Collection[Collector],
    devices: Devices,
    memory: ScanMemory | None = None,
    *,
    fork: bool = False,
    pid_list: list[int] | None = None,
    world: namespaces.World | None = None,
) -> _ProcessTables:
    proc = config.proc
    tables = _ProcessTables()
    if pid_list is None:
        pid_list = _pids(config)
    needs = {need for collector in collectors for need in collector.needs}
    region_dev = devices.region_dev
    plan = ReadPlan(
        devices=devices,
        proc=proc,
        fds="fds" in needs,
        maps="maps" in needs,
        signals="signals" in needs,
        shm_token=tuple(maps_token(dev) for dev in sorted(devices.shm_devs)) or None,
        region_token=maps_token(region_dev) if region_dev is not None else None,
        remember=memory is not None,
        places=world.places if world is not None else {},
        files=memory.files if memory is not None and proc == procfs.PROC else None,
        alone=memory.sharing.alone() if memory is not None and proc == procfs.PROC else frozenset(),
    )
    previous: dict[int, RememberedProcess] = {}
    if memory is not None:
        previous = memory.begin_scan()
    remembered: list[ProcessRead] = []
    user_reads: dict[int, ProcessRead] = {}
    own = os.getpid() if config.hide_self else None
    # Threads do not help: two threads reading /proc were measured twice as slow as one (every read
    # releases the GIL and the threads spend their time handing it over). A forked child does (read_forked).
    results: Iterable[tuple[int, ProcessRead | Unread]]
    if fork and memory is None and proc == procfs.PROC:
        results = read_forked(pid_list, functools.partial(read_process, plan=plan), proc)
    elif memory is None:
        results = ((pid, read_process(pid, plan)) for pid in pid_list)
    else:
        results = ((pid, read_process(pid, plan, previous.get(pid), turn=memory.is_turn(pid))) for pid in pid_list)
    for pid, result in results:
        if result is Unread.GONE:
            continue
        if result is Unread.DENIED:
            tables.hidden += 1
            continue
        assert isinstance(result, ProcessRead)
        process = result.process
        tables.processes[pid] = process
        tables.hidden += process.hidden
        tables.fds.extend(result.fds)
        if result.fds:
            tables.fds_by_pid[pid] = result.fds
        tables.maps.extend(result.maps)
        if result.signals is not None:
            tables.signals.append(result.signals)
        if result.wait is not None:
            tables.waits[pid] = (result.wait, result.fds)
        if result.kin is not None:
            tables.kin[pid] = result.kin
        if result.run_signature is not None:
            remembered.append(result)
        if result.stat is not None and not result.stat.flags & procfs.PF_KTHREAD:
            user_reads[pid] = result
    # Its own descriptors last: a pipe it made while the others were read (a demo started) is among them.
    own_pipes = _own_pipes(own, devices, proc, plan.files) if own is not None and plan.fds else set()
    if own_pipes:
        _drop_pipes(tables, own_pipes)
    _resolve_waits(tables, proc)
    if memory is not None:
        memory.files.retain(tables.processes)
        if proc == procfs.PROC:
            # Every user process read, signed or not (running, many threads): a sharer left out would leave its
            # partner alone (sharing.py).
            memory.sharing.update({pid: (result.process.start_ticks, result.process.uid)
                                   for pid, result in user_reads.items()},
                                  {pid for pid, result in user_reads.items() if not result.reused},
                                  {process.uid for process in tables.processes.values() if process.hidden})
        for result in remembered:
            pid = result.process.pid
            process = tables.processes[pid]
            # A process read as it was (process._still) keeps its entry: no new one for the garbage collector.
            entry = previous.get(pid)
            if entry is None or entry.read is not result or entry.process is not process:
                entry = RememberedProcess(result, process)
            memory.processes[pid] = entry
            if result.reused:
                memory.reused.add(pid)
                if memory.is_turn(pid):
                    memory.turned.add(pid)
    return tables


def _confirmed_places(world: namespaces.World, tables: _ProcessTables, memory: ScanMemory,
                      proc: str) -> dict[int, tuple[int, int]] | None:
    """Each read process's (IPC, mount) namespace pair as known after it was read, for the next scan's pre-pass to
    take as it is; None when a pair this scan's pre-pass took from the last scan (World.assumed) no longer holds.

    A process's namespaces change only by its own setns(2) or unshare(2) (clone(2) makes a new process). A pair
    kept here was read after the process's run signature, in the same scan; so for a process taken over in the next
    scan (memory.reused: the same pid and start time, and none of its threads has run since that signature) the
    pair still holds, and is kept again unread. Every other process (read in full: it ran, or it is new, or its pid
    may name a new process) has its two links read again here, after its read, and an assumed pair must match
    them. A process gone meanwhile is no matter (it dropped out); one assumed and now refused is a change."""
    confirmed: dict[int, tuple[int, int]] = {}
    for pid in tables.processes:
        if pid in memory.reused and pid in world.assumed:
            confirmed[pid] = world.pairs[pid]
            continue
        try:
            pair = namespaces.read_ns(pid, proc)
        except Gone:
            continue
        except Denied:
            if pid in world.assumed:
                return None
            continue
        if pid in world.assumed and pair != world.pairs[pid]:
            return None
        confirmed[pid] = pair
    return confirmed


def _pids(config: ScanConfig) -> list[int]:
    """Every pid of the scan's /proc (ascending), less ipcmon's own with hide_self; empty when /proc is unreadable."""
    try:
        pid_list = procfs.pids(config.proc)
    except OSError:
        return []
    if config.hide_self:
        own = os.getpid()
        pid_list = [pid for pid in pid_list if pid != own]
    return pid_list


def _own_pipes(pid: int, devices: Devices, proc: str, files: procfs.OpenProcFiles | None) -> set[tuple[int, int]]:
    """The anonymous pipes this process holds an end of (ScanConfig.hide_self): only its descriptors are read,
    not its maps, masks or command line, since nothing else of it is shown; not the /proc files it keeps (files:
    thousands on a large machine, one readlink each)."""
    skip = files.numbers() if files is not None else ()
    try:
        return {(ref.dev, ref.inode) for ref in read_fds(pid, devices, proc, skip) if ref.kind == "pipe"}
    except (Gone, Denied, OSError):
        return set()


def _drop_pipes(tables: _ProcessTables, pipes: set[tuple[int, int]]) -> None:
    """Forget every end of these anonymous pipes (ScanConfig.hide_self: the scanner's own), in other processes too
    (a process's list is then a new one: pipes.PipeIndex looks at it again)."""
    inodes = {inode for _dev, inode in pipes}  # an int test first: a large machine has 10,000 descriptors here
    holders = {ref.pid for ref in tables.fds if ref.inode in inodes and ref.kind == "pipe"
               and (ref.dev, ref.inode) in pipes}
    if not holders:
        return
    for pid in holders:
        kept = [ref for ref in tables.fds_by_pid[pid] if ref.kind != "pipe" or (ref.dev, ref.inode) not in pipes]
        if kept:
            tables.fds_by_pid[pid] = kept
        else:
            del tables.fds_by_pid[pid]
    tables.fds = list(itertools.chain.from_iterable(tables.fds_by_pid.values()))
    for pid, (raw, fds) in list(tables.waits.items()):
        tables.waits[pid] = (raw, [ref for ref in fds if ref.kind != "pipe" or (ref.dev, ref.inode) not in pipes])


def _resolve_waits(tables: _ProcessTables, proc: str) -> None:
    """Fill Process.waiting from the raw waits, now that every descriptor and process is known; for each
    wait on IPC, also when the process last ran (one more read, only for them)."""
    children_of: dict[int, list[int]] | None = None
    for pid, (raw, fds) in tables.waits.items():
        if raw.syscall in ("wait4", "waitid") and children_of is None:
            children_of = {}
            for process in tables.processes.values():
                children_of.setdefault(process.ppid, []).append(process.pid)
        resolved = waiting.resolve(raw, pid, {(pid, ref.fd): ref for ref in fds}, tables.processes, tables.kin,
                                   children_of)
        if resolved is not None:
            resolved = replace(resolved, wchan=resolved.wchan or waiting.read_wchan(pid, proc),
                               since=schedclock.last_ran(pid, raw.cpu, proc))
            tables.processes[pid] = replace(tables.processes[pid], waiting=resolved)


def sysv_read(spaces: tuple[Namespace, ...], tables: Sysv) -> tuple[Namespace, ...]:
    """Each namespace with ``sysv`` told: True for the first (host first) of each IPC namespace whose objects were
    read, False where they could not be (the sysv collector's note says why), None for the others sharing it."""
    told: set[int | None] = set()
    found = []
    for space in spaces:
        ipc = space.place.ipc
        if ipc in told or ipc is None:
            found.append(space)
            continue
        told.add(ipc)
        sysv = True if ipc in tables.read else False if ipc in tables.unread else None
        found.append(replace(space, sysv=sysv) if tables.available else space)
    return tuple(found)


def hidden_note(count: int) -> str:
    """The note of a scan in which count processes could not be fully read (health.qualify says what follows)."""
    who = f"{counted(count, 'process', 'processes')} could not be fully read (not permitted)"
    if os.geteuid() == 0:
        return (f"{who}: pipe ends they hold are not listed (the kernel still tells whether a pipe has a reader and "
                "a writer), nor segments and queues only they hold; the kernel refuses even root here (a "
                "non-dumpable process, or another namespace).")
    return (f"{who}: whether they hold a segment, queue or pipe end is unknown, so 'orphaned', 'no-reader' and "
            "'no-writer' read 'orphaned?', 'no-reader?', 'no-writer?' where they could; run as root to see them.")


def restrict_to_pids(snapshot: Snapshot, wanted: Collection[int]) -> Snapshot:
    """Keep only the given processes and the objects at least one of them holds (each collector says which), their
    waits, and the deadlocks they are in (whole: every member of a deadlock a selected process is in).

    The count of processes that could not be fully read, and its note, then count only the selected ones (a
    process the kernel hides entirely is in no selection: it has no record to select)."""
    processes = tuple(p for p in snapshot.processes if p.pid in wanted)
    hidden = sum(process.hidden for process in processes)
    deadlocks = tuple(group for group in snapshot.deadlocks if any(pid in wanted for pid in group.pids))
    members = {pid for group in deadlocks for pid in group.pids}  # kept whole, with what each member waits on
    notes = list(snapshot.notes)
    if snapshot.hidden_processes:
        old = hidden_note(snapshot.hidden_processes)
        notes = [note for note in notes if note != old]
        if hidden:
            notes.append(hidden_note(hidden))
    return replace(
        snapshot,
        processes=processes,
        hidden_processes=hidden,
        notes=tuple(notes),
        stuck=tuple(entry for entry in snapshot.stuck if entry.pid in wanted or entry.pid in members),
        deadlocks=deadlocks,
        **{
            collector.snapshot_field: collector.restrict(getattr(snapshot, collector.snapshot_field), wanted)
            for collector in COLLECTORS
        },
    )


def restrict_to_places(snapshot: Snapshot, selected: Callable[[Place | None], bool]) -> Snapshot:
    """Keep what lives in the selected places (``--container``, ``--ns``; issue 15): the namespaces selected, the
    processes in them, the segments, queues and SysV objects whose place is selected or that a kept process holds,
    the shm mounts of those places, and, as :func:`restrict_to_pids` keeps them, the kept processes' pipes, regions,
    signals, waits and deadlocks. Budgets are machine-wide and stay.

    An object is IPC-namespaced (queues, SysV) or bound to a mount (shm): a selected namespace selects the objects
    of its IPC namespace, and of its mount namespace, even when their place names another namespace sharing it (a
    pod's containers). An unknown place (None: a scan that did not read namespaces) is never selected. The processes
    that could not be read, and the notes, are kept whole: where those processes run is unknown."""
    namespaces = tuple(namespace for namespace in snapshot.namespaces if selected(namespace.place))
    ipcs = {namespace.place.ipc for namespace in namespaces} - {None}
    mnts = {namespace.place.mnt for namespace in namespaces} - {None}

    def ipc_bound(place: Place | None) -> bool:
        return place is not None and (place.ipc in ipcs or selected(place))

    def mount_bound(place: Place | None) -> bool:
        return place is not None and (place.mnt in mnts or selected(place))

    pids = {process.pid for process in snapshot.processes if selected(process.place)}
    narrowed = restrict_to_pids(snapshot, pids)  # the kept processes' pipes, regions, signals, waits, deadlocks

    def held(holders: Iterable[Holder]) -> bool:  # by host pid (a SysV cpid or lspid is the creator's own pid)
        return any(holder.pid in pids for holder in holders)

    sysv = snapshot.sysv
    capacity = snapshot.capacity
    if capacity is not None:
        capacity = replace(capacity, shm_mounts=tuple(mount for mount in capacity.shm_mounts
                                                      if mount_bound(mount.place)))
    return replace(
        narrowed,
        # Processes that could not be read have no known place: any of them may hold what any place has, so the
        # count and its note stay whole (restrict_to_pids counts only the selected ones, who are known).
        hidden_processes=snapshot.hidden_processes,
        notes=snapshot.notes,
        namespaces=namespaces,
        shm=tuple(s for s in snapshot.shm if mount_bound(s.place) or held(s.holders)),
        mqueues=tuple(q for q in snapshot.mqueues if ipc_bound(q.place) or held(q.holders)),
        sysv=replace(
            sysv,
            shm=tuple(s for s in sysv.shm if ipc_bound(s.place) or held(s.holders)),
            msg=tuple(m for m in sysv.msg if ipc_bound(m.place)),
            sem=tuple(s for s in sysv.sem if ipc_bound(s.place)),
        ),
        capacity=capacity,
    )
