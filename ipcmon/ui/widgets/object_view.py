"""One mechanism's view: notes explaining what cannot be seen, a filter, the object table and its detail pane."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from ipcmon.model import Snapshot
from ipcmon.ui.describe import describe_record
from ipcmon.ui.rows import Column, Context, Row
from ipcmon.ui.widgets.tables import ObjectTable

if TYPE_CHECKING:
    from ipcmon.ui.app import IpcmonApp


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """What a view shows: its table's columns and rows, and which notes and kinds concern it."""

    id: str
    title: str
    columns: tuple[Column, ...]
    rows: Callable[[Context], Iterable[Row]]
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

    def show(self, text: Text) -> None:
        self.query_one(".detail-body", Static).update(text)


class ObjectView(Vertical):
    """Bound to the app's snapshot; syncs its table when it is the visible view (hidden ones catch up later)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)

    def __init__(self, spec: ViewSpec) -> None:
        super().__init__(id=f"view-{spec.id}", classes="object-view")
        self.spec = spec
        self._stale = True

    @property
    def dashboard(self) -> IpcmonApp:
        return cast("IpcmonApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static("", classes="notes")
        yield Input(placeholder=self.spec.filter_help, classes="filter")
        yield ObjectTable(
            self.spec.columns,
            sort_column=self.spec.sort_column,
            sort_reverse=self.spec.sort_reverse,
            follow_top=self.spec.follow_top,
        )
        yield DetailPane(classes="detail")

    @property
    def table(self) -> ObjectTable:
        return self.query_one(ObjectTable)

    @property
    def active(self) -> bool:
        return self.dashboard.active_view == self.spec.id

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
        ctx = self.dashboard.context
        self._show_notes(snapshot)
        table = self.table
        table.sync(self.spec.rows(ctx))
        table.set_class(table.row_count == 0, "-empty")
        self.show_detail()

    def _show_notes(self, snapshot: Snapshot) -> None:
        notes = [note for note in snapshot.notes if any(word in note for word in self.spec.note_words)]
        if not any(kind in snapshot.kinds for kind in self.spec.kinds):
            notes.append(f"Not scanned: ipcmon was started with --kind {','.join(snapshot.kinds)}.")
        static = self.query_one(".notes", Static)
        static.update(Text("\n".join(notes)))
        static.display = bool(notes)

    def show_detail(self) -> None:
        row = self.table.current_row
        pane = self.query_one(DetailPane)
        if row is None:
            empty = self.spec.empty if not self.table.filter_text else f"no row matches {self.table.filter_text!r}"
            pane.show(Text(empty))
            return
        pane.show(describe_record(row.record, self.dashboard.context, self.dashboard.history_for(row.key)))

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self.table.current_row
        if row is not None:
            self.dashboard.open_row(row)

    # --- filter -----------------------------------------------------------------------------------------------

    def open_filter(self) -> None:
        box = self.query_one(".filter", Input)
        box.add_class("-open")
        # Focus now, not after a refresh: the keys typed right after "/" belong to the filter (an "e" reaching
        # the table would export the snapshot).
        self.screen.set_focus(box)

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self.show_detail()

    @on(Input.Submitted, ".filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.remove_class("-open")
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one(".filter", Input)
        if box.value or box.has_class("-open"):
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
