"""Reading one process for a scan: its stat, tables, wait and signal masks, with every error meaning said once.

A process that exits while it is read is normal, and so is one the kernel will not show: read_process turns
the errors of all its reads into one of two outcomes (Unread.GONE, Unread.DENIED) in one place, the way
psutil's ``wrap_exceptions`` does (psutil/_pslinux.py).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ipcmon.collect import namespaces, procfs, signals, waiting
from ipcmon.collect.fds import Devices, FdRef, MapRef, read_fds, read_maps, split_deleted
from ipcmon.collect.procfs import Denied, Gone
from ipcmon.model import Place, Process, ProcessSignals, ThreadSignals

MAX_SIGNED_THREADS = 64
"""Processes with more threads are always read in full: checking every thread would cost about as much."""


class Unread(enum.Enum):
    """Why a process gave a scan nothing."""

    GONE = "gone"
    """It exited while it was read (or its pid may already name a successor): it drops out whole."""
    DENIED = "denied"
    """The kernel refused to show it: counted as not readable."""


class ProcessRead(NamedTuple):
    """What one process contributed to a scan."""

    process: Process
    fds: list[FdRef]
    maps: list[MapRef]
    signals: ProcessSignals | None
    wait: waiting.RawWait | None
    """To be resolved once every descriptor is known (None when reused: the process has it resolved)."""
    state: str = ""
    """The state letter of /proc/PID/stat when it was read (R, S, D…)."""
    run_signature: bytes | None = None
    """The scheduler's account of the process before its tables were read (Scanner only; see run_signature)."""
    reused: bool = False
    """The fds, maps, command line, owner and wait are the previous scan's (nothing of it has run since)."""
    signal_section: bytes = b""
    """The lines of /proc/PID/status that ``signals`` was decoded from."""
    kin: waiting.Kin | None = None
    """Its process group, session and thread count as /proc/PID/stat said in this scan (for waiting.analyse)."""
    signal_user: SignalUser | None = None
    """Whose queued-signal count SigQ shows for it (see _read_signals); None when unknown."""
    stat_text: bytes = b""
    """/proc/PID/stat as this scan read it (Scanner only: the next scan compares it, _still)."""
    stat: procfs.Stat | None = None
    """stat_text parsed."""


class SignalUser(NamedTuple):
    """The account SigQ's count is kept in: the real uid in a user namespace (kernel/signal.c charges a queued
    signal to the ucounts of the target's real user, per user namespace; before Linux 5.14 to the user_struct of
    the real uid alone, which this key splits further, never merges)."""

    uid: int
    user_ns: int


class RememberedProcess(NamedTuple):
    """A process as the last scan read it, with the scheduler's account of it at that moment (Scanner)."""

    read: ProcessRead
    process: Process
    """As the snapshot showed it, its wait resolved."""


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """What to read of every process in one scan: the union of what the scan's collectors need."""

    devices: Devices
    proc: str
    fds: bool
    maps: bool
    signals: bool
    shm_token: bytes | tuple[bytes, ...] | None
    """The shm tmpfs devices (the shm directory's and each container's /dev/shm) as /proc/PID/maps prints them
    (fds.maps_token)."""
    region_token: bytes | None
    """The kernel's internal shm mount's device, likewise (memfd and anonymous shared regions)."""
    remember: bool = False
    """Read the run signature first, so that a Scanner can take the next scan's tables over."""
    places: Mapping[int, Place] = field(default_factory=dict)
    """Each process's namespaces and container, by pid (namespaces.discover, read before any process)."""
    queued: dict[SignalUser, tuple[int | None, int | None]] = field(default_factory=dict)
    """SigQ as read from some status in this scan, per account (filled as processes are read: _read_signals)."""
    files: procfs.OpenProcFiles | None = None
    """The stat, schedstat and status files a Scanner keeps open between scans (for the real /proc only)."""
    alone: Collection[int] = frozenset()
    """Pids of processes that share neither their memory nor their descriptor table with another (sharing.Sharing):
    on its turn, one that has not run is not read in full (read_process)."""

    def read_small(self, pid: int, name: str) -> bytes:
        """/proc/PID/NAME of a file the kernel makes in one piece, through the kept files when there are some."""
        return read_small(pid, name, self.proc, self.files)


