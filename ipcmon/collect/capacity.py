"""Budgets (issue 14): how full the shm tmpfs is, and every kernel limit an IPC object counts against, with its usage.

Built from a finished scan's records (segments, queues, pipes, signal queues, SysV tables) plus a few cheap reads:
statvfs of the shm directory, /proc/meminfo, and the sysctl files under /proc/sys. The one per-process read is
/proc/PID/limits ("Max msgqueue size"), and only for processes of users that own a message queue; a Scanner keeps
each process's value between scans (by pid and start time) and reads it again on that process's full-read turn
(every ``refresh_every`` scans, memory.ScanMemory), since another process may change it with prlimit(1) without
the process running.

Where a number is not known it is None and a note says why; nothing here raises for an unreadable file.
"""

from __future__ import annotations

import heapq
import operator
import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, TypeVar

from ipcmon.collect import procfs
from ipcmon.collect.config import MountDir
from ipcmon.collect.recall import Recall
from ipcmon.model import (
    Budget,
    BudgetArea,
    BudgetUnit,
    Capacity,
    Filler,
    HolderUsage,
    Pipe,
    Place,
    Process,
    ShmMount,
    ShmSegment,
    Snapshot,
    SysvMsg,
    SysvSem,
    SysvShm,
)
from ipcmon.safe import counted
from ipcmon.text import human_bytes

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

RLIM_INFINITY = 2**64 - 1
"""How /proc/PID/status prints an unlimited rlimit (``SigQ: 0/18446744073709551615``); limits says "unlimited"."""

TOP_HOLDERS = 5

# --- POSIX message queues: the kernel's own accounting -------------------------------------------------------

MQ_PRIO_MAX = 32768
"""include/uapi/linux/mqueue.h."""

_WORD = 8 if sys.maxsize > 2**32 else 4
MSG_MSG_SIZE = 6 * _WORD
"""sizeof(struct msg_msg) (include/linux/msg.h: list_head m_list, long m_type, size_t m_ts, msg_msgseg *next,
void *security): 48 bytes on a 64-bit kernel."""
TREE_NODE_SIZE = 6 * _WORD
"""sizeof(struct posix_msg_tree_node) (ipc/mqueue.c: rb_node, list_head msg_list, int priority, padded): 48 bytes
on a 64-bit kernel."""


def mq_reservation(max_messages: int, message_size: int) -> int:
    """Bytes one queue reserves against its creator's RLIMIT_MSGQUEUE, as ipc/mqueue.c mqueue_get_inode() charges
    them (Linux 6.x; since 5.14 charged to the creator's ucounts, i.e. its real uid; checked against a 6.18 kernel
    by tests/collect/test_capacity.py, which has it accept exactly three default queues under a limit of 3 × 82,880
    and two under one byte less)::

        mq_treesize = maxmsg * sizeof(struct msg_msg) + min(maxmsg, MQ_PRIO_MAX) * sizeof(struct posix_msg_tree_node)
        mq_bytes    = maxmsg * msgsize + mq_treesize

    A default queue (10 × 8,192) reserves 81,920 + 10 × (48 + 48) = 82,880 bytes, so the 819,200-byte default
    limit holds nine: the tenth mq_open(3) fails with EMFILE (mq_open(3), mq_overview(7)). The charge is
    returned when the queue's inode is evicted (unlinked and closed by everyone).
    """
    return max_messages * message_size + max_messages * MSG_MSG_SIZE + min(max_messages, MQ_PRIO_MAX) * TREE_NODE_SIZE


# --- pipes -----------------------------------------------------------------------------------------------------

PIPE_DEF_BUFFERS = 16
"""include/linux/pipe_fs_i.h: a new pipe's pages (fs/pipe.c alloc_pipe_info), capped at fs.pipe-max-size."""
PIPE_MIN_DEF_BUFFERS = 2
"""fs/pipe.c: what a new pipe gets instead once its user is over fs.pipe-user-pages-soft (1 page in kernels
before the 2021 commit "pipe: increase minimum default pipe size to 2 pages")."""


# --- small readers ---------------------------------------------------------------------------------------------


def read_sysctl(name: str, proc: str = procfs.PROC) -> tuple[int, ...] | None:
    """The numbers of a sysctl (``fs.mqueue.queues_max`` → /proc/sys/fs/mqueue/queues_max); None when unreadable."""
    path = f"{proc}/sys/" + name.replace(".", "/")
    try:
        return tuple(int(word) for word in procfs.read_bytes(path, single=True).split())
    except (procfs.Gone, procfs.Denied, OSError, ValueError):
        return None


def _sysctl(name: str, proc: str) -> int | None:
    values = read_sysctl(name, proc)
    return values[0] if values else None


_MEMINFO = re.compile(rb"^(MemTotal|MemAvailable|Shmem):\s+(\d+) kB", re.MULTILINE)


def read_meminfo(proc: str = procfs.PROC) -> dict[str, int]:
    """MemTotal, MemAvailable and Shmem of /proc/meminfo in bytes (proc(5)); missing keys are left out."""
    try:
        data = procfs.read_bytes(f"{proc}/meminfo")
    except (procfs.Gone, procfs.Denied, OSError):
        return {}
    return {key.decode(): int(value) * 1024 for key, value in _MEMINFO.findall(data)}


_MSGQUEUE_LIMIT = re.compile(rb"^Max msgqueue size\s+(\S+)", re.MULTILINE)


