"""How values read: sizes, ages, clock times, modes, signal names, holders, pipe ends and waits, as plain str.

One function per way a value reads, shared by the text report, the event lines and the dashboard, so the
same holder or mask reads the same everywhere. Names from the system go through :func:`ipcmon.safe.printable`
where a function returns them inside a cell; the rest (sizes, modes, numbers) cannot carry control characters.
"""

from __future__ import annotations

import signal
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ipcmon.model import (
    Budget,
    Deadlock,
    DeadlockMember,
    Holder,
    MessageQueue,
    Namespace,
    PipeEnd,
    Place,
    Process,
    ProcessSignals,
    ShmSegment,
    Stuck,
    Waiting,
)
from ipcmon.safe import printable

NOTIFY_METHODS: dict[int, str] = {0: "SIGEV_SIGNAL", 1: "SIGEV_NONE", 2: "SIGEV_THREAD"}
"""mq_notify(3) methods by the number the queue file's NOTIFY field shows (sigevent(7))."""
_NOTIFY_WORDS: dict[int, str] = {1: "none", 2: "thread"}


def human_bytes(count: int | None) -> str:
    """1536 → 1.5K (powers of 1024); None (unknown) → '?'."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if value < 1024 or unit == "P":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
        value /= 1024
    return f"{count}B"


def human_age(seconds: float | None) -> str:
    """72 → 1m12s, 7200 → 2h00m; negative reads as 0s; None (unknown) → '?'."""
    if seconds is None:
        return "?"
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def clock_text(epoch: float) -> str:
    """Local wall-clock time with milliseconds, ``14:03:07.042`` (the tests pin TZ for their snapshots)."""
    return time.strftime("%H:%M:%S", time.localtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}"


def ipc_time(epoch: int, now: float) -> str:
    """A SysV time field (shm_atime, msg_stime…: epoch seconds) as ``2026-11-29 19:42:32 (5s ago)``; ``never``
    when 0, the kernel's value before the first attach, send or operation (ipcs(1) says "Not set")."""
    if not epoch:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) + f" ({human_age(now - epoch)} ago)"


def ipc_age(epoch: int, now: float) -> str:
    """A SysV time field in a table cell: ``5s ago``, ``never`` when 0."""
    return f"{human_age(now - epoch)} ago" if epoch else "never"


def optional(value: object) -> str:
    """A value as text, '?' when it is None (unknown: not permitted to ask)."""
    return "?" if value is None else str(value)


def mode_text(mode: int | None) -> str:
    """Permission bits as ls(1) shows them, ``rw-r-----``; '?' when unknown."""
    return "?" if mode is None else stat.filemode(mode | stat.S_IFREG)[1:]


KERNEL_SIGRTMIN = 32
"""The kernel's first real-time signal (signal(7)); the C library keeps those below its own SIGRTMIN."""

LIBC_RESERVED = " (glibc)"
"""How a signal the C library keeps for itself is marked: ``SIG32 (glibc)``, ``SIG33 (glibc)``."""


def libc_reserved(number: int) -> bool:
    """A real-time signal below the C library's SIGRTMIN: glibc's NPTL keeps 32 and 33 for thread cancellation
    and set*id calls (signal(7)); no program is meant to send them."""
    return KERNEL_SIGRTMIN <= number < signal.SIGRTMIN


def signal_name(number: int) -> str:
    """The one name of a signal, wherever ipcmon shows one: ``SIGUSR1``; ``SIGRTMIN+3`` and ``SIGRTMAX``
    counted from the C library's SIGRTMIN (as a program sends them, signal(7)); ``SIG32 (glibc)`` and
    ``SIG33 (glibc)`` for the two glibc keeps for itself; ``SIGnn`` for a number Python does not know.

    The glibc ones have no public name (SIGCANCEL and SIGSETXID are glibc-internal, and musl uses 32-34
    differently), so they read as their number, which ``kill -32`` takes, and whose they are.
    """
    if number >= signal.SIGRTMIN:
        offset = number - signal.SIGRTMIN
        if number == signal.SIGRTMAX:
            return "SIGRTMAX"
        return "SIGRTMIN" if offset == 0 else f"SIGRTMIN+{offset}"
    if libc_reserved(number):
        return f"SIG{number}{LIBC_RESERVED}"
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def signal_names(names: Sequence[str], sep: str = ",") -> str:
    """A signal set in a cell, each by its one name (:func:`signal_name`): ``SIGUSR1,SIGTERM``; '-' for none.

    Prose that wraps (the detail pane) passes ``sep=", "`` so that lines break between names, not inside one.
    """
    return sep.join(names) or "-"


