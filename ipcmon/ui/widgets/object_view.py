"""One mechanism's view: notes explaining what cannot be seen, a filter, the object table and its detail pane."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Span, Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.events import Key
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from ipcmon.model import Event, Snapshot
from ipcmon.ui.messages import OpenRow
from ipcmon.ui.state import empty_context
from ipcmon.ui.view.describe import describe_record
from ipcmon.ui.view.rows import RowSource
from ipcmon.ui.view.table import Column, Context, Row, RowCache
from ipcmon.ui.widgets.tables import ObjectTable
from ipcmon.ui.widgets.timeline_table import TimelineTable

FILTER_DELAY = 0.15
"""Seconds of no typing before the filter is applied."""
HISTORY_SHOWN = 50
"""Events of one object shown in its detail pane (the newest)."""


class FilterInput(Input):
    """The filter box. Enter and Escape hand the keyboard back at once (to ``hand_back_to``, the table).

    The App forwards each key into the queue of the widget focused when the key is read, and a binding such as
    Enter's is acted on only once the key has bubbled back up to the App, so a view number typed right behind
    Enter or Escape was typed into the filter before the focus moved. Here Enter and Escape move the focus as
    the box reads them, and a key that reaches the box after that is handed to the App as if typed again.
    """

    class Cleared(Message):
        """Escape in the box: clear the filter."""

    hand_back_to: Widget | None = None

    async def _on_key(self, event: Key) -> None:
        if self.screen.focused is not self or event.key in ("enter", "escape"):
            event.stop()
            event.prevent_default()
        if self.screen.focused is not self:
            self.app.post_message(Key(event.key, event.character))
        elif event.key == "enter":
            self._hand_back()
            await self.action_submit()
        elif event.key == "escape":
            self._hand_back()
            self.post_message(self.Cleared())
        else:
            await super()._on_key(event)

    def _hand_back(self) -> None:
        if self.hand_back_to is not None:
            self.screen.set_focus(self.hand_back_to)


def object_history(events: Sequence[Event], key: str) -> list[Event]:
    """One object's events, oldest first (the last HISTORY_SHOWN), from a log that is newest first."""
    return [event for event in reversed(events) if event.key == key][-HISTORY_SHOWN:]


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """What a view shows: its table's columns and rows, and which notes and kinds concern it."""

    id: str
    title: str
    columns: tuple[Column, ...]
    rows: RowSource | None
    """The table's rows from the context; None when the view builds them itself (the Events view)."""
    kinds: tuple[str, ...]
    """Snapshot kinds this view needs; a note says so when --kind left them all out."""
    note_words: tuple[str, ...] = ()
    """Snapshot notes mentioning any of these words are shown above the table."""
    sort_column: str | None = None
    sort_reverse: bool = False
    follow_top: bool = False
    empty: str = "nothing to show"
    filter_help: str = "filter: words match names, pids, commands; pid:123 kind:shm state:orphaned"


class DetailPane(VerticalScroll):
    """Everything about the selected row, rebuilt when the selection or the snapshot changes."""

    def compose(self) -> ComposeResult:
        yield Static(Text("select a row to see its holders, limits and history"), classes="detail-body")

    _shown: tuple[str, list[Span]] | None = None

    def show(self, text: Text) -> None:
        # Most refreshes change nothing here: skip the repaint then (Text's == ignores styles, so compare spans).
        shown = (text.plain, list(text.spans))
        if shown != self._shown:
            self._shown = shown
            self.query_one(".detail-body", Static).update(text)