class Limit(NamedTuple):
    """A soft rlimit as /proc/PID/limits shows it: readable or not, and the value (None for unlimited)."""

    readable: bool
    value: int | None = None


def read_msgqueue_limit(pid: int, proc: str = procfs.PROC) -> Limit:
    """The soft RLIMIT_MSGQUEUE of a process, the "Max msgqueue size" line of /proc/PID/limits (proc(5)).

    The file is readable by anyone on most kernels; a process that is gone or refused reads as unreadable."""
    try:
        data = procfs.read_bytes(f"{proc}/{pid}/limits")
    except (procfs.Gone, procfs.Denied, OSError):
        return Limit(False)
    match = _MSGQUEUE_LIMIT.search(data)
    if match is None:
        return Limit(False)
    word = match.group(1)
    if word == b"unlimited":
        return Limit(True, None)
    try:
        return Limit(True, int(word))
    except ValueError:
        return Limit(False)


class ShmemUsage(NamedTuple):
    """A process's shared memory in RAM, bytes: resident (RssShmem of status) and proportional (Pss_Shmem of
    smaps_rollup, each page divided by the number of processes that map it)."""

    rss: int | None
    pss: int | None


_KB_LINE = re.compile(rb"^(RssShmem|Pss_Shmem):\s+(\d+) kB", re.MULTILINE)


def shmem_usage(pid: int, proc: str = procfs.PROC) -> ShmemUsage | None:
    """RssShmem (/proc/PID/status) and Pss_Shmem (/proc/PID/smaps_rollup, Linux 4.14+) of one process, in bytes.

    For the process view and the detail pane, on demand: smaps_rollup walks every mapping of the process under
    its mmap lock, too slow for every process of every scan (proc(5)). None when the process is gone or not
    readable (smaps_rollup needs ptrace read access); a field the kernel does not print is None.
    """
    found: dict[bytes, int] = {}
    for name in ("status", "smaps_rollup"):
        try:
            data = procfs.read_bytes(f"{proc}/{pid}/{name}")
        except (procfs.Gone, procfs.Denied, OSError):
            return None
        found.update((key, int(value) * 1024) for key, value in _KB_LINE.findall(data))
    return ShmemUsage(found.get(b"RssShmem"), found.get(b"Pss_Shmem"))


class ShmemMapping(NamedTuple):
    """One shared memory mapping of a process (/proc/PID/smaps), bytes."""

    path: str
    """As smaps prints it: ``/dev/shm/NAME``, ``/memfd:NAME (deleted)``, ``/SYSV0000abcd (deleted)``,
    ``/dev/zero (deleted)`` (shared anonymous memory). Raw: show it through safe.printable."""
    size: int
    rss: int | None
    pss: int | None


_SHMEM_PATHS = ("/memfd:", "/SYSV", "/dev/zero")
_SMAPS_KB = re.compile(rb"^(Size|Rss|Pss):\s+(\d+) kB", re.MULTILINE)


def shmem_mappings(pid: int, shm_dir: str = "/dev/shm", proc: str = procfs.PROC) -> list[ShmemMapping] | None:
    """Every shared memory mapping of one process with its size, resident and proportional bytes, from
    /proc/PID/smaps (proc(5)): MAP_SHARED mappings (``s`` in the perms) of files in shm_dir, memfds, SysV segments
    and shared anonymous memory. Only on demand (the process view): smaps walks every page table of the process.
    None when the process is gone or not readable (smaps needs ptrace read access)."""
    try:
        data = procfs.read_bytes(f"{proc}/{pid}/smaps")
    except (procfs.Gone, procfs.Denied, OSError):
        return None
    prefix = shm_dir.rstrip("/") + "/"
    found = []
    # Each mapping is a header line (start-end perms offset dev inode path) and its counters up to the next one.
    for block in re.split(rb"\n(?=[0-9a-f]+-[0-9a-f]+ )", data):
        header, _, body = block.partition(b"\n")
        fields = header.split(None, 5)
        if len(fields) < 6 or not fields[1].endswith(b"s"):
            continue
        path = os.fsdecode(fields[5].strip())
        if not (path.startswith(prefix) or path.startswith(_SHMEM_PATHS)):
            continue
        counts = {key: int(value) * 1024 for key, value in _SMAPS_KB.findall(body)}
        found.append(ShmemMapping(path, counts.get(b"Size", 0), counts.get(b"Rss"), counts.get(b"Pss")))
    return found


# --- what a Scanner keeps between scans --------------------------------------------------------------------------


@dataclass(slots=True)
class LimitMemory:
    """RLIMIT_MSGQUEUE values read in earlier scans by (pid, start ticks), and when each process is due a fresh
    read: epoch(pid) changes on that process's full-read turn (the Scanner's rotation)."""

    recall: Recall[Limit]
    epoch: Callable[[int], Hashable]
    tallies: Recall[Any] | None = None
    """What the pipe and shm mount budgets keep between scans (PipeTally, MountTally): each pipe's owner
    (pipe_owner), reused while the scan hands over the very same Pipe record (a Scanner's: the same ends in the same
    processes), and what each pipe and segment adds up to."""