def pid_text(pid: int, nspid: int | None) -> str:
    """A host pid, with its pid inside its own pid namespace when that differs: ``1234``, ``1234 (1 in ns)``."""
    return str(pid) if nspid is None else f"{pid} ({nspid} in ns)"


def holder_cell(holder: Holder) -> str:
    """One holder in a table cell: ``1234 comm fd3 rw`` or ``1234 comm map rw-s 8.0K``; a holder in another pid
    namespace ``1234 (1 in ns) comm fd3 rw``."""
    if holder.fd is not None:
        where = f"fd{holder.fd} {holder.access}"
    else:
        where = f"map {holder.prot or holder.access} {human_bytes(holder.mapped_bytes)}"
    return f"{pid_text(holder.pid, holder.nspid)} {printable(holder.comm)} {where}"


def holders_cell(holders: Sequence[Holder]) -> str:
    """Every holder in a table cell, comma-separated; '-' for none."""
    return ", ".join(holder_cell(holder) for holder in holders) if holders else "-"


def ends_cell(ends: Sequence[PipeEnd]) -> str:
    """Pipe ends in a table cell: ``1234 comm fd4, 1235 comm fd0``; '-' for none."""
    return ", ".join(f"{end.pid} {printable(end.comm)} fd{end.fd}" for end in ends) or "-"


def holder_detail(holder: Holder) -> str:
    """How one holder holds, in an event's detail: ``fd 3 rw`` or ``mapped rw-s 8.0K``."""
    if holder.fd is not None:
        return f"fd {holder.fd} {holder.access}"
    size = f" {human_bytes(holder.mapped_bytes)}" if holder.mapped_bytes is not None else ""
    return f"mapped {holder.prot or holder.access}{size}"


def holder_tail(holder: Holder) -> str:
    """How one holder holds, in the detail pane: ``fd 3  rw`` or ``mapped rw-s shared 8.0K``."""
    if holder.fd is not None:
        return f"fd {holder.fd}  {holder.access}"
    mapping = f"mapped {holder.prot or holder.access}"
    if holder.shared is not None:
        mapping += " shared" if holder.shared else " private"
    if holder.mapped_bytes is not None:
        mapping += f" {human_bytes(holder.mapped_bytes)}"
    return mapping


def last_holders(holders: Sequence[Holder]) -> str:
    """``last holder 1234 comm, 1240 other`` (each process once, by pid); '' when there were none. Raw names."""
    if not holders:
        return ""
    pids = sorted({(holder.pid, holder.comm) for holder in holders})
    return "last holder " + ", ".join(f"{pid} {comm}" for pid, comm in pids)


def notify_how(queue: MessageQueue) -> str:
    """How a queue's mq_notify registration notifies (sigevent(7)): the signal's name for SIGEV_SIGNAL
    (``SIGUSR1``; ``signal 0`` registers without a signal), else ``thread`` or ``none``."""
    if queue.notify in (None, 0):
        if queue.signo is None:
            return "signal ?"
        return signal_name(queue.signo) if queue.signo else "signal 0"
    return _NOTIFY_WORDS.get(queue.notify, f"method {queue.notify}")


def notify_cell(queue: MessageQueue) -> str:
    """A queue's mq_notify registration in a cell: ``SIGUSR1 to pid 42``, ``thread to pid 42``; '-' when none."""
    if not queue.notify_pid:
        return "-"
    return f"{notify_how(queue)} to pid {queue.notify_pid}"