def read_small(pid: int, name: str, proc: str, files: procfs.OpenProcFiles | None) -> bytes:
    """/proc/PID/NAME of a file the kernel makes in one piece (stat, schedstat, status): through ``files`` (a
    Scanner's kept files) when given, else by path; raises Gone or Denied (procfs.read_bytes)."""
    if files is not None:
        return files.read(pid, name)
    return procfs.read_bytes(f"{proc}/{pid}/{name}", single=True)


def read_process(pid: int, plan: ReadPlan, previous: RememberedProcess | None = None, *,
                 turn: bool = False) -> ProcessRead | Unread:
    """Everything a scan needs from one process, or why there is nothing.

    Given the previous read of the same process (a Scanner's) and the same run signature, its tables are taken
    over. On its turn (a Scanner's rotation: ``turn``) it is read in full all the same, and when that read finds
    exactly the tables taken over would have given (_confirmed), the result is the taken-over read (``reused``),
    with its status read afresh. Every error of every read is given its meaning here and nowhere else.
    """
    # Pin the process first: if it is reaped while we read, its pid may already name another process
    # whose descriptors we would attribute to it (issue 7). Only real pids can be pinned. Its kept stat
    # (ReadPlan.files) binds what is read through kept files to one process: then the pin waits until the
    # tables are read by path, most processes are never pinned, and none is read twice (_Pin).
    if previous is not None and previous.read.reused and (not turn or pid in plan.alone):
        still = _still(pid, plan, previous)
        if still is not None:
            if not turn:
                return still
            confirmed = _alone_turn(pid, still, plan, previous)
            if confirmed is not None:
                return confirmed
    pin = _Pin(pid, plan)
    try:
        result = _read(pid, plan, previous, pin, turn)
        if not pin.still_running(result.kin.threads if result.kin is not None else 0):
            return Unread.GONE  # exited mid-scan, and what we read may mix it with a successor on its pid
    except (Gone, FileNotFoundError, ProcessLookupError):
        return Unread.GONE  # exited mid-scan: it drops out whole
    except Denied:
        return Unread.DENIED
    except (ValueError, IndexError):
        return Unread.GONE  # a record cut short by the process exiting
    finally:
        pin.close()
    return result


class _Pin:
    """A pidfd on the process being read, opened before anything of it is read by path (procfs.pin)."""

    def __init__(self, pid: int, plan: ReadPlan) -> None:
        self.pid = pid
        self.files = plan.files
        self.pidfd: int | None = None
        real = plan.proc == procfs.PROC
        self.needed = real
        if real and (self.files is None or not self.files.will_hold(pid)):
            self.pidfd = procfs.pin(pid)
            self.needed = False

    def now(self, start_ticks: int) -> None:
        """Pin before reading by path; the kept stat, read after the pidfd is open, proves it is the process read
        so far (a pid names no other process while its process lives); without one (it could not be kept), the
        start time its stat shows now must be the one read. Raises Gone when it is not."""
        if not self.needed:
            return
        self.needed = False
        assert self.files is not None
        self.pidfd = procfs.pin(self.pid)
        if self.files.holds(self.pid):
            if not self.files.alive(self.pid):
                raise Gone(f"process {self.pid} was reaped while it was read")
        elif procfs.parse_stat(procfs.read_bytes(f"{procfs.PROC}/{self.pid}/stat", single=True)).start_ticks != (
                start_ticks):
            raise Gone(f"process {self.pid} was reaped while it was read")

    def still_running(self, threads: int) -> bool:
        """Whether what was read is of one process: its pidfd's process is not reaped; or nothing was read by path
        but through kept files (a single-threaded process taken over), or the kept stat still reads after the
        paths of several threads' files were read."""
        if self.pidfd is not None:
            return procfs.still_running(self.pidfd)
        if self.files is None or not self.files.holds(self.pid):
            return True  # read by path without a pin only when taken over, which an exact run signature decided
        return threads == 1 or self.files.alive(self.pid)

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)


