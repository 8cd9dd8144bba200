"""The one rule book for states and hazards: held, orphaned or deleted; full queues; pipe flags; budgets; their words.

Collectors, the event diff, leak hunting, the text report and the dashboard all decide "is this orphaned?"
here and nowhere else, so a rule changed once changes everywhere. Pure functions of records, no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from ipcmon.model import (
    Budget,
    Mechanism,
    MessageQueue,
    Pipe,
    PipeEnd,
    PipeFlag,
    Place,
    ProcessSignals,
    SharedRegion,
    ShmMount,
    ShmSegment,
    ShmState,
    Snapshot,
    SysvMsg,
    SysvSem,
    SysvShm,
    WaitKind,
)
from ipcmon.safe import counted
from ipcmon.text import deadlock_summary, human_bytes, stuck_problem

QueueState = Literal["held", "orphaned", "orphaned?", "deleted", "full"]
SysvShmState = Literal["attached", "orphaned", "removed"]
RegionState = Literal["held"]
Level = Literal["bad", "warn"]
"""How much a hazard matters, one rule for every mechanism:

- ``bad``: something is lost or stuck now: a leak (what ``ipcmon leaks`` lists: an object nobody holds that
  stays until someone removes it, or a deleted segment still pinning memory), a deadlock, or a process that
  cannot go on now (a writer or sender on a full pipe or queue, an open() of a FIFO nobody opens at the other
  end, a wait for a stuck child);