def wait_call(wait: Waiting) -> str:
    """The blocking call as an event's detail: ``write(4) in pipe_write``."""
    call = f"{wait.syscall}({wait.fd})" if wait.fd is not None else wait.syscall
    return f"{call} in {wait.wchan}" if wait.wchan else call


WAIT_LIST = 3
"""How many watched descriptors or children a wait names in a cell before ``and N more``."""


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:WAIT_LIST])
    more = len(items) - WAIT_LIST
    return f"{shown} and {more} more" if more > 0 else shown


def wait_object(wait: Waiting) -> str:
    """What a wait is on, in words, by its kind (vocabulary.WaitKind). Raw: show it through safe.printable.

    ``pipe:[77]``; ``fifo:/tmp/x (no writer)`` for an open() that waits for the other end (the path even though
    no descriptor is open yet); ``pipe:[7], pipe:[9]`` for a poll's IPC descriptors; ``child 42``; ``SIGUSR1,
    SIGTERM`` for the signals that would end a signal wait; ``a signal`` or ``a child`` when the set is unknown.
    """
    kind = wait.kind
    if kind == "open":
        where = f"fifo:{wait.path}" if wait.path else wait.object or "fifo"
        return where + (f" (no {wait.missing})" if wait.missing else "")
    if kind == "poll" and wait.watched:
        return _listed([watched.object for watched in wait.watched])
    if kind == "child":
        if wait.children:
            return ("child " if len(wait.children) == 1 else "children ") + _listed([str(pid) for pid in wait.children])
        return wait.object or "a child"
    if kind == "signal":
        if wait.signals:
            return _listed(list(wait.signals))
        return "a signal" if wait.object in (None, "signal") else wait.object or "a signal"
    return wait.object or (f"fd {wait.fd}" if wait.fd is not None else wait.wchan)


def wait_text(wait: Waiting) -> str:
    """A wait as call and object, in a cell: ``write pipe:[77]``, ``openat fifo:/tmp/x (no writer)``, ``select
    pipe:[7], pipe:[9]``, ``wait4 child 42``, ``rt_sigtimedwait SIGUSR1``. Raw: show it through safe.printable."""
    what = wait_object(wait)
    return f"{wait.syscall} {what}".strip() if what else wait.syscall


STOPPED = {"T": "stopped", "t": "stopped by its tracer"}
"""What a stopped process's state letter means (Process.state): it runs again on SIGCONT, or when its tracer lets it."""


def waiting_text(process: Process | None) -> str:
    """What a process waits on, in a cell (:func:`wait_text`); ``stopped`` for a stopped process (SIGSTOP, SIGTSTP…),
    '-' when it waits on no IPC object. Raw."""
    if process is None:
        return "-"
    if process.waiting is None:
        return STOPPED.get(process.state, "-")
    return wait_text(process.waiting)


def since_text(since: float | None, now: float) -> str:
    """How long ago a stuck process last ran (``Stuck.since``), in a cell: ``2m03s ago``; '?' when the kernel
    does not say."""
    return "?" if since is None else f"{human_age(now - since)} ago"


def since_detail(since: float | None, now: float) -> str:
    """The same in the detail pane: ``2m03s (last ran 14:03:07.042)``; says so when unknown."""
    if since is None:
        return "unknown (the kernel does not say when it last ran)"
    return f"{human_age(now - since)} (last ran {clock_text(since)})"


def stuck_problem(entry: Stuck, now: float, note: str = "") -> str:
    """A stuck process in a sentence, for a hazard or a ``watch`` state line (raw), ``note`` said of its object:
    ``blocked: write pipe:[77] (full: 64K of 64K) for 2m03s; released by pid 13 cat (holds the read end, fd 3)``."""
    since = "" if entry.since is None else f" for {human_age(now - entry.since)}"
    release = "who could release it is unknown" if entry.release == "unknown" else f"released by {entry.release}"
    return f"{entry.state}: {wait_text(entry.waiting)}{note}{since}; {release}"