def _limits(pids: Iterable[Process], proc: str, memory: LimitMemory | None) -> list[Limit]:
    found = []
    for process in pids:
        identity = (process.pid, process.start_ticks)
        if memory is None:
            found.append(read_msgqueue_limit(process.pid, proc))
            continue
        epoch = memory.epoch(process.pid)
        kept = memory.recall.previous(identity)
        if kept is not None and kept[0] == epoch:
            found.append(memory.recall.carry(identity, kept))
            continue
        limit = read_msgqueue_limit(process.pid, proc)
        found.append(memory.recall.keep(identity, epoch, limit))
    return found


# --- the areas -------------------------------------------------------------------------------------------------


def collect(
    snapshot: Snapshot,
    *,
    proc: str = procfs.PROC,
    shm_dir: str | None = None,
    shm_dev: int | None = None,
    hidden: int = 0,
    limits: LimitMemory | None = None,
    shm_mounts: Sequence[MountDir] = (),
) -> Capacity | None:
    """Every budget the scan's kinds touch; None when it read none of shm, memfd, mqueue, pipe, signal and sysv.

    shm_dir and shm_dev are the scan's shm directory and its device (None when missing); shm_mounts, when given,
    every shm tmpfs to measure (the shm directory first, then each container's /dev/shm: Places.shm_mounts), each
    an ShmMount with its place. hidden counts the processes the scan could not read (then per-user usage may be
    short, and a note says so)."""
    kinds = set(snapshot.kinds)
    if not kinds & {"shm", "memfd", "mqueue", "pipe", "signal", "sysv"}:
        return None
    notes: list[str] = []
    budgets: list[Budget] = []
    mounts: list[ShmMount] = []
    memory = read_meminfo(proc) if kinds & {"shm", "memfd"} else {}
    if not shm_mounts and shm_dir is not None and shm_dev is not None:
        shm_mounts = (MountDir(shm_dir, shm_dev),)
    for index, where in enumerate(shm_mounts if "shm" in kinds else ()):
        mount = shm_mount(snapshot, where.path, where.dev, notes, where.place, hidden_note=index == 0,
                          others=len(shm_mounts) - 1, memory=limits.tallies if limits is not None else None)
        if mount is None:
            continue
        mounts.append(mount)
        available = memory.get("MemAvailable")
        if mount.size is not None and available is not None and mount.size > available:
            notes.append(f"The tmpfs on {mount.path} may grow to {human_bytes(mount.size)}, more than the "
                         f"{human_bytes(available)} of memory available: filling it would push the machine "
                         "into swap or the OOM killer before it says 'No space left on device'.")
    by_uid = _processes_by_uid(snapshot.processes)
    partial = f"{counted(hidden, 'process', 'processes')} could not be read: what they hold is not counted" \
        if hidden else ""
    if "mqueue" in kinds:
        # Queues are listed from their mount, whoever holds them: only without one do unread processes hide some.
        budgets += mqueue_budgets(snapshot, proc, by_uid, limits, partial if snapshot.mqueue_dir is None else "")
    if "pipe" in kinds:
        budgets += pipe_budgets(snapshot, proc, partial, limits.tallies if limits is not None else None)
    if "signal" in kinds:
        budgets += signal_budgets(snapshot)
    if "sysv" in kinds:
        budgets += sysv_budgets(snapshot, proc, notes)
    if kinds & {"sysv", "mqueue"} and (other := other_ipc_namespaces_note(snapshot)) is not None:
        notes.append(other)
    return Capacity(
        shm_mounts=tuple(mounts),
        budgets=tuple(budgets),
        memory_total=memory.get("MemTotal"),
        shmem=memory.get("Shmem"),
        memory_available=memory.get("MemAvailable"),
        notes=tuple(notes),
    )


def _processes_by_uid(processes: Iterable[Process]) -> dict[int, list[Process]]:
    by_uid: dict[int, list[Process]] = defaultdict(list)
    for process in processes:
        if process.uid is not None:
            by_uid[process.uid].append(process)
    return by_uid


