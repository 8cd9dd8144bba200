"""Plain-text tables of a snapshot, one per mechanism, for `ipcmon snapshot` and other printers.

Every cell that comes from the system passes through safe.printable, so a hostile name prints as
visible escapes and can neither forge a row nor reach the terminal as a control sequence.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterable, Sequence

from ipcmon.model import Holder, MessageQueue, Pipe, PipeEnd, ProcessSignals, ShmSegment, Snapshot
from ipcmon.safe import human_age, human_bytes, printable, shorten

MAX_CELL = 48


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart; cells are already printable.

    Cells are cut at MAX_CELL characters to keep the columns readable, except in the last column, which
    (holders, endpoints) can run on without pushing anything else aside.
    """
    cells = [[shorten(cell, MAX_CELL) for cell in row[:-1]] + list(row[-1:]) for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return lines


def holders_cell(holders: Sequence[Holder]) -> str:
    """'1234 comm fd3 rw, 1235 comm map rw-s' with repeated pids folded."""
    parts = []
    for holder in holders:
        if holder.fd is not None:
            where = f"fd{holder.fd} {holder.access}"
        else:
            where = f"map {holder.prot or holder.access} {human_bytes(holder.mapped_bytes)}"
        parts.append(f"{holder.pid} {printable(holder.comm)} {where}")
    return ", ".join(parts) if parts else "-"


def ends_cell(ends: Sequence[PipeEnd]) -> str:
    return ", ".join(f"{end.pid} {printable(end.comm)} fd{end.fd}" for end in ends) or "-"


def mode_text(mode: int | None) -> str:
    return "?" if mode is None else stat.filemode(mode | stat.S_IFREG)[1:]


SHM_HEADERS = ("NAME", "KIND", "SIZE", "ALLOC", "MODE", "OWNER", "STATE", "HOLDERS")


def shm_row(segment: ShmSegment) -> tuple[str, ...]:
    state: str = segment.state
    if state == "deleted":
        state = f"deleted, pins {human_bytes(segment.pinned_bytes)}"
    return (
        printable(segment.name),
        segment.kind,
        human_bytes(segment.size),
        human_bytes(segment.allocated),
        mode_text(segment.mode),
        printable(segment.owner or optional(segment.uid)),
        state,
        holders_cell(segment.holders),
    )


MQUEUE_HEADERS = ("NAME", "MSGS", "MAX", "MSGSIZE", "QSIZE", "FILL", "NOTIFY", "OWNER", "HOLDERS")


def mqueue_row(queue: MessageQueue) -> tuple[str, ...]:
    fill = queue.fill
    notify = "-"
    if queue.notify_pid:
        method = {0: "signal", 1: "none", 2: "thread"}.get(queue.notify or 0, str(queue.notify))
        notify = f"{method} pid {queue.notify_pid}" + (f" sig {queue.signo}" if queue.signo else "")
    name = printable(queue.name) + (" (deleted)" if queue.deleted else "")
    return (
        name,
        optional(queue.messages),
        optional(queue.max_messages),
        optional(queue.message_size),
        human_bytes(queue.qsize_bytes),
        "?" if fill is None else f"{fill * 100:.0f}%",
        notify,
        printable(queue.owner or optional(queue.uid)),
        holders_cell(queue.holders),
    )


PIPE_HEADERS = ("KIND", "INODE", "PATH", "BUFFERED", "CAPACITY", "FLAGS", "WRITERS", "READERS")


def pipe_row(pipe: Pipe) -> tuple[str, ...]:
    return (
        pipe.kind,
        str(pipe.inode),
        printable(pipe.path) if pipe.path else "-",
        human_bytes(pipe.buffered),
        human_bytes(pipe.capacity),
        ",".join(pipe.flags) or "-",
        ends_cell(pipe.writers),
        ends_cell(pipe.readers),
    )


SIGNAL_HEADERS = ("PID", "COMM", "PENDING", "BLOCKED", "IGNORED", "CAUGHT", "THREADS")


def signal_names(names: Sequence[str]) -> str:
    return ",".join(name.removeprefix("SIG") for name in names) or "-"


def signal_row(process: ProcessSignals) -> tuple[str, ...]:
    thread_pending = sorted({name for thread in process.threads for name in thread.pending})
    pending = signal_names(process.pending)
    if thread_pending:
        pending += f" (thread: {signal_names(thread_pending)})"
    return (
        str(process.pid),
        printable(process.comm),
        pending,
        signal_names(process.blocked),
        signal_names(process.ignored),
        signal_names(process.caught),
        str(len(process.threads)),
    )


def optional(value: object) -> str:
    return "?" if value is None else str(value)


def is_interesting(process: ProcessSignals) -> bool:
    """Processes worth a row in the text report: something pending or blocked, or a handler caught."""
    return bool(
        process.pending
        or process.blocked
        or any(thread.pending or thread.blocked for thread in process.threads)
    )


def render(snapshot: Snapshot, *, all_signals: bool = False) -> str:
    """The whole snapshot as text: a summary line, then one table per mechanism."""
    lines: list[str] = []
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snapshot.taken_at))
    held = sum(segment.state == "held" for segment in snapshot.shm)
    orphaned = sum(segment.state == "orphaned" for segment in snapshot.shm)
    deleted = sum(segment.state == "deleted" for segment in snapshot.shm)
    lines.append(
        f"ipcmon snapshot {when}: {len(snapshot.processes)} processes"
        f"{f' ({snapshot.hidden_processes} not fully readable)' if snapshot.hidden_processes else ''}, "
        f"shm {len(snapshot.shm)} ({held} held, {orphaned} orphaned, {deleted} deleted), "
        f"mqueues {len(snapshot.mqueues)}, pipes {len(snapshot.pipes)}, "
        f"sysv shm/msg/sem {len(snapshot.sysv.shm)}/{len(snapshot.sysv.msg)}/{len(snapshot.sysv.sem)}, "
        f"scan {snapshot.scan_seconds * 1000:.0f} ms"
    )
    for note in snapshot.notes:
        lines.append(f"note: {note}")

    def section(title: str, headers: Sequence[str], rows: list[tuple[str, ...]]) -> None:
        lines.append("")
        lines.append(f"== {title} ({len(rows)})")
        if rows:
            lines.extend(format_table(headers, rows))

    if "shm" in snapshot.kinds:
        section("POSIX shared memory and semaphores", SHM_HEADERS, [shm_row(s) for s in snapshot.shm])
    if "mqueue" in snapshot.kinds:
        where = printable(snapshot.mqueue_dir) if snapshot.mqueue_dir else "not mounted"
        section(f"POSIX message queues ({where})", MQUEUE_HEADERS, [mqueue_row(q) for q in snapshot.mqueues])
    if "pipe" in snapshot.kinds:
        section("Pipes and FIFOs", PIPE_HEADERS, [pipe_row(p) for p in snapshot.pipes])
    if "signal" in snapshot.kinds:
        shown = [p for p in snapshot.signals if all_signals or is_interesting(p)]
        title = "Signals" if all_signals else "Signals (processes with pending or blocked signals)"
        section(title, SIGNAL_HEADERS, [signal_row(p) for p in shown])
    if "sysv" in snapshot.kinds and snapshot.sysv.available:
        now = snapshot.taken_at
        section(
            "SysV shared memory",
            ("KEY", "SHMID", "SIZE", "NATTCH", "CPID", "LPID", "OWNER", "MODE", "STATE", "ATTACHED"),
            [
                (
                    f"0x{s.key & 0xFFFFFFFF:08x}",
                    str(s.id),
                    human_bytes(s.size),
                    str(s.nattch),
                    str(s.cpid),
                    str(s.lpid),
                    printable(s.owner or str(s.uid)),
                    mode_text(s.mode),
                    "removed" if s.removed else "orphaned" if s.nattch == 0 else "attached",
                    holders_cell(s.holders),
                )
                for s in snapshot.sysv.shm
            ],
        )
        section(
            "SysV message queues",
            ("KEY", "MSQID", "BYTES", "MSGS", "LSPID", "LRPID", "OWNER", "MODE", "LAST SEND"),
            [
                (
                    f"0x{m.key & 0xFFFFFFFF:08x}",
                    str(m.id),
                    human_bytes(m.qbytes),
                    str(m.qnum),
                    str(m.lspid),
                    str(m.lrpid),
                    printable(m.owner or str(m.uid)),
                    mode_text(m.mode),
                    human_age(now - m.stime) + " ago" if m.stime else "never",
                )
                for m in snapshot.sysv.msg
            ],
        )
        section(
            "SysV semaphores",
            ("KEY", "SEMID", "NSEMS", "OWNER", "MODE"),
            [
                (f"0x{s.key & 0xFFFFFFFF:08x}", str(s.id), str(s.nsems), printable(s.owner or str(s.uid)),
                 mode_text(s.mode))
                for s in snapshot.sysv.sem
            ],
        )
    return "\n".join(lines)
