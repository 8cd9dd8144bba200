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
from textual.css.scalar import Scalar, Unit
from textual.events import Click, Key, Resize
from textual.keys import _character_to_key  # the key names Textual gives characters (tests check it still does)
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from ipcmon.model import Event, Snapshot
from ipcmon.safe import counted, printable
from ipcmon.ui.messages import OpenRow
from ipcmon.ui.state import empty_context
from ipcmon.ui.view.describe import describe_record, hanging
from ipcmon.ui.view.rows import RowSource
from ipcmon.ui.view.table import Column, Context, Row, RowCache
from ipcmon.ui.widgets.tables import ObjectTable
from ipcmon.ui.widgets.timeline_table import TimelineTable

FILTER_DELAY = 0.15
"""Seconds of no typing before the filter is applied."""
HISTORY_SHOWN = 50
"""Events of one object shown in its detail pane (the newest)."""
HIDDEN_NOTE = "could not be fully read"
"""Words of the scan's note on processes it could not fully read (ipcmon/collect/scan.py): Notes shows its own
one-line version instead, naming the pids."""
PIDS_NAMED = 4
"""Hidden processes named in the note; more are counted."""
DISMISS_KEY = "x"
TABLE_SHARE = 0.5
"""Of a view's height, what the table keeps when it and the detail pane both want more than there is."""


def hidden_pids(snapshot: Snapshot) -> tuple[int, ...]:
    """The pids of the processes whose descriptors or mappings could not be read (Process.hidden), in order.

    A process whose very stat was refused has no record: Snapshot.hidden_processes counts it too, so there may
    be more hidden processes than pids.
    """
    return tuple(process.pid for process in snapshot.processes if process.hidden)


def hidden_line(snapshot: Snapshot) -> Text:
    """The one-line note on hidden processes: how many, which pids (with their commands), the key that hides it."""
    pids = hidden_pids(snapshot)
    count = max(snapshot.hidden_processes, len(pids))
    comms = {process.pid: process.comm for process in snapshot.processes}
    unnamed = count - min(len(pids), PIDS_NAMED)
    # With no pid: its /proc/PID/stat was refused, so the scan has no record of it.
    named = "pid unknown" if not pids else "pid " + ", ".join(
        f"{pid} {printable(comms.get(pid, '?'))}" for pid in pids[:PIDS_NAMED]
    ) + (f" +{unnamed} more" if unnamed else "")
    line = Text(f"⚠ {counted(count, 'process', 'processes')} not fully readable ({named})", style="bold")
    line.append(f"  {DISMISS_KEY} or click: hide", style="reverse")
    line.append("  objects only they hold may show as orphaned; their pipe ends are missing")
    return line


class Notes(Static):
    """Notes on what the scan could not see, one line each; the hidden-process one can be dismissed.

    ``DISMISS_KEY`` (bound by the views) or a click hides the hidden-process note in every view, until a
    process the dismissed note did not name is hidden too.
    """

    def __init__(self) -> None:
        super().__init__("", classes="notes")
        self.dismissed: tuple[frozenset[int], int] | None = None
        """(pids, count) of the hidden-process note when it was dismissed."""
        self._notes: tuple[str, ...] = ()
        self._snapshot: Snapshot | None = None
        self._shown: tuple[tuple[str, ...], bool] | None = None

    def show(self, snapshot: Snapshot, notes: Sequence[str]) -> None:
        """Show these notes of the snapshot (its hidden-process note as one line)."""
        self._snapshot = snapshot
        self._notes = tuple(notes)
        self._render_notes()

    @property
    def hidden_shown(self) -> bool:
        """Whether the hidden-process note is on screen (it is in the notes, and not dismissed)."""
        snapshot = self._snapshot
        if snapshot is None or not any(HIDDEN_NOTE in note for note in self._notes):
            return False
        if self.dismissed is None:
            return True
        pids, count = self.dismissed
        return not set(hidden_pids(snapshot)) <= pids or snapshot.hidden_processes > count

    def _render_notes(self) -> None:
        if self._snapshot is None:
            return
        shown = (self._notes, self.hidden_shown)
        if shown != self._shown:
            self._shown = shown
            self.display = bool(self._notes) and (self.hidden_shown or any(HIDDEN_NOTE not in n for n in self._notes))
            self.refresh(layout=True)

    def render(self) -> Text:
        # Built at the widget's width: the hidden-process line is cut to one line, the others wrap.
        snapshot = self._snapshot
        lines = [Text(note) for note in self._notes if HIDDEN_NOTE not in note]
        if snapshot is not None and self.hidden_shown:
            line = hidden_line(snapshot)
            if self.content_region.width:
                line.truncate(self.content_region.width, overflow="ellipsis")
            lines.insert(0, line)
        return Text("\n", end="").join(lines)

    def dismiss_hidden(self) -> None:
        """Hide the hidden-process note here and in every other view."""
        snapshot = self._snapshot
        if snapshot is None or not self.hidden_shown:
            return
        dismissed = (frozenset(hidden_pids(snapshot)), snapshot.hidden_processes)
        for notes in self.screen.query(Notes):
            notes.dismissed = dismissed
            notes._render_notes()

    def on_click(self, event: Click) -> None:
        event.stop()
        self.dismiss_hidden()