def shm_mount(
    snapshot: Snapshot, shm_dir: str, shm_dev: int, notes: list[str], place: Place | None = None, *,
    hidden_note: bool = True, others: int = 0, memory: Recall[Any] | None = None,
) -> ShmMount | None:
    """The shm directory's tmpfs, or a container's (``/proc/PID/root/dev/shm``, with its place): size, use and inodes
    from statvfs(3), the bytes of the scan's segments on it by kind, and the processes that pin the most.

    statvfs counts in f_frsize blocks: used = (f_blocks − f_bfree) × f_frsize, available = f_bavail × f_frsize
    (tmpfs has no reserved blocks, so free and available agree). A tmpfs mounted without a size limit
    (size=0) reports f_blocks 0: its size is then unknown, not zero. A segment's bytes are its allocated
    pages (st_blocks × 512): a sparse segment counts what it uses, not its length. Every regular file directly in
    the directory is a segment to the shm collector (shm_open(3) makes nothing else), so "other" is what the
    scan could not attribute: files in subdirectories (no shm_open name reaches them), unlinked files held only
    by processes it could not read, and pages that changed while it read. None, with a note, when the
    directory is not a tmpfs mount point (shm.dir_note already says so for the scan).

    memory (a Scanner's, LimitMemory.tallies) keeps what the segments added up to: while the scan hands over the
    very same segment records, in the same order, they add up to the same (statvfs is read every time).
    """
    if procfs.fs_type(shm_dir) != procfs.TMPFS_MAGIC or not os.path.ismount(shm_dir):
        return None
    try:
        st = os.statvfs(shm_dir)
    except OSError as error:
        notes.append(f"statvfs({shm_dir}) failed: {error.strerror}; its size and use are unknown.")
        size = used = available = inodes_used = inodes_total = None
    else:
        block = st.f_frsize or st.f_bsize
        size = st.f_blocks * block if st.f_blocks else None
        used = (st.f_blocks - st.f_bfree) * block if st.f_blocks else None
        available = st.f_bavail * block if st.f_blocks else None
        inodes_total = st.f_files or None
        inodes_used = st.f_files - st.f_ffree if st.f_files else None
    key = ("shm_mount", shm_dir, shm_dev)
    kept = memory.previous(key) if memory is not None else None
    tally = _mount_tally(snapshot.shm, shm_dev, kept[1] if kept is not None else None)
    if memory is not None and tally.segments is snapshot.shm:
        memory.keep(key, None, tally)
    named, deleted, semaphores, top = tally.named, tally.deleted, tally.semaphores, tally.top
    other: int | None = None
    if used is not None:
        other = used - named - deleted - semaphores
        if other < 0:
            notes.append(f"The segments on {shm_dir} add up to {human_bytes(-other)} more than the tmpfs says it "
                         "uses (pages counted as they changed during the scan, or a mapping's length taken for "
                         "an unlinked segment's size): 'other' reads 0.")
            other = 0
    if snapshot.hidden_processes and hidden_note:
        also = f" and of {counted(others, 'other shm mount', 'other shm mounts')}" if others else ""
        notes.append(f"The top holders of {shm_dir}{also} leave out {snapshot.hidden_processes} process(es) ipcmon "
                     "could not read: a segment they alone hold has no holder listed.")
    return ShmMount(
        path=shm_dir, dev=shm_dev, size=size, used=used, available=available, inodes_used=inodes_used,
        inodes_total=inodes_total, named=named, deleted=deleted, semaphores=semaphores, other=other,
        top_holders=top, place=place,
    )


@dataclass(slots=True)
class MountTally:
    """What the segments on one shm mount add up to (shm_mount), by the segment records themselves."""

    segments: tuple[ShmSegment, ...] = ()
    """The scan's records as it handed them over, in its order (those on other mounts too)."""
    kept: dict[int, ShmSegment] = field(default_factory=dict)
    """By id() of each record on this mount (kept alive here, so no other object takes its id), the record."""
    named: int = 0
    deleted: int = 0
    semaphores: int = 0
    pinned: dict[int, int] = field(default_factory=dict)
    """Bytes each holder pins, by pid (no entry for none)."""
    top: tuple[HolderUsage, ...] = ()

    def add(self, segment: ShmSegment, sign: int = 1) -> None:
        """Count a segment in (sign 1) or out (sign -1)."""
        size = sign * segment.allocated
        if segment.kind == "sem":
            self.semaphores += size
        elif segment.state == "deleted":
            self.deleted += size
        else:
            self.named += size
        for pid in {holder.pid for holder in segment.holders}:
            _count(self.pinned, pid, size)


def _same_records(before: Sequence[object], now: Sequence[object]) -> bool:
    """Whether now holds the very objects of before, in the same order (no record is compared field by field)."""
    return before is now or (len(before) == len(now) and all(map(operator.is_, before, now)))


def _mount_tally(segments: tuple[ShmSegment, ...], shm_dev: int, before: MountTally | None = None) -> MountTally:
    """The tally of the segments on shm_dev: before's as it stands for the very same records in the same order;
    else before's less the records gone and plus the new ones (a segment whose record changed is both), or from
    nothing. A holder's name is the one its first segment in the scan's order gives, as a full count would."""
    if before is not None and _same_records(before.segments, segments):
        return before
    on = {id(segment): segment for segment in segments if segment.dev == shm_dev}
    twice = len(on) != sum(1 for segment in segments if segment.dev == shm_dev)
    if before is None or twice:
        tally = MountTally()
        for segment in segments:
            if segment.dev == shm_dev:  # a segment some holder sees in another mount namespace: not on this tmpfs
                tally.add(segment)
        # The same record twice (not made by a scan) counts each time, and is not kept (no segments to compare).
        tally.kept, tally.segments = ({}, ()) if twice else (on, segments)
    else:
        tally = before
        for gone in tally.kept.keys() - on.keys():
            tally.add(tally.kept.pop(gone), -1)
        for new in on.keys() - tally.kept.keys():
            tally.kept[new] = on[new]
            tally.add(on[new])
        tally.segments = segments
    top = heapq.nsmallest(TOP_HOLDERS, tally.pinned.items(), key=lambda item: (-item[1], item[0]))
    wanted = {pid for pid, _ in top}
    comms: dict[int, str] = {}
    for segment in segments:
        if len(comms) == len(wanted):
            break
        if segment.dev == shm_dev:
            for holder in segment.holders:
                if holder.pid in wanted:
                    comms.setdefault(holder.pid, holder.comm)
    tally.top = tuple(HolderUsage(pid, comms.get(pid, "?"), count) for pid, count in top if count)
    return tally