_SELF_RELEASE: dict[str, tuple[str, str]] = {
    "read": ("write to", "it holds the write end itself"),
    "write": ("read from", "it holds the read end itself"),
    "receive": ("send to", "it has it open for sending itself"),
    "send": ("receive from", "it has it open for receiving itself"),
}
"""A one-member deadlock, by how its member waits: what only it could do, and why."""


def _member_name(member: DeadlockMember) -> str:
    return f"pid {member.pid} {member.comm}"


def deadlock_summary(deadlock: Deadlock, stuck: Mapping[int, Stuck]) -> str:
    """A deadlock in one sentence (raw), ``stuck`` being the snapshot's Stuck entries by pid.

    One member: ``pid 5 cat waits on pipe:[9] that only it could write to: it holds the write end itself``.
    More: ``pid 5 a and pid 6 b each wait on what only another of them could release: none can go on``; members
    all blocked opening FIFOs: ``… each wait in open() for another to open a FIFO's other end (inferred: …)``.
    """
    members = deadlock.members
    if len(members) == 1:
        member = members[0]
        entry = stuck.get(member.pid)
        if entry is None:
            return f"{_member_name(member)} waits ({member.waits_on}) on what only it could release"
        wait = entry.waiting
        kind = "read" if wait.kind == "poll" and wait.watched and all(
            watched.events == "read" for watched in wait.watched) else wait.kind
        verb, why = _SELF_RELEASE.get(kind, ("release", "it holds the other end itself"))
        return f"{_member_name(member)} waits on {wait_object(wait)} that only it could {verb}: {why}"
    names = ", ".join(_member_name(member) for member in members[:-1]) + f" and {_member_name(members[-1])}"
    if all(member.kind == "open" for member in members):
        # collect.waiting infers these (related processes, every one blocked opening a FIFO nobody has open).
        return (f"{names} each wait in open() for another to open a FIFO's other end (inferred: they are related "
                "and nobody has those FIFOs open)")
    return f"{names} each wait on what only another of them could release: none can go on"


def deadlock_member_text(member: DeadlockMember, deadlock: Deadlock, stuck: Mapping[int, Stuck]) -> str:
    """One member of a deadlock (raw): ``pid 5 a: write pipe:[7]; released only by pid 6 b (holds the read end,
    fd 4)``; the releasers named from the members when the Stuck entry is not at hand."""
    entry = stuck.get(member.pid)
    if entry is not None and entry.releasers:
        release = entry.release
    else:
        comms = {other.pid: other.comm for other in deadlock.members}
        release = ", ".join(f"pid {pid} {comms.get(pid, '?')}" for pid in member.released_by) or "?"
    if member.kind == "open":  # inferred (collect.waiting.analyse): anyone may open a FIFO, a member may
        return f"{_member_name(member)}: {member.waits_on}; released by {release}"
    return f"{_member_name(member)}: {member.waits_on}; released only by {release}"


def owner_cell(owner: str | None, uid: int | None) -> str:
    """The owner's user name, else the uid, else '?'; printable."""
    return printable(owner or optional(uid))


def shm_state_cell(segment: ShmSegment) -> str:
    """A POSIX segment's state word; a deleted one says what it still pins: ``deleted, pins 8.0K``."""
    if segment.state == "deleted":
        return f"deleted, pins {human_bytes(segment.pinned_bytes)}"
    return segment.state


def queue_name_cell(queue: MessageQueue) -> str:
    """A queue's printable name, with `` (deleted)`` when it was unlinked while open."""
    return printable(queue.name) + (" (deleted)" if queue.deleted else "")


def fill_cell(fraction: float | None) -> str:
    """A fill fraction as a whole percentage, ``80%``; '?' when unknown."""
    return "?" if fraction is None else f"{fraction * 100:.0f}%"


def flags_cell(flags: Sequence[str]) -> str:
    """Pipe flags comma-separated, ``no-reader,full``; '-' for none."""
    return ",".join(flags) or "-"


def path_cell(path: str | None) -> str:
    """A printable path, '-' for none."""
    return printable(path) if path else "-"


