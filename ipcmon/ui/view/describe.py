"""Detail text for one object or one process, as inert rich Text built from a snapshot and its event history."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.text import Text

from ipcmon import health
from ipcmon.collect.capacity import ShmemMapping, ShmemUsage, mq_reservation
from ipcmon.health import LEVEL_GLYPHS, PIPE_FLAG_WORDS, PIPE_HAZARDS
from ipcmon.model import (
    Event,
    Holder,
    MessageQueue,
    Pipe,
    PipeEnd,
    Place,
    Process,
    ProcessSignals,
    SharedRegion,
    ShmSegment,
    Snapshot,
    SysvMsg,
    SysvSem,
    SysvShm,
    ThreadSignals,
    Waiting,
    pipe_ref,
)
from ipcmon.safe import printable, shorten
from ipcmon.text import (
    NOTIFY_METHODS,
    STOPPED,
    clock_text,
    deadlock_member_text,
    deadlock_summary,
    holder_tail,
    human_age,
    human_bytes,
    ipc_time,
    mode_text,
    notify_cell,
    optional,
    place_detail,
    signal_names,
    since_detail,
    wait_call,
    wait_text,
    waiting_text,
)
from ipcmon.ui.view.actors import SENDERS_SHOWN
from ipcmon.ui.view.rows import record_name
from ipcmon.ui.view.table import Context, state_style
from ipcmon.who import MARK_GLYPH, creator_words, doer_text, sent_text

BAR_WIDTH = 30
VALUE_GAP = re.compile(r"( *)\S+(?: \S+)* {2,}(?=\S)")
"""A detail line's label (or pid and command, or time) and the two or more spaces before its value."""


def hang_indent(line: str) -> int:
    """Where a detail line's value starts (after ``  label``, a holder's pid and command, a history line's time):
    its wrapped lines start there; a line with no such gap hangs under its own first character."""
    found = VALUE_GAP.match(line)
    return found.end() if found else len(line) - len(line.lstrip(" "))


def hanging(text: Text, console: Console, width: int) -> Text:
    """``text`` wrapped to ``width`` cells, each wrapped line starting under its value (:func:`hang_indent`)
    instead of at the first column; a line whose value would get under half the width wraps as usual."""
    lines: list[Text] = []
    for line in text.split("\n", allow_blank=True):
        if line.cell_len <= width:
            lines.append(line)
            continue
        plain = line.plain
        indent = hang_indent(plain)
        if indent * 2 > width:
            lines.extend(line.wrap(console, width))
            continue
        first = line.wrap(console, width)[0]
        first.rstrip()
        if len(first.plain) <= indent:  # the value is one word too long for the line: cut it there, not before it
            first = line.copy()
            first.truncate(width)
        lines.append(first)
        start = len(first.plain)
        while start < len(plain) and plain[start] == " ":
            start += 1
        for piece in line[start:].wrap(console, width - indent):
            piece.rstrip()
            lines.append(Text(" " * indent, end="") + piece)
    joined = Text("\n", end="").join(lines)
    joined.end = ""
    return joined


class Detail:
    """A small builder: headings and label/value lines, every value made printable."""

    def __init__(self, ctx: Context, events: Sequence[Event] = ()) -> None:
        self.ctx = ctx
        self.text = Text(end="")
        self.events = events
        """The object's history, oldest first (its ``created`` event may name its creator)."""

    def heading(self, title: str, style: str = "bold") -> None:
        if self.text.plain:
            self.text.append("\n")
        self.text.append(printable(title), style=style)
        self.text.append("\n")

    def line(self, label: str, value: str, style: str = "") -> None:
        self.text.append(f"  {label:<12}", style=self.ctx.palette.muted)
        self.text.append(printable(value), style=style)
        self.text.append("\n")

    def plain(self, value: str, style: str = "") -> None:
        self.text.append("  " + printable(value), style=style)
        self.text.append("\n")

    def process(self, pid: int, comm: str, tail: str = "", nspid: int | None = None) -> None:
        """One holder line: pid (and its pid in its own pid namespace, when that differs), command, then where
        (fd, mapping) and how (access)."""
        process = self.ctx.processes.get(pid)
        command = " ".join(process.cmdline) if process and process.cmdline else ""
        self.text.append(f"  {pid:>7} ", style="bold")
        if nspid is not None:
            self.text.append(f"({nspid} in ns) ", style=self.ctx.palette.muted)
        self.text.append(printable(comm))
        if tail:
            self.text.append("  " + tail)
        if command:
            self.text.append("  " + shorten(printable(command), 50), style=self.ctx.palette.muted)
        if self.ctx.is_demo(None, (pid,)):
            self.text.append("  ◆ demo", style=self.ctx.palette.accent)
        self.text.append("\n")


