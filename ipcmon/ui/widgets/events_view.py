"""The Events view: the lifecycle timeline, newest first, filterable by mechanism, event and pid."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ipcmon.model import Event
from ipcmon.ui.view.table import Context, Row, RowCache
from ipcmon.ui.view.timeline import EVENT_COLUMNS, event_row
from ipcmon.ui.widgets.object_view import ObjectView, ViewSpec


class EventKeys:
    """Stable row keys for events (they carry no id): assigned on first sight, dropped when they age out."""

    def __init__(self) -> None:
        self._keys: dict[int, int] = {}
        self._next = 0

    def rows(self, events: Sequence[Event], ctx: Context, cache: RowCache) -> Iterator[Row]:
        keys: dict[int, int] = {}
        # The log is newest first; number the new ones oldest first so arrival order breaks time ties.
        for event in reversed(events):
            ident = id(event)
            number = self._keys.get(ident)
            if number is None:
                number = self._next
                self._next += 1
            keys[ident] = number
        self._keys = keys
        # Events never change: each row is built once (again only when colours or demo membership change).
        yield from cache.rows(
            ctx, events, lambda event, ctx: event_row(event, f"event:{keys[id(event)]}", keys[id(event)], ctx),
            extra=lambda event: keys[id(event)], key_of=lambda event: f"event:{keys[id(event)]}",
        )


EVENTS_SPEC = ViewSpec(
    id="events",
    title="Events",
    columns=EVENT_COLUMNS,
    rows=None,  # EventsView.rows: from its bound event log
    kinds=("shm", "memfd", "mqueue", "pipe", "signal", "sysv"),
    sort_column="time",
    sort_reverse=True,
    follow_top=True,
    empty="no events yet: they appear as objects are created, attached, detached and destroyed",
    filter_help="filter: mechanism:shm event:created pid:123 source:inotify, or any words",
)


class EventsView(ObjectView):
    """The Events view: an object table over the bound event log, newest first, each event a row."""

    def __init__(self) -> None:
        super().__init__(EVENTS_SPEC)
        self.keys = EventKeys()

    def rows(self, ctx: Context) -> Iterable[Row]:
        return self.keys.rows(self.events, ctx, self.cache)
