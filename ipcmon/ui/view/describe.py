"""Detail text for one object or one process, as inert rich Text built from a snapshot and its event history."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rich.text import Text

from ipcmon import report
from ipcmon.model import (
    Event,
    Holder,
    MessageQueue,
    Pipe,
    PipeEnd,
    Process,
    ProcessSignals,
    ShmSegment,
    SysvMsg,
    SysvSem,
    SysvShm,
    ThreadSignals,
)
from ipcmon.safe import human_age, human_bytes, printable, shorten
from ipcmon.ui.view.alerts import PIPE_FLAGS, PIPE_HAZARDS
from ipcmon.ui.view.rows import Context, clock_text, queue_state, record_name, sysv_name, sysv_shm_state, waiting_text

BAR_WIDTH = 30
NOTIFY_METHODS = {0: "SIGEV_SIGNAL", 1: "SIGEV_NONE", 2: "SIGEV_THREAD"}


class Detail:
    """A small builder: headings and label/value lines, every value made printable."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.text = Text(end="")

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

    def process(self, pid: int, comm: str, tail: str = "") -> None:
        """One holder line: pid, command, then where (fd, mapping) and how (access)."""
        process = self.ctx.processes.get(pid)
        command = " ".join(process.cmdline) if process and process.cmdline else ""
        self.text.append(f"  {pid:>7} ", style="bold")
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


def holder_tail(holder: Holder) -> str:
    if holder.fd is not None:
        return f"fd {holder.fd}  {holder.access}"
    mapping = f"mapped {holder.prot or holder.access}"
    if holder.shared is not None:
        mapping += " shared" if holder.shared else " private"
    if holder.mapped_bytes is not None:
        mapping += f" {human_bytes(holder.mapped_bytes)}"
    return mapping


def _holders(detail: Detail, holders: Sequence[Holder], empty: str) -> None:
    detail.heading(f"Holders ({len(holders)})")
    if not holders:
        detail.plain(empty, detail.ctx.palette.warn)
    for holder in holders:
        detail.process(holder.pid, holder.comm, holder_tail(holder))


def _ends(detail: Detail, title: str, ends: Sequence[PipeEnd], empty: str) -> None:
    detail.heading(f"{title} ({len(ends)})")
    if not ends:
        detail.plain(empty, detail.ctx.palette.warn)
    for end in ends:
        detail.process(end.pid, end.comm, f"fd {end.fd}")


def _waiters(detail: Detail, object_ref: str | None) -> None:
    """Processes blocked in a system call on this object (Process.waiting, issue 3)."""
    if object_ref is None:
        return
    waiting = [p for p in detail.ctx.snapshot.processes if p.waiting is not None and p.waiting.object == object_ref]
    if waiting:
        detail.heading(f"Waiting on it ({len(waiting)})", f"bold {detail.ctx.palette.warn}")
        for process in waiting:
            detail.process(process.pid, process.comm, waiting_text(process))


def _history(detail: Detail, events: Sequence[Event]) -> None:
    detail.heading(f"History since ipcmon started ({len(events)})")
    if not events:
        detail.plain("no events seen yet", detail.ctx.palette.muted)
    for event in events[:50]:
        who = f" {event.pid} {printable(event.comm or '')}" if event.pid is not None else ""
        extra = f"  {event.detail}" if event.detail else ""
        detail.plain(f"{clock_text(event.time)}  {event.event}{who}{extra}")


def _times(detail: Detail, mtime: float | None, ctime: float | None) -> None:
    now = detail.ctx.snapshot.taken_at
    if mtime is not None:
        detail.line("modified", f"{human_age(now - mtime)} ago")
    if ctime is not None:
        detail.line("changed", f"{human_age(now - ctime)} ago")