def _still(pid: int, plan: ReadPlan, previous: RememberedProcess) -> ProcessRead | None:
    """The previous read itself, when nothing of the process has moved since: the last scan took it over, and its
    stat and run signature, read through the kept files (bound to the process, and to each of its threads), are the
    very same text (so no thread of it has run, and nobody renamed or reparented it), in the same place, with its
    signal masks settled and its account's SigQ what it was. Most processes of a large machine at every scan: two
    pread(2) (two more a thread, and a listing of its threads, for a process with several), and no record made.
    None when anything differs or cannot be read: the full path then reads the process, and says why."""
    read = previous.read
    files = plan.files
    stat = read.stat
    if files is None or stat is None or read.run_signature is None or not files.holds(pid):
        return None
    try:
        if files.read(pid, "stat") != read.stat_text:
            return None
        if stat.threads == 1:
            if files.read(pid, "schedstat") != read.run_signature:
                return None
        elif run_signature(pid, stat, plan.proc, files) != read.run_signature:
            return None  # the stat text is the same, so stat (parsed then) is this process's now
    except (Gone, Denied):
        return None
    place = plan.places.get(pid)
    if previous.process.place is not place and previous.process.place != place:
        return None
    if plan.signals:
        old = read.signals
        user = read.signal_user
        if old is None or user is None or not _settled_signals(read, stat, old):
            return None
        found = plan.queued.get(user)
        if found is None or found[0] != old.queued:
            return None
    return read


def _alone_turn(pid: int, still: ProcessRead, plan: ReadPlan, previous: RememberedProcess) -> ProcessRead | None:
    """The turn of a process that has not run and shares neither its memory nor its descriptor table (plan.alone):
    nobody else can have changed its descriptors or mappings, so only what others can change is read again: its
    command line (its memory, which a ptracer may write through /proc/PID/mem or process_vm_writev(2)), its status
    (a handler table shared through clone(CLONE_SIGHAND) needs CLONE_VM, so only RLIMIT_SIGPENDING set with
    prlimit(2), and SigQ) and the path of each FIFO it holds (renamed or unlinked by anyone). The fills of its pipes
    are read by pipes.collect (turned). None when the command line or a FIFO's path moved: the full read then says
    what."""
    try:
        if procfs.parse_cmdline(procfs.read_bytes(f"{plan.proc}/{pid}/cmdline")) != still.process.cmdline:
            return None
    except (Gone, Denied, OSError):
        return None
    for ref in still.fds:
        if ref.kind == "fifo":
            try:
                link = os.readlink(f"{plan.proc}/{pid}/fd/{ref.fd}")
            except OSError:
                return None
            if split_deleted(link) != (ref.path, ref.deleted):
                return None
    stat = still.stat
    if not plan.signals or stat is None:
        return still
    try:
        return _read_signals(still, stat, previous, plan, turn=True)
    except (Gone, Denied, ValueError, IndexError):
        return None


def _read(pid: int, plan: ReadPlan, previous: RememberedProcess | None, pin: _Pin, turn: bool) -> ProcessRead:
    proc = plan.proc
    text = plan.read_small(pid, "stat")
    stat = procfs.parse_stat(text)
    signature = run_signature(pid, stat, proc, plan.files) if plan.remember else None
    still = (
        previous is not None
        and signature is not None
        and signature == previous.read.run_signature
        and stat.start_ticks == previous.process.start_ticks
        and stat.state == previous.read.state
    )
    if still and not turn:
        assert previous is not None and signature is not None
        result = _take_over(previous, stat, signature, text)
    else:
        pin.now(stat.start_ticks)
        result = _read_tables(pid, stat, plan, wait=not still)._replace(
            run_signature=signature, stat_text=text, stat=stat)
        if still:
            assert previous is not None and signature is not None
            result = _confirmed(result, previous, stat, signature, text) or _with_wait(result, stat, plan)
    place = plan.places.get(pid)
    if result.process.place is not place and result.process.place != place:
        # Taken over, and moved since (another process may move it to another cgroup): setns(2) and unshare(2)
        # would need it to run, so only its label can have changed.
        result = result._replace(process=replace(result.process, place=place))
    if plan.signals and stat.state not in _EXITED:
        result = _read_signals(result, stat, previous, plan, turn=turn)
    return result