def blocked_cell(signals: ProcessSignals) -> str:
    """Signals the process (its main thread) blocks, then those only other threads block:
    ``- (thread: SIGUSR1)`` (a thread's mask is its own: pthread_sigmask(3), SigBlk in /proc/PID/task/TID/status).
    """
    own = set(signals.blocked)
    thread_only = sorted({name for thread in signals.threads for name in thread.blocked} - own)
    blocked = signal_names(signals.blocked)
    if thread_only:
        blocked += f" (thread: {signal_names(thread_only)})"
    return blocked


def pending_cell(signals: ProcessSignals) -> str:
    """Process-directed pending signals, then those pending for threads: ``USR1 (thread: USR2)``."""
    thread_pending = sorted({name for thread in signals.threads for name in thread.pending})
    pending = signal_names(signals.pending)
    if thread_pending:
        pending += f" (thread: {signal_names(thread_pending)})"
    return pending


def count_text(value: int | None) -> str:
    """An exact count with thousands separators, ``819,200``; '?' when unknown."""
    return "?" if value is None else f"{value:,}"


def budget_user(budget: Budget) -> str:
    """Whom a budget is for: ``alice (4242)``, the uid alone when its name is unknown, ``-`` for a system-wide
    limit; printable."""
    if budget.uid is None:
        return "-"
    return printable(f"{budget.user} ({budget.uid})" if budget.user else str(budget.uid))


def budget_limit(budget: Budget) -> str:
    """A budget's limit with its unit, ``819,200 bytes``; ``unlimited`` (RLIM_INFINITY), '?' when unknown."""
    if budget.unlimited:
        return "unlimited"
    return "?" if budget.limit is None else f"{budget.limit:,} {budget.unit}"


def budget_headroom(budget: Budget) -> str:
    """What is left of a budget, ``73,280``: ``unlimited``, '-' for a per-object cap (nothing is used up), '?' when
    used or limit is unknown, 0 when past it."""
    if budget.unlimited:
        return "unlimited"
    if budget.per_object:
        return "-"
    if budget.used is None or budget.limit is None:
        return "?"
    return f"{max(budget.limit - budget.used, 0):,}"


PLACE_HEADER = "CONTAINER"
"""The column that says where an object lives (lsfd and docker say CONTAINER): shown only when the objects listed
live in more than one place (issue 15), so a machine with only the host prints what it always did."""


def place_cell(place: Place | None) -> str:
    """Where an object lives, in a cell: ``host``, the container's name or short id, the systemd unit, ``ipc:INODE``;
    '?' when unknown; printable."""
    return "?" if place is None else printable(place.label)


def place_suffix(place: Place | None) -> str:
    """`` [web-1]`` after an object's name when it is not on the host (leaks, clean, watch); '' on the host or when
    unknown (a scan that did not place it: then every object is on the host's mounts)."""
    if place is None or place.host:
        return ""
    return f" [{place_cell(place)}]"


def several_places(places: Iterable[Place | None]) -> bool:
    """Whether more than one place appears among these, by label, unknown ones (None: a pipe, a memfd, a scan that
    did not read namespaces) aside: a place column is then worth its width."""
    first: Place | None = None
    for place in places:
        if place is None:
            continue
        if first is None:
            first = place
        elif place is not first and place.label != first.label:  # the host's, whatever its mount namespace
            return True
    return False


def place_json(place: Place | None) -> dict[str, object]:
    """A record's place as JSON fields (snapshot, leaks and watch --json): ``namespace`` (``{"ipc": INODE, "mnt":
    INODE|null}``, null when not known), ``container`` (``{"id", "runtime", "name", "pod"}``, null on the host,
    outside a container, or not known) and ``place`` (what the CONTAINER column says; null when not known). Raw."""
    if place is None:
        return {"namespace": None, "container": None, "place": None}
    container = place.container
    return {
        "namespace": {"ipc": place.ipc, "mnt": place.mnt},
        "container": None if container is None else {"id": container.id, "runtime": container.runtime,
                                                     "name": container.name, "pod": container.pod},
        "place": place.label,
    }