ESCAPED_DIGITS: dict[str, str] = {_character_to_key(character): digit
                                  for digit, character in zip("1234567890", "¡™£¢∞§¶•ªº", strict=True)}
"""Escape then a digit, read together (typed quickly, or over ssh), by the name of the key Textual makes of them:
Textual reads ESC 1…ESC 0 as the characters macOS's Option key gives on the digit row (``\x1b2`` → ``™``), so the
digit, a view's key, was lost. The dashboard reads each as Escape then the digit (an IPC name filter has no use for
``™``)."""


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
        if self.screen.focused is not self or event.key in ("enter", "escape") or event.key in ESCAPED_DIGITS:
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
        elif event.key in ESCAPED_DIGITS:  # Escape, then the digit as if typed again
            self._hand_back()
            self.post_message(self.Cleared())
            digit = ESCAPED_DIGITS[event.key]
            self.app.post_message(Key(digit, digit))
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
    placed: bool = False
    """Its table shows a CONTAINER column while its objects live in more than one place (issue 15)."""
    optional: tuple[Column, ...] = ()
    """Columns shown while the dashboard knows who did what (``Context.who``, issue 16): the rows carry their cells
    then, after the others."""
    optional_at: int | None = None
    """How many of ``columns`` come before the optional ones (None: all)."""


class DetailPane(VerticalScroll):
    """Everything about the selected row, rebuilt when the selection or the snapshot changes."""

    def compose(self) -> ComposeResult:
        yield Static(Text("select a row to see its holders, limits and history"), classes="detail-body")

    _shown: tuple[str, list[Span]] | None = None
    _text: Text = Text()
    _wanted: tuple[int, int] = (0, 0)
    """(width, lines) of the last wanted_height: it is asked after every refresh, the text changes seldom."""
    _wrapped: tuple[int, Text] | None = None
    """(inner width, the text wrapped with hanging lines) as last shown or measured."""

    def show(self, text: Text) -> None:
        # Most refreshes change nothing here: skip the repaint then (Text's == ignores styles, so compare spans).
        shown = (text.plain, list(text.spans))
        if shown != self._shown:
            self._shown = shown
            self._text = text
            self._wanted = (0, 0)
            self._wrapped = None
            self._update_body()

    @property
    def text(self) -> Text:
        """What the pane shows, one line per label and value, before it is wrapped to the pane."""
        return self._text

    def _inner(self, width: int) -> int:
        """The text's width in a pane this wide (a scrollbar's room kept, so a scrollbar coming rewraps nothing)."""
        return max(width - self.styles.gutter.width - self.styles.scrollbar_size_vertical, 1)

    def _hanging(self, inner: int) -> Text:
        """The text wrapped to ``inner`` cells, wrapped lines under their value (describe.hanging): Textual would
        start them at the first column."""
        if self._wrapped is None or self._wrapped[0] != inner:
            self._wrapped = (inner, hanging(self._text, self.app.console, inner))
        return self._wrapped[1]

    def _update_body(self) -> None:
        width = self.outer_size.width
        body = self._hanging(self._inner(width)) if width else self._text
        self.query_one(".detail-body", Static).update(body)

    def on_resize(self, event: Resize) -> None:
        if self._wrapped is None or self._wrapped[0] != self._inner(self.outer_size.width):
            self._update_body()

    def wanted_height(self, width: int) -> int:
        """Lines the pane needs to show all it holds at this outer width (its border and padding included)."""
        if self._wanted[0] != width:
            lines = self._hanging(self._inner(width)).plain.count("\n") + 1
            self._wanted = (width, lines + self.styles.gutter.height)
        return self._wanted[1]