def fill_bar(
    used: int | None, capacity: int | None, unit: Callable[[int | None], str] = human_bytes, width: int = BAR_WIDTH
) -> tuple[str, float | None]:
    """'█████░░░░░ 12K of 64K (19%)', and the fill fraction (None when unknown)."""
    if used is None or not capacity:
        return f"unknown: {unit(used)} of {unit(capacity)}", None
    fraction = min(used / capacity, 1.0)
    filled = round(fraction * width)
    return f"{'█' * filled}{'░' * (width - filled)} {unit(used)} of {unit(capacity)} ({fraction:.0%})", fraction


def _holders(detail: Detail, holders: Sequence[Holder], empty: str) -> None:
    detail.heading(f"Holders ({len(holders)})")
    if not holders:
        detail.plain(empty, detail.ctx.palette.warn)
    for holder in holders:
        detail.process(holder.pid, holder.comm, holder_tail(holder), holder.nspid)


def _place(detail: Detail, place: Place | None) -> None:
    """Where the object lives (issue 15): its container (id, runtime, name), unit or the host, and its namespaces'
    inodes; said when it is not on the host, or when there are other places than the host to tell it from."""
    if place is None or (place.host and len(detail.ctx.snapshot.namespaces) < 2):
        return
    detail.line("where", place_detail(place))
    if place.container is not None:
        detail.line("container", place.container.id)


def _ends(detail: Detail, title: str, ends: Sequence[PipeEnd], empty: str) -> None:
    detail.heading(f"{title} ({len(ends)})")
    if not ends:
        detail.plain(empty, detail.ctx.palette.warn)
    for end in ends:
        detail.process(end.pid, end.comm, f"fd {end.fd}")


def _waiters(detail: Detail, object_ref: str, key: str) -> None:
    """Processes blocked in a system call on this object (Process.waiting, issue 3), by its key or its name."""
    waiting = [
        p for p in detail.ctx.snapshot.processes
        if p.waiting is not None and (p.waiting.key == key or p.waiting.object == object_ref)
    ]
    if waiting:
        states = {entry.pid: entry.state for entry in detail.ctx.snapshot.stuck}
        detail.heading(f"Waiting on it ({len(waiting)})", f"bold {detail.ctx.palette.warn}")
        for process in waiting:
            state = states.get(process.pid)
            detail.process(process.pid, process.comm, waiting_text(process) + (f"  ({state})" if state else ""))


def _history(detail: Detail, events: Sequence[Event]) -> None:
    detail.heading(f"History since ipcmon started ({len(events)})")
    if not events:
        detail.plain("no events seen yet", detail.ctx.palette.muted)
    for event in events[:50]:
        who = f" {event.pid} {printable(event.comm or '')}" if event.pid is not None else ""
        extra = f"  {event.detail}" if event.detail else ""
        detail.plain(f"{clock_text(event.time)}  {event.event}{who}{extra}")


def _creator(detail: Detail, key: str, name: str | None, mechanism: str) -> None:
    """``created by  PID CMDLINE at TIME; that process is still running | exited at TIME`` (who.creator_words) or
    ``creator unknown``, when the dashboard has an attribution source or a journal (Context.who); nothing
    otherwise."""
    who = detail.ctx.who
    if who is None or not who.known:
        return
    facts = who.creator(key, name, mechanism, detail.events)
    if facts is None:
        detail.plain("creator unknown", detail.ctx.palette.muted)
    else:
        detail.line("created by", creator_words(facts))