_EXITED = frozenset("ZX")
"""Exited, not yet reaped (a zombie) or being reaped: it can receive no signal, and the masks its status still shows
are what it died with (a SIGTERM that killed it reads as pending): it has no signal record."""


def _read_tables(pid: int, stat: procfs.Stat, plan: ReadPlan, *, wait: bool = True) -> ProcessRead:
    """A process read in full. A kernel thread (PF_KTHREAD) has no command line, descriptor table or memory map
    to read (kernel/kthread.c: no mm, and no files of its own), and is never in a system call: its
    /proc/PID/syscall shows the zeroed registers of a task that never entered one, ``0 0x0 …``, which reads as
    read(0, NULL, 0); only its stat, owner and signals are read (the dozen that wake every second on an idle
    machine are most of an idle scan's full reads)."""
    proc = plan.proc
    kernel = bool(stat.flags & procfs.PF_KTHREAD)
    try:
        cmdline = () if kernel else procfs.parse_cmdline(procfs.read_bytes(f"{proc}/{pid}/cmdline"))
    except Denied:
        cmdline = ()
    uid = os.stat(f"{proc}/{pid}").st_uid
    place = plan.places.get(pid)
    fds: list[FdRef] = []
    maps: list[MapRef] = []
    fds_hidden = maps_hidden = False
    if plan.fds and not kernel:
        try:
            fds = read_fds(pid, plan.devices, proc)
        except Denied:
            fds_hidden = True
    if plan.maps and not fds_hidden and not kernel:
        try:
            maps = read_maps(pid, plan.shm_token, proc, plan.region_token)
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
        place=place,
        # Only outside ipcmon's own namespaces may its pid differ inside (one more read, for those only).
        nspid=namespaces.read_nspid(pid, proc) if place is not None and not place.host else None,
        state=stat.state,
    )
    result = ProcessRead(process, fds, maps, None, None, stat.state, kin=_kin(stat))
    return _with_wait(result, stat, plan) if wait else result


def _with_wait(result: ProcessRead, stat: procfs.Stat, plan: ReadPlan) -> ProcessRead:
    """The read with the system call its process sleeps in (waiting.read_raw), for a sleeping user process."""
    if stat.state not in ("S", "D") or stat.flags & procfs.PF_KTHREAD:
        return result
    raw = waiting.read_raw(result.process.pid, plan.proc, fds=result.fds, cpu=stat.processor)
    return result._replace(wait=raw)


def _confirmed(fresh: ProcessRead, previous: RememberedProcess, stat: procfs.Stat, signature: bytes,
               text: bytes) -> ProcessRead | None:
    """The taken-over read of a process that has not run since the last scan, read in full on its turn, when the
    full read found the tables taking it over gives: the same descriptors (number, object, access, path), mappings,
    command line, owner, place and namespace pid. The rotation is for what a run signature cannot show (Scanner: a
    descriptor table shared through clone(2)), and most turns find nothing: then nothing is built again downstream
    (the pipes, segments and waits of a process that has not run). What others change about the files its
    descriptors point at (size, owner, mode) is read again by the collectors that use it, as for any process taken
    over (fds.refresh). None when anything differs: the full read stands."""
    old = previous.read
    if len(fresh.fds) != len(old.fds) or fresh.maps != old.maps:
        return None
    for new_ref, old_ref in zip(fresh.fds, old.fds, strict=True):
        if new_ref[:_FD_TABLE] != old_ref[:_FD_TABLE]:
            return None
    taken = _take_over(previous, stat, signature, text)
    if replace(fresh.process, waiting=taken.process.waiting) != taken.process:
        return None
    return taken