PER_OBJECT = frozenset({
    "fs.mqueue.msg_max", "fs.mqueue.msgsize_max", "fs.mqueue.msg_default", "fs.mqueue.msgsize_default",
    "fs.pipe-max-size", "kernel.shmmax", "kernel.msgmax", "kernel.msgmnb", "kernel.sem.semmsl", "kernel.sem.semopm",
})
"""Limits on each object (or each call), not pools that fill: a queue at msg_max does not stop the next queue, a pipe
at pipe-max-size does not stop the next pipe (mq_overview(7), pipe(7), proc(5), ipcs(1) -l). Budget.per_object."""


def _budget(area: BudgetArea, name: str, unit: BudgetUnit, used: int | None, limit: int | None, note: str = "", *,
            uid: int | None = None, unlimited: bool = False, next_needs: int | None = None) -> Budget:
    return Budget(area=area, name=name, unit=unit, used=used, limit=limit, note=note, uid=uid,
                  user=None if uid is None else procfs.user_name(uid), unlimited=unlimited, next_needs=next_needs,
                  per_object=name in PER_OBJECT)


def _largest(values: Iterable[int | None]) -> int | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


def mqueue_budgets(
    snapshot: Snapshot, proc: str, by_uid: Mapping[int, list[Process]], limits: LimitMemory | None, partial: str
) -> list[Budget]:
    """The fs.mqueue sysctls (mq_overview(7)) against the queues that exist, and RLIMIT_MSGQUEUE per user.

    queues_max counts every queue of the IPC namespace, unlinked-but-open ones too (ipc/mqueue.c
    mq_queues_count); reaching it gives ENOSPC to all but CAP_SYS_RESOURCE. A user's reservation is the sum of
    mq_reservation over the queues whose file it owns (the inode's uid is the creator's fsuid, the kernel charges
    the creator's real uid: the same unless the creator ran setuid). The limit in force is each of the user's
    processes' own soft RLIMIT_MSGQUEUE (it is the creating process's that is checked): the lowest is shown.
    """
    # The fs.mqueue sysctls are the IPC namespace's (ipc_namespace.mq_queues_count, mq_overview(7)): read here,
    # ipcmon's own; another namespace's queues count against its own. RLIMIT_MSGQUEUE is the user's, wherever.
    queues = tuple(queue for queue in snapshot.mqueues if queue.place is None or queue.place.host)
    unmounted = snapshot.mqueue_dir is None
    # Without the mount, only the queues some process holds open are seen: a lower bound, not the count.
    count_note = (f"no mqueue filesystem is mounted: at least {len(queues)} (the queues some process holds open; "
                  "unused ones are not seen)") if unmounted else ""
    msg_max = _sysctl("fs.mqueue.msg_max", proc)
    msgsize_max = _sysctl("fs.mqueue.msgsize_max", proc)
    msg_default = _sysctl("fs.mqueue.msg_default", proc)
    msgsize_default = _sysctl("fs.mqueue.msgsize_default", proc)
    budgets = [
        _budget("mqueue", "fs.mqueue.queues_max", "queues", None if unmounted else len(queues),
                _sysctl("fs.mqueue.queues_max", proc),
                "; ".join(filter(None, [count_note, "root (CAP_SYS_RESOURCE) may create more"]))),
        _budget("mqueue", "fs.mqueue.msg_max", "messages", _largest(q.max_messages for q in queues), msg_max,
                "the largest mq_maxmsg an unprivileged mq_open may ask for; used: the largest queue"),
        _budget("mqueue", "fs.mqueue.msgsize_max", "bytes", _largest(q.message_size for q in queues), msgsize_max,
                "the largest mq_msgsize an unprivileged mq_open may ask for; used: the largest queue's"),
        _budget("mqueue", "fs.mqueue.msg_default", "messages", None, msg_default,
                "mq_maxmsg of a queue made without attributes (at most msg_max)"),
        _budget("mqueue", "fs.mqueue.msgsize_default", "bytes", None, msgsize_default,
                "mq_msgsize of a queue made without attributes (at most msgsize_max)"),
    ]
    next_needs = None
    if msg_max is not None and msg_default is not None and msgsize_max is not None and msgsize_default is not None:
        # mqueue_get_inode: a queue made with attr NULL gets min(max, default) of each.
        next_needs = mq_reservation(min(msg_max, msg_default), min(msgsize_max, msgsize_default))
    reserved: dict[int, int] = defaultdict(int)
    unread: dict[int, int] = defaultdict(int)
    unknown_owner = 0
    for queue in snapshot.mqueues:
        if queue.uid is None:
            unknown_owner += 1
        elif queue.max_messages is None or queue.message_size is None:
            unread[queue.uid] += 1
        else:
            reserved[queue.uid] += mq_reservation(queue.max_messages, queue.message_size)
    for uid in sorted(reserved.keys() | unread.keys()):
        notes = []
        if unread[uid]:
            notes.append(f"at least: {unread[uid]} of its queues could not be opened to read their size")
        processes = by_uid.get(uid, [])
        found = _limits(processes, proc, limits)
        readable = [limit for limit in found if limit.readable]
        limit: int | None = None
        unlimited = False
        if not processes:
            notes.append("no process of this user is running: the limit of the next one is not known")
        elif not readable:
            notes.append("its processes' limits could not be read")
        else:
            values = {limit.value for limit in readable}
            finite = sorted(value for value in values if value is not None)
            if finite:
                limit = finite[0]
            else:
                unlimited = True
            if len(values) > 1:
                shown = ", ".join("unlimited" if value is None else f"{value:,}" for value in
                                  sorted(values, key=lambda value: (value is None, value or 0)))
                notes.append(f"lowest of {len(values)} values in force ({shown})")
        if partial:
            notes.append(partial)
        budgets.append(_budget("mqueue", "RLIMIT_MSGQUEUE", "bytes", reserved[uid], limit, "; ".join(notes),
                               uid=uid, unlimited=unlimited, next_needs=next_needs))
    if unknown_owner:
        budgets[0] = _budget("mqueue", "fs.mqueue.queues_max", "queues", len(queues), budgets[0].limit,
                             "; ".join(filter(None, [budgets[0].note, f"{unknown_owner} queue(s) with no known "
                                                     "owner are in no user's reservation"])))
    return budgets


