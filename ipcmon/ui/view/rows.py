"""Table rows for the dashboard's views: each record of a Snapshot as inert, sortable, filterable cells.

Pure functions of a snapshot (no widgets), so the cell text and the filter can be tested without a terminal.
Each view is a table with one entry per mechanism (SHM_ROWS, MQUEUE_ROWS); cells read as the text report's do
because both take them from ipcmon.text, and states from ipcmon.health. Every cell goes through
:func:`ipcmon.safe.printable` and becomes a ``rich.text.Text``: a DataTable parses ``str`` cells as markup,
and a segment may be called ``[@click=app.quit]x``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ipcmon import health
from ipcmon.model import (
    Event,
    MessageQueue,
    Pipe,
    Process,
    ProcessSignals,
    SharedRegion,
    ShmSegment,
    Snapshot,
    SysvMsg,
    SysvSem,
    SysvShm,
    pipe_ref,
)
from ipcmon.safe import printable, shorten
from ipcmon.text import (
    blocked_cell,
    ends_cell,
    fill_cell,
    flags_cell,
    holders_cell,
    human_bytes,
    mode_text,
    notify_cell,
    owner_cell,
    path_cell,
    pending_cell,
    queue_name_cell,
    shm_state_cell,
    signal_names,
    waiting_text,
)
from ipcmon.ui.view.table import (
    MAX_CELL,
    Cell,
    Column,
    Context,
    Palette,
    Row,
    RowCache,
    fields_of,
    holder_pids,
    name_cell,
    number_cell,
    search_text,
    state_style,
    text_cell,
    unique_pids,
)
from ipcmon.who import Sent, sent_cell_text, shown_in_cell

MASK_WIDTH = 22
"""Widest signal mask shown in the Signals table."""


# --- shared memory: POSIX shm and semaphores, memfd and anonymous regions, SysV shm and semaphores ---------

SHM_COLUMNS = (
    Column("name", "NAME", cut_middle=True),  # /ipcmon-demo-9281-leak-a and -leak-b differ at their end
    Column("kind", "KIND"),
    Column("size", "SIZE"),
    Column("alloc", "ALLOC"),
    Column("mode", "MODE", keep=9),  # rw-rw-r--: cut, a mode says nothing
    Column("owner", "OWNER"),
    Column("state", "STATE", keep=9),  # orphaned?, "attached…" of "attached, nattch 2"
    Column("holders", "HOLDERS"),  # cut at its end: the first holders are the ones to see
)


def shm_state_style(state: str, palette: Palette) -> str:
    """A shared-memory state's colour: its hazard level, else good."""
    return state_style(state, palette, palette.good)


def _shm_row(segment: ShmSegment, ctx: Context) -> Row:
    pids = holder_pids(segment.holders)
    return Row(
        key=segment.object_key,
        cells=(
            name_cell(ctx, segment.label, pids),
            text_cell(segment.kind),
            number_cell(segment.size, human_bytes(segment.size)),
            number_cell(segment.allocated, human_bytes(segment.allocated)),
            text_cell(mode_text(segment.mode)),
            text_cell(owner_cell(segment.owner, segment.uid)),
            text_cell(shm_state_cell(segment), shm_state_style(segment.state, ctx.palette)),
            text_cell(holders_cell(segment.holders)),
        ),
        record=segment,
        search=search_text(ctx, pids, segment.name, segment.kind, segment.state),
        fields=fields_of(pids, kind=segment.kind, state=segment.state),
        pids=pids,
        path=segment.path,
        place=segment.place,
    )


def _region_row(region: SharedRegion, ctx: Context) -> Row:
    """A memfd or anonymous region: no path, mode or owner of its own (it lives on the kernel's shm mount)."""
    pids = holder_pids(region.holders)
    state = health.region_state(region)
    return Row(
        key=region.object_key,
        cells=(
            name_cell(ctx, region.label, pids),
            text_cell(region.kind),
            number_cell(region.size, human_bytes(region.size)),
            number_cell(region.allocated, human_bytes(region.allocated)),
            text_cell("-"),
            text_cell("-"),
            text_cell(state, shm_state_style(state, ctx.palette)),
            text_cell(holders_cell(region.holders)),
        ),
        record=region,
        search=search_text(ctx, pids, region.name, region.kind, state),
        fields=fields_of(pids, kind=region.kind, state=state),
        pids=pids,
    )