class ObjectView(Vertical):
    """Bound to the app's snapshot; syncs its table when it is the visible view (hidden ones catch up later).

    ``context``, ``events`` and ``active_view`` are bound too, and set before ``snapshot``: a new snapshot
    finds them current. Enter on a row posts :class:`~ipcmon.ui.messages.OpenRow`.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding(DISMISS_KEY, "dismiss_note", "Hide note", show=False),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True, repaint=False)
    context: reactive[Context] = reactive(empty_context, always_update=True, repaint=False)
    events: reactive[Sequence[Event]] = reactive(tuple, always_update=True, repaint=False)
    """The event log, newest first (for the selected object's history)."""
    active_view: reactive[str] = reactive("overview", repaint=False)

    def __init__(self, spec: ViewSpec) -> None:
        super().__init__(id=f"view-{spec.id}", classes="object-view")
        self.spec = spec
        self._stale = True
        self.cache = RowCache()
        self._filter_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Notes()
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
            placed=self.spec.placed,
            optional=self.spec.optional,
            optional_at=self.spec.optional_at,
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
        table.sync(rows, optional=self.context.who is not None)
        table.set_class(table.row_count == 0, "-empty")
        self.show_detail()

    def on_resize(self) -> None:
        self.fit_split()

    def fit_split(self) -> None:
        """Give the table the lines its rows need and the detail pane the rest (issue 12: a table of one row took
        half the screen while the detail pane cut off the history).

        When both need more than the view has, the detail pane gets what it needs as long as the table keeps
        TABLE_SHARE of the view.
        """
        if not self.is_mounted or not self.size.height:
            return
        table = self.table
        above = sum(child.outer_size.height for child in self.query_children(".notes, .filter") if child.display)
        available = self.size.height - above
        wanted = table.row_count + (table.header_height if table.show_header else 0)
        if table.virtual_size.width > table.scrollable_content_region.width:
            wanted += table.styles.scrollbar_size_horizontal
        detail = self.query_one(DetailPane).wanted_height(self.size.width)
        if wanted + detail > available:
            wanted = max(min(wanted, available - detail), min(wanted, int(available * TABLE_SHARE)))
        height = max(wanted, 3)
        if table.styles.height != Scalar(height, Unit.CELLS, Unit.WIDTH):
            table.styles.height = height

    def rows(self, ctx: Context) -> Iterable[Row]:
        """This view's rows for a context (the spec's row builder, with this view's cache)."""
        return self.spec.rows(ctx, self.cache) if self.spec.rows is not None else ()

    def _show_notes(self, snapshot: Snapshot) -> None:
        notes = [note for note in snapshot.notes if any(word in note for word in self.spec.note_words)]
        if not any(kind in snapshot.kinds for kind in self.spec.kinds):
            notes.append(f"Not scanned: ipcmon was started with --kind {','.join(snapshot.kinds)}.")
        self.query_one(Notes).show(snapshot, notes)

    def action_dismiss_note(self) -> None:
        self.query_one(Notes).dismiss_hidden()

    def show_detail(self) -> None:
        row = self.table.current_row
        pane = self.query_one(DetailPane)
        if row is None:
            empty = self.spec.empty if not self.table.filter_text else f"no row matches {self.table.filter_text!r}"
            pane.show(Text(empty))
            self.fit_split()
            return
        # An event's row key is the event's own; its history is that of the object it is about.
        key = row.record.key if isinstance(row.record, Event) else row.key
        pane.show(describe_record(row.record, self.context, object_history(self.events, key)))
        self.fit_split()

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