def pipe_owner(ends: Iterable[int], processes: Mapping[int, Process]) -> int | None:
    """The uid a pipe's pages are charged to, as best /proc tells: the owner of the earliest-started process that
    holds an end. The kernel charges the pipe's creator (fs/pipe.c alloc_pipe_info: pipe->user, the real uid's
    user_struct, for a FIFO its first opener), which /proc does not show; the creator (or the parent it was
    made for) is usually the oldest holder, and almost always of the same user."""
    holders = [processes[pid] for pid in ends if pid in processes and processes[pid].uid is not None]
    if not holders:
        return None
    return min(holders, key=lambda process: (process.start_ticks, process.pid)).uid


def pipe_budgets(snapshot: Snapshot, proc: str, partial: str, owners: Recall[Any] | None = None) -> list[Budget]:
    """fs.pipe-max-size against the largest pipe, and per user the pages of its pipes against
    fs.pipe-user-pages-soft and -hard (pipe(7), fs/pipe.c).

    A pipe's pages are its capacity (F_GETPIPE_SZ, resized ones included) / PAGE_SIZE: pipe->nr_accounted.
    Over the soft limit a new pipe of an unprivileged user gets PIPE_MIN_DEF_BUFFERS pages instead of 16; over
    the hard limit pipe(2) fails with ENFILE (fs/pipe.c create_pipe_files) and F_SETPIPE_SZ with EPERM
    (pipe(7)). 0 means no limit. Processes with CAP_SYS_RESOURCE or CAP_SYS_ADMIN are not
    held to either. owners: what a Scanner keeps between scans (LimitMemory.tallies): the tally of the last
    scan, from which only the pipe records that are not the very same objects are taken out or added (PipeTally).
    """
    max_size = _sysctl("fs.pipe-max-size", proc)
    soft = _sysctl("fs.pipe-user-pages-soft", proc)
    hard = _sysctl("fs.pipe-user-pages-hard", proc)
    kept = owners.previous(PipeTally) if owners is not None else None
    tally = _pipe_tally(snapshot, kept[1] if kept is not None else None)
    if owners is not None and len(tally.kept) == len(snapshot.pipes):
        owners.keep(PipeTally, None, tally)
    budgets = [_budget("pipe", "fs.pipe-max-size", "bytes", max(tally.capacities, default=None),
                       max_size, "the largest capacity F_SETPIPE_SZ gives an unprivileged process; used: the "
                       "largest pipe's")]
    pages, unknown = tally.pages, tally.unknown
    next_needs = PIPE_DEF_BUFFERS
    if max_size is not None and max_size < PIPE_DEF_BUFFERS * PAGE_SIZE:
        next_needs = max_size // PAGE_SIZE
    approximate = "charged to the owner of the oldest process holding an end (the kernel charges the creator)"
    for uid in sorted(tally.owned):
        notes = [approximate]
        if unknown.get(uid):
            notes.append(f"at least: {unknown[uid]} pipe(s) whose capacity could not be read are not counted")
        if partial:
            notes.append(partial)
        if uid == 0:
            notes.append("processes with CAP_SYS_RESOURCE or CAP_SYS_ADMIN are not held to it")
        for name, limit, what in (("fs.pipe-user-pages-soft", soft, f"over it, a new pipe gets "
                                   f"{PIPE_MIN_DEF_BUFFERS} pages instead of {PIPE_DEF_BUFFERS}"),
                                  ("fs.pipe-user-pages-hard", hard, "over it, pipe(2) fails")):
            budgets.append(_budget("pipe", name, "pages", pages.get(uid, 0), limit or None,
                                   "; ".join([what, *notes]), uid=uid,
                                   unlimited=limit == 0, next_needs=next_needs))
    return budgets