def _sysv_shm_row(shm: SysvShm, ctx: Context) -> Row:
    state = health.sysv_shm_state(shm)
    pids = holder_pids(shm.holders)
    return Row(
        key=shm.object_key,
        cells=(
            name_cell(ctx, shm.label, (*pids, shm.cpid)),  # its creator too: a demo's segment before shmat
            text_cell("sysv-shm"),
            number_cell(shm.size, human_bytes(shm.size)),
            number_cell(shm.rss, human_bytes(shm.rss)),
            text_cell(mode_text(shm.mode)),
            text_cell(owner_cell(shm.owner, shm.uid)),
            text_cell(f"{state}, nattch {shm.nattch}", shm_state_style(state, ctx.palette)),
            text_cell(holders_cell(shm.holders)),
        ),
        record=shm,
        search=search_text(ctx, unique_pids((*pids, shm.cpid, shm.lpid)), shm.label, "sysv-shm", state),
        fields=fields_of(unique_pids((*pids, shm.cpid, shm.lpid)), kind="sysv-shm", state=state),
        pids=pids or unique_pids(pid for pid in (shm.cpid, shm.lpid) if pid in ctx.processes),
        place=shm.place,
    )


def _sysv_sem_row(sem: SysvSem, ctx: Context) -> Row:
    return Row(
        key=sem.object_key,
        cells=(
            text_cell(sem.label),
            text_cell("sysv-sem"),
            number_cell(sem.nsems, f"{sem.nsems} sems"),
            number_cell(None, "-"),
            text_cell(mode_text(sem.mode)),
            text_cell(owner_cell(sem.owner, sem.uid)),
            text_cell("-"),
            text_cell("-"),
        ),
        record=sem,
        search=search_text(ctx, (), sem.label, "sysv-sem"),
        fields=fields_of((), kind="sysv-sem"),
        place=sem.place,
    )


RowBuilder = tuple[Callable[[Snapshot], Iterable[Any]], Callable[[Any, Context], Row]]
"""One mechanism of a view: where its records are in a Snapshot, and the row of one record."""
ViewRows = Callable[[Context, RowCache], Iterator[Row]]


def rows_of(builders: tuple[RowBuilder, ...]) -> ViewRows:
    """A view's rows: each mechanism's records in turn, each row reused from the cache while its record is."""

    def rows(ctx: Context, cache: RowCache) -> Iterator[Row]:
        for records, build in builders:
            yield from cache.rows(ctx, records(ctx.snapshot), build)

    return rows

"""One mechanism's entry in a view: where its records are in a snapshot, and how one becomes a row."""

SHM_ROWS: tuple[RowBuilder, ...] = (
    (lambda snapshot: snapshot.shm, _shm_row),
    (lambda snapshot: snapshot.regions, _region_row),
    (lambda snapshot: snapshot.sysv.shm, _sysv_shm_row),
    (lambda snapshot: snapshot.sysv.sem, _sysv_sem_row),
)
"""The Shared memory view's mechanisms, in row order."""

shm_rows = rows_of(SHM_ROWS)


# --- message queues: POSIX and SysV ----------------------------------------------------------------------

