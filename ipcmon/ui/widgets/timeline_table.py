"""TimelineTable: the Events view's table, a virtual list over the event log that renders only the lines on screen.

Why not a DataTable (issue 12). A DataTable keeps its rows in index order, so a newest-first timeline has to
re-sort (or renumber) every row for each new event at the top, and ``remove_row`` renumbers all rows for each
old event dropped at the bottom: every refresh cost O(history), 10,000 rows after a few minutes of demos. Here,
as in Toolong's ``LogLines`` (a ScrollView with the Line API), the table is two deques in arrival order:

- ``_all``: one line per event still in the log, numbered as :class:`~ipcmon.live.events.EventLog` numbers
  them, so an event's line is found by arithmetic and the events that fell off the log are those numbered
  below ``EventLog.oldest``;
- ``_shown``: the lines that pass the filter, in the same order.

A refresh appends a line per new event and pops the ones that fell off: O(new events). A line holds the event
and its probe (:func:`~ipcmon.ui.view.timeline.event_probe`: search text and fields, no cells), which the
filter (the same syntax as every table, :func:`~ipcmon.ui.view.table.matches`) goes over: every line once when
the filter changes, new lines only after that. The cells, most of a row's cost in time and memory, are built
by :meth:`render_line` for the lines on screen only, and kept for the last :data:`ROWS_KEPT` built, so memory
stays flat once the log is full. A new palette or a change of demo pids just redraws the screen: a line's row is
rebuilt as it is drawn when its colours or its demo badge are out of date.

Columns share the widget's width by what the lines on screen hold (:func:`~ipcmon.ui.view.table.fit_widths`,
as the object tables do; issue 12): not the whole history, and at the cost of the lines drawn, O(screen). The
widths are worked out again when the lines on screen change (new events, a filter, new colours), when the width
changes, and when the view scrolled a page away from where they were last worked out; in between, scrolling
only widens a column, so a long name passing by does not make the columns jump at every step. DETAIL, the last
column, takes what is left; a cut cell ends with an ellipsis.
Sorting by another column is not offered: a timeline is in arrival order (an event a source delivers late is
listed when it arrives, with its own time).

The cursor is held as a position from the top (0 is the newest shown). At the top it follows the newest
event; anywhere else it stays on its event as new ones arrive above it, the view scrolling by as many lines
so the screen holds still.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ipcmon.live.events import EventLog
from ipcmon.model import Event
from ipcmon.ui.state import empty_context
from ipcmon.ui.view.table import (
    NO_PIDS,
    Cell,
    Column,
    Context,
    Palette,
    Row,
    build_recording,
    cut_middle,
    fit_widths,
    matches,
)
from ipcmon.ui.view.timeline import event_probe, event_row
from ipcmon.ui.widgets.scrolling import resize_in_place

SORT_DOWN = " ▼"
"""The TIME header's arrow: newest first, always."""
PADDING = 1
"""Blank cells on each side of a column, as a DataTable draws them."""
HIDDEN = -1
"""The width of a column left out at this width (Column.hide_below)."""
ROWS_KEPT = 1_000
STRIPS_KEPT = 500
"""Drawn lines kept with the row and column widths they were drawn for (a few screens' worth)."""
"""Lines that keep their built cells (the ones drawn lately); the others keep only their probe."""
FOLLOW_AT_ONCE = 500
"""New events taken in by one call of :meth:`TimelineTable.follow` (about 25 ms); a flood is taken in over
several frames."""


def event_key(number: int) -> str:
    """The row key of the event numbered ``number`` in the log."""
    return f"event:{number}"


class TimelineLine:
    """One event of the log: its probe (what the filter matches) at once, its cells only once drawn.

    ``row`` is None until the line is drawn or selected, and again after :data:`ROWS_KEPT` other rows were
    built; it is rebuilt when drawn if the colours or its demo badge changed since (``palette``, ``asked``,
    ``demo``: what it was built for).
    """

    __slots__ = ("asked", "demo", "event", "number", "palette", "probe", "row")

    def __init__(self, number: int, event: Event, ctx: Context) -> None:
        self.number = number
        self.event = event
        self.probe = event_probe(event, event_key(number), ctx)
        self.row: Row | None = None
        self.palette: Palette | None = None
        self.asked: frozenset[int] = NO_PIDS
        """pids the row's demo badge depends on (``demo``: those that were demo pids)."""
        self.demo: frozenset[int] = NO_PIDS

    def build(self, ctx: Context) -> Row:
        number = self.number
        # event_row is looked up in this module at each call, so a test can count the rows built.
        row, asked = build_recording(
            lambda event, ctx: event_row(event, event_key(number), number, ctx), self.event, ctx
        )
        self.row = row
        self.palette = ctx.palette
        self.asked = asked
        self.demo = asked & ctx.demo_pids
        return row

    def current(self, ctx: Context) -> bool:
        """Is the row built and still right in this context (same colours, same demo badge)?"""
        return (
            self.row is not None
            and self.palette == ctx.palette
            and (not self.asked or self.asked & ctx.demo_pids == self.demo)
        )