def describe_record(record: object, ctx: Context, events: Sequence[Event]) -> Text:
    """Everything known about one object: identity, limits or fill, holders or ends, waiters, history."""
    detail = Detail(ctx)
    palette = ctx.palette
    if isinstance(record, ShmSegment):
        state_style = {"orphaned": palette.warn, "deleted": palette.bad}.get(record.state, palette.good)
        detail.heading(f"{'Semaphore' if record.kind == 'sem' else 'Shared memory'} {record.name}")
        detail.line("path", record.path)
        detail.line("state", record.state, state_style)
        if record.state == "deleted":
            detail.line("pins", human_bytes(record.pinned_bytes), palette.bad)
        detail.line("size", f"{human_bytes(record.size)} ({record.size} bytes)")
        detail.line("allocated", human_bytes(record.allocated))
        detail.line("mode", report.mode_text(record.mode))
        detail.line("owner", f"{record.owner or record.uid}:{record.group or record.gid}")
        detail.line("inode", f"{record.inode} on device {record.dev}")
        _times(detail, record.mtime, record.ctime)
        _holders(detail, record.holders, "nobody holds it: an orphan (d removes it)")
    elif isinstance(record, MessageQueue):
        state = queue_state(record)
        detail.heading(f"Message queue {record.name}")
        detail.line("path", record.path or "(not in a mounted mqueue filesystem)")
        state_style = {"full": palette.bad, "orphaned": palette.warn, "deleted": palette.bad}.get(state, "")
        detail.line("state", state, state_style)
        detail.line("messages", f"{_opt(record.messages)} of at most {_opt(record.max_messages)}")
        detail.line("msg size", f"at most {_opt(record.message_size)} bytes")
        detail.line("queued", human_bytes(record.qsize_bytes))
        if record.messages is not None and record.max_messages:
            bar, _ = fill_bar(record.messages, record.max_messages, _opt)
            detail.line("fill", bar, palette.bad if state == "full" else "")
        if record.notify_pid:
            method = NOTIFY_METHODS.get(record.notify or 0, str(record.notify))
            signo = f", signal {record.signo}" if record.signo else ""
            detail.line("notify", f"{method} to pid {record.notify_pid}{signo}")
        else:
            detail.line("notify", "none registered")
        detail.line("mode", report.mode_text(record.mode))
        detail.line("owner", str(record.owner or _opt(record.uid)))
        _times(detail, record.mtime, None)
        _holders(detail, record.holders, "nobody has it open: an orphan (d removes it)")
        _waiters(detail, f"mqueue:{record.name}")
    elif isinstance(record, Pipe):
        name = record.path or f"pipe:[{record.inode}]"
        detail.heading(f"{'FIFO' if record.kind == 'fifo' else 'Pipe'} {name}")
        detail.line("inode", str(record.inode))
        bar, fraction = fill_bar(record.buffered, record.capacity)
        detail.line("fill", bar, palette.bad if fraction is not None and fraction >= 1 else "")
        for flag in record.flags:
            detail.line("flag", PIPE_FLAGS.get(flag, flag), palette.bad if flag in PIPE_HAZARDS else palette.warn)
        _ends(detail, "Writers", record.writers, "no writer: readers see EOF once it drains")
        _ends(detail, "Readers", record.readers, "no reader: a write gets SIGPIPE/EPIPE")
        _waiters(detail, f"pipe:[{record.inode}]")
    elif isinstance(record, ProcessSignals):
        detail.text.append_text(describe_process(record.pid, ctx, events, brief=True))
        return detail.text
    elif isinstance(record, SysvShm):
        state = sysv_shm_state(record)
        detail.heading(f"SysV shared memory {sysv_name(record.key, record.id)}")
        detail.line("state", state, palette.bad if record.removed else palette.warn if state == "orphaned" else "")
        detail.line("size", f"{human_bytes(record.size)}, resident {human_bytes(record.rss)}")
        detail.line("attached", f"{record.nattch} (nattch)")
        detail.line("creator", str(record.cpid))
        detail.line("last op", str(record.lpid))
        detail.line("mode", report.mode_text(record.mode))
        detail.line("owner", str(record.owner or record.uid))
        _holders(detail, record.holders, "nothing attached")
    elif isinstance(record, SysvMsg):
        detail.heading(f"SysV message queue {sysv_name(record.key, record.id)}")
        detail.line("messages", str(record.qnum))
        detail.line("queued", human_bytes(record.qbytes))
        detail.line("last send", str(record.lspid or "-"))
        detail.line("last recv", str(record.lrpid or "-"))
        detail.line("mode", report.mode_text(record.mode))
        detail.line("owner", str(record.owner or record.uid))
    elif isinstance(record, SysvSem):
        detail.heading(f"SysV semaphore set {sysv_name(record.key, record.id)}")
        detail.line("semaphores", str(record.nsems))
        detail.line("mode", report.mode_text(record.mode))
        detail.line("owner", str(record.owner or record.uid))
    elif isinstance(record, Event):
        detail.heading(f"{record.event} {record.object}")
        detail.line("time", clock_text(record.time))
        detail.line("mechanism", record.mechanism)
        detail.line("source", record.source)
        if record.pid is not None:
            detail.line("process", f"{record.pid} {record.comm or ''}")
        if record.detail:
            detail.line("detail", record.detail)
        detail.line("object key", record.key)
    else:
        detail.heading(record_name(record))
    _history(detail, events)
    return detail.text