MQUEUE_COLUMNS = (
    Column("name", "NAME", cut_middle=True),
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


def _mqueue_row(queue: MessageQueue, ctx: Context) -> Row:
    palette = ctx.palette
    pids = holder_pids(queue.holders)
    state = health.queue_state(queue)
    name_style = "" if state == "full" else state_style(state, palette)  # a full queue is red in its FILL
    fill = queue.fill
    return Row(
        key=queue.object_key,
        cells=(
            name_cell(ctx, queue_name_cell(queue), pids, name_style),
            text_cell("mqueue"),
            number_cell(queue.messages),
            number_cell(queue.max_messages),
            number_cell(queue.message_size),
            number_cell(queue.qsize_bytes, human_bytes(queue.qsize_bytes)),
            number_cell(fill, fill_cell(fill), palette.bad if state == "full" else ""),
            text_cell(notify_cell(queue)),
            text_cell(owner_cell(queue.owner, queue.uid)),
            text_cell(holders_cell(queue.holders)),
        ),
        record=queue,
        search=search_text(ctx, pids, queue.name, "mqueue", state),
        fields=fields_of(pids, kind="mqueue", state=state),
        pids=pids,
        path=queue.path or queue.name,
        place=queue.place,
    )


def _sysv_msg_row(msg: SysvMsg, ctx: Context) -> Row:
    pids = unique_pids(pid for pid in (msg.lspid, msg.lrpid) if pid)
    return Row(
        key=msg.object_key,
        cells=(
            text_cell(msg.label),
            text_cell("sysv-msg"),
            number_cell(msg.qnum),
            number_cell(None, "-"),
            number_cell(None, "-"),
            number_cell(msg.qbytes, human_bytes(msg.qbytes)),
            number_cell(None, "-"),
            text_cell("-"),
            text_cell(owner_cell(msg.owner, msg.uid)),
            text_cell(f"last send {msg.lspid or '-'}, last receive {msg.lrpid or '-'}"),
        ),
        record=msg,
        search=search_text(ctx, pids, msg.label, "sysv-msg"),
        fields=fields_of(pids, kind="sysv-msg"),
        pids=tuple(pid for pid in pids if pid in ctx.processes),
        place=msg.place,
    )


MQUEUE_ROWS: tuple[RowBuilder, ...] = (
    (lambda snapshot: snapshot.mqueues, _mqueue_row),
    (lambda snapshot: snapshot.sysv.msg, _sysv_msg_row),
)
"""The Message queues view's mechanisms, in row order."""

mqueue_rows = rows_of(MQUEUE_ROWS)


# --- pipes and FIFOs --------------------------------------------------------------------------------------

PIPE_COLUMNS = (
    Column("kind", "KIND"),
    Column("inode", "INODE"),
    Column("path", "PATH", cut_middle=True),  # a FIFO's file name is at its end
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
    pids = holder_pids((*pipe.writers, *pipe.readers))
    levels = {health.PIPE_HAZARDS.get(flag) for flag in pipe.flags}
    flag_style = palette.bad if "bad" in levels else palette.warn if pipe.flags else ""
    kind_cell = text_cell(pipe.kind)
    if ctx.is_demo(pipe.path, pids):
        kind_cell = name_cell(ctx, pipe.kind, pids)
    return Row(
        key=pipe.object_key,
        cells=(
            kind_cell,
            number_cell(pipe.inode),
            text_cell(path_cell(pipe.path)),
            number_cell(pipe.buffered, human_bytes(pipe.buffered), palette.bad if "full" in pipe.flags else ""),
            number_cell(pipe.capacity, human_bytes(pipe.capacity)),
            text_cell(flags_cell(pipe.flags), flag_style),
            text_cell(ends_cell(pipe.writers)),
            text_cell(ends_cell(pipe.readers)),
        ),
        record=pipe,
        search=search_text(ctx, pids, pipe.path, pipe.kind, pipe_ref("pipe", pipe.inode, None), *pipe.flags),
        fields={**fields_of(pids, kind=pipe.kind), "flag": frozenset(pipe.flags)},
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
SIGNAL_OPTIONAL_COLUMNS = (Column("sent", "LAST SENT", 40, keep=20),)
"""Built after the others, shown after PENDING (ViewSpec.optional_at) while the dashboard knows who sends signals
(an attribution source runs, or a journal exists: issue 16): the newest signal sent to the process and its sender, a
blocked or ignored one first and marked. It keeps 20 cells, the signal and most of its sender, when the table is
narrow (review: at 120 columns it was cut to '▲ blocked SIGU…')."""


def signal_rows(ctx: Context, cache: RowCache) -> Iterator[Row]:
    # The WAITING column comes from the process record and its Stuck state, not the signals record.
    states = stuck_states(ctx.snapshot)
    who = ctx.who
    yield from cache.rows(ctx, ctx.snapshot.signals, _signal_row,
                          extra=lambda s: (ctx.processes.get(s.pid), states.get(s.pid),
                                           who.sent.to(s.pid) if who is not None else None))


_STATES: list[Any] = [None, {}]
"""The last snapshot :func:`stuck_states` read, and what it found."""


def stuck_states(snapshot: Snapshot) -> dict[int, str]:
    """Each process's Stuck.state by pid (``deadlocked``, ``blocked``, ``waiting``), worked out once per snapshot
    rather than once per row."""
    if _STATES[0] is not snapshot:
        _STATES[:] = [snapshot, {entry.pid: entry.state for entry in snapshot.stuck}]
    states: dict[int, str] = _STATES[1]
    return states


def _waiting_cell(process: Process | None, state: str | None, ctx: Context) -> Cell:
    """What the process waits on; a deadlocked or blocked one is marked as the serious hazard it is (the ✖ glyph,
    readable without colour, and the colour; the Overview and the process view say which)."""
    if state in ("deadlocked", "blocked"):
        return text_cell(f"{health.LEVEL_GLYPHS['bad']} {waiting_text(process)}", ctx.palette.bad)
    return text_cell(waiting_text(process))


def _sent_cell(sents: tuple[Sent, ...], palette: Palette) -> Cell:
    """LAST SENT: the newest signal sent, or the newest its target blocks or ignores (marked by glyph and word, and
    coloured); sorted marked first, then by time."""
    shown = shown_in_cell(sents)
    if shown is None:
        return Cell("-", (1, 0, 0.0))
    sent, more = shown
    return Cell(shorten(printable(sent_cell_text(sent, more)), MAX_CELL), (0, 1 if sent.mark else 0, sent.time),
                palette.warn if sent.mark else "")


def _signal_row(signals: ProcessSignals, ctx: Context) -> Row:
    palette = ctx.palette
    pending = health.pending_count(signals)
    process = ctx.processes.get(signals.pid)
    comm_cell = name_cell(ctx, signals.comm, (signals.pid,)) if ctx.is_demo(None, (signals.pid,)) else None
    sents = ctx.who.sent.to(signals.pid) if ctx.who is not None else None
    optional = (_sent_cell(sents, palette),) if sents is not None else ()
    fields = fields_of((signals.pid,), state="pending" if pending else "quiet")
    if sents:
        fields["sent"] = frozenset({sent.mark or "delivered" for sent in sents} | {s.signal.lower() for s in sents})
    return Row(
        key=signals.object_key,
        cells=(
            number_cell(signals.pid),
            comm_cell or text_cell(signals.comm),
            # Sorted by how many are pending, so "pending first" is one key press.
            number_cell(pending, pending_cell(signals), palette.bad if pending else ""),
            # Masks can list 30 signals: cut them so every column fits (the detail pane has them all).
            # What other threads alone block too, as the report says it: "- (thread: SIGUSR2)".
            number_cell(len(signals.blocked), shorten(blocked_cell(signals), MASK_WIDTH),
                        palette.warn if signals.blocked or any(t.blocked for t in signals.threads) else ""),
            number_cell(len(signals.ignored), shorten(signal_names(signals.ignored), MASK_WIDTH)),
            number_cell(len(signals.caught), shorten(signal_names(signals.caught), MASK_WIDTH)),
            number_cell(len(signals.threads)),
            _waiting_cell(process, stuck_states(ctx.snapshot).get(signals.pid), ctx),
            *optional,
        ),
        record=signals,
        search=search_text(ctx, (signals.pid,), *signals.pending, *(n for t in signals.threads for n in t.pending),
                           *(sent.sender.comm for sent in sents or ())),
        fields=fields,
        pids=(signals.pid,),
    )


RowSource = Callable[[Context, RowCache], Iterable[Row]]


def record_name(record: object) -> str:
    """What a person calls a record (raw; callers make it printable): its label, an event's object."""
    if isinstance(record, Event):
        return record.object
    label = getattr(record, "label", None)
    return label if isinstance(label, str) else repr(record)