class TimelineTable(ScrollView, can_focus=True):
    """The event log as a table, newest first, filterable; only the lines on screen are drawn.

    Fed by :meth:`follow` with the log itself (never a copy). Posts :class:`Highlighted` when the cursor moves to
    another event and :class:`Selected` on Enter or a click on the cursor's line. The methods and properties
    the object views use on their :class:`~ipcmon.ui.widgets.tables.ObjectTable` are here too (``current_row``,
    ``cursor_key``, ``row_count``, ``filter_text``, ``set_filter``, ``select_key``, ``shown_keys``,
    ``get_row``, ``row_for``).
    """

    DEFAULT_CSS = """
    TimelineTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        min-height: 5;
        &.-empty {
            height: 3;
            min-height: 3;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .timeline--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .timeline--header {
                background-tint: $foreground 5%;
            }
        }
        & > .timeline--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .timeline--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"timeline--header", "timeline--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Select", show=False),
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "Newest", show=False),
        Binding("end", "last", "Oldest", show=False),
    ]

    show_header = True
    header_height = 1
    """The header is always one line (as DataTable's attributes of these names, for the view's split)."""

    class Highlighted(Message):
        """The cursor is on another event (or on none)."""

    class Selected(Message):
        """Enter, or a click on the cursor's line."""

    def __init__(self, columns: Sequence[Column], *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.spec = tuple(columns)
        self.sort_column = "time"
        self.sort_reverse = True
        self.filter_text = ""
        self.context: Context = empty_context()
        self._log: EventLog | None = None
        self._seen = 0
        """The log's ``appended`` when last followed: events numbered from here on are new."""
        self._all: deque[TimelineLine] = deque()
        self._built: deque[TimelineLine] = deque()
        """Lines whose row was built, oldest build first (a line built twice is here twice)."""
        self._shown: deque[TimelineLine] = deque()
        self._cursor = 0
        """Lines from the top (0: the newest shown)."""
        self._cursor_number: int | None = None
        """The event the cursor was last on (to post Highlighted only on a move)."""
        self._labels = [column.label + (SORT_DOWN if index == 0 else "") for index, column in enumerate(self.spec)]
        """The header's labels, the first with its arrow (minimum widths keep them whole)."""
        self._widths = [len(label) for label in self._labels]
        self._strips: LRUCache[int, tuple[Row, list[int], Strip]] = LRUCache(STRIPS_KEPT)
        """Each row's cells as last drawn, by the row's id, with the row and the widths they were drawn at (see
        _row_strip)."""
        self.lines_drawn = 0
        """Rows whose cells were drawn, not found in ``_strips`` (tests count them)."""
        """Each column's width in cells, padding excluded, as drawn now (see :meth:`_fit`)."""
        self._natural = list(self._widths)
        """What the columns held when the widths were last worked out: the labels and the cells on screen."""
        self._fitted: tuple[int, int, int] | None = None
        """(width, top, the number of the event on the top line) when the widths were last worked out afresh;
        None: afresh at the next frame."""

    # --- keeping in step ------------------------------------------------------------------------------------

    def follow(self, log: EventLog, ctx: Context) -> None:
        """Take in what the log gained and lost since the last call: O(new events), never O(log)."""
        # Cells depend on the colours and the demo pids only: another process table alone redraws nothing.
        redraw = (ctx.palette, ctx.demo_pids) != (self.context.palette, self.context.demo_pids)
        self.context = ctx
        if redraw:
            self._fitted = None  # a demo badge more or less: the widths are worked out afresh
        before = self._span()
        if log is not self._log:
            self._log = log
            self._all.clear()
            self._shown.clear()
            self._built.clear()
            self._seen = log.oldest
        oldest = log.oldest
        while self._all and self._all[0].number < oldest:
            self._all.popleft()
        while self._shown and self._shown[0].number < oldest:
            self._shown.popleft()
        start = max(self._seen, oldest)
        added = 0
        new = log.newer_than(start, FOLLOW_AT_ONCE)
        for number, event in enumerate(new, start):
            line = TimelineLine(number, event, ctx)
            self._all.append(line)
            if not self.filter_text or matches(line.probe, self.filter_text):
                self._shown.append(line)
                added += 1
        self._seen = start + len(new)
        if self._seen < log.appended:
            # A flood: the rest after the next frame, so no handler holds the screen for long.
            self.call_after_refresh(self._catch_up)
        if added and self._cursor > 0:
            # Not at the top: stay on the same event, and keep the screen still around it.
            self._cursor += added
            self._settle(shift=added)
        elif redraw or self._span() != before:
            self._settle()

    def _span(self) -> tuple[int, int]:
        """(first number, count) of the lines held: what follow changed."""
        return (self._all[0].number, len(self._all)) if self._all else (-1, 0)

    def _catch_up(self) -> None:
        if self._log is not None and self._seen < self._log.appended:
            self.follow(self._log, self.context)

    def set_context(self, ctx: Context) -> None:
        """New colours or demo pids: redraw what is on screen (rows are rebuilt as they are drawn)."""
        self.context = ctx
        self._fitted = None  # a demo badge more or less: the widths are worked out afresh
        self.refresh()

    def set_filter(self, text: str) -> None:
        """Show only the lines matching ``text`` (one pass over the log), keeping the cursor on its event."""
        self.filter_text = text.strip()
        self._fitted = None  # other lines: the widths are worked out afresh
        keep = self._cursor_number
        query = self.filter_text
        self._shown = deque(line for line in self._all if not query or matches(line.probe, query))
        self._cursor = 0
        if keep is not None:
            index = self._index_of(keep)
            if index is not None:
                self._cursor = index
        self._settle(scroll=True)

    def _settle(self, *, scroll: bool = False, shift: int = 0) -> None:
        """After the lines changed: size, cursor in range, redraw, tell the view if the cursor moved.

        ``shift``: lines added above the cursor (the view scrolls by as many); ``scroll``: bring the cursor
        into view.
        """
        self._cursor = max(0, min(self._cursor, len(self._shown) - 1))
        size = Size(self._line_width(), len(self._shown) + 1)
        on_screen = self.is_on_screen
        if on_screen:
            if size != self.virtual_size:
                # Textual lays the whole screen out for a new virtual size: at every scan with new events while the
                # Events view is shown. The table's height is set by its view (fit_split), so its scrollbars follow
                # here unless one comes or goes (scrolling.resize_in_place).
                self.set_reactive(TimelineTable.virtual_size, size)
                if not resize_in_place(self):
                    self.refresh(layout=True)
        else:
            # Hidden (another view is shown), it takes in each scan's events, and setting virtual_size laid the whole
            # screen out at every scan with new events (issue 12, the demos' cost). The layout that shows it again
            # sizes its scrollbars from this value (ScrollView._size_updated).
            self.set_reactive(TimelineTable.virtual_size, size)
        if shift:
            self.scroll_to(y=self.scroll_y + shift, animate=False, immediate=True)
        if scroll:
            self._scroll_to_cursor()
        if on_screen:
            self.refresh()
        else:
            # Its lines are drawn again when it is shown. A repaint asked for by a widget off screen made Textual
            # arrange the whole screen again at the next frame (Compositor.update_widgets): every frame with the demos
            # running (issue 12, the demos' cost).
            self._set_dirty()
        self._cursor_changed()

    def _fit(self, rows: Sequence[Row], top: int) -> bool:
        """Share the width among the columns by what ``rows`` (those on screen) hold; True when widths changed.

        Afresh when the width changed, when the lines changed other than by scrolling (new events at the top, a
        filter, new colours), or when the view scrolled a page or more from where they were last worked out
        afresh; otherwise a column only widens, for a wider cell that scrolled in. Each column keeps its label
        whole, and ``Column.keep`` cells when it holds that many while those fit (the largest give way first, as
        the object tables' do: :func:`~ipcmon.ui.view.table.fit_widths`).
        """
        available = self.scrollable_content_region.width
        first = self._line_at(top)
        at_top = first.number if first is not None else -1
        natural = [len(label) for label in self._labels]
        for row in rows:
            for index, cell in enumerate(row.cells[:len(natural)]):
                length = cell.cell_len
                if length > natural[index]:
                    natural[index] = length
        fitted = self._fitted
        if fitted is not None and self._scrolled_since(fitted, available, top):
            natural = [max(now, before) for now, before in zip(natural, self._natural, strict=True)]
            if natural == self._natural:
                return False
        else:
            self._fitted = (available, top, at_top)
        self._natural = natural
        shown = [index for index, column in enumerate(self.spec)
                 if column.hide_below is None or self.size.width >= column.hide_below]  # the widget's, scrollbar in
        labels = [len(self._labels[index]) for index in shown]
        minimum = [min(natural[index], max(label, self.spec[index].keep or 0)) for index, label in zip(shown, labels,
                                                                                                      strict=True)]
        room = available - 2 * PADDING * len(shown)
        fitted_widths = fit_widths([natural[index] for index in shown], minimum, room, floors=(labels,))
        fitted_widths[-1] += max(0, room - sum(fitted_widths))  # DETAIL takes what is left
        widths = [HIDDEN] * len(natural)
        for index, width in zip(shown, fitted_widths, strict=True):
            widths[index] = width
        if widths == self._widths:
            return False
        self._widths = widths
        return True

    def _scrolled_since(self, fitted: tuple[int, int, int], available: int, top: int) -> bool:
        """Did only scrolling, less than a page, change the lines on screen since the widths were ``fitted``?"""
        width, was_top, number = fitted
        line = self._line_at(was_top)
        return (width == available and abs(top - was_top) < self._page
                and (line.number if line is not None else -1) == number)

    def _line_width(self) -> int:
        shown = [width for width in self._widths if width != HIDDEN]
        return sum(shown) + 2 * PADDING * len(shown)

    # --- lines and rows -------------------------------------------------------------------------------------

    def _line_at(self, index: int) -> TimelineLine | None:
        """The line ``index`` from the top (0: newest shown)."""
        if 0 <= index < len(self._shown):
            return self._shown[-1 - index]
        return None

    def _index_of(self, number: int) -> int | None:
        """Where the event numbered ``number`` is, from the top, or None when it is not shown."""
        shown = self._shown
        position = bisect_left(shown, number, key=lambda line: line.number)
        if position < len(shown) and shown[position].number == number:
            return len(shown) - 1 - position
        return None

    def _line_by_number(self, number: int) -> TimelineLine | None:
        if not self._all:
            return None
        index = number - self._all[0].number
        return self._all[index] if 0 <= index < len(self._all) else None

    def _fresh(self, line: TimelineLine) -> Row:
        """The line's row, built (again) first if it is not, or if the colours or its demo badge changed."""
        if line.row is not None and line.current(self.context):
            return line.row
        row = line.build(self.context)
        built = self._built
        built.append(line)
        if len(built) > ROWS_KEPT:
            # Memory stays flat: only the rows drawn lately keep their cells.
            built.popleft().row = None
        return row

    @property
    def row_count(self) -> int:
        return len(self._shown)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def current_row(self) -> Row | None:
        line = self._line_at(self._cursor)
        return self._fresh(line) if line is not None else None

    @property
    def cursor_key(self) -> str | None:
        line = self._line_at(self._cursor)
        return event_key(line.number) if line is not None else None

    @property
    def shown_keys(self) -> list[str]:
        """Row keys in display order (newest first)."""
        return [event_key(line.number) for line in reversed(self._shown)]

    def row_for(self, key: str) -> Row | None:
        number = _number_of(key)
        line = self._line_by_number(number) if number is not None else None
        return self._fresh(line) if line is not None else None

    def get_row(self, key: str) -> list[Cell]:
        """The cells of a row, as DataTable.get_row gives them."""
        row = self.row_for(key)
        if row is None:
            raise KeyError(key)
        return list(row.cells)

    def select_key(self, key: str) -> bool:
        """Put the cursor on an event's row (clearing a filter that hides it); False when it is not in the log."""
        number = _number_of(key)
        if number is None or self._line_by_number(number) is None:
            return False
        index = self._index_of(number)
        if index is None:
            self.set_filter("")
            index = self._index_of(number)
        if index is not None:
            self._move(index)
        return True

    # --- cursor and keys ------------------------------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _move(self, index: int) -> None:
        self._cursor = max(0, min(index, len(self._shown) - 1))
        self._scroll_to_cursor()
        self.refresh()
        self._cursor_changed()

    def _scroll_to_cursor(self) -> None:
        top = round(self.scroll_y)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True)
        elif self._cursor >= top + self._page:
            self.scroll_to(y=self._cursor - self._page + 1, animate=False, immediate=True)

    def _cursor_changed(self) -> None:
        line = self._line_at(self._cursor)
        number = line.number if line is not None else None
        if number != self._cursor_number:
            self._cursor_number = number
            self.post_message(self.Highlighted())

    def action_cursor_up(self) -> None:
        self._move(self._cursor - 1)

    def action_cursor_down(self) -> None:
        self._move(self._cursor + 1)

    def action_page_up(self) -> None:
        self._move(self._cursor - self._page)

    def action_page_down(self) -> None:
        self._move(self._cursor + self._page)

    def action_first(self) -> None:
        self._move(0)

    def action_last(self) -> None:
        self._move(len(self._shown) - 1)

    def action_select(self) -> None:
        if self._line_at(self._cursor) is not None:
            self.post_message(self.Selected())

    def move_cursor(self, *, row: int) -> None:
        """Put the cursor on a line from the top (as DataTable.move_cursor)."""
        self._move(row)

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return  # the header
        index = round(self.scroll_y) + event.y - 1
        if self._line_at(index) is None:
            return
        was = self._cursor
        self._move(index)
        if index == was:
            self.post_message(self.Selected())

    # --- drawing --------------------------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # Build the rows on screen and fit the columns to them before drawing any line, so every line of a frame
        # has the same column widths.
        top = round(self.scroll_y)
        rows = []
        for index in range(top, top + self._page):
            line = self._line_at(index)
            if line is not None:
                rows.append(self._fresh(line))
        if self._fit(rows, top):
            self.virtual_size = Size(self._line_width(), len(self._shown) + 1)
        # The table's style and width, worked out once for the lines of this frame: Textual works the style out at
        # each call from every ancestor's background and colour, a third of the time to draw the view again once
        # its lines are kept (issue 12, key latency). Neither changes while one frame's lines are drawn.
        self._frame = (self.rich_style, self.scrollable_content_region.width)
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    _frame: tuple[Style, int] | None = None
    """The table's style and width while render_lines draws a frame's lines."""

    def render_line(self, y: int) -> Strip:
        scroll_x = round(self.scroll_x)
        base, width = self._frame or (self.rich_style, self.scrollable_content_region.width)
        if y == 0:
            strip = self._header()
            style = self.get_component_rich_style("timeline--header")
        else:
            index = round(self.scroll_y) + y - 1
            line = self._line_at(index)
            if line is None:
                return Strip.blank(width, base)
            style = self.get_component_rich_style("timeline--cursor") if index == self._cursor else base
            strip = self._row_strip(self._fresh(line))
        return strip.apply_style(style).crop_extend(scroll_x, scroll_x + width, style)

    def _row_strip(self, row: Row) -> Strip:
        """A row's cells drawn at the current widths, drawn again only when the row or the widths changed.

        Each cell went through Rich's Text.render at every frame that drew its line: showing the Events view again
        (a focus change repaints every line) drew the whole screen's cells, ~14 ms of a view switch with a full
        history (issue 12, key latency). A Row is never changed once built (a new context builds a new one, see
        TimelineLine.current), so its id, checked against the row kept, and the widths say what it looks like.
        """
        kept = self._strips.get(id(row))
        if kept is not None and kept[0] is row and kept[1] is self._widths:
            return kept[2]
        strip = self._cells(row.cells)
        self.lines_drawn += 1
        self._strips[id(row)] = (row, self._widths, strip)  # the row kept with it: its id is not reused meanwhile
        return strip

    def _header(self) -> Strip:
        return self._cells([Cell(label, ()) for label in self._labels])

    def _cells(self, cells: Sequence[Cell]) -> Strip:
        console = self.app.console
        segments: list[Segment] = []
        pad = " " * PADDING
        for cell, width, column in zip(cells, self._widths, self.spec, strict=False):
            if width == HIDDEN:
                continue
            segments.append(Segment(pad))
            # Text.render leaves the text's own style to its caller (rich's __rich_console__ applies it).
            style = console.get_style(cell.style) if cell.style else None
            shown: Text = cell
            if cell.cell_len > width:
                if column.cut_middle:
                    shown = cut_middle(cell, width)
                else:
                    shown = cell.copy()
                    shown.truncate(width, overflow="ellipsis")
            segments.extend(Segment.apply_style(shown.render(console, end=""), style))
            segments.append(Segment(" " * (width - shown.cell_len + PADDING)))
        return Strip(segments)

    def on_mount(self) -> None:
        self._settle()  # the header, before any event

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        self._scroll_to_cursor()


def _number_of(key: str) -> int | None:
    prefix, _, number = key.partition(":")
    return int(number) if prefix == "event" and number.isdigit() else None