def _opt(value: object) -> str:
    return "?" if value is None else str(value)


def _masks(detail: Detail, thread: ThreadSignals | ProcessSignals, label_prefix: str = "") -> None:
    palette = detail.ctx.palette
    detail.line(f"{label_prefix}pending", report.signal_names(thread.pending), palette.bad if thread.pending else "")
    detail.line(f"{label_prefix}blocked", report.signal_names(thread.blocked), palette.warn if thread.blocked else "")


def held_objects(pid: int, ctx: Context) -> Iterable[tuple[str, str, str]]:
    """(mechanism, name, how) for every object the process holds."""
    snapshot = ctx.snapshot
    for segment in snapshot.shm:
        for holder in segment.holders:
            if holder.pid == pid:
                yield segment.kind, segment.name, holder_tail(holder)
    for queue in snapshot.mqueues:
        for holder in queue.holders:
            if holder.pid == pid:
                yield "mqueue", queue.name, holder_tail(holder)
    for pipe in snapshot.pipes:
        name = pipe.path or f"pipe:[{pipe.inode}]"
        flags = f"  ({', '.join(pipe.flags)})" if pipe.flags else ""
        for end in pipe.writers:
            if end.pid == pid:
                yield pipe.kind, name, f"fd {end.fd} write end{flags}"
        for end in pipe.readers:
            if end.pid == pid:
                yield pipe.kind, name, f"fd {end.fd} read end{flags}"
    for shm in snapshot.sysv.shm:
        for holder in shm.holders:
            if holder.pid == pid:
                yield "sysv-shm", sysv_name(shm.key, shm.id), holder_tail(holder)


def describe_process(pid: int, ctx: Context, events: Sequence[Event] = (), *, brief: bool = False) -> Text:
    """A process: identity, what it waits on, every IPC object it holds, signal dispositions per thread."""
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
        if process.hidden:
            detail.line("hidden", "its descriptors and mappings could not be read", palette.warn)
        if ctx.is_demo(None, (pid,)):
            detail.line("demo", "started by an ipcmon demo", palette.accent)
    wait = process.waiting if process else None
    detail.line("waiting", waiting_text(process) if wait else "not blocked on IPC", palette.warn if wait else "")
    if wait is not None and wait.wchan:
        detail.line("wchan", wait.wchan)

    objects = list(held_objects(pid, ctx))
    detail.heading(f"IPC objects it holds ({len(objects)})")
    if not objects:
        detail.plain("none", palette.muted)
    for mechanism, name, how in objects:
        detail.text.append(f"  {mechanism:<9}", style=palette.muted)
        detail.text.append(printable(name))
        detail.text.append(f"  {how}\n")

    if signals is not None:
        detail.heading("Signals")
        detail.line("pending", report.signal_names(signals.pending) + "  (whole process)",
                    palette.bad if signals.pending else "")
        detail.line("ignored", report.signal_names(signals.ignored))
        detail.line("caught", report.signal_names(signals.caught))
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
    if events:
        _history(detail, events)
    return detail.text