_FD_TABLE = FdRef._fields.index("deleted") + 1
"""FdRef's fields that make a descriptor table (pid to deleted): only the process itself (or a process sharing its
table) changes the number, object and access; anyone may rename or unlink the file (path, deleted), which a full read
sees. The file's size, owner and mode follow."""


def _kin(stat: procfs.Stat) -> waiting.Kin:
    return waiting.Kin(stat.pgrp, stat.session, stat.threads)


def _take_over(previous: RememberedProcess, stat: procfs.Stat, signature: bytes, text: bytes) -> ProcessRead:
    """The previous read of a process that has not run since, with its name and parent as they are now.

    What others can change about the files its descriptors point at (size, owner, mode, links) is read again
    by the collectors that use it (fds.refresh).
    """
    process = previous.process
    # Reparented when its parent exited. (Its name cannot change without it running: the kernel refuses a
    # write to another process's /proc/PID/comm. Compared all the same, it costs nothing.)
    if (process.comm, process.ppid) != (stat.comm, stat.ppid):
        process = replace(process, comm=stat.comm, ppid=stat.ppid)
    return previous.read._replace(process=process, signals=None, wait=None, run_signature=signature, reused=True,
                                  kin=_kin(stat), stat_text=text, stat=stat)


def _read_signals(
    result: ProcessRead, stat: procfs.Stat, previous: RememberedProcess | None, plan: ReadPlan, *, turn: bool = False
) -> ProcessRead:
    """Add the signal masks; a single-threaded process whose status shows the same masks keeps its record.

    The status is not read at all for a process that cannot have changed its masks (_settled_signals), unless it is
    its turn (a handler table shared through clone(CLONE_SIGHAND), RLIMIT_SIGPENDING set with prlimit(2)); its SigQ
    count is its account's as another process's status showed it earlier in this scan (plan.queued).
    """
    pid = result.process.pid
    old = previous.read.signals if previous is not None else None
    if not turn and previous is not None and old is not None and _settled_signals(result, stat, old):
        user = previous.read.signal_user
        found = plan.queued.get(user) if user is not None else None
        if found is not None:
            queued = found[0]
            signals_now = old if queued == old.queued else replace(old, queued=queued)
            return result._replace(signals=signals_now, signal_section=previous.read.signal_section,
                                   signal_user=user)
    data = plan.read_small(pid, "status")
    section = signals.mask_section(data)
    if (previous is not None and old is not None and section and previous.read.signal_section
            and len(old.threads) == 1 and old.comm == stat.comm):
        # Often only SigQ moved: it counts the signals queued for the whole user (signals.queue_line). (The last
        # section's SigQ may be older than the record's, which a skipped read updates: it is not compared.)
        masks, queue = signals.queue_line(section)
        if masks == signals.queue_line(previous.read.signal_section)[0]:
            queued, limit = signals.parse_queue(queue)
            if (queued, limit) != (old.queued, old.queue_limit):
                old = replace(old, queued=queued, queue_limit=limit)
            return _with_user(result._replace(signals=old, signal_section=section), data, previous, plan)
    # Thread names change only by the thread group itself (prctl, execve, or a write to task/TID/comm, which the
    # kernel refuses from any other process): a process taken over keeps the last scan's, one read fewer a thread.
    names = {thread.tid: thread.comm for thread in old.threads} if old is not None and result.reused else None
    # The section holds every line from_status reads: parsing 7 lines instead of 55 is a tenth of the time.
    process_signals = signals.from_status(pid, stat.comm, procfs.parse_status(section or data), plan.proc, names)
    return _with_user(result._replace(signals=process_signals, signal_section=section), data, previous, plan)