def _sent(detail: Detail, pid: int, started: float | None) -> None:
    """The signals sent to the process, newest first: ``SIGTERM from 4321 bash at 12:03:07: delivered``, a blocked
    or ignored one marked (glyph and word, and coloured); when the dashboard knows senders (Context.who)."""
    who = detail.ctx.who
    if who is None:
        return
    sents = who.sent_to(pid, started)
    detail.heading(f"Signals sent to it ({len(sents)})")
    if not sents:
        nor = " (nor in the journal)" if who.reader is not None else ""
        detail.plain(f"none seen since ipcmon started{nor}", detail.ctx.palette.muted)
    for sent in sents[:SENDERS_SHOWN]:
        mark = f"{MARK_GLYPH} " if sent.mark else ""  # the outcome says blocked or ignored; the glyph marks it
        detail.plain(mark + sent_text(sent), detail.ctx.palette.warn if sent.mark else "")
    if len(sents) > SENDERS_SHOWN:
        detail.plain(f"… {len(sents) - SENDERS_SHOWN} more", detail.ctx.palette.muted)


def _times(detail: Detail, mtime: float | None, ctime: float | None) -> None:
    now = detail.ctx.snapshot.taken_at
    if mtime is not None:
        detail.line("modified", f"{human_age(now - mtime)} ago")
    if ctime is not None:
        detail.line("changed", f"{human_age(now - ctime)} ago")


def _describe_shm(detail: Detail, record: ShmSegment) -> None:
    palette = detail.ctx.palette
    detail.heading(f"{'Semaphore' if record.kind == 'sem' else 'Shared memory'} {record.name}")
    detail.line("path", record.path)
    detail.line("state", record.state, state_style(record.state, palette, palette.good))
    if record.state == "deleted":
        detail.line("pins", human_bytes(record.pinned_bytes), palette.bad)
    detail.line("size", f"{human_bytes(record.size)} ({record.size} bytes)")
    detail.line("allocated", human_bytes(record.allocated))
    detail.line("mode", mode_text(record.mode))
    detail.line("owner", f"{record.owner or record.uid}:{record.group or record.gid}")
    detail.line("inode", f"{record.inode} on device {record.dev}")
    _creator(detail, record.object_key, record.name, record.kind)
    _place(detail, record.place)
    _times(detail, record.mtime, record.ctime)
    _holders(detail, record.holders, "nobody holds it: an orphan (d removes it)")


def _describe_region(detail: Detail, record: SharedRegion) -> None:
    palette = detail.ctx.palette
    what = "memfd" if record.kind == "memfd" else "Anonymous shared memory"
    detail.heading(f"{what} {record.label}")
    detail.line("state", health.region_state(record), palette.good)
    size = "?" if record.size is None else f"{human_bytes(record.size)} ({record.size} bytes)"
    detail.line("size", size)
    detail.line("allocated", human_bytes(record.allocated))
    detail.line("inode", f"{record.inode} on device {record.dev}")
    detail.line("lifetime", "no name keeps it: it goes with its last holder")
    _holders(detail, record.holders, "nobody holds it: it is gone")


def _describe_mqueue(detail: Detail, record: MessageQueue) -> None:
    palette = detail.ctx.palette
    state = health.queue_state(record)
    detail.heading(f"Message queue {record.name}")
    detail.line("path", record.path or "(not in a mounted mqueue filesystem)")
    detail.line("state", state, state_style(state, palette))
    detail.line("messages", f"{optional(record.messages)} of at most {optional(record.max_messages)}")
    detail.line("msg size", f"at most {optional(record.message_size)} bytes")
    detail.line("queued", human_bytes(record.qsize_bytes))
    if record.max_messages is not None and record.message_size is not None:
        reserved = mq_reservation(record.max_messages, record.message_size)
        detail.line("reserves", f"{reserved:,} bytes of its creator's RLIMIT_MSGQUEUE (ipcmon limits shows the rest)")
    if record.messages is not None and record.max_messages:
        bar, _ = fill_bar(record.messages, record.max_messages, optional)
        detail.line("fill", bar, palette.bad if state == "full" else "")
    if record.notify_pid:
        method = NOTIFY_METHODS.get(record.notify or 0, str(record.notify))
        detail.line("notify", f"{notify_cell(record)}  ({method})")
    else:
        detail.line("notify", "none registered")
    detail.line("mode", mode_text(record.mode))
    detail.line("owner", str(record.owner or optional(record.uid)))
    _creator(detail, record.object_key, record.name, "mqueue")
    _place(detail, record.place)
    _times(detail, record.mtime, None)
    _holders(detail, record.holders, "nobody has it open: an orphan (d removes it)")
    _waiters(detail, f"mqueue:{record.name}", record.object_key)