class ObjectView(Vertical):
    """Bound to the app's snapshot; syncs its table when it is the visible view (hidden ones catch up later).

    ``context``, ``events`` and ``active_view`` are bound too, and set before ``snapshot``: a new snapshot
    finds them current. Enter on a row posts :class:`~ipcmon.ui.messages.OpenRow`.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)
    context: reactive[Context] = reactive(empty_context, always_update=True)
    events: reactive[Sequence[Event]] = reactive(tuple, always_update=True)
    """The event log, newest first (for the selected object's history)."""
    active_view: reactive[str] = reactive("overview")

    def __init__(self, spec: ViewSpec) -> None:
        super().__init__(id=f"view-{spec.id}", classes="object-view")
        self.spec = spec
        self._stale = True
        self.cache = RowCache()
        self._filter_timer: Timer | None = None
        self._notes: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", classes="notes")
        box = FilterInput(placeholder=self.spec.filter_help, classes="filter")
        box.hand_back_to = table = self.make_table()
        table.add_class("rows")
        yield box
        yield table
        yield DetailPane(classes="detail")

    def make_table(self) -> ObjectTable | TimelineTable:
        """The view's table (the Events view makes a TimelineTable)."""
        return ObjectTable(
            self.spec.columns,
            sort_column=self.spec.sort_column,
            sort_reverse=self.spec.sort_reverse,
            follow_top=self.spec.follow_top,
        )

    @property
    def table(self) -> ObjectTable | TimelineTable:
        table = self.query_one(".rows")
        assert isinstance(table, ObjectTable | TimelineTable)
        return table

    @property
    def active(self) -> bool:
        return self.active_view == self.spec.id

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        self._stale = True
        if snapshot is not None and self.active:
            self.refresh_rows()

    def refresh_rows(self, *, force: bool = False) -> None:
        """Bring the table and the detail pane up to the current snapshot (now, if stale or forced)."""
        snapshot = self.snapshot
        if snapshot is None or not (self._stale or force) or not self.is_mounted:
            return
        self._stale = False
        self._show_notes(snapshot)
        table = self.table
        assert isinstance(table, ObjectTable)  # the Events view refreshes its timeline itself
        rows = list(self.rows(self.context))
        self.cache.forget(row.key for row in rows)
        table.sync(rows)
        table.set_class(table.row_count == 0, "-empty")
        self.show_detail()

    def rows(self, ctx: Context) -> Iterable[Row]:
        """This view's rows for a context (the spec's row builder, with this view's cache)."""
        return self.spec.rows(ctx, self.cache) if self.spec.rows is not None else ()

    def _show_notes(self, snapshot: Snapshot) -> None:
        notes = [note for note in snapshot.notes if any(word in note for word in self.spec.note_words)]
        if not any(kind in snapshot.kinds for kind in self.spec.kinds):
            notes.append(f"Not scanned: ipcmon was started with --kind {','.join(snapshot.kinds)}.")
        text = "\n".join(notes)
        if text != self._notes:
            self._notes = text
            static = self.query_one(".notes", Static)
            static.update(Text(text))
            static.display = bool(notes)

    def show_detail(self) -> None:
        row = self.table.current_row
        pane = self.query_one(DetailPane)
        if row is None:
            empty = self.spec.empty if not self.table.filter_text else f"no row matches {self.table.filter_text!r}"
            pane.show(Text(empty))
            return
        # An event's row key is the event's own; its history is that of the object it is about.
        key = row.record.key if isinstance(row.record, Event) else row.key
        pane.show(describe_record(row.record, self.context, object_history(self.events, key)))

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self.table.current_row
        if row is not None:
            self.post_message(OpenRow(row))

    # --- filter -----------------------------------------------------------------------------------------------

    def open_filter(self) -> None:
        box = self.query_one(".filter", Input)
        box.add_class("-open")
        # Focus now, not after a refresh: the keys typed right after "/" belong to the filter (an "e" reaching
        # the table would export the snapshot).
        self.screen.set_focus(box)

    @on(FilterInput.Cleared)
    def _filter_cleared(self, event: FilterInput.Cleared) -> None:
        event.stop()
        self.action_clear_filter()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # Filter once typing pauses: each pass goes over every row, and a busy machine has thousands.
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, self._apply_filter)

    def _apply_filter(self) -> None:
        self._filter_timer = None
        self.table.set_filter(self.query_one(".filter", Input).value)
        self.show_detail()

    @on(Input.Submitted, ".filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._apply_filter()
        if not event.value.strip():
            event.input.remove_class("-open")
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one(".filter", Input)
        if box.value or box.has_class("-open"):
            if self._filter_timer is not None:
                self._filter_timer.stop()
                self._filter_timer = None
            with box.prevent(Input.Changed):
                box.value = ""
            box.remove_class("-open")
            self.table.set_filter("")
            self.table.focus()
            self.show_detail()

    def select_key(self, key: str) -> bool:
        self.refresh_rows(force=True)
        found = self.table.select_key(key)
        if found:
            box = self.query_one(".filter", Input)
            if not self.table.filter_text and box.value:
                with box.prevent(Input.Changed):
                    box.value = ""
                box.remove_class("-open")
            self.show_detail()
        return found
