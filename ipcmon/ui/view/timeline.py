"""Rows of the events timeline (view 6): one lifecycle event per row, newest first, coloured by event name."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import get_args

from ipcmon.live.monitor import MECHANISMS_BY_KIND
from ipcmon.model import Event, EventName
from ipcmon.text import clock_text, place_suffix
from ipcmon.ui.view.table import Cell, Column, Context, Row, fields_of, name_cell, number_cell, search_text, text_cell

EVENT_NAME_WIDTH = max(map(len, get_args(EventName)))
"""The longest event name (unlinked-while-held): what EVENT keeps while the others have room to give (issue 12: at 80
columns it read writer-clo…, mask-unblo… while OBJECT and DETAIL had cells to spare)."""

EVENT_COLUMNS = (
    Column("time", "TIME", keep=12),  # 08:25:51.975
    Column("mechanism", "MECHANISM"),
    Column("event", "EVENT", keep=EVENT_NAME_WIDTH),  # created, mask-unblocked, notify-registered…
    Column("object", "OBJECT", keep=8, cut_middle=True),
    Column("pid", "PID", keep=5),
    Column("comm", "COMM"),
    Column("source", "SOURCE", hide_below=100),  # in the detail pane too: its room goes to OBJECT and DETAIL
    Column("detail", "DETAIL"),
)
"""The Events view's columns. The timeline keeps a column's label whole, and ``keep`` cells when it holds that
many while those fit (the largest give way first, down to the labels): every header is on screen at 80 columns
(issue 12)."""

EVENT_STYLES: dict[str, str] = {
    # event name → Palette field
    "created": "good",
    "attached": "good",
    "opened": "good",
    "orphaned": "warn",
    "unlinked-while-held": "warn",
    "full": "bad",
    "pending": "warn",
    "mask-blocked": "warn",
    "waiting": "warn",
    "deadlock": "bad",
    "deadlock-ended": "good",
    "budget": "warn",
    "destroyed": "muted",
}


EVENT_KINDS: dict[str, frozenset[str]] = {
    mechanism: frozenset(kind for kind, mechanisms in MECHANISMS_BY_KIND.items() if mechanism in mechanisms)
    for mechanisms in MECHANISMS_BY_KIND.values() for mechanism in mechanisms
}
"""Each event mechanism's ``--kind`` (live.monitor.MECHANISMS_BY_KIND): the filter's ``kind:signal`` keeps what
``--kind signal`` would, ``sent`` events included."""
NO_KINDS: frozenset[str] = frozenset()


def event_process(event: Event) -> tuple[int | None, str | None]:
    """The PID and COMM cells' process: the one the event is about (an attach's holder, a pending signal's
    target), the sender of a ``sent`` signal (its target is the OBJECT), else the one that did it when an
    attribution source named it (a creation's, a removal's: ``Event.actor``). The kernel, as the sender of a
    signal it raised itself (a timer's SIGALRM, a SIGPIPE), is no pid: ``kernel`` (the task it ran in, the idle
    task 0 for a timer, is in the detail)."""
    if event.actor is not None and event.actor.kernel:
        return None, "kernel"
    if event.pid is not None or event.actor is None:
        return event.pid, event.comm
    return event.actor.pid, event.actor.comm


def _target(event: Event) -> int | None:
    """The pid a ``sent`` signal went to (its key is ``signal:PID``); None for any other event."""
    if event.event != "sent" or not event.key.startswith("signal:"):
        return None
    number = event.key.removeprefix("signal:")
    return int(number) if number.isdigit() else None


def event_probe(event: Event, key: str, ctx: Context) -> Row:
    """An event's row without its cells: what the filter matches (search text, fields) and Enter acts on.

    Built for every event as it arrives (the filter goes over them all); the cells, most of a row's cost, are
    built by :func:`event_row` only for the lines drawn (issue 12).
    """
    pid, comm = event_process(event)
    pids: tuple[int, ...] = (pid,) if pid is not None else ()
    target = _target(event)
    if target is not None and target not in pids:
        pids += (target,)  # pid:N finds the signals sent to N as well as those N sent (as watch --pid keeps them)
    return Row(
        key=key,
        cells=(),
        record=event,
        search=search_text(ctx, pids, event.mechanism, event.event, event.object, comm, event.detail),
        fields=_event_fields(pids, event.mechanism, event.event, event.source),
        pids=tuple(pid for pid in pids if pid in ctx.processes),
        place=event.place,
    )


@functools.lru_cache(maxsize=4096)
def _event_fields(pids: tuple[int, ...], mechanism: str, event: str, source: str) -> Mapping[str, frozenset[str]]:
    """An event row's filter fields, shared by every event with the same ones (read-only, as Row.fields is): a full
    history held 10,000 such dicts, each one more object for every full garbage collection to walk (issue 12)."""
    return {**fields_of(pids, mechanism=mechanism, event=event, source=source),
            "kind": EVENT_KINDS.get(mechanism, NO_KINDS)}


def event_row(event: Event, key: str, sequence: int, ctx: Context) -> Row:
    pid, comm = event_process(event)
    pids = (pid,) if pid is not None else ()
    style_name = EVENT_STYLES.get(event.event)
    style: str = getattr(ctx.palette, style_name) if style_name else ""
    probe = event_probe(event, key, ctx)
    return Row(
        key=key,
        cells=(
            # Newest first by time, ties broken by arrival order.
            Cell(clock_text(event.time), (0, event.time, sequence)),
            text_cell(event.mechanism),
            text_cell(event.event, style),
            name_cell(ctx, event.object + place_suffix(event.place), pids),  # ``/seg [web-1]`` off the host
            number_cell(pid, None if pid is not None else "-"),
            text_cell(comm or "-"),
            text_cell(event.source),
            text_cell(event.detail or ""),
        ),
        record=event,
        search=probe.search,
        fields=probe.fields,
        pids=probe.pids,
        place=probe.place,
    )