def _describe_pipe(detail: Detail, record: Pipe) -> None:
    palette = detail.ctx.palette
    detail.heading(f"{'FIFO' if record.kind == 'fifo' else 'Pipe'} {record.label}")
    detail.line("inode", str(record.inode))
    bar, fraction = fill_bar(record.buffered, record.capacity)
    detail.line("fill", bar, palette.bad if fraction is not None and fraction >= 1 else "")
    for flag in record.flags:
        level = PIPE_HAZARDS.get(flag)
        glyph = f"{LEVEL_GLYPHS[level]} " if level else ""
        detail.line("flag", glyph + PIPE_FLAG_WORDS.get(flag, flag), palette.bad if level == "bad" else palette.warn)
    _ends(detail, "Writers", record.writers, "no writer: readers see EOF once it drains")
    _ends(detail, "Readers", record.readers, "no reader: a write gets SIGPIPE/EPIPE")
    # By key, or by the inode as /proc/PID/fd shows it (pipe:[N]) for waits recorded without a key.
    _waiters(detail, pipe_ref("pipe", record.inode, None), record.object_key)


def _describe_sysv_shm(detail: Detail, record: SysvShm) -> None:
    palette = detail.ctx.palette
    state = health.sysv_shm_state(record)
    detail.heading(f"SysV shared memory {record.label}")
    detail.line("state", state, state_style(state, palette))
    detail.line("size", f"{human_bytes(record.size)}, resident {human_bytes(record.rss)}")
    detail.line("nattch", str(record.nattch))
    detail.line("creator", str(record.cpid))
    detail.line("last op", str(record.lpid))
    _sysv_times(detail, ("attached", record.atime), ("detached", record.dtime), ("changed", record.ctime))
    detail.line("mode", mode_text(record.mode))
    detail.line("owner", str(record.owner or record.uid))
    _place(detail, record.place)
    _holders(detail, record.holders, "nothing attached")


def _sysv_times(detail: Detail, *times: tuple[str, int]) -> None:
    """Last attach, detach, send, receive, operation and change, as ``ipcs -t`` lists them (``never``: not set)."""
    for label, epoch in times:
        detail.line(label, ipc_time(epoch, detail.ctx.snapshot.taken_at), "" if epoch else detail.ctx.palette.muted)


def _describe_sysv_msg(detail: Detail, record: SysvMsg) -> None:
    detail.heading(f"SysV message queue {record.label}")
    detail.line("messages", str(record.qnum))
    detail.line("queued", human_bytes(record.qbytes))
    detail.line("last send", str(record.lspid or "-"))
    detail.line("last recv", str(record.lrpid or "-"))
    _sysv_times(detail, ("sent", record.stime), ("received", record.rtime), ("changed", record.ctime))
    detail.line("mode", mode_text(record.mode))
    detail.line("owner", str(record.owner or record.uid))
    _place(detail, record.place)


def _describe_sysv_sem(detail: Detail, record: SysvSem) -> None:
    detail.heading(f"SysV semaphore set {record.label}")
    detail.line("semaphores", str(record.nsems))
    _sysv_times(detail, ("last op", record.otime), ("changed", record.ctime))
    detail.line("mode", mode_text(record.mode))
    detail.line("owner", str(record.owner or record.uid))
    _place(detail, record.place)


def _describe_event(detail: Detail, record: Event) -> None:
    detail.heading(f"{record.event} {record.object}")
    detail.line("time", clock_text(record.time))
    detail.line("mechanism", record.mechanism)
    detail.line("source", record.source)
    if record.pid is not None:
        detail.line("process", f"{record.pid} {record.comm or ''}")
    if record.actor is not None:  # who did it, when an attribution source named it
        detail.line("by", doer_text(record.actor))
    if record.detail:
        detail.line("detail", record.detail)
    _place(detail, record.place)
    detail.line("object key", record.key)


DESCRIBERS: dict[type, Callable[[Detail, Any], None]] = {
    ShmSegment: _describe_shm,
    SharedRegion: _describe_region,
    MessageQueue: _describe_mqueue,
    Pipe: _describe_pipe,
    SysvShm: _describe_sysv_shm,
    SysvMsg: _describe_sysv_msg,
    SysvSem: _describe_sysv_sem,
    Event: _describe_event,
}
"""How each kind of record is described: one entry per mechanism (signals are described as their process)."""


