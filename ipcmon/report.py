"""Plain-text tables of a snapshot, one per mechanism, for `ipcmon snapshot` and other printers.

Every cell that comes from the system passes through safe.printable, so a hostile name prints as
visible escapes and can neither forge a row nor reach the terminal as a control sequence.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ipcmon import health
from ipcmon.model import (
    Budget,
    Capacity,
    Filler,
    MessageQueue,
    Namespace,
    Pipe,
    Place,
    ProcessSignals,
    ScanKind,
    SharedRegion,
    ShmMount,
    ShmSegment,
    Snapshot,
    Stuck,
    sysv_key,
)
from ipcmon.safe import cell_width, counted, cut_cells, pad_cells, printable
from ipcmon.text import (
    PLACE_HEADER,
    blocked_cell,
    budget_headroom,
    budget_limit,
    budget_user,
    count_text,
    deadlock_member_text,
    deadlock_summary,
    ends_cell,
    fill_cell,
    flags_cell,
    holders_cell,
    human_bytes,
    ipc_age,
    mode_text,
    namespace_read,
    notify_cell,
    optional,
    owner_cell,
    path_cell,
    pending_cell,
    place_cell,
    place_suffix,
    queue_name_cell,
    several_places,
    shm_state_cell,
    signal_names,
    since_text,
    wait_text,
)
from ipcmon.who import Known, creator_cell_text, sent_cell_text, shown_in_cell

if TYPE_CHECKING:
    from ipcmon.who import Known

MAX_CELL = 48


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, uncut: Collection[int] = ()) -> list[str]:
    """Left-aligned columns two spaces apart, measured in terminal cells; cells are already printable.

    Cells are cut at MAX_CELL cells to keep the columns readable, except in the last column, which
    (holders, endpoints) can run on without pushing anything else aside, and in the ``uncut`` columns (by index),
    whose end says what matters (a FIFO's missing end after its path). A wide character (``漢``) takes two cells
    and a combining one (the accent of ``é`` written as ``e`` + U+0301) none, as the terminal draws them
    (safe.cell_width), so a name of either kind keeps its row in line.
    """
    cells = [
        [cell if index in uncut else cut_cells(cell, MAX_CELL) for index, cell in enumerate(row[:-1])] + list(row[-1:])
        for row in rows
    ]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], cell_width(cell))
    lines = ["  ".join(pad_cells(h, w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(pad_cells(c, w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


SHM_HEADERS = ("NAME", "KIND", "SIZE", "ALLOC", "MODE", "OWNER", "STATE", "HOLDERS")


def shm_row(segment: ShmSegment) -> tuple[str, ...]:
    return (
        printable(segment.name),
        segment.kind,
        human_bytes(segment.size),
        human_bytes(segment.allocated),
        mode_text(segment.mode),
        owner_cell(segment.owner, segment.uid),
        shm_state_cell(segment),
        holders_cell(segment.holders),
    )


MQUEUE_HEADERS = ("NAME", "MSGS", "MAX", "MSGSIZE", "QSIZE", "FILL", "NOTIFY", "OWNER", "HOLDERS")


def mqueue_row(queue: MessageQueue) -> tuple[str, ...]:
    return (
        queue_name_cell(queue),
        optional(queue.messages),
        optional(queue.max_messages),
        optional(queue.message_size),
        human_bytes(queue.qsize_bytes),
        fill_cell(queue.fill),
        notify_cell(queue),
        owner_cell(queue.owner, queue.uid),
        holders_cell(queue.holders),
    )


PIPE_HEADERS = ("KIND", "INODE", "PATH", "BUFFERED", "CAPACITY", "FLAGS", "WRITERS", "READERS")


def pipe_row(pipe: Pipe) -> tuple[str, ...]:
    return (
        pipe.kind,
        str(pipe.inode),
        path_cell(pipe.path),
        human_bytes(pipe.buffered),
        human_bytes(pipe.capacity),
        flags_cell(pipe.flags),
        ends_cell(pipe.writers),
        ends_cell(pipe.readers),
    )


SIGNAL_HEADERS = ("PID", "COMM", "PENDING", "BLOCKED", "IGNORED", "CAUGHT", "THREADS")


def signal_row(process: ProcessSignals) -> tuple[str, ...]:
    return (
        str(process.pid),
        printable(process.comm),
        pending_cell(process),
        blocked_cell(process),
        signal_names(process.ignored),
        signal_names(process.caught),
        str(len(process.threads)),
    )


REGION_HEADERS = ("NAME", "KIND", "SIZE", "ALLOC", "HOLDERS")


def region_row(region: SharedRegion) -> tuple[str, ...]:
    return (
        printable(region.label),
        region.kind,
        human_bytes(region.size),
        human_bytes(region.allocated),
        holders_cell(region.holders),
    )


# The times are those of ipcs -t (shm_atime, shm_dtime, shm_ctime; msg_stime, msg_rtime, msg_ctime; sem_otime,
# sem_ctime), as ages: "never" where ipcs says "Not set".
SYSV_SHM_HEADERS = ("KEY", "SHMID", "SIZE", "NATTCH", "CPID", "LPID", "OWNER", "MODE", "STATE", "LAST ATTACH",
                    "LAST DETACH", "CHANGED", "ATTACHED")
SYSV_MSG_HEADERS = ("KEY", "MSQID", "BYTES", "MSGS", "LSPID", "LRPID", "OWNER", "MODE", "LAST SEND", "LAST RECV",
                    "CHANGED")
SYSV_SEM_HEADERS = ("KEY", "SEMID", "NSEMS", "OWNER", "MODE", "LAST OP", "CHANGED")

Table = tuple[str, Sequence[str], list[tuple[str, ...]]]
"""One section of the report: its title, its column headers, its rows."""


def placed(headers: Sequence[str], rows: list[tuple[str, ...]], places: Sequence[Place | None],
           at: int = 1) -> tuple[Sequence[str], list[tuple[str, ...]]]:
    """The table with a CONTAINER column (text.place_cell) at index ``at`` when its objects (one place per row)
    live in more than one place; unchanged otherwise, so a machine with only the host prints what it always did."""
    if not several_places(places):
        return headers, rows
    return ((*headers[:at], PLACE_HEADER, *headers[at:]),
            [(*row[:at], place_cell(place), *row[at:]) for row, place in zip(rows, places, strict=True)])


CREATED_BY_HEADER = "CREATED BY"
LAST_SENT_HEADER = "LAST SENT"


def created_by(headers: Sequence[str], rows: list[tuple[str, ...]], keys: Sequence[str],
               known: Known) -> tuple[Sequence[str], list[tuple[str, ...]]]:
    """The table with a CREATED BY column (who.creator_cell_text: ``4242 python3, exited``, ``?``) before its last
    one when the journal names the creator of at least one of its objects (one key per row; issue 16); unchanged
    otherwise, so a machine without a journal prints what it always did."""
    facts = [known.creators.get(key) for key in keys]
    if all(fact is None for fact in facts):
        return headers, rows
    return ((*headers[:-1], CREATED_BY_HEADER, headers[-1]),
            [(*row[:-1], printable(creator_cell_text(fact)), row[-1]) for row, fact in zip(rows, facts, strict=True)])


def last_sent(headers: Sequence[str], rows: list[tuple[str, ...]], pids: Sequence[int],
              known: Known) -> tuple[Sequence[str], list[tuple[str, ...]]]:
    """The signals table with a LAST SENT column after PENDING (the dashboard's cell: who.sent_cell_text, a blocked or
    ignored signal first and marked; ``-`` for none) when the journal names a sender to at least one of its
    processes (one pid per row; issue 16); unchanged otherwise."""
    shown = [shown_in_cell(known.sent.get(pid, ())) for pid in pids]
    if all(cell is None for cell in shown):
        return headers, rows
    at = headers.index("PENDING") + 1
    return ((*headers[:at], LAST_SENT_HEADER, *headers[at:]),
            [(*row[:at], "-" if cell is None else printable(sent_cell_text(*cell)), *row[at:])
             for row, cell in zip(rows, shown, strict=True)])


@dataclass(frozen=True, slots=True)
class Section:
    """A mechanism's entry in the report: the scan kind that enables it and the tables it prints."""

    kind: ScanKind
    tables: Callable[[Snapshot, bool, Known], Iterable[Table]]
    """(snapshot, all_signals, what the journal knows) → the tables, in order."""


def _shm_tables(snapshot: Snapshot, all_signals: bool, known: Known) -> Iterable[Table]:
    headers, rows = created_by(SHM_HEADERS, [shm_row(s) for s in snapshot.shm], [s.object_key for s in snapshot.shm],
                               known)
    yield "POSIX shared memory and semaphores", *placed(headers, rows, [s.place for s in snapshot.shm])


def _region_tables(snapshot: Snapshot, all_signals: bool, known: Known) -> Iterable[Table]:
    yield "memfd and anonymous shared memory", REGION_HEADERS, [region_row(r) for r in snapshot.regions]


def _mqueue_tables(snapshot: Snapshot, all_signals: bool, known: Known) -> Iterable[Table]:
    where = printable(snapshot.mqueue_dir) if snapshot.mqueue_dir else "not mounted"
    headers, rows = created_by(MQUEUE_HEADERS, [mqueue_row(q) for q in snapshot.mqueues],
                               [q.object_key for q in snapshot.mqueues], known)
    yield f"POSIX message queues ({where})", *placed(headers, rows, [q.place for q in snapshot.mqueues])


def _pipe_tables(snapshot: Snapshot, all_signals: bool, known: Known) -> Iterable[Table]:
    yield "Pipes and FIFOs", PIPE_HEADERS, [pipe_row(p) for p in snapshot.pipes]


def _signal_tables(snapshot: Snapshot, all_signals: bool, known: Known) -> Iterable[Table]:
    shown = shown_signals(snapshot, all_signals)
    title = "Signals" if all_signals else "Signals (processes with pending or blocked signals)"
    yield title, *last_sent(SIGNAL_HEADERS, [signal_row(p) for p in shown], [p.pid for p in shown], known)


def shown_signals(snapshot: Snapshot, all_signals: bool) -> list[ProcessSignals]:
    """The processes the signals table lists: those with something pending or blocked, or every one."""
    return [p for p in snapshot.signals if all_signals or health.signals_of_note(p)]


def _sysv_tables(snapshot: Snapshot, all_signals: bool, known: Known) -> Iterable[Table]:
    if not snapshot.sysv.available:
        return
    now = snapshot.taken_at
    sysv = snapshot.sysv
    yield "SysV shared memory", *placed(SYSV_SHM_HEADERS, [
        (
            sysv_key(s.key),
            str(s.id),
            human_bytes(s.size),
            str(s.nattch),
            str(s.cpid),
            str(s.lpid),
            owner_cell(s.owner, s.uid),
            mode_text(s.mode),
            health.sysv_shm_state(s),
            ipc_age(s.atime, now),
            ipc_age(s.dtime, now),
            ipc_age(s.ctime, now),
            holders_cell(s.holders),
        )
        for s in sysv.shm
    ], [s.place for s in sysv.shm], at=2)
    yield "SysV message queues", *placed(SYSV_MSG_HEADERS, [
        (
            sysv_key(m.key),
            str(m.id),
            human_bytes(m.qbytes),
            str(m.qnum),
            str(m.lspid),
            str(m.lrpid),
            owner_cell(m.owner, m.uid),
            mode_text(m.mode),
            ipc_age(m.stime, now),
            ipc_age(m.rtime, now),
            ipc_age(m.ctime, now),
        )
        for m in sysv.msg
    ], [m.place for m in sysv.msg], at=2)
    yield "SysV semaphores", *placed(SYSV_SEM_HEADERS, [
        (sysv_key(s.key), str(s.id), str(s.nsems), owner_cell(s.owner, s.uid), mode_text(s.mode), ipc_age(s.otime, now),
         ipc_age(s.ctime, now))
        for s in sysv.sem
    ], [s.place for s in sysv.sem], at=2)


SECTIONS: tuple[Section, ...] = (
    Section("shm", _shm_tables),
    Section("memfd", _region_tables),
    Section("mqueue", _mqueue_tables),
    Section("pipe", _pipe_tables),
    Section("signal", _signal_tables),
    Section("sysv", _sysv_tables),
)
"""One entry per mechanism, in report order: adding a mechanism adds an entry."""


STUCK_HEADERS = ("PID", "COMM", "STATE", "WAITS ON", "SINCE", "RELEASED BY")


def stuck_row(entry: Stuck, now: float) -> tuple[str, ...]:
    """One stuck process: what it waits on (call and object), how long since it last ran, who could release it."""
    return (
        str(entry.pid),
        printable(entry.comm),
        entry.state,
        printable(wait_text(entry.waiting)),
        since_text(entry.since, now),
        printable(entry.release),
    )


def stuck_lines(snapshot: Snapshot, *, all_waits: bool = False) -> list[str]:
    """The Stuck section: every deadlocked or blocked process, most serious first (Snapshot.stuck's order), and
    how many more wait in the ordinary way (``all_waits`` lists those too).

    Idle waiters are counted, not listed: a busy host has dozens of daemons reading a pipe whose writer is alive,
    polling, or waiting for a signal, and a list of them would hide the one process that is stuck."""
    listed = [entry for entry in snapshot.stuck if all_waits or entry.state != "waiting"]
    idle = sum(entry.state == "waiting" for entry in snapshot.stuck)
    title = "Stuck and waiting" if all_waits else "Stuck"
    lines = ["", f"== {title} ({len(listed)})"]
    if idle and not all_waits:
        lines.append(f"{counted(idle, 'more process waits', 'more processes wait')} in the ordinary way (reading "
                     "while a writer holds the other end, polling, waiting for a signal or a running child): "
                     "--all-waits lists them")
        longest = _longest_wait(snapshot)
        if longest is not None:
            ran, what = since_text(longest.since, snapshot.taken_at), printable(wait_text(longest.waiting))
            lines.append(f"longest: pid {longest.pid} {printable(longest.comm)}, {what}, last ran {ran}; "
                         f"released by {printable(longest.release)}")
    if snapshot.hidden_processes:
        remedy = "" if os.geteuid() == 0 else " (run as root to see them)"
        lines.append(f"the waits of {counted(snapshot.hidden_processes, 'process', 'processes')} ipcmon could not "
                     f"read are unknown: any of them may be stuck{remedy}")
    if listed:
        rows = [stuck_row(entry, snapshot.taken_at) for entry in listed]
        lines.extend(format_table(STUCK_HEADERS, rows, uncut={STUCK_HEADERS.index("WAITS ON")}))
    return lines


def _longest_wait(snapshot: Snapshot) -> Stuck | None:
    """Of the processes waiting in the ordinary way, the one that last ran longest ago (a worker in select() for
    an EOF that never comes is one); None when none says when it last ran."""
    timed = [entry for entry in snapshot.stuck if entry.state == "waiting" and entry.since is not None]
    return min(timed, key=lambda entry: entry.since or 0.0, default=None)


def deadlock_lines(snapshot: Snapshot) -> list[str]:
    """The Deadlocks section: one block per deadlock, a sentence and then each member, what it waits on and which
    of the members could release it."""
    by_pid = {entry.pid: entry for entry in snapshot.stuck}
    lines = ["", f"== Deadlocks ({len(snapshot.deadlocks)})"]
    for number, deadlock in enumerate(snapshot.deadlocks, 1):
        lines.append(f"deadlock {number}: {printable(deadlock_summary(deadlock, by_pid))}")
        lines.extend(f"  {printable(deadlock_member_text(member, deadlock, by_pid))}" for member in deadlock.members)
    return lines


MOUNT_HEADERS = ("PATH", "SIZE", "USED", "FREE", "FILL", "INODES", "NAMED", "DELETED", "SEMAPHORES", "OTHER",
                 "TOP HOLDERS")


def mount_row(mount: ShmMount) -> tuple[str, ...]:
    """One shm tmpfs: its size, use and fill, inodes used of total, what the used bytes are, who pins the most."""
    return (
        printable(mount.path),
        human_bytes(mount.size),
        human_bytes(mount.used),
        human_bytes(mount.available),
        fill_cell(mount.fill),
        f"{count_text(mount.inodes_used)}/{count_text(mount.inodes_total)}",
        human_bytes(mount.named),
        human_bytes(mount.deleted),
        human_bytes(mount.semaphores),
        human_bytes(mount.other),
        ", ".join(f"{holder.pid} {printable(holder.comm)} {human_bytes(holder.bytes)}" for holder in mount.top_holders)
        or "-",
    )


def mount_table(mounts: Sequence[ShmMount]) -> list[str]:
    """The shm mounts' table, with the CONTAINER each is /dev/shm of when there are several places (issue 15: a
    container's 64 MB tmpfs by its label); no lines for none."""
    if not mounts:
        return []
    return format_table(*placed(MOUNT_HEADERS, [mount_row(mount) for mount in mounts], [m.place for m in mounts]))


BUDGET_HEADERS = ("AREA", "LIMIT NAME", "USER", "USED", "LIMIT", "FILL", "NEXT NEEDS", "NOTE")


def budget_row(budget: Budget) -> tuple[str, ...]:
    """One budget: used against its limit (``unlimited``, '?' unknown: the note says why), and what the next
    default-sized object needs."""
    return (
        budget.area,
        printable(budget.name),
        budget_user(budget),
        count_text(budget.used),
        budget_limit(budget),
        "-" if budget.unlimited or budget.per_object else fill_cell(budget.fill),
        count_text(budget.next_needs) if budget.next_needs is not None else "-",
        printable(budget.note) or "-",
    )


def memory_line(capacity: Capacity) -> str:
    """``memory: 7.8G total, 5.1G available, 312M shared (Shmem: tmpfs and shared memory)``."""
    return (f"memory: {human_bytes(capacity.memory_total)} total, {human_bytes(capacity.memory_available)} available, "
            f"{human_bytes(capacity.shmem)} shared (Shmem: every tmpfs and shared memory)")


def capacity_lines(snapshot: Snapshot) -> list[str]:
    """The Capacity section: the machine's memory, each shm tmpfs (fill, inodes, breakdown, top holders) and every
    budget with its use; ``budgets not read`` when the scan did not read them (Snapshot.capacity is None)."""
    capacity = snapshot.capacity
    if capacity is None:
        return ["", "== Capacity", "budgets not read"]
    lines = ["", "== Capacity", memory_line(capacity)]
    lines.extend(f"note: {printable(note)}" for note in capacity.notes)
    lines.extend(["", f"== shm mounts ({len(capacity.shm_mounts)})"])
    lines.extend(mount_table(capacity.shm_mounts))
    lines.extend(["", f"== Budgets ({len(capacity.budgets)})"])
    if capacity.budgets:
        lines.extend(format_table(BUDGET_HEADERS, [budget_row(budget) for budget in capacity.budgets]))
    return lines


LIMITS_HEADERS = ("AREA", "LIMIT NAME", "USER", "USED", "LIMIT", "FILL", "HEADROOM", "NEXT NEEDS", "NOTE")


def limits_lines(capacity: Capacity | None) -> list[str]:
    """`ipcmon limits`: the shm mounts, then every budget with its headroom (what is left: ``unlimited``, '?'),
    then what could not be read; ``budgets not read`` when the scan did not read them."""
    if capacity is None:
        return ["budgets not read: this scan has no capacity (shm mounts and limits)"]
    lines = [memory_line(capacity), "", f"== shm mounts ({len(capacity.shm_mounts)})"]
    lines.extend(mount_table(capacity.shm_mounts))
    lines.extend(["", f"== Budgets ({len(capacity.budgets)})"])
    rows = [(*row[:6], budget_headroom(budget), *row[6:])
            for budget, row in ((budget, budget_row(budget)) for budget in capacity.budgets)]
    if rows:
        lines.extend(format_table(LIMITS_HEADERS, rows))
    lines.extend(f"note: {printable(note)}" for note in capacity.notes)
    return lines


LARGEST_SHOWN = 5
"""Objects listed per budget under `ipcmon limits`: the largest (collect.capacity.largest_in_budgets)."""


def largest_lines(fillers: Sequence[Filler], capacity: Capacity | None, known: Known | None) -> list[str]:
    """The section under `ipcmon limits`' budgets: one row per filler, and a CREATOR column when the journal was
    read (known: who.read_journal's answer). [] when there is none."""
    if not fillers:
        return []
    budgets = capacity.budgets if capacity is not None else ()
    users = {budget.uid: budget_user(budget) for budget in budgets if budget.name == "RLIMIT_MSGQUEUE"}
    headers: tuple[str, ...] = ("BUDGET", "KIND", "NAME", "BYTES", "STATE")
    rows: list[tuple[str, ...]] = [(f"{filler.budget} {users.get(filler.uid, '')}".rstrip() if filler.uid is not None
             else printable(filler.budget) + place_suffix(filler.place),
             filler.mechanism, printable(filler.name),
             f"{filler.bytes:,}" if filler.mechanism == "mqueue" else human_bytes(filler.bytes), filler.state)
            for filler in fillers]
    title = f"== The largest objects in each budget ({LARGEST_SHOWN} at most)"
    if known is not None and known.journal is not None:
        from ipcmon.who import creator_text

        headers = (*headers, "CREATOR")
        rows = [(*row, printable(creator_text(known.creators.get(filler.key), unlinked=filler.state == "orphaned")))
                for row, filler in zip(rows, fillers, strict=True)]
        title += f"; who created each: journal {printable(known.journal)}"
    return ["", title, *format_table(headers, rows, uncut={len(headers) - 1})]


HAZARD_HEADERS = ("LEVEL", "KIND", "OBJECT", "PROBLEM")


def hazard_rows(snapshot: Snapshot) -> list[tuple[str, ...]]:
    """Every leak and hazard, most serious first (health.rank), its level as glyph and word: ``✖ bad``; an object
    not on the host followed by where it lives: ``/seg [web-1]`` (an shm mount's problem says it already)."""
    places = health.hazard_places(snapshot)
    return [
        (hazard.level_text, hazard.mechanism, printable(hazard.object) + place_suffix(places.get(hazard.key)),
         printable(hazard.problem))
        for hazard in health.hazards(snapshot)
    ]


NAMESPACE_HEADERS = ("CONTAINER", "RUNTIME", "ID", "IPC", "MNT", "PROCS", "READ")
"""A namespace: its label (text.place_cell), its container's runtime and short id ('-' outside one), its IPC and
mount namespace inodes, the processes in it, and what ipcmon read of it (text.namespace_read)."""


def namespace_row(namespace: Namespace) -> tuple[str, ...]:
    place = namespace.place
    container = place.container
    return (
        place_cell(place),
        container.runtime if container is not None else "-",
        printable(container.short_id) if container is not None else "-",
        optional(place.ipc),
        optional(place.mnt),
        str(namespace.processes),
        namespace_read(namespace),
    )


def namespace_lines(snapshot: Snapshot) -> list[str]:
    """The Namespaces section (issue 15): each (IPC, mount) namespace pair a process runs in, host first, and what
    was read of it; those that could not be read are counted and named with why. No lines when only the host's
    exists (or the scan did not read namespaces); the host's with mount namespaces of their own count as the host."""
    namespaces = snapshot.namespaces
    if all(namespace.place.host and namespace.access == "read" for namespace in namespaces):
        return []  # the host's alone (a kernel thread or a service with a mount namespace of its own is the host's)
    lines = ["", f"== Namespaces ({len(namespaces)})"]
    unread = [namespace for namespace in namespaces if namespace.access != "read"]
    if unread:
        names = ", ".join(place_cell(namespace.place) for namespace in unread[:5]) + (", …" if len(unread) > 5 else "")
        lines.append(f"{counted(len(unread), 'namespace', 'namespaces')} not fully readable ({names}): READ says "
                     "what is missing and why")
    lines.extend(format_table(NAMESPACE_HEADERS, [namespace_row(namespace) for namespace in namespaces]))
    return lines


def render(snapshot: Snapshot, *, all_signals: bool = False, all_waits: bool = False,
           known: Known | None = None) -> str:
    """The whole snapshot as text: a summary line, one table per mechanism, the capacity (shm mounts and budgets),
    the stuck processes (every waiter with ``all_waits``) and the deadlocks, then the leaks and hazards. known: what
    the journal says of who created the POSIX objects and who signalled the processes (who.read_journal), shown as
    CREATED BY and LAST SENT columns when it names anyone."""
    known = known if known is not None else Known()
    lines: list[str] = []
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.taken_at))
    held = sum(segment.state == "held" for segment in snapshot.shm)
    orphaned = sum(segment.state == "orphaned" for segment in snapshot.shm)
    unknown = sum(segment.state == "orphaned?" for segment in snapshot.shm)  # perhaps held by a hidden process
    deleted = sum(segment.state == "deleted" for segment in snapshot.shm)
    lines.append(
        f"ipcmon snapshot {when}: {counted(len(snapshot.processes), 'process', 'processes')}"
        f"{f' ({snapshot.hidden_processes} not fully readable)' if snapshot.hidden_processes else ''}, "
        f"shm {len(snapshot.shm)} ({held} held, {orphaned} orphaned{f', {unknown} orphaned?' if unknown else ''}, "
        f"{deleted} deleted), "
        f"memfd/anon {len(snapshot.regions)}, "
        f"mqueues {len(snapshot.mqueues)}, pipes {len(snapshot.pipes)}, "
        f"sysv shm/msg/sem {len(snapshot.sysv.shm)}/{len(snapshot.sysv.msg)}/{len(snapshot.sysv.sem)}, "
        f"scan {snapshot.scan_seconds * 1000:.0f} ms"
    )
    for note in snapshot.notes:
        lines.append(f"note: {note}")
    lines.extend(namespace_lines(snapshot))

    for section in SECTIONS:
        if section.kind in snapshot.kinds:
            for title, headers, rows in section.tables(snapshot, all_signals, known):
                lines.append("")
                lines.append(f"== {title} ({len(rows)})")
                if rows:
                    lines.extend(format_table(headers, rows))
    lines.extend(capacity_lines(snapshot))
    lines.extend(stuck_lines(snapshot, all_waits=all_waits))
    lines.extend(deadlock_lines(snapshot))
    hazards = hazard_rows(snapshot)
    lines.append("")
    lines.append(f"== Leaks and hazards, most serious first ({len(hazards)})")
    if hazards:
        lines.extend(format_table(HAZARD_HEADERS, hazards))
    return "\n".join(lines)