def place_detail(place: Place | None) -> str:
    """Every fact of a place in one line: ``container 3f2a9c1d0b7e (docker, web-1) · ipc 4026532281 · mnt
    4026532279``; ``host · ipc … · mnt …``; ``not known`` for None. Printable."""
    if place is None:
        return "not known"
    parts: list[str] = []
    container = place.container
    if place.host:
        parts.append("host")
    elif container is not None:
        named = f", {container.name}" if container.name else ""
        pod = f", pod {container.pod}" if container.pod else ""
        parts.append(f"container {container.short_id} ({container.runtime}{named}{pod})")
    elif place.unit:
        parts.append(f"unit {place.unit}")
    parts.append(f"ipc {optional(place.ipc)}")
    if place.mnt is not None:
        parts.append(f"mnt {place.mnt}")
    return printable(" · ".join(parts))


def namespace_read(namespace: Namespace) -> str:
    """What was read of a namespace: ``shm /proc/7/root/dev/shm, mqueue …, sysv``, and the note when something could
    not be; printable."""
    read: list[str] = []
    if namespace.shm_dir:
        read.append(f"shm {namespace.shm_dir}")
    if namespace.mqueue_dir:
        read.append(f"mqueue {namespace.mqueue_dir}")
    if namespace.sysv:
        read.append("sysv")
    elif namespace.sysv is False:
        read.append("sysv not read")
    text = ", ".join(read) or "-"
    if namespace.access != "read" or namespace.note:
        text += f" ({namespace.access}{': ' + namespace.note if namespace.note else ''})"
    return printable(text)


def parse_ns(text: str) -> int | None:
    """A namespace inode as a person writes it: ``4026532281``, or ``ipc:[4026532281]`` as readlink of
    /proc/PID/ns/ipc shows it; None when it is neither."""
    digits = text.strip().rpartition(":")[2].strip("[]")
    return int(digits) if digits.isdigit() else None


MIN_ID_PREFIX = 4
"""The shortest container id prefix ``--container`` takes (and ``container:`` in the dashboard's filter): shorter
ones would match many ids by chance."""


@dataclass(frozen=True, slots=True)
class PlaceSelector:
    """Which places ``--container WHAT`` and ``--ns INODE`` select (both, when both are given).

    ``container``: ``host``; else a container's name, its id, or a prefix of its id of at least ``MIN_ID_PREFIX``
    characters (its 12-character short id is one), or a place's label as the CONTAINER column prints it (a systemd
    unit, ``ipc:INODE``), each without regard to case (the dashboard's filter is
    lower-cased; ids are hex); a prefix that several containers share selects them all. ``ns``: the
    inode of an IPC or a mount namespace (``ls -i``'d ``/proc/PID/ns/ipc`` or ``mnt``, ``lsns``'s NS column).
    """

    container: str | None = None
    ns: int | None = None

    def matches(self, place: Place | None) -> bool:
        """Whether the place is selected; an unknown place (None) never is."""
        if place is None:
            return False
        if self.ns is not None and self.ns not in (place.ipc, place.mnt):
            return False
        if self.container is None:
            return True
        wanted = self.container
        if wanted == "host":
            return place.host
        if wanted.lower() == place.label.lower():
            return True  # as the CONTAINER column prints it: a unit, or ``ipc:INODE`` of a namespace no cgroup names
        found = place.container
        if found is None:
            return False
        ident, lower = found.id.lower(), wanted.lower()
        return (found.name is not None and found.name.lower() == lower) or ident == lower or (
            len(wanted) >= MIN_ID_PREFIX and ident.startswith(lower))

    def options(self) -> list[str]:
        """The options that select the same: ``["--container=web-1", "--ns=4026532281"]`` (raw: quote them)."""
        return ([f"--container={self.container}"] if self.container is not None else []) + (
            [f"--ns={self.ns}"] if self.ns is not None else [])

    def describe(self) -> str:
        """``--container web-1 --ns 4026532281`` as given; printable."""
        given = ([f"--container {self.container}"] if self.container is not None else []) + (
            [f"--ns {self.ns}"] if self.ns is not None else [])
        return printable(" ".join(given))