- ``warn``: goes wrong only if used, or worth a look: a pipe with no reader (its writer fails only when it
  writes; daemons' stdout often stays so for days), one process holding both ends, pending signals.

A budget or an shm mount (issue 14) is ``warn`` from budget_threshold() and ``bad`` when used up or when the next
default-sized object no longer fits: the next creation fails (budget_level, mount_level).
"""

LEVEL_GLYPHS: dict[Level, str] = {"bad": "✖", "warn": "▲"}
"""Each level's glyph, shown beside its word or alone where a column is one cell wide, so that a level reads
without colour; no two levels share one."""

LEVEL_ORDER: dict[Level, int] = {"bad": 0, "warn": 1}
"""Most serious first."""

STATE_LEVELS: dict[str, Level] = {"orphaned": "bad", "deleted": "bad", "removed": "bad", "full": "bad"}
"""The level of each state word that is a hazard; a state not here (held, attached) is fine."""

PIPE_FLAG_WORDS: dict[PipeFlag, str] = {
    "no-reader": "no reader: the next write gets SIGPIPE/EPIPE",
    "no-writer": "no writer: readers get EOF once it drains",
    "full": "full: writers block until someone reads",
    "both-ends": "one process holds both ends: its reader may never see EOF",
    "no-reader?": "no reader ipcmon can see, and a process it cannot read may hold one: unknown",
    "no-writer?": "no writer ipcmon can see, and a process it cannot read may hold one: unknown",
}
"""What each pipe flag means, in words (pipe(7)). A flag ending in ``?`` is unknown, not fact: never a hazard."""

PIPE_HAZARDS: dict[PipeFlag, Level] = {"no-reader": "warn", "full": "bad", "both-ends": "warn"}
"""Flags worth an alert, at their Level (no-writer is the normal end of a pipe's life)."""


def shm_state(*, linked: bool, held: bool) -> ShmState:
    """A POSIX segment or semaphore: ``deleted`` when unlinked (yet still held), else ``held`` or ``orphaned``."""
    return "deleted" if not linked else "held" if held else "orphaned"


def region_state(region: SharedRegion) -> RegionState:
    """A memfd or anonymous region is always ``held``: it has no name, so it dies with its last holder."""
    return "held"


def queue_full(queue: MessageQueue) -> bool:
    """mq_curmsgs reached mq_maxmsg: senders block (or get EAGAIN). False when the counts are unknown."""
    fill = queue.fill
    return fill is not None and fill >= 1


def queue_orphaned(queue: MessageQueue) -> bool:
    """Still linked in the mqueue filesystem, and no process has it open (known: not ``maybe_held``, see qualify)."""
    return not queue.holders and not queue.deleted and not queue.maybe_held


def queue_state(queue: MessageQueue) -> QueueState:
    """``deleted`` (unlinked, still open) before ``full`` before ``held``, ``orphaned`` or ``orphaned?`` (unknown:
    see qualify)."""
    if queue.deleted:
        return "deleted"
    if queue_full(queue):
        return "full"
    return "held" if queue.holders else "orphaned?" if queue.maybe_held else "orphaned"


def could_hold(uid: int | None, owner: int | None, mode: int | None) -> bool:
    """Whether a process running as uid might hold a shm segment, semaphore or queue of this owner and mode,
    judged by the permission bits: it is the owner, or the group or other bits grant reading or writing (the
    process's groups are not known, so group bits count for everyone). True when any of the three is unknown.

    Root is judged like any other uid. Its privilege lets it open any object, but counting that would make every
    object unknown wherever one root process cannot be read; a root process that opens another user's private
    object, and any process given a descriptor over a socket or across a change of user, is not foreseen."""
    if uid is None or owner is None or mode is None:
        return True
    return uid == owner or bool(mode & 0o066)


def unseen_uids(snapshot: Snapshot) -> frozenset[int | None]:
    """The uids of the processes whose descriptors or mappings the scan could not read, with None when some
    process could not be read at all (Unread.DENIED: not even its owner is known). Empty when every process was
    read. Of the whole scan: ``--pid`` restricts the count, not what another process might hold."""
    if not snapshot.hidden_processes:
        return frozenset()
    uids: set[int | None] = {process.uid for process in snapshot.processes if process.hidden}
    if snapshot.hidden_processes > sum(process.hidden for process in snapshot.processes):
        uids.add(None)
    return frozenset(uids)


def qualify(snapshot: Snapshot, *, privileged: bool = False) -> Snapshot:
    """The snapshot with what is unknown said so (issue 13): a segment or semaphore that no readable process
    holds, but that a process the scan could not read could_hold (one of unseen_uids), reads ``orphaned?``
    instead of ``orphaned``, and such a queue is ``maybe_held`` (its state ``orphaned?``). Neither is a hazard
    nor a leak: only facts are. The scan calls this once, before ``--pid`` restricts the snapshot; pipes are
    judged where they are read, with the kernel's own count of their ends (collect.pipes, pipe_flags).

    privileged: the scan ran as root. Then the processes it could not read are those the kernel shields even from
    root (a security module, a hypervisor's agent, another user namespace's init), not by the owner and mode
    this rule reasons with; they are counted and noted, but not taken as holders, or every root object on such a
    machine would read unknown for ever. Their pipe ends still count, through the kernel's answer."""
    uids = frozenset() if privileged else unseen_uids(snapshot)
    if not uids:
        return snapshot

    def unknown(record: ShmSegment | MessageQueue) -> bool:
        return any(could_hold(uid, record.uid, record.mode) for uid in uids)

    return replace(
        snapshot,
        shm=tuple(replace(segment, state="orphaned?") if segment.state == "orphaned" and unknown(segment)
                  else segment for segment in snapshot.shm),
        mqueues=tuple(replace(queue, maybe_held=True) if not queue.holders and not queue.deleted and unknown(queue)
                      else queue for queue in snapshot.mqueues),
    )


def sysv_shm_orphaned(segment: SysvShm) -> bool:
    """No process attached (nattch 0) and not marked for removal: it stays until IPC_RMID or reboot."""
    return segment.nattch == 0 and not segment.removed


def sysv_shm_state(segment: SysvShm) -> SysvShmState:
    """``removed`` (IPC_RMID, still attached), ``orphaned`` (nattch 0) or ``attached``."""
    return "removed" if segment.removed else "orphaned" if segment.nattch == 0 else "attached"


PIPE_BUF = 4096
"""The largest write to a pipe the kernel makes atomic (pipe(7)): with less than this free, such a write blocks."""


def pipe_flags(
    readers: Iterable[PipeEnd], writers: Iterable[PipeEnd], buffered: int | None, capacity: int | None,
    *, self_pipe: bool = False, kernel_readers: bool | None = None, kernel_writers: bool | None = None,
    unseen: bool = False, writer_blocked: bool = False,
) -> tuple[PipeFlag, ...]:
    """A pipe's flags in this order: no-reader, no-writer (or their unknown forms), full, both-ends.

    With no reader among the ends seen, kernel_readers is the kernel's own answer, from a poll of a borrowed
    end (collect.pipes): False gives ``no-reader``, True no flag (the reader is in a process that could not be
    read). When the kernel was not asked (None), ``no-reader`` is fact only when every process's descriptors
    were read; with unseen (some could not be, and any of them could hold an end of any pipe) it is
    ``no-reader?``. Likewise for writers.

    full: a writer is blocked in its write (writer_blocked: a Waiting of kind ``write`` on it), or less than
    PIPE_BUF bytes are free (buffered > capacity - PIPE_BUF, when both are known). The kernel counts a pipe's
    room in pages, not bytes: a writer can block with far fewer bytes buffered than the capacity (sixteen
    one-byte writes fill sixteen pages), which only the blocked writer shows.
    both-ends: one process holds a read and a write end; not for a wake-up pipe (see wakeup_pipe, which needs
    self_pipe: every end has O_NONBLOCK, or the one holder has several threads)."""
    reader_pids = {end.pid for end in readers}
    writer_pids = {end.pid for end in writers}
    flags: list[PipeFlag] = []
    if not reader_pids and not kernel_readers:
        flags.append("no-reader?" if kernel_readers is None and unseen else "no-reader")
    if not writer_pids and not kernel_writers:
        flags.append("no-writer?" if kernel_writers is None and unseen else "no-writer")
    if writer_blocked or (buffered is not None and capacity and buffered > capacity - PIPE_BUF):
        flags.append("full")
    if reader_pids & writer_pids and not (self_pipe and wakeup_pipe(reader_pids, writer_pids)):
        flags.append("both-ends")
    return tuple(flags)


def wakeup_pipe(reader_pids: Collection[int], writer_pids: Collection[int]) -> bool:
    """Whether a pipe whose every end is O_NONBLOCK, or whose holder has several threads (the caller checks that:
    ``self_pipe``), is a wake-up pipe, which ``both-ends`` must not flag: one process holds every read and every
    write end, and nobody else.

    ``both-ends`` is there for the classic mistake of a process that forks and forgets to close the end it
    does not use: its reader then never sees EOF, because it holds a writer itself. That end is a plain
    blocking descriptor (pipe(2) without flags, as every course writes it), or the pipe is shared with the
    child it forked. The self-pipe trick (a signal or another thread writes a byte so that poll/select wakes
    up: libevent's signal pipe, made with pipe2(O_NONBLOCK), hence tmux's; a pipe given to Python's
    signal.set_wakeup_fd, which must be non-blocking) is the opposite on both counts: one process, every end
    made non-blocking so that neither the write in a signal handler nor the draining read can ever block.
    An htop or lsof user would not want every terminal multiplexer on the machine listed as a hazard, so that
    pattern is no hazard. So is a pipe between a multi-threaded process's own threads, made blocking or not: one
    thread polls its read end while another writes (watchdog's inotify thread, and so ipcmon record's and every
    ipcmon's, is woken that way through a plain pipe(2)); the forgotten end of a fork is a single-threaded
    program's mistake. A single-threaded process's wake-up pipe that was never made non-blocking, or a
    non-blocking pipe shared with a second process, is still flagged: the rule errs towards showing.
    """
    return len(reader_pids) == 1 and set(reader_pids) == set(writer_pids)


def pending_count(signals: ProcessSignals) -> int:
    """Signals pending for the process (ShdPnd) plus those pending for each of its threads (SigPnd)."""
    return len(signals.pending) + sum(len(thread.pending) for thread in signals.threads)


def signals_of_note(signals: ProcessSignals) -> bool:
    """Worth a row in the text report: something pending or blocked, in the process or one of its threads."""
    return bool(
        signals.pending
        or signals.blocked
        or any(thread.pending or thread.blocked for thread in signals.threads)
    )


@dataclass(frozen=True, slots=True)
class Hazard:
    """One leak or hazard in a snapshot, in words."""

    level: Level
    mechanism: Mechanism
    object: str
    """The object's raw label (untrusted: show it through safe.printable)."""
    problem: str
    """``WORD: explanation``; the word before the colon (orphaned, full, no reader…) names the hazard."""
    key: str
    """The object's ``object_key``."""
    bytes: int | None = None
    """Bytes at stake: allocated by an orphaned segment, pinned by a deleted one, queued in a queue or pipe,
    the size of an orphaned SysV segment; None when unknown or when there are none to speak of (signals)."""
    pids: tuple[int, ...] = ()
    """The processes a deadlock or a blocked wait is about (a front end opens the first); () for an object."""

    @property
    def name(self) -> str:
        """The word that names the hazard, before the colon of ``problem``: ``orphaned``, ``full``, ``deadlock``."""
        return self.problem.partition(":")[0]

    @property
    def level_text(self) -> str:
        """The level as glyph and word, ``✖ bad``, for text without colour."""
        return f"{LEVEL_GLYPHS[self.level]} {self.level}"


KIND_ORDER: dict[Mechanism, int] = {
    "shm": 0, "sem": 0, "memfd": 0, "anon": 0, "sysv-shm": 0,
    "mqueue": 1, "sysv-msg": 1, "sysv-sem": 1,
    "pipe": 2, "fifo": 2,
    "signal": 3, "process": 3,
}
"""Between hazards of one level and as many bytes: memory before queues before pipes before signals."""


FIRST: dict[str, int] = {"deadlock": 0, "blocked": 1}
"""Hazards that come before the others of their level, whatever the bytes: processes that cannot go on now."""

Rank = tuple[int, int, int, int, str, str]


def rank(hazard: Hazard) -> Rank:
    """The one order of hazards, most serious first: by level (``bad`` before ``warn``), then deadlocks, then
    blocked waits (FIRST), then by bytes at stake (more first; unknown counts as none), then by kind
    (KIND_ORDER), then by name.

    So a deadlock comes first of all, an orphaned 1 MiB segment (bad: leaked) ranks above any number of pipes
    with no reader (warn), and of two leaks the bigger comes first."""
    return (LEVEL_ORDER[hazard.level], FIRST.get(hazard.name, len(FIRST)), -(hazard.bytes or 0),
            KIND_ORDER.get(hazard.mechanism, 9), hazard.object, hazard.problem)


def _shm_hazards(snapshot: Snapshot) -> Iterator[Hazard]:
    for segment in snapshot.shm:
        if segment.state == "orphaned":
            what = "semaphore" if segment.kind == "sem" else "segment"
            yield Hazard(STATE_LEVELS["orphaned"], segment.kind, segment.label,
                         f"orphaned: no process holds this {what} ({human_bytes(segment.allocated)} allocated)",
                         segment.object_key, segment.allocated)
        elif segment.state == "deleted" and segment.pinned_bytes == 0:
            # Nothing allocated (tmpfs allocates a page when it is first written): it pins no memory yet, so it
            # is worth a look, not a leak.
            yield Hazard("warn", segment.kind, segment.label,
                         "deleted but still held: pins nothing yet (no page written), until the last holder lets go",
                         segment.object_key, 0)
        elif segment.state == "deleted":
            yield Hazard(STATE_LEVELS["deleted"], segment.kind, segment.label,
                         f"deleted but still held: pins {human_bytes(segment.pinned_bytes)} until the last holder "
                         "lets go", segment.object_key, segment.pinned_bytes)


def _queue_hazards(snapshot: Snapshot) -> Iterator[Hazard]:
    for queue in snapshot.mqueues:
        if queue_full(queue):
            yield Hazard(STATE_LEVELS["full"], "mqueue", queue.label, "full: senders block (or get EAGAIN)",
                         queue.object_key, queue.qsize_bytes)
        if queue_orphaned(queue):
            messages = counted(queue.messages, "message", "messages") if queue.messages is not None else "? messages"
            yield Hazard(STATE_LEVELS["orphaned"], "mqueue", queue.label,
                         f"orphaned: no process has it open ({messages})", queue.object_key, queue.qsize_bytes)


def _pipe_hazards(snapshot: Snapshot) -> Iterator[Hazard]:
    for pipe in snapshot.pipes:
        for flag in pipe.flags:
            if flag in PIPE_HAZARDS:
                yield Hazard(PIPE_HAZARDS[flag], pipe.kind, pipe.label, PIPE_FLAG_WORDS[flag], pipe.object_key,
                             pipe.buffered)


def _signal_hazards(snapshot: Snapshot) -> Iterator[Hazard]:
    for signals in snapshot.signals:
        if pending_count(signals):
            names = sorted({*signals.pending, *(name for thread in signals.threads for name in thread.pending)})
            yield Hazard("warn", "signal", signals.label, f"pending: {', '.join(names)}", signals.object_key)


def _sysv_hazards(snapshot: Snapshot) -> Iterator[Hazard]:
    for segment in snapshot.sysv.shm:
        if sysv_shm_orphaned(segment):
            yield Hazard(STATE_LEVELS["orphaned"], "sysv-shm", segment.label,
                         f"orphaned: no process attached ({human_bytes(segment.size)})", segment.object_key,
                         segment.size)


BLOCKED_LEVELS: dict[WaitKind, Level] = {"write": "bad", "send": "bad", "open": "bad", "child": "bad"}
"""A blocked wait's level by its kind: a writer on a full pipe, a sender on a full queue, an open() of a FIFO
nobody opens at the other end and a wait for a child that is itself stuck cannot go on now (bad); any other
wait the scan calls blocked (a receive on a queue nobody has open for sending: a server waiting for clients
that open, send and close) is worth a look (warn). Idle waits (``waiting``) are no hazard."""


def _fullness(record: Pipe | MessageQueue | None) -> tuple[int | None, str]:
    """The bytes queued in the pipe or queue a writer or sender waits on, and the words that say how full it is."""
    if isinstance(record, Pipe):
        return record.buffered, f" (full: {human_bytes(record.buffered)} of {human_bytes(record.capacity)})"
    if isinstance(record, MessageQueue):
        return record.qsize_bytes, f" (full: {record.messages} of {record.max_messages} messages)"
    return None, ""


def _wait_hazards(snapshot: Snapshot) -> Iterator[Hazard]:
    """Each deadlock (bad, first of all), then each blocked process not in one; a blocked writer's or sender's
    words say how full its pipe or queue is, whose own ``full`` hazard :func:`hazards` then leaves out (one
    problem, one line)."""
    by_pid = {entry.pid: entry for entry in snapshot.stuck}
    for deadlock in snapshot.deadlocks:
        yield Hazard("bad", "process", ", ".join(f"{member.pid} {member.comm}" for member in deadlock.members),
                     f"deadlock: {deadlock_summary(deadlock, by_pid)}", deadlock.key, None, deadlock.pids)
    blocked = [entry for entry in snapshot.stuck if entry.state == "blocked"]
    waited = {entry.waiting.key for entry in blocked if entry.waiting.kind in ("write", "send")}
    objects: dict[str | None, Pipe | MessageQueue] = {}
    if waited:  # only then is every pipe's key worth looking at
        objects.update((pipe.object_key, pipe) for pipe in snapshot.pipes if pipe.object_key in waited)
        objects.update((queue.object_key, queue) for queue in snapshot.mqueues if queue.object_key in waited)
    for entry in blocked:
        size, full = _fullness(objects.get(entry.waiting.key))
        problem = stuck_problem(entry, snapshot.taken_at, full)
        yield Hazard(BLOCKED_LEVELS.get(entry.waiting.kind, "warn"), "process", f"{entry.pid} {entry.comm}", problem,
                     f"process:{entry.pid}", size, (entry.pid,))


ENV_BUDGET_THRESHOLD = "IPCMON_BUDGET_THRESHOLD"
"""The fill, in percent, from which a budget or an shm mount is a hazard (``warn``), instead of BUDGET_THRESHOLD."""

BUDGET_THRESHOLD = 90.0
"""Percent of a budget or of an shm mount in use from which it is a hazard (issue 14: "fill ≥ 90 %")."""


def budget_threshold_problem() -> str | None:
    """Why ``$IPCMON_BUDGET_THRESHOLD`` is not used (set, but not a number from 1 to 100), for a front end to say
    once; None when it is unset or valid."""
    text = os.environ.get(ENV_BUDGET_THRESHOLD)
    if text is None or text.strip() == "":
        return None
    try:
        percent = float(text)
    except ValueError:
        percent = -1.0
    if 1 <= percent <= 100:
        return None
    return (f"{ENV_BUDGET_THRESHOLD}={text!r} is not a percent from 1 to 100: the default "
            f"{BUDGET_THRESHOLD:g}% is used")


def budget_threshold() -> float:
    """The warning threshold as a fraction (0.9): ``$IPCMON_BUDGET_THRESHOLD`` percent when it is a number from 1 to
    100, else BUDGET_THRESHOLD. Read at each call, so a test or a running dashboard's environment decides."""
    try:
        percent = float(os.environ.get(ENV_BUDGET_THRESHOLD, ""))
    except ValueError:
        percent = BUDGET_THRESHOLD
    if not 1 <= percent <= 100:
        percent = BUDGET_THRESHOLD
    return percent / 100


BUDGET_CONSEQUENCES: dict[str, str] = {
    "RLIMIT_MSGQUEUE": "mq_open will fail with EMFILE",
    "queues_max": "mq_open will fail with ENOSPC for everyone but root (CAP_SYS_RESOURCE)",
    "pipe-user-pages-soft": ("new pipes get the minimum of 2 pages (1 on older kernels) instead of 16, a quiet "
                             "cause of slow pipelines, in processes without CAP_SYS_RESOURCE or CAP_SYS_ADMIN"),
    "pipe-user-pages-hard": ("pipe() and FIFO opens will fail with ENFILE in processes without CAP_SYS_RESOURCE or "
                             "CAP_SYS_ADMIN"),
    "RLIMIT_SIGPENDING": ("sigqueue() will fail with EAGAIN, and more real-time signals sent by kill() are silently "
                          "lost"),
    "shmmni": "shmget will fail with ENOSPC",
    "shmall": "shmget will fail with ENOSPC",
    "shmmax": "a bigger shmget will fail with EINVAL",
    "msgmni": "msgget will fail with ENOSPC",
    "msgmnb": "msgsnd will block (or fail with EAGAIN)",
    "semmni": "semget will fail with ENOSPC",
    "semmns": "semget will fail with ENOSPC",
    "semmsl": "semget of more semaphores will fail with EINVAL",
    "semopm": "semop of more operations will fail with E2BIG",
}
"""What happens when a budget runs out, by (part of) its name: the limit's own name (``RLIMIT_MSGQUEUE``) or the
sysctl's last word (``queues_max`` of ``fs.mqueue.queues_max``, ``semmni`` of ``kernel.sem``'s four). From the man
pages: mq_open(3), mq_overview(7), pipe(7), pipe(2), sigqueue(3), shmget(2), msgget(2), msgsnd(2), semget(2),
semop(2)."""

_NEXT_OBJECT = {"shm": "segment", "mqueue": "default queue", "pipe": "default pipe", "signal": "signal",
                "sysv": "object"}


def budget_consequence(budget: Budget) -> str:
    """What fails when the budget runs out, in words (BUDGET_CONSEQUENCES), else ``the next one will fail``."""
    for part, words in BUDGET_CONSEQUENCES.items():
        if part in budget.name:
            return words
    return "the next one will fail"


def budget_mechanism(budget: Budget) -> Mechanism:
    """The mechanism a budget's hazards and events are about: its area, a SysV one by its name (``kernel.msgmni`` →
    ``sysv-msg``)."""
    if budget.area != "sysv":
        return budget.area
    return "sysv-msg" if "msg" in budget.name else "sysv-sem" if "sem" in budget.name else "sysv-shm"


CAPACITY_KEYS = ("budget:", "shm-mount:")
"""How the keys of budget and shm-mount hazards begin (budget_key, ``shm-mount:DEV``): no view has a row for them."""


def budget_key(budget: Budget) -> str:
    """A budget's stable key: ``budget:AREA:NAME:UID`` (``*`` for a system-wide one)."""
    return f"budget:{budget.area}:{budget.name}:{'*' if budget.uid is None else budget.uid}"


def mount_key(mount: ShmMount) -> str:
    """An shm mount's stable key: ``shm-mount:DEV``."""
    return f"shm-mount:{mount.dev}"


def object_places(snapshot: Snapshot) -> dict[str, Place]:
    """Each placed object's place by key: segments, queues, SysV objects and shm mounts (mount_key); empty
    when the scan did not read namespaces."""
    if not snapshot.namespaces:
        return {}
    records: tuple[ShmSegment | MessageQueue | SysvShm | SysvMsg | SysvSem, ...] = (
        *snapshot.shm, *snapshot.mqueues, *snapshot.sysv.shm, *snapshot.sysv.msg, *snapshot.sysv.sem)
    places = {record.object_key: record.place for record in records if record.place is not None}
    if snapshot.capacity is not None:
        places.update((mount_key(mount), mount.place) for mount in snapshot.capacity.shm_mounts
                      if mount.place is not None)
    return places


def hazard_places(snapshot: Snapshot) -> dict[str, Place]:
    """The places a hazard's object is named with (``/seg [web-1]``): object_places but the shm mounts, whose
    problem (mount_problem) names the container already."""
    places = object_places(snapshot)
    if snapshot.capacity is not None:
        for mount in snapshot.capacity.shm_mounts:
            places.pop(mount_key(mount), None)
    return places


def budget_label(budget: Budget) -> str:
    """How a budget reads as an object: ``RLIMIT_MSGQUEUE uid 4242`` (raw: the user name is the system's)."""
    return budget.name if budget.uid is None else f"{budget.name} uid {budget.uid}"


def budget_blocked(budget: Budget) -> bool:
    """The next default-sized object would not fit: next_needs is more than what is left (both known)."""
    if budget.next_needs is None or budget.used is None or budget.limit is None or budget.unlimited:
        return False
    return budget.next_needs > budget.limit - budget.used


CAPABLE_EXEMPT = ("pipe-user-pages-soft", "pipe-user-pages-hard")
"""Budgets a process with CAP_SYS_RESOURCE or CAP_SYS_ADMIN is not held to (fs/pipe.c pipe_is_unprivileged_user)."""


def root_mostly_exempt(budget: Budget) -> bool:
    """root's budget of pipe pages: root's own processes have the capabilities that exempt them (CAPABLE_EXEMPT);
    those of a container's root usually do not (Docker drops both), and are charged to the same user."""
    return budget.uid == 0 and any(part in budget.name for part in CAPABLE_EXEMPT)


def budget_level(budget: Budget) -> Level | None:
    """``bad`` when the budget is used up (fill ≥ 100 %) or the next default-sized object does not fit,
    ``warn`` from budget_threshold(); None below it, and when unknown or unlimited (never a made-up hazard).
    root's pipe pages are ``warn`` at most (root_mostly_exempt)."""
    fill = budget.fill
    if (fill is not None and fill >= 1) or budget_blocked(budget):
        return "warn" if root_mostly_exempt(budget) else "bad"
    if fill is not None and fill >= budget_threshold():
        return "warn"
    return None


def mount_level(mount: ShmMount) -> Level | None:
    """An shm mount's hazard level: ``bad`` when full (nothing available, or fill ≥ 100 %), ``warn`` from
    budget_threshold(); None below it or when unknown."""
    fill = mount.fill
    if fill is None:
        return None
    if fill >= 1 or mount.available == 0:
        return "bad"
    return "warn" if fill >= budget_threshold() else None


def budget_problem(budget: Budget, snapshot: Snapshot | None = None) -> str:
    """A budget past its threshold in words: ``budget: uid 4242: 9 queues reserve 745,920 of 819,200 bytes (91%);
    a default queue needs 82,880, so mq_open will fail with EMFILE``. For RLIMIT_MSGQUEUE the queues the uid owns
    in the snapshot are counted, when it lists any (a scan without queues, or with ``--pid``, may list fewer or
    none: then the bytes alone are said)."""
    who = budget.name if budget.uid is None else f"uid {budget.uid}" + (f" ({budget.user})" if budget.user else "")
    used = f"{budget.used:,}" if budget.used is not None else "?"  # unknown is never a made-up 0
    limit = f"{budget.limit:,}" if budget.limit is not None else "unlimited" if budget.unlimited else "?"
    percent = f"{budget.fill * 100:.0f}%" if budget.fill is not None else "?"
    queues = 0
    if budget.name == "RLIMIT_MSGQUEUE" and snapshot is not None:
        queues = sum(queue.uid == budget.uid for queue in snapshot.mqueues)
    if queues:
        amount = f"{queues} {'queue reserves' if queues == 1 else 'queues reserve'} {used} of {limit} bytes"
    else:
        amount = f"{used} of {limit} {budget.unit} in use"
    words = f"budget: {who}: {amount} ({percent})"
    if budget.next_needs is not None:
        words += f"; a {_NEXT_OBJECT[budget.area]} needs {budget.next_needs:,}"
    consequence = budget_consequence(budget)
    if root_mostly_exempt(budget):
        consequence += " (root's own processes have them; a container's root usually has neither)"
    if "lowest of" in budget.note and budget.limit is not None:
        consequence += f" for its processes limited to {budget.limit:,}"  # others of the user may have more
    level = budget_level(budget)
    if level == "bad" or (level == "warn" and root_mostly_exempt(budget) and budget.fill is not None
                          and budget.fill >= 1):
        return f"{words}, so {consequence}"
    if level == "warn":
        return f"{words}; at the limit {consequence}"
    return words  # under its threshold (a budget event saying it went back): nothing will fail


def mount_problem(mount: ShmMount) -> str:
    """An shm mount past its threshold in words: ``nearly full: /dev/shm is 93% full (59.5M of 64M); a segment of
    up to 4.5M still fits``; a container's says whose: ``nearly full: /proc/4242/root/dev/shm (container web) is
    95% full…`` (the label is raw: show the words through safe.printable)."""
    fill = mount.fill or 0.0
    word = "full" if mount_level(mount) == "bad" else "nearly full"
    return (f"{word}: {mount_where(mount)} is {fill * 100:.0f}% full "
            f"({human_bytes(mount.used)} of {human_bytes(mount.size)}); "
            f"a segment of up to {human_bytes(mount.available)} still fits (writing a page past that kills the "
            "writer with SIGBUS)")


def mount_where(mount: ShmMount) -> str:
    """An shm mount's path, and, when it is not the host's, whose it is: ``/proc/4242/root/dev/shm (container
    web)``, ``… (ipc:4026532178)`` (Place.label; raw)."""
    place = mount.place
    if place is None or place.host:
        return mount.path
    whose = f"container {place.label}" if place.container is not None else place.label
    return f"{mount.path} ({whose})"


def capacity_hazards(snapshot: Snapshot) -> Iterator[Hazard]:
    """Each shm mount and each budget past its threshold (budget_threshold), at mount_level / budget_level. They
    rank after the leaks of their level (no bytes at stake: nothing is lost yet)."""
    capacity = snapshot.capacity
    if capacity is None:
        return
    for mount in capacity.shm_mounts:
        level = mount_level(mount)
        if level is not None:
            yield Hazard(level, "shm", mount.path, mount_problem(mount), mount_key(mount))
    for budget in capacity.budgets:
        level = budget_level(budget)
        if level is not None:
            yield Hazard(level, budget_mechanism(budget), budget_label(budget), budget_problem(budget, snapshot),
                         budget_key(budget))


HAZARDS: tuple[Callable[[Snapshot], Iterator[Hazard]], ...] = (
    _wait_hazards, _shm_hazards, _queue_hazards, _pipe_hazards, _signal_hazards, _sysv_hazards, capacity_hazards,
)
"""One entry per mechanism that can have hazards (memfd and anonymous regions have none: nothing keeps them
once their last holder lets go), the waits (deadlocks and blocked processes), and the budgets (issue 14)."""


def _full_and_waited(snapshot: Snapshot) -> set[str]:
    """Keys of the pipes and queues a deadlocked or blocked writer or sender waits on: their ``full`` is said
    by the wait's hazard."""
    return {
        entry.waiting.key for entry in snapshot.stuck
        if entry.state != "waiting" and entry.waiting.key is not None and entry.waiting.kind in ("write", "send")
    }


def hazards(snapshot: Snapshot) -> list[Hazard]:
    """Every leak and hazard of a snapshot, most serious first (:func:`rank`): deadlocks, blocked processes,
    orphaned or deleted segments, full or orphaned queues, pipe flags in PIPE_HAZARDS, pending signals, orphaned
    SysV segments. A full pipe or queue that a stuck process waits to write to is said once, by that wait."""
    waited = _full_and_waited(snapshot)
    return sorted(
        (hazard for mechanism_hazards in HAZARDS for hazard in mechanism_hazards(snapshot)
         if not (hazard.name == "full" and hazard.key in waited)),
        key=rank,
    )