@dataclass(slots=True)
class PipeTally:
    """What a scan's pipes add up to (pipe_budgets), by the pipe records themselves: each record's owner, each
    user's pipes, pages and pipes of unknown capacity, and how many pipes have each capacity."""

    kept: dict[int, tuple[Pipe, int | None]] = field(default_factory=dict)
    """By id() of each Pipe record (kept alive here, so no other object takes its id), the record and its owner."""
    owned: dict[int, int] = field(default_factory=dict)
    pages: dict[int, int] = field(default_factory=dict)
    unknown: dict[int, int] = field(default_factory=dict)
    capacities: dict[int, int] = field(default_factory=dict)
    pipes: tuple[Pipe, ...] = ()
    """The records as the scan handed them over, in its order."""

    def add(self, pipe: Pipe, uid: int | None, sign: int = 1) -> None:
        """Count a pipe in (sign 1) or out (sign -1); an entry that falls to 0 is removed."""
        if pipe.capacity is not None:
            _count(self.capacities, pipe.capacity, sign)
        if uid is None:
            return
        _count(self.owned, uid, sign)
        if pipe.capacity is None:
            _count(self.unknown, uid, sign)
        else:
            _count(self.pages, uid, sign * (pipe.capacity // PAGE_SIZE))


def _count(counts: dict[int, int], key: int, amount: int) -> None:
    total = counts.get(key, 0) + amount
    if total:
        counts[key] = total
    else:
        counts.pop(key, None)


def _pipe_tally(snapshot: Snapshot, before: PipeTally | None) -> PipeTally:
    """The tally of the snapshot's pipes: before's, less the records that are gone and plus those that are new
    (a pipe whose record changed is both), or from nothing."""
    pipes = snapshot.pipes
    if before is not None and _same_records(before.pipes, pipes):
        return before  # the very records of the last scan, in the same order
    by_id = dict(zip(map(id, pipes), pipes, strict=True))
    processes: dict[int, Process] | None = None
    if len(by_id) != len(pipes):  # the same record twice (not made by a scan): counted each time, and not kept
        tally = PipeTally()
        processes = {process.pid: process for process in snapshot.processes}
        for pipe in pipes:
            uid = pipe_owner([end.pid for end in (*pipe.readers, *pipe.writers)], processes)
            tally.kept[id(pipe)] = (pipe, uid)
            tally.add(pipe, uid)
        return tally
    tally = before if before is not None else PipeTally()
    for gone in tally.kept.keys() - by_id.keys():
        pipe, uid = tally.kept.pop(gone)
        tally.add(pipe, uid, -1)
    for new in by_id.keys() - tally.kept.keys():
        pipe = by_id[new]
        if processes is None:
            processes = {process.pid: process for process in snapshot.processes}
        uid = pipe_owner([end.pid for end in (*pipe.readers, *pipe.writers)], processes)
        tally.kept[new] = (pipe, uid)
        tally.add(pipe, uid)
    tally.pipes = pipes
    return tally


def signal_budgets(snapshot: Snapshot) -> list[Budget]:
    """Per user, the signals queued against RLIMIT_SIGPENDING: the SigQ line of /proc/PID/status (proc(5)), which
    the signal collector read for every process (ProcessSignals.queued, queue_limit): the count is the real
    user's (kernel/signal.c, ucounts UCOUNT_RLIMIT_SIGPENDING), the limit each process's own; processes are
    grouped by the owner of /proc/PID (the effective uid), the same user unless one ran setuid. Past the limit,
    sigqueue(3) and real-time signals fail with EAGAIN (standard signals are still sent, without their data)."""
    uid_of = {process.pid: process.uid for process in snapshot.processes}
    queued: dict[int, int] = {}
    limits: dict[int, set[int]] = defaultdict(set)
    for record in snapshot.signals:
        uid = uid_of.get(record.pid)
        if uid is None or record.queued is None:
            continue
        queued[uid] = max(queued.get(uid, 0), record.queued)
        if record.queue_limit is not None:
            limits[uid].add(record.queue_limit)
    budgets = []
    for uid in sorted(queued):
        values = limits[uid]
        finite = sorted(value for value in values if value < RLIM_INFINITY)
        note = ""
        if len(values) > 1:
            shown = ", ".join("unlimited" if value >= RLIM_INFINITY else f"{value:,}" for value in sorted(values))
            note = f"lowest of {len(values)} values in force ({shown})"
        budgets.append(_budget("signal", "RLIMIT_SIGPENDING", "signals", queued[uid], finite[0] if finite else None,
                               note, uid=uid, unlimited=bool(values) and not finite))
    return budgets


PlacedT = TypeVar("PlacedT", SysvShm, SysvMsg, SysvSem)


def _own(records: tuple[PlacedT, ...]) -> tuple[PlacedT, ...]:
    """The records of ipcmon's own IPC namespace (place None: a scan that did not read namespaces)."""
    return tuple(record for record in records if record.place is None or record.place.host)


def other_ipc_namespaces_note(snapshot: Snapshot) -> str | None:
    """The note of a scan that saw IPC namespaces other than ipcmon's own: their SysV and mqueue limits are their
    own, and not read (README "Containers and namespaces"); None when there are none."""
    others = {namespace.place.ipc for namespace in snapshot.namespaces if not namespace.place.host} - {None}
    if not others:
        return None
    return (f"The kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* limits shown are the host's IPC namespace's, "
            f"against its own objects: {counted(len(others), 'other IPC namespace has', 'other IPC namespaces have')} "
            "limits of their own, not read here (a container out of ids is not told; nsenter --ipc -t PID ipcs -l "
            "shows one's).")


SHM_NO_LIMIT = 2 ** (8 * _WORD) - 1 - (1 << 24)
"""ULONG_MAX - 2^24: the kernel's default for kernel.shmmax (bytes) and kernel.shmall (pages), SHMMAX and SHMALL in
include/uapi/linux/shm.h, "as large as possible without facilitating scenarios where userspace causes overflows"
when it adds to them: no limit in effect (18446744073692774399 on a 64-bit kernel). ``ipcs -l`` prints it as a
number (``max seg size (kbytes) = 18014398509465599``); limits says ``unlimited``."""


def shm_sysctl_limit(value: int | None) -> tuple[int | None, bool]:
    """kernel.shmmax or kernel.shmall as a budget's (limit, unlimited): (None, True) at or above the kernel's "no
    limit" default (SHM_NO_LIMIT), as RLIM_INFINITY reads; (value, False) below it; (None, False) unknown."""
    if value is not None and value >= SHM_NO_LIMIT:
        return None, True
    return value, False


def _shm_budget(name: str, unit: BudgetUnit, used: int | None, value: int | None, note: str) -> Budget:
    """kernel.shmall or kernel.shmmax: ``unlimited`` at the kernel's default (shm_sysctl_limit), the note giving
    the number the sysctl holds."""
    limit, unlimited = shm_sysctl_limit(value)
    if unlimited:
        note += f"; unlimited: {value} is the kernel's default, ULONG_MAX - 2^24: no limit"
    return _budget("sysv", name, unit, used, limit, note, unlimited=unlimited)


def sysv_budgets(snapshot: Snapshot, proc: str, notes: list[str]) -> list[Budget]:
    """kernel.shmmni, shmall, shmmax, msgmni, msgmax, msgmnb and the four kernel.sem values (SEMMSL SEMMNS SEMOPM
    SEMMNI), each against its usage in /proc/sysvipc, as ``ipcs -l`` and ``ipcs -u`` show them (sysvipc(7),
    proc(5)). shmall counts pages: usage is the segments' sizes in whole pages (ipc/shm.c shm_tot). shmmax,
    msgmax, msgmnb and SEMMSL are per-object limits: used is the largest object's; SEMOPM is per semop(2) call,
    with nothing to count."""
    sysv = snapshot.sysv
    if not sysv.available:
        notes.append("/proc/sysvipc is missing: SysV limits have no usage to show.")
    # Each IPC namespace has its own limits and its own ids (ipc/namespace.c): these are ipcmon's own namespace's,
    # against its own objects (a container's SysV objects count against the container's limits).
    sysv = replace(sysv, shm=_own(sysv.shm), msg=_own(sysv.msg), sem=_own(sysv.sem))
    shm_sizes = [segment.size for segment in sysv.shm]
    sem = read_sysctl("kernel.sem", proc)
    semmsl, semmns, semopm, semmni = sem if sem is not None and len(sem) == 4 else (None, None, None, None)
    known = sysv.available

    def used(value: int | None) -> int | None:
        return value if known else None

    return [
        _budget("sysv", "kernel.shmmni", "ids", used(len(sysv.shm)), _sysctl("kernel.shmmni", proc), "segments"),
        _shm_budget("kernel.shmall", "pages", used(sum(-(-size // PAGE_SIZE) for size in shm_sizes)),
                    _sysctl("kernel.shmall", proc), "all segments together, in pages"),
        _shm_budget("kernel.shmmax", "bytes", used(max(shm_sizes, default=0)), _sysctl("kernel.shmmax", proc),
                    "one segment's size; used: the largest segment's"),
        _budget("sysv", "kernel.msgmni", "ids", used(len(sysv.msg)), _sysctl("kernel.msgmni", proc), "queues"),
        _budget("sysv", "kernel.msgmax", "bytes", None, _sysctl("kernel.msgmax", proc),
                "one message's size: nothing to count"),
        _budget("sysv", "kernel.msgmnb", "bytes", used(max((m.qbytes for m in sysv.msg), default=0)),
                _sysctl("kernel.msgmnb", proc), "a new queue's byte limit; used: the fullest queue's bytes"),
        _budget("sysv", "kernel.sem.semmsl", "semaphores", used(max((s.nsems for s in sysv.sem), default=0)),
                semmsl, "semaphores per set; used: the largest set"),
        _budget("sysv", "kernel.sem.semmns", "semaphores", used(sum(s.nsems for s in sysv.sem)), semmns,
                "semaphores of all sets together"),
        _budget("sysv", "kernel.sem.semopm", "semaphores", None, semopm,
                "operations per semop(2) call: nothing to count"),
        _budget("sysv", "kernel.sem.semmni", "ids", used(len(sysv.sem)), semmni, "semaphore sets"),
    ]


def largest_in_budgets(snapshot: Snapshot, capacity: Capacity, shown: int = 5) -> list[Filler]:
    """The ``shown`` largest objects on each shm mount with something on it, and charged to each RLIMIT_MSGQUEUE
    budget in capacity (``limits --user`` leaves only that user's), largest first within each."""
    fillers: list[Filler] = []
    for mount in capacity.shm_mounts:
        on_it = sorted((segment for segment in snapshot.shm if segment.dev == mount.dev),
                       key=lambda segment: -(segment.pinned_bytes or segment.allocated))
        fillers.extend(Filler(mount.path, None, segment.kind, segment.name, segment.object_key,
                              segment.pinned_bytes or segment.allocated, segment.state, segment.place)
                       for segment in on_it[:shown])
    for budget in capacity.budgets:
        if budget.name != "RLIMIT_MSGQUEUE" or budget.uid is None:
            continue
        charged = [(mq_reservation(queue.max_messages, queue.message_size), queue) for queue in snapshot.mqueues
                   if queue.uid == budget.uid and queue.max_messages is not None and queue.message_size is not None]
        charged.sort(key=lambda pair: -pair[0])
        fillers.extend(Filler("RLIMIT_MSGQUEUE", budget.uid, "mqueue", queue.name, queue.object_key, reserved,
                              "held" if queue.holders else "orphaned", queue.place)
                       for reserved, queue in charged[:shown])
    return fillers