def _settled_signals(result: ProcessRead, stat: procfs.Stat, old: ProcessSignals) -> bool:
    """Whether a process's signal record cannot have changed since the last scan read its status.

    It must be taken over (no thread of it has run since: its run signature, start time and state are the
    last scan's), and the last status it showed must have had nothing pending and nothing blocked in any thread;
    and either every thread is asleep in S (interruptible) at both scans, or it is a single-threaded kernel thread
    that ignores every signal (kthreadd's children do, unless one calls allow_signal: then it catches that one).
    Then, for each thread:

    - blocked is still empty: a task's blocked mask changes only in its own context (sigprocmask(2),
      sigsuspend(2), entering and leaving a handler, a fault), or by PTRACE_SETSIGMASK on a stopped tracee
      (state t, not S);
    - ignored and caught are the same: handlers change by sigaction(2) and execve(2) from the process itself
      (or by a process sharing its handler table through clone(CLONE_SIGHAND) without CLONE_THREAD, rare: the
      full read every refresh_every scans sees that, as it sees a shared descriptor table);
    - nothing is pending: a signal sent to it is either discarded (ignored, and not blocked since nothing is)
      or queued, and queueing a signal no thread blocks wakes the thread (complete_signal, signal_wake_up;
      a fatal one with SIGKILL): an S task becomes R, and runs. So a signal queued before this scan read
      /proc/PID/stat would show as state R or as a changed run signature, and the process is read in full;
      one queued after it is after this scan's moment for the process, as it would be after a status read.
      A kernel thread ignoring every signal (in any state: I, D) discards each one as it is sent, forced or
      not (sig_ignored: SIG_IGN), and cannot be ptraced (a tracer would have ignored signals queued).

    With several threads, /proc/PID/stat shows the leader's state only, so run_signature reads each thread's
    (task/TID/stat) and they must all be S. A signal sent to one thread (tgkill(2), a timer's SIGEV_THREAD_ID)
    is queued on that thread's own pending set and wakes that thread alone, and only when it wants it
    (kernel/signal.c complete_signal, wants_signal): not when it blocks the signal, nor when it is stopped or
    traced (T, t: a thread a debugger interrupted while the others sleep), nor when it already has a signal
    pending; and signal_wake_up wakes only TASK_INTERRUPTIBLE (S) sleepers, or TASK_KILLABLE ones (D) for a fatal
    signal, so one sent to a thread in D stays pending while that thread does not run (fs/proc/array.c prints
    each thread's own SigPnd). A signal sent to the process goes to the shared set (ShdPnd) and wakes the first
    thread that wants it; a thread that is S with nothing pending has TIF_SIGPENDING clear (__schedule does not
    let a task with a signal pending sleep interruptibly) and wants any signal it does not block. So with every
    thread S and nothing blocked, any signal queued wakes a thread, which runs (a changed signature) or is R when
    this scan reads its state. The thread set is the last status read's: a thread made or ended since ran.

    What else status shows that others change: SigQ's count (read once per account per scan, plan.queued) and
    its limit, RLIMIT_SIGPENDING, which prlimit(2) may change from outside: read again on the process's
    full-read turn, as capacity reads RLIMIT_MSGQUEUE (within refresh_every scans).
    """
    if not (
        result.reused
        and stat.threads == len(old.threads)
        and not old.pending
        and not old.blocked
        and all(not thread.pending and not thread.blocked for thread in old.threads)
        and old.comm == stat.comm
    ):
        return False
    if stat.threads == 1:
        return stat.state == "S" or (bool(stat.flags & procfs.PF_KTHREAD) and len(old.ignored) == signals.KERNEL_NSIG)
    return stat.state == "S" and _threads_asleep(result.run_signature, old.threads)


