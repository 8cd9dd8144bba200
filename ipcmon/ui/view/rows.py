"""Table rows for the dashboard: each record of a Snapshot as inert, sortable, filterable cells.

Pure functions of a snapshot (no widgets), so the cell text and the filter can be tested without a
terminal. Every cell goes through :func:`ipcmon.safe.printable` and becomes a ``rich.text.Text``: a
DataTable parses ``str`` cells as markup, and a segment may be called ``[@click=app.quit]x``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.style import Style
from rich.text import Text

from ipcmon import report
from ipcmon.demos import OBJECT_PREFIX
from ipcmon.model import (
    Event,
    Holder,
    MessageQueue,
    Pipe,
    PipeEnd,
    Process,
    ProcessSignals,
    ShmSegment,
    Snapshot,
    SysvMsg,
    SysvSem,
    SysvShm,
)
from ipcmon.safe import human_bytes, printable, shorten

DEMO_PREFIX = OBJECT_PREFIX
"""Objects the demos create are named with this prefix (issue 5)."""

MAX_CELL = 60
MASK_WIDTH = 22
"""Widest signal mask shown in the Signals table."""


class Cell(Text):
    """A table cell: printable text plus the value its column sorts by."""

    __slots__ = ("sort_key",)

    def __init__(self, text: str, sort_key: tuple[object, ...], style: Style | str = "") -> None:
        super().__init__(text, style=style, no_wrap=True, overflow="ellipsis", end="")
        self.sort_key = sort_key

    def same(self, other: Cell) -> bool:
        """Same text, colour and sort value (Text's own == ignores the style)."""
        return self.plain == other.plain and str(self.style) == str(other.style) and self.sort_key == other.sort_key


def text_cell(text: str, style: Style | str = "", *, width: int = MAX_CELL) -> Cell:
    """A cell sorted by its text; the text is made printable here whatever the caller did."""
    shown = shorten(printable(text), width)
    return Cell(shown, (0, shown.lower()), style)


def number_cell(value: int | float | None, shown: str | None = None, style: Style | str = "") -> Cell:
    """A cell sorted by a number; unknown (None) sorts after every number."""
    if value is None:
        return Cell(shown if shown is not None else "?", (1, 0), style)
    return Cell(shown if shown is not None else str(value), (0, value), style)


@dataclass(frozen=True, slots=True)
class Palette:
    """Styles for states; the app builds one from the current theme so colours follow theme changes."""

    bad: str = "bold red"
    warn: str = "yellow"
    good: str = "green"
    muted: str = "dim"
    accent: str = "bold magenta"


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int | None = None


@dataclass(frozen=True, slots=True)
class Row:
    """One table row: stable key, cells in column order, and what the filter and actions need."""

    key: str
    cells: tuple[Cell, ...]
    record: object
    search: str
    """Lower-case text the free-text filter matches: names, pids, commands, command lines."""
    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Values for ``name:value`` filter tokens (pid, kind, mechanism, event, state…)."""
    pids: tuple[int, ...] = ()
    """Processes involved, in order (Enter and ``k`` act on them)."""
    path: str | None = None
    """What ``c`` copies."""


@dataclass(slots=True)
class Context:
    """What rows need besides the record: the process table, demo membership, colours."""

    snapshot: Snapshot
    palette: Palette = field(default_factory=Palette)
    demo_pids: frozenset[int] = frozenset()
    processes: dict[int, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.processes:
            self.processes = {process.pid: process for process in self.snapshot.processes}

    def is_demo(self, name: str | None, pids: Iterable[int]) -> bool:
        return bool(name and name.startswith(DEMO_PREFIX)) or any(pid in self.demo_pids for pid in pids)

    def commands(self, pids: Iterable[int]) -> str:
        """comm and command line of each pid, for the filter."""
        parts = []
        for pid in pids:
            process = self.processes.get(pid)
            if process is not None:
                parts.append(process.comm)
                parts.extend(process.cmdline)
        return " ".join(parts)


class RowCache:
    """Rows of the previous refresh, reused while their record (and colours, demo membership) are unchanged.

    Comparing two frozen records costs about a microsecond; building a row's cells costs tens, and a busy
    machine has thousands of pipes and segments that mostly stay the same from one scan to the next.
    """

    def __init__(self) -> None:
        self._rows: dict[str, tuple[object, Row]] = {}
        self._epoch: object = None

    def rows(
        self,
        ctx: Context,
        records: Iterable[Any],
        build: Callable[[Any, Context], Row],
        extra: Callable[[Any], object] | None = None,
        key_of: Callable[[Any], str] | None = None,
    ) -> Iterator[Row]:
        """A row per record: the cached one when ``(record, extra(record))`` is what it was built from."""
        epoch = (ctx.palette, ctx.demo_pids)
        if epoch != self._epoch:
            self._rows.clear()
            self._epoch = epoch
        for record in records:
            key = key_of(record) if key_of is not None else record.object_key
            token = (record, extra(record)) if extra is not None else record
            cached = self._rows.get(key)
            if cached is not None and (cached[0] is token or cached[0] == token):  # `is`: a recalled record
                yield cached[1]
                continue
            row = build(record, ctx)
            self._rows[key] = (token, row)
            yield row

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the rows of objects that are gone (call after a refresh with the keys it produced)."""
        wanted = set(keep)
        for key in [key for key in self._rows if key not in wanted]:
            del self._rows[key]


def matches(row: Row, query: str) -> bool:
    """Every token must match: ``pid:123``/``event:created`` against the row's fields, words anywhere."""
    for token in query.lower().split():
        name, sep, value = token.partition(":")
        if sep and name in row.fields:
            if value not in row.fields[name]:
                return False
        elif token not in row.search:
            return False
    return True


def _unique(pids: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(pids))


def _search(ctx: Context, pids: Sequence[int], *words: str | None) -> str:
    text = " ".join(word for word in words if word)
    return f"{text} {' '.join(map(str, pids))} {ctx.commands(pids)}".lower()


def _name_cell(ctx: Context, name: str, pids: Iterable[int], style: str = "") -> Cell:
    """The name, with a demo badge in front when a demo made it or holds it (issue 5)."""
    cell = text_cell(name, style)
    if ctx.is_demo(name, pids):
        badged = Cell("◆ ", cell.sort_key, ctx.palette.accent)
        badged.append_text(cell)
        return badged
    return cell


def _holder_pids(holders: Iterable[Holder] | Iterable[PipeEnd]) -> tuple[int, ...]:
    return _unique(holder.pid for holder in holders)


# --- shared memory: POSIX shm and semaphores, SysV shm and semaphores ------------------------------------

SHM_COLUMNS = (
    Column("name", "NAME"),
    Column("kind", "KIND"),
    Column("size", "SIZE"),
    Column("alloc", "ALLOC"),
    Column("mode", "MODE"),
    Column("owner", "OWNER"),
    Column("state", "STATE"),
    Column("holders", "HOLDERS"),
)


def shm_state_style(state: str, palette: Palette) -> str:
    return {"orphaned": palette.warn, "deleted": palette.bad, "removed": palette.bad}.get(state, palette.good)


def shm_rows(ctx: Context, cache: RowCache) -> Iterator[Row]:
    yield from cache.rows(ctx, ctx.snapshot.shm, _shm_row)
    yield from cache.rows(ctx, ctx.snapshot.sysv.shm, _sysv_shm_row)
    yield from cache.rows(ctx, ctx.snapshot.sysv.sem, _sysv_sem_row)


def _shm_row(segment: ShmSegment, ctx: Context) -> Row:
    palette = ctx.palette
    text = report.shm_row(segment)
    pids = _holder_pids(segment.holders)
    return Row(
        key=segment.object_key,
        cells=(
            _name_cell(ctx, segment.name, pids),
            text_cell(segment.kind),
            number_cell(segment.size, text[2]),
            number_cell(segment.allocated, text[3]),
            text_cell(text[4]),
            text_cell(text[5]),
            text_cell(text[6], shm_state_style(segment.state, palette)),
            text_cell(text[7]),
        ),
        record=segment,
        search=_search(ctx, pids, segment.name, segment.kind, segment.state),
        fields=_fields(pids, kind=segment.kind, state=segment.state),
        pids=pids,
        path=segment.path,
    )


def _sysv_shm_row(shm: SysvShm, ctx: Context) -> Row:
    palette = ctx.palette
    state = sysv_shm_state(shm)
    pids = _holder_pids(shm.holders)
    return Row(
        key=shm.object_key,
        cells=(
            _name_cell(ctx, sysv_name(shm.key, shm.id), pids),
            text_cell("sysv-shm"),
            number_cell(shm.size, human_bytes(shm.size)),
            number_cell(shm.rss, human_bytes(shm.rss)),
            text_cell(report.mode_text(shm.mode)),
            text_cell(shm.owner or report.optional(shm.uid)),
            text_cell(f"{state}, nattch {shm.nattch}", shm_state_style(state, palette)),
            text_cell(report.holders_cell(shm.holders)),
        ),
        record=shm,
        search=_search(ctx, _unique((*pids, shm.cpid, shm.lpid)), sysv_name(shm.key, shm.id), "sysv-shm", state),
        fields=_fields(_unique((*pids, shm.cpid, shm.lpid)), kind="sysv-shm", state=state),
        pids=pids or _unique(pid for pid in (shm.cpid, shm.lpid) if pid in ctx.processes),
    )


def _sysv_sem_row(sem: SysvSem, ctx: Context) -> Row:
    return Row(
        key=sem.object_key,
        cells=(
            text_cell(sysv_name(sem.key, sem.id)),
            text_cell("sysv-sem"),
            number_cell(sem.nsems, f"{sem.nsems} sems"),
            number_cell(None, "-"),
            text_cell(report.mode_text(sem.mode)),
            text_cell(sem.owner or str(sem.uid)),
            text_cell("-"),
            text_cell("-"),
        ),
        record=sem,
        search=_search(ctx, (), sysv_name(sem.key, sem.id), "sysv-sem"),
        fields=_fields((), kind="sysv-sem"),
    )


def sysv_name(key: int, ident: int) -> str:
    return f"key 0x{key & 0xFFFFFFFF:08x} id {ident}"


def sysv_shm_state(shm: SysvShm) -> str:
    return "removed" if shm.removed else "orphaned" if shm.nattch == 0 else "attached"


def _fields(pids: Iterable[int], **values: str) -> dict[str, frozenset[str]]:
    fields = {name: frozenset({value.lower()}) for name, value in values.items()}
    fields["pid"] = frozenset(str(pid) for pid in pids)
    return fields


# --- message queues: POSIX and SysV ----------------------------------------------------------------------

MQUEUE_COLUMNS = (
    Column("name", "NAME"),
    Column("kind", "KIND"),
    Column("msgs", "MSGS"),
    Column("max", "MAX"),
    Column("msgsize", "MSGSIZE"),
    Column("qsize", "QSIZE"),
    Column("fill", "FILL"),
    Column("notify", "NOTIFY"),
    Column("owner", "OWNER"),
    Column("holders", "HOLDERS"),
)


def queue_state(queue: MessageQueue) -> str:
    if queue.deleted:
        return "deleted"
    fill = queue.fill
    if fill is not None and fill >= 1:
        return "full"
    return "held" if queue.holders else "orphaned"


def mqueue_rows(ctx: Context, cache: RowCache) -> Iterator[Row]:
    yield from cache.rows(ctx, ctx.snapshot.mqueues, _mqueue_row)
    yield from cache.rows(ctx, ctx.snapshot.sysv.msg, _sysv_msg_row)


def _mqueue_row(queue: MessageQueue, ctx: Context) -> Row:
    palette = ctx.palette
    text = report.mqueue_row(queue)
    pids = _holder_pids(queue.holders)
    state = queue_state(queue)
    name_style = {"deleted": palette.bad, "orphaned": palette.warn}.get(state, "")
    fill = queue.fill
    return Row(
        key=queue.object_key,
        cells=(
            _name_cell(ctx, text[0], pids, name_style),
            text_cell("mqueue"),
            number_cell(queue.messages),
            number_cell(queue.max_messages),
            number_cell(queue.message_size),
            number_cell(queue.qsize_bytes, text[4]),
            number_cell(fill, text[5], palette.bad if state == "full" else ""),
            text_cell(text[6]),
            text_cell(text[7]),
            text_cell(text[8]),
        ),
        record=queue,
        search=_search(ctx, pids, queue.name, "mqueue", state),
        fields=_fields(pids, kind="mqueue", state=state),
        pids=pids,
        path=queue.path or queue.name,
    )


def _sysv_msg_row(msg: SysvMsg, ctx: Context) -> Row:
    pids = _unique(pid for pid in (msg.lspid, msg.lrpid) if pid)
    return Row(
        key=msg.object_key,
        cells=(
            text_cell(sysv_name(msg.key, msg.id)),
            text_cell("sysv-msg"),
            number_cell(msg.qnum),
            number_cell(None, "-"),
            number_cell(None, "-"),
            number_cell(msg.qbytes, human_bytes(msg.qbytes)),
            number_cell(None, "-"),
            text_cell("-"),
            text_cell(msg.owner or str(msg.uid)),
            text_cell(f"last send {msg.lspid or '-'}, last receive {msg.lrpid or '-'}"),
        ),
        record=msg,
        search=_search(ctx, pids, sysv_name(msg.key, msg.id), "sysv-msg"),
        fields=_fields(pids, kind="sysv-msg"),
        pids=tuple(pid for pid in pids if pid in ctx.processes),
    )


# --- pipes and FIFOs --------------------------------------------------------------------------------------

PIPE_COLUMNS = (
    Column("kind", "KIND"),
    Column("inode", "INODE"),
    Column("path", "PATH"),
    Column("buffered", "BUFFERED"),
    Column("capacity", "CAPACITY"),
    Column("flags", "FLAGS"),
    Column("writers", "WRITERS"),
    Column("readers", "READERS"),
)


def pipe_rows(ctx: Context, cache: RowCache) -> Iterator[Row]:
    yield from cache.rows(ctx, ctx.snapshot.pipes, _pipe_row)


def _pipe_row(pipe: Pipe, ctx: Context) -> Row:
    palette = ctx.palette
    text = report.pipe_row(pipe)
    pids = _holder_pids((*pipe.writers, *pipe.readers))
    flag_style = palette.bad if {"full", "no-reader"} & set(pipe.flags) else palette.warn if pipe.flags else ""
    kind_cell = text_cell(pipe.kind)
    if ctx.is_demo(pipe.path, pids):
        kind_cell = _name_cell(ctx, pipe.kind, pids)
    return Row(
        key=pipe.object_key,
        cells=(
            kind_cell,
            number_cell(pipe.inode),
            text_cell(text[2]),
            number_cell(pipe.buffered, text[3], palette.bad if "full" in pipe.flags else ""),
            number_cell(pipe.capacity, text[4]),
            text_cell(text[5], flag_style),
            text_cell(text[6]),
            text_cell(text[7]),
        ),
        record=pipe,
        search=_search(ctx, pids, pipe.path, pipe.kind, f"pipe:[{pipe.inode}]", *pipe.flags),
        fields={**_fields(pids, kind=pipe.kind), "flag": frozenset(pipe.flags)},
        pids=pids,
        path=pipe.path,
    )


# --- signals: one row per process ---------------------------------------------------------------------------

SIGNAL_COLUMNS = (
    Column("pid", "PID"),
    Column("comm", "COMM"),
    Column("pending", "PENDING"),
    Column("blocked", "BLOCKED"),
    Column("ignored", "IGNORED"),
    Column("caught", "CAUGHT"),
    Column("threads", "THREADS"),
    Column("waiting", "WAITING"),
)


def pending_count(process: ProcessSignals) -> int:
    return len(process.pending) + sum(len(thread.pending) for thread in process.threads)


def waiting_text(process: Process | None) -> str:
    if process is None or process.waiting is None:
        return "-"
    wait = process.waiting
    what = wait.object or (f"fd {wait.fd}" if wait.fd is not None else wait.wchan)
    return f"{wait.syscall} {what}".strip() if what else wait.syscall


def signal_rows(ctx: Context, cache: RowCache) -> Iterator[Row]:
    # The WAITING column comes from the process record, not the signals record.
    yield from cache.rows(ctx, ctx.snapshot.signals, _signal_row, extra=lambda s: ctx.processes.get(s.pid))


def _signal_row(signals: ProcessSignals, ctx: Context) -> Row:
    palette = ctx.palette
    text = report.signal_row(signals)
    pending = pending_count(signals)
    process = ctx.processes.get(signals.pid)
    comm_cell = _name_cell(ctx, signals.comm, (signals.pid,)) if ctx.is_demo(None, (signals.pid,)) else None
    return Row(
        key=signals.object_key,
        cells=(
            number_cell(signals.pid),
            comm_cell or text_cell(text[1]),
            # Sorted by how many are pending, so "pending first" is one key press.
            number_cell(pending, text[2], palette.bad if pending else ""),
            # Masks can list 30 signals: cut them so every column fits (the detail pane has them all).
            number_cell(len(signals.blocked), shorten(text[3], MASK_WIDTH), palette.warn if signals.blocked else ""),
            number_cell(len(signals.ignored), shorten(text[4], MASK_WIDTH)),
            number_cell(len(signals.caught), shorten(text[5], MASK_WIDTH)),
            number_cell(len(signals.threads)),
            text_cell(waiting_text(process)),
        ),
        record=signals,
        search=_search(ctx, (signals.pid,), *signals.pending, *(n for t in signals.threads for n in t.pending)),
        fields=_fields((signals.pid,), state="pending" if pending else "quiet"),
        pids=(signals.pid,),
    )


# --- events ---------------------------------------------------------------------------------------------------

EVENT_COLUMNS = (
    Column("time", "TIME"),
    Column("mechanism", "MECHANISM"),
    Column("event", "EVENT"),
    Column("object", "OBJECT"),
    Column("pid", "PID"),
    Column("comm", "COMM"),
    Column("source", "SOURCE"),
    Column("detail", "DETAIL"),
)

EVENT_STYLES: dict[str, str] = {
    # event name → Palette field
    "created": "good",
    "attached": "good",
    "opened": "good",
    "orphaned": "warn",
    "unlinked-while-held": "warn",
    "no-reader": "bad",
    "full": "bad",
    "pending": "warn",
    "blocked": "warn",
    "destroyed": "muted",
}


def clock_text(epoch: float) -> str:
    """Local wall-clock time with milliseconds; the tests pin TZ for their snapshots."""
    import time

    return time.strftime("%H:%M:%S", time.localtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}"


def event_row(event: Event, key: str, sequence: int, ctx: Context) -> Row:
    pids = (event.pid,) if event.pid is not None else ()
    style_name = EVENT_STYLES.get(event.event)
    style: str = getattr(ctx.palette, style_name) if style_name else ""
    return Row(
        key=key,
        cells=(
            # Newest first by time, ties broken by arrival order.
            Cell(clock_text(event.time), (0, event.time, sequence)),
            text_cell(event.mechanism),
            text_cell(event.event, style),
            _name_cell(ctx, event.object, pids),
            number_cell(event.pid, None if event.pid is not None else "-"),
            text_cell(event.comm or "-"),
            text_cell(event.source),
            text_cell(event.detail or ""),
        ),
        record=event,
        search=_search(ctx, pids, event.mechanism, event.event, event.object, event.comm, event.detail),
        fields=_fields(pids, mechanism=event.mechanism, event=event.event, source=event.source),
        pids=tuple(pid for pid in pids if pid in ctx.processes),
    )


RowSource = Callable[[Context, RowCache], Iterable[Row]]


def record_name(record: object) -> str:
    """What a person calls a record (raw; callers make it printable)."""
    if isinstance(record, ShmSegment | MessageQueue):
        return record.name
    if isinstance(record, Pipe):
        return record.path or f"pipe:[{record.inode}]"
    if isinstance(record, ProcessSignals):
        return f"{record.pid} {record.comm}"
    if isinstance(record, SysvShm | SysvMsg | SysvSem):
        return sysv_name(record.key, record.id)
    if isinstance(record, Event):
        return record.object
    return repr(record)