def describe_record(record: object, ctx: Context, events: Sequence[Event]) -> Text:
    """Everything known about one object: identity, limits or fill, holders or ends, waiters, history."""
    detail = Detail(ctx, events)
    if isinstance(record, ProcessSignals):
        detail.text.append_text(describe_process(record.pid, ctx, events, brief=True))
        return detail.text
    describe = DESCRIBERS.get(type(record))
    if describe is not None:
        describe(detail, record)
    else:
        detail.heading(record_name(record))
    _history(detail, events)
    return detail.text


def _masks(detail: Detail, thread: ThreadSignals | ProcessSignals, label_prefix: str = "") -> None:
    palette = detail.ctx.palette
    pending, blocked = signal_names(thread.pending, sep=", "), signal_names(thread.blocked, sep=", ")
    detail.line(f"{label_prefix}pending", pending, palette.bad if thread.pending else "")
    detail.line(f"{label_prefix}blocked", blocked, palette.warn if thread.blocked else "")


Held = Iterable[tuple[str, str, str]]
"""(mechanism, name, how) of each object a process holds."""


def _held(pid: int, objects: Iterable[tuple[str, str, Sequence[Holder]]]) -> Held:
    for mechanism, label, holders in objects:
        for holder in holders:
            if holder.pid == pid:
                yield mechanism, label, holder_tail(holder)


def _held_pipe_ends(pid: int, snapshot: Snapshot) -> Held:
    for pipe in snapshot.pipes:
        flags = f"  ({', '.join(pipe.flags)})" if pipe.flags else ""
        for end in pipe.writers:
            if end.pid == pid:
                yield pipe.kind, pipe.label, f"fd {end.fd} write end{flags}"
        for end in pipe.readers:
            if end.pid == pid:
                yield pipe.kind, pipe.label, f"fd {end.fd} read end{flags}"


HELD: tuple[Callable[[int, Snapshot], Held], ...] = (
    lambda pid, snapshot: _held(pid, ((s.kind, s.label, s.holders) for s in snapshot.shm)),
    lambda pid, snapshot: _held(pid, ((r.kind, r.label, r.holders) for r in snapshot.regions)),
    lambda pid, snapshot: _held(pid, (("mqueue", q.label, q.holders) for q in snapshot.mqueues)),
    _held_pipe_ends,
    lambda pid, snapshot: _held(pid, (("sysv-shm", s.label, s.holders) for s in snapshot.sysv.shm)),
)
"""What a process holds, one entry per mechanism, in the order the process view lists them."""


def held_objects(pid: int, ctx: Context) -> Held:
    """(mechanism, name, how) for every object the process holds."""
    for source in HELD:
        yield from source(pid, ctx.snapshot)


STUCK_WORDS: dict[str, str] = {
    "deadlocked": "deadlocked: only members of its deadlock (below) could release it",
    "blocked": "blocked: it cannot go on until someone else acts",
    "waiting": "waiting in the ordinary way",
}
"""What each Stuck.state means, in the process view."""


def _wait(detail: Detail, pid: int, wait: Waiting) -> None:
    """What a process waits on: kind, object, the call, since when, who could release it, its deadlock."""
    ctx = detail.ctx
    palette = ctx.palette
    entry = next((entry for entry in ctx.snapshot.stuck if entry.pid == pid), None)
    state = entry.state if entry is not None else None
    style = palette.bad if state in ("deadlocked", "blocked") else palette.warn
    detail.line("waiting", wait_text(wait), style)
    if state is not None:
        detail.line("state", STUCK_WORDS[state], style)
    detail.line("how", f"{wait.kind}: {wait_call(wait)}")
    for watched in wait.watched:
        detail.line("watches", f"fd {watched.fd} {watched.object} ({watched.events})")
    if wait.kind == "signal" and wait.signals:
        detail.line("signals", signal_names(wait.signals, sep=", "))
    if entry is None:
        return
    detail.line("since", since_detail(entry.since, ctx.snapshot.taken_at))
    detail.line("released by", entry.release, style if not entry.releasers else "")
    by_pid = {stuck.pid: stuck for stuck in ctx.snapshot.stuck}
    for deadlock in ctx.snapshot.deadlocks:
        if pid in deadlock.pids:
            detail.line("deadlock", deadlock_summary(deadlock, by_pid), palette.bad)
            for member in deadlock.members:
                detail.plain("  " + deadlock_member_text(member, deadlock, by_pid), palette.bad)