def _with_user(result: ProcessRead, status: bytes, previous: RememberedProcess | None, plan: ReadPlan) -> ProcessRead:
    """The read with its SigQ account known, and that account's SigQ noted for this scan (plan.queued): any
    process whose status is read serves the others of its account whose status is skipped.

    Its real uid (the Uid line) and user namespace change only by its own setuid(2), setns(2) or unshare(2),
    so a process taken over keeps the last scan's; one read in full reads them (one more readlink)."""
    record = result.signals
    if record is None:
        return result
    user = previous.read.signal_user if previous is not None and result.reused else None
    if user is None:
        user = _signal_user(result.process.pid, status, plan.proc)
        if user is None:
            return result
    plan.queued.setdefault(user, (record.queued, record.queue_limit))
    return result._replace(signal_user=user)


def _signal_user(pid: int, status: bytes, proc: str) -> SignalUser | None:
    """The real uid of a status text and the process's user namespace; None when either cannot be read, or the
    uid is the overflow uid (a user not mapped into ipcmon's namespace: several such users would read alike)."""
    uid = signals.real_uid(status)
    if uid is None or uid == procfs.overflow_uid(proc):
        return None
    try:
        user_ns = namespaces.parse_ns_link(os.readlink(f"{proc}/{pid}/ns/user"))
    except (OSError, ValueError):
        return None
    return SignalUser(uid, user_ns)


_UNSIGNED_STATES = frozenset("RZX")
"""Running now (its run time may not be accounted yet), or a dead leader whose threads may live on."""


def run_signature(pid: int, stat: procfs.Stat, proc: str = procfs.PROC,
                  files: procfs.OpenProcFiles | None = None) -> bytes | None:
    """Each thread's run time (ns) and run count from /proc/PID/schedstat; when there are several threads, one
    line per thread, ``TID STATE`` (its state letter from /proc/PID/task/TID/stat, read first) and its
    task/TID/schedstat, in the order of the thread ids' names. Equal signatures mean no thread has run (and each
    thread is in the same state: _settled_signals needs every thread's, not only the leader's that stat shows).

    None when it cannot tell: the process or one of its threads is running or is a zombie, it has too many threads
    to check, or the kernel keeps no run statistics (it then prints "0 0 0" for every task). A Scanner's files
    (kept open) are read with one pread each.
    """
    if stat.state in _UNSIGNED_STATES or stat.threads > MAX_SIGNED_THREADS:
        return None
    try:
        if stat.threads == 1:
            parts = [read_small(pid, "schedstat", proc, files)]
            if files is not None:
                files.keep_threads(pid, frozenset())  # its other threads ended: their kept files are closed
        else:
            names = sorted(os.listdir(f"{proc}/{pid}/task"))
            parts = []
            for name in names:
                state = _state_letter(read_small(pid, f"task/{name}/stat", proc, files))
                if state in _UNSIGNED_STATES:
                    return None
                parts.append(b"%s %s %s" % (name.encode(), state.encode(),
                                            read_small(pid, f"task/{name}/schedstat", proc, files)))
            if files is not None:
                files.keep_threads(pid, frozenset(names))
    except (Gone, Denied, OSError, IndexError):
        return None
    if any(part.split()[-1:] == [b"0"] for part in parts):
        return None  # never on a CPU yet, or no statistics kept
    return b"".join(parts)


def _state_letter(stat_text: bytes) -> str:
    """The state letter of a /proc/PID/stat or task/TID/stat text (the field after the name's closing parenthesis);
    raises IndexError on a text cut short."""
    return chr(stat_text[stat_text.rindex(b")") + 2])


def _threads_asleep(signature: bytes | None, threads: tuple[ThreadSignals, ...]) -> bool:
    """Whether a several-thread run signature (run_signature) has every thread in S, and names exactly these
    threads."""
    if signature is None:
        return False
    tids = set()
    for line in signature.splitlines():
        fields = line.split(None, 2)
        if len(fields) < 2 or fields[1] != b"S" or not fields[0].isdigit():
            return False
        tids.add(int(fields[0]))
    return tids == {thread.tid for thread in threads}