def describe_process(pid: int, ctx: Context, events: Sequence[Event] = (), *, brief: bool = False,
                     shmem: ShmemUsage | None = None, mappings: Sequence[ShmemMapping] | None = None) -> Text:
    """A process: identity, its shared memory in RAM (shmem, when the caller read it: collect.capacity.shmem_usage),
    what it waits on, every IPC object it holds, its shared memory mappings one by one (mappings, when the caller
    read them: collect.capacity.shmem_mappings), signal dispositions per thread."""
    detail = Detail(ctx)
    palette = ctx.palette
    process: Process | None = ctx.processes.get(pid)
    signals = next((s for s in ctx.snapshot.signals if s.pid == pid), None)
    if process is None and signals is None:
        detail.heading(f"Process {pid}")
        detail.plain("not in the current snapshot: it has exited (or is outside --pid/--kind)", palette.warn)
        return detail.text
    comm = process.comm if process else signals.comm if signals else ""
    detail.heading(f"Process {pid} {comm}")
    if process is not None:
        detail.line("command", " ".join(process.cmdline) or f"[{process.comm}]")
        detail.line("parent", str(process.ppid))
        detail.line("user", str(process.user or process.uid))
        detail.line("running", f"{human_age(ctx.snapshot.taken_at - process.start_time)}")
        if process.nspid is not None:
            detail.line("pid in ns", f"{process.nspid} (its pid inside its own pid namespace)")
        _place(detail, process.place)
        if process.hidden:
            detail.line("hidden", "its descriptors and mappings could not be read", palette.warn)
        if ctx.is_demo(None, (pid,)):
            detail.line("demo", "started by an ipcmon demo", palette.accent)
        if shmem is not None:
            detail.line("shared mem", f"{human_bytes(shmem.rss)} resident, {human_bytes(shmem.pss)} proportional "
                        "(RssShmem, Pss_Shmem: each page divided among the processes that map it)")
    wait = process.waiting if process else None
    if wait is None and process is not None and process.state in STOPPED:
        detail.line("waiting", f"{STOPPED[process.state]}: not running until SIGCONT (or its tracer) resumes it",
                    palette.warn)
    elif wait is None:
        detail.line("waiting", "not blocked on IPC")
    else:
        _wait(detail, pid, wait)

    objects = list(held_objects(pid, ctx))
    detail.heading(f"IPC objects it holds ({len(objects)})")
    if not objects:
        detail.plain("none", palette.muted)
    for mechanism, name, how in objects:
        detail.text.append(f"  {mechanism:<9}", style=palette.muted)
        detail.text.append(printable(name))
        detail.text.append(f"  {how}\n")

    if mappings:
        detail.heading(f"Shared memory mappings ({len(mappings)}): size, resident, proportional (smaps)")
        for mapping in mappings:
            detail.text.append(f"  {human_bytes(mapping.size):>6} {human_bytes(mapping.rss):>6} "
                               f"{human_bytes(mapping.pss):>6}  ", style=palette.muted)
            detail.text.append(printable(mapping.path) + "\n")

    if signals is not None:
        detail.heading("Signals")
        detail.line("pending", signal_names(signals.pending, sep=", ") + "  (whole process)",
                    palette.bad if signals.pending else "")
        detail.line("ignored", signal_names(signals.ignored, sep=", "))
        detail.line("caught", signal_names(signals.caught, sep=", "))
        if signals.queued is not None:
            detail.line("queued", f"{signals.queued} of {signals.queue_limit} (for its user)")
        threads = signals.threads
        detail.heading(f"Threads ({len(threads)})")
        for thread in threads[: 16 if brief else 256]:
            detail.text.append(f"  {thread.tid:>7} ", style="bold")
            detail.text.append(printable(thread.comm) + "\n")
            _masks(detail, thread, "  ")
        if len(threads) > (16 if brief else 256):
            detail.plain(f"… {len(threads) - 16} more", palette.muted)
    _sent(detail, pid, process.start_time if process is not None else None)
    if events:
        _history(detail, events)
    return detail.text
