"""ObjectTable: a DataTable kept in step with a list of rows by stable key, sorted and filtered in place.

A refresh removes the rows that went away, adds the new ones and updates only the cells that changed;
it never clears and refills, so the cursor stays on the same object and the scroll position holds
(textual#5257: clearing 20k rows freezes the UI for seconds and loses the cursor).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar, Self

from rich.cells import cell_len
from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.events import Resize
from textual.geometry import Region
from textual.render import measure
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets._data_table import default_cell_formatter  # how DataTable measures a cell (kept alike)
from textual.widgets.data_table import CellKey, ColumnKey, RowDoesNotExist, RowKey

from ipcmon.text import PLACE_HEADER, place_cell, several_places
from ipcmon.ui.view.table import Cell, Column, Row, cut_middle, fit_widths, matches, text_cell
from ipcmon.ui.widgets.scrolling import resize_in_place

REBUILD_AT = 200
CELLS_KEPT = 10_000
"""Rendered cells ObjectTable keeps across DataTable's cache flushes (as many as DataTable's own cell cache)."""
"""Rows removed at once above which the table is rebuilt instead (see ObjectTable._apply)."""
SORT_UP = " ▲"
SORT_DOWN = " ▼"
MIN_WIDTH = 8
"""Cells a column keeps when the table is too narrow for everything (more if its label needs it)."""
FIRST_MIN_WIDTH = 20
"""The first column names the row's object (NAME, a pid): it keeps this much before the others are cut
(at 80 columns every name was cut to ten cells while MODE and OWNER kept theirs)."""
LABEL_FLOOR = 3
"""Cells of its label a column holding long text keeps when the table is too narrow for every label: a pid, a size, the
sort column's label with its arrow stay whole before a long column's label is cut (issue 12)."""
PLACE_COLUMN = Column("place", PLACE_HEADER, 16)
"""Where each row's object lives (issue 15), after the first column: shown only while the rows' objects live in
more than one place (ObjectTable ``placed``)."""


def moved(lines: list[list[Segment]], row: int, column: int) -> list[list[Segment]]:
    """A rendered cell's lines for another row: DataTable puts a cell's row and column in every segment's meta (a click
    or hover finds its cell by them), the rest does not depend on where the row is."""
    meta = Style.from_meta({"row": row, "column": column})
    return [[Segment(segment.text, segment.style + meta if segment.style is not None else meta, segment.control)
             for segment in line] for line in lines]


class ObjectTable(DataTable[Cell]):
    """Rows identified by object key; sortable by any column (header click or ``s``/``S``), filterable."""

    _rows_changing = False
    """Set while DataTable removes a row or sets the virtual size (see refresh)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort_next", "Sort", tooltip="Sort by the next column"),
        Binding("S", "sort_reverse", "Reverse", show=False, tooltip="Reverse the sort order"),
        # DataTable binds Home and End to the first and last column, which a row cursor does not have: they did
        # nothing. As in htop, they go to the first and last row.
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

    def __init__(
        self,
        columns: Sequence[Column],
        *,
        sort_column: str | None = None,
        sort_reverse: bool = False,
        follow_top: bool = False,
        placed: bool = False,
        optional: Sequence[Column] = (),
        optional_at: int | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(cursor_type="row", id=id, classes=classes, zebra_stripes=False)
        self.base_spec = tuple(columns)
        self.spec = self.base_spec
        """The columns shown: base_spec, with PLACE_COLUMN second while it is shown, and the optional columns after
        ``optional_at`` of them while they are."""
        self.placed = placed
        """Whether this table shows PLACE_COLUMN when its rows live in several places (Row.place)."""
        self.optional = tuple(optional)
        """Columns shown only while ``sync`` is told to (the rows then carry their cells after the others)."""
        self.optional_at = len(self.base_spec) if optional_at is None else optional_at
        """How many of base_spec's columns come before the optional ones."""
        self._places = False
        self._optional_shown = False
        self.sort_column = sort_column or self.spec[0].key
        self.sort_reverse = sort_reverse
        self.filter_text = ""
        self.follow_top = follow_top
        """Keep the cursor on the first row when it is there (a newest-first timeline follows new rows)."""
        self._all: dict[str, Row] = {}
        """Every row of the last sync, shown or filtered out."""
        self._shown: dict[str, Row] = {}
        """The rows in the table now, by key."""
        self._drawn: LRUCache[tuple[object, ...], tuple[object, int, list[list[Segment]]]] = LRUCache(CELLS_KEPT)
        """Rendered cells by what their rendering depends on but their row (see _render_cell), with the cell itself and
        the row it was drawn for."""
        self.cells_rendered = 0
        """Cells rendered so far, not found in ``_drawn`` (tests count them)."""
        self.columns_measured = 0
        """Columns whose width was worked out again after cells changed (tests count them)."""

    def on_mount(self) -> None:
        for column in self.spec:
            self.add_column(self._label(column), key=column.key)

    # --- column widths --------------------------------------------------------------------------------------

    def fit_columns(self) -> bool:
        """Share the table's width among the columns by what they hold (fit_widths); True when widths changed.

        Each column's natural width is its widest cell or its label (with the sort arrow when it is the sort
        column), capped by the spec's ``Column.width``; its minimum keeps the label whole, and more: the spec's
        ``keep``, the first column's name readable (FIRST_MIN_WIDTH), MIN_WIDTH otherwise.

        When the minimums do not fit, they give way, the largest first (a name before a mode), down to the labels;
        a short column (a pid, a size, a mode: all it holds fits its minimum) keeps what it holds. So at 80 columns
        every column is on screen with its label whole, the sort arrow too (issue 12: HOLDERS was cut to a few cells,
        THREADS and WAITING were off screen). When even that does not fit, the long columns' labels are cut, down to
        LABEL_FLOOR, before a short column loses a cell or the sort column its label; then everything but the sort
        column's label, and only then does the table scroll sideways.
        """
        available = self.scrollable_content_region.width
        if available <= 0 or not self.columns:
            return False
        columns = [self.columns[ColumnKey(column.key)] for column in self.spec]
        natural: list[int] = []
        minimum: list[int] = []
        whole: list[int] = []
        squeezed: list[int] = []
        last: list[int] = []
        for index, (spec, column) in enumerate(zip(self.spec, columns, strict=True)):
            label = column.label.cell_len
            want = max(column.content_width, label)
            if spec.width is not None:
                want = max(min(want, spec.width), label)
            natural.append(want)
            keep = FIRST_MIN_WIDTH if index == 0 else spec.keep or MIN_WIDTH
            minimum.append(min(want, max(label, keep)))
            least = label if spec.key == self.sort_column else min(label, LABEL_FLOOR)
            short = want <= max(MIN_WIDTH, spec.keep or 0)
            whole.append(want if short else label)
            squeezed.append(want if short else least)
            last.append(least)
        widths = fit_widths(natural, minimum, available - 2 * self.cell_padding * len(columns),
                            floors=(whole, squeezed, last))
        changed = False
        for column, width in zip(columns, widths, strict=True):
            if column.auto_width or column.width != width:
                column.auto_width, column.width = False, width
                changed = True
        if changed:
            self._clear_caches()
            self.refresh()
        return changed

    def _update_column_widths(self, updated_cells: set[CellKey]) -> None:
        # DataTable measures each updated cell, and for every one narrower than its column measures the whole column
        # again: k changed cells of a column of n rows, k × n measures. A view shown after scans in which many rows
        # changed (the Signals view of a busy machine: 570 processes, their counts changing) spent most of the switch
        # here (issue 12, key latency: 11,434 measures in 3 switches). Here each column is measured at most once, and
        # its width is what DataTable's comes to: the widest cell, or the label when it is wider.
        changed: dict[ColumnKey, list[RowKey]] = {}
        for row_key, column_key in updated_cells:
            if column_key in self.columns and row_key in self.rows:
                changed.setdefault(column_key, []).append(row_key)
        for column_key, row_keys in changed.items():
            column = self.columns[column_key]
            label = measure(self.app.console, column.label, 1)
            widest = max(self._cell_width(row_key, column_key) for row_key in row_keys)
            if widest < column.content_width:  # the widest cell may have narrowed: look at them all
                widest = max((self._cell_width(row_key, column_key) for row_key in self._data), default=0)
            column.content_width = max(widest, label)
            self.columns_measured += 1
        self._require_update_dimensions = True

    def _cell_width(self, row_key: RowKey, column_key: ColumnKey) -> int:
        """A cell's width as DataTable measures it (textual.render.measure): for a Text, its widest line."""
        value = self._data[row_key].get(column_key)
        if isinstance(value, Text):  # what Text.__rich_measure__ gives as its maximum, without a console's options
            return max(map(cell_len, value.plain.splitlines()), default=0)
        height = self.rows[row_key].height
        return measure(self.app.console, default_cell_formatter(value, wrap=height != 1, height=height), 1)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # DataTable measures new and changed cells when idle, here; the widths follow what was measured.
        self._rows_changing = True  # the new virtual size lays out only this table when it can (refresh)
        try:
            super()._update_dimensions(new_rows)
            if self.fit_columns():
                super()._update_dimensions(())  # the scrollable width, from the new widths
        finally:
            self._rows_changing = False

    def remove_row(self, row_key: RowKey | str) -> None:
        self._rows_changing = True  # DataTable asks for a layout: only this table's, when it can (refresh)
        try:
            super().remove_row(row_key)
        finally:
            self._rows_changing = False

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Self:
        # A row gone or the virtual size changed: DataTable lays the whole screen out, once per scan on the Overview
        # as the demos' alerts come and go (issue 12). When the table's own size stays, its scrollbars follow here
        # and the table is drawn again (scrolling.resize_in_place). The virtual size is set again at idle after a
        # row is removed, so that layout is never needed now.
        if layout and self._rows_changing and resize_in_place(self):
            layout = False
            if self._repaints_held is None and not regions:
                # A new virtual size (rows came or went) moves no line: _apply drew again the lines that changed, and a
                # change of column widths draws the whole table (fit_columns). Drawing it all here undid that.
                return self
        if self._repaints_held is not None and repaint and not (regions or layout or recompose):
            self._repaints_held = True  # the whole table is drawn again once, when _apply is done
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def on_resize(self, event: Resize) -> None:
        if self.fit_columns():
            self._require_update_dimensions = True
        # As htop does, the selected row stays in sight when the table gets shorter: the detail pane's split follows
        # its content, so a jump to a row (Enter on an alert) scrolled for a taller table than the one shown.
        if 0 <= self.cursor_row < self.row_count and not self._cursor_in_sight():
            self.call_after_refresh(self._keep_cursor_in_sight)

    def _cursor_in_sight(self) -> bool:
        top = round(self.scroll_y)
        return top <= self.cursor_row < top + max(self.scrollable_content_region.height - 1, 1)  # the header's line

    def _keep_cursor_in_sight(self) -> None:
        # Only when it is out of sight: a view switch resizes every table it shows, and a scroll is a frame more.
        if 0 <= self.cursor_row < self.row_count and not self._cursor_in_sight():
            self._scroll_cursor_into_view()

    # --- drawing ---------------------------------------------------------------------------------------------

    _line_style: Style | None = None
    """The table's style while render_lines runs (see rich_style)."""

    @property
    def rich_style(self) -> Style:
        # DataTable.render_line asks for the table's style once per line, and Textual works it out each time from every
        # ancestor's background and colour: a third of the time to draw the Overview's alerts again (issue 12, the
        # demos' cost). It cannot change while the lines of one frame are drawn: worked out once for them.
        if self._line_style is not None:
            return self._line_style
        return super().rich_style

    def render_lines(self, crop: Region) -> list[Strip]:
        self._line_style = super().rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._line_style = None


    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        # DataTable drops every rendered cell whenever anything changes: a cell updated, a resize (each time a view
        # is shown), a focus change (a style update). A view switch then rendered every cell on screen again through
        # Rich's Padding and Styled, most of the switch's time (issue 12, key latency). A cell's rendering depends only
        # on the cell (a Cell is never changed once built, and an unchanged row keeps its cells: RowCache), where it
        # is (the row and column in the segments' meta), the row's style, the cursor and hover styles, its width and
        # its row's height: kept by all of these, it is rendered again only when one of them changed. Kept by all but
        # the row, it is only given its new row when rows move: with the lesson demos running, the alerts come and go
        # at every scan, and every row below a new one was rendered again (issue 12, the demos' cost).
        if row_index == -1 and column_index >= 0:
            return self._render_header_cell(column_index, base_style, width, cursor, hover)
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        row = self.rows.get(row_key) if row_key is not None else None
        cells = self._get_row_renderables(row_index).cells
        if row is None or column_index >= len(cells):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cell = cells[column_index]
        styles = self._cell_styles(False, row_index < self.fixed_rows or column_index < self.fixed_columns, hover,
                                   cursor)
        key = (id(cell), column_index, base_style, styles, width, row.height)
        kept = self._drawn.get(key)
        if kept is not None and kept[0] is cell:
            if kept[1] == row_index:
                return kept[2]
            # The same cell in another row (a row sorted in above it, or one removed): only the row in its meta differs.
            lines = moved(kept[2], row_index, column_index)
        else:
            lines = self._render_fitted(cells, row_index, column_index, base_style, width, cursor, hover)
            self.cells_rendered += 1
        self._drawn[key] = (cell, row_index, lines)  # the cell kept with it: its id is not reused while it is kept
        return lines

    def _render_fitted(
        self,
        cells: list[RenderableType],
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool,
        hover: bool,
    ) -> list[list[Segment]]:
        """DataTable's rendering of a cell, cut in its middle first when it is too long for a column that says so
        (Column.cut_middle: /ipcmon-demo-9281-leak-a and -leak-b, cut at their end, looked the same; issue 12).

        DataTable renders the row's renderables, so the cut one stands in for the cell while it does. Its rendering
        depends on the width, which the key of ``_drawn`` holds; DataTable's own cache is dropped when the widths
        change (fit_columns)."""
        cell = cells[column_index]
        room = width - 2 * self.cell_padding
        if (column_index >= len(self.spec) or not self.spec[column_index].cut_middle
                or not isinstance(cell, Text) or cell.cell_len <= room):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        cells[column_index] = cut_middle(cell, room)
        try:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        finally:
            cells[column_index] = cell

    def _cell_styles(self, header: bool, fixed: bool, hover: bool, cursor: bool) -> object:
        """The styles DataTable renders a cell with (its _get_styles_to_render_cell), part of a drawn cell's key."""
        return self._get_styles_to_render_cell(
            header,
            False,
            fixed,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )

    def _render_header_cell(
        self, column_index: int, base_style: Style, width: int, cursor: bool, hover: bool
    ) -> list[list[Segment]]:
        """A column label, kept as the cells are: by the label itself (a new one for a new sort arrow), its column, the
        styles and width; the header was drawn again at every frame that drew the table (each scan that changed an
        alert, each view switch)."""
        columns = self.ordered_columns
        if column_index >= len(columns):
            return super()._render_cell(-1, column_index, base_style, width, cursor, hover)
        label = columns[column_index].label
        styles = self._cell_styles(True, False, hover, cursor)
        key = ("header", id(label), label.plain, column_index, base_style, styles, width, self.header_height)
        kept = self._drawn.get(key)
        if kept is not None and kept[0] is label:
            return kept[2]
        lines = super()._render_cell(-1, column_index, base_style, width, cursor, hover)
        self.cells_rendered += 1
        self._drawn[key] = (label, -1, lines)
        return lines

    # --- keeping in step ------------------------------------------------------------------------------------

    def sync(self, rows: Iterable[Row], *, optional: bool = False) -> None:
        """Make the table show exactly these rows (minus the filtered ones), touching only what changed; with
        ``optional``, the optional columns too."""
        self._all = {row.key: row for row in rows}
        places = self.placed and several_places(row.place for row in self._all.values())
        self._lay_out(places, optional and bool(self.optional))
        self._apply()

    @property
    def shows_places(self) -> bool:
        """Whether PLACE_COLUMN is shown now."""
        return self._places

    @property
    def shows_optional(self) -> bool:
        """Whether the optional columns are shown now."""
        return self._optional_shown

    def _lay_out(self, places: bool, optional: bool) -> None:
        """Add or take away PLACE_COLUMN and the optional columns. Rare (a first container appears, the last one
        goes; a journal or an attribution source comes), so the columns and rows are laid out again from scratch;
        _apply puts the rows back and the cursor on its object."""
        if (places, optional) == (self._places, self._optional_shown):
            return
        self._places, self._optional_shown = places, optional
        at = self.optional_at
        columns = (*self.base_spec[:at], *(self.optional if optional else ()), *self.base_spec[at:])
        self.spec = (columns[0], PLACE_COLUMN, *columns[1:]) if places else columns
        if all(column.key != self.sort_column for column in self.spec):
            self.sort_column = self.spec[0].key
        if not self.is_mounted:
            return  # on_mount adds the columns
        self.clear(columns=True)
        self._shown = {}
        for column in self.spec:
            self.add_column(self._label(column), key=column.key)

    def cells(self, row: Row) -> tuple[Cell, ...]:
        """The row's cells as shown: with its place second while PLACE_COLUMN is, and its optional cells (built
        after the others) where the optional columns are while they are shown (empty for a row built without)."""
        cells = row.cells
        base, at = len(self.base_spec), self.optional_at
        if self._optional_shown:
            extra = (*cells[base:base + len(self.optional)],
                     *(text_cell("") for _ in range(base + len(self.optional) - len(cells))))
            cells = (*cells[:at], *extra, *cells[at:base])
        elif len(cells) > base:
            cells = cells[:base]
        if not self._places:
            return cells
        return (cells[0], text_cell(place_cell(row.place) if row.place is not None else "-"), *cells[1:])

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._apply()

    _repaints_held: bool | None = None
    """While _apply runs, whether the whole table was asked to be drawn again (None: not running)."""

    def _apply(self) -> None:
        # DataTable.update_cell asks for the whole table to be drawn again, for each cell: with Textual's bookkeeping
        # of the lines to draw, a third of a millisecond each, and a view shown after a few scans of a busy machine
        # updates thousands of cells (issue 12, key latency: the Signals view). Asked once here, at the end.
        if self._repaints_held is not None:  # within another _apply (select_key): that one asks at its end
            self._apply_rows()
            return
        self._repaints_held = False
        before = self._lines_shown()
        try:
            self._apply_rows()
        finally:
            held, self._repaints_held = self._repaints_held, None
            if held:
                self._refresh_changed_lines(before)

    def _lines_shown(self) -> tuple[tuple[object, ...], list[tuple[str, Row | None]]] | None:
        """What the table's lines show: what all of them depend on (scroll, size, column widths and labels, cursor,
        hover), and the key and row of each row line on screen, top first; None before the table is drawn, or when a
        row is taller than a line."""
        if not self.is_mounted or not self.size or not self.show_header or self.header_height != 1:
            return None
        top = round(self.scroll_y)
        rows: list[tuple[str, Row | None]] = []
        for index in range(top, min(top + self.size.height - 1, self.row_count)):
            key = self._row_locations.get_key(index)
            if key is None or key not in self.rows or self.rows[key].height != 1:
                return None
            rows.append((str(key.value), self._shown.get(str(key.value))))
        columns = tuple((column.key, column.label, column.width, column.auto_width) for column in self.ordered_columns)
        return (self.scroll_offset, self.size, columns, self.cursor_coordinate, self.hover_coordinate), rows

    def _refresh_changed_lines(self, before: tuple[tuple[object, ...], list[tuple[str, Row | None]]] | None) -> None:
        """Draw again the lines whose row changed, not the whole table.

        DataTable draws the whole table again after any change, every line of it through Textual's line pipeline, the
        empty ones under the rows too: with the lesson demos running, an alert comes or goes at almost every scan, and
        the Overview's alerts table of 31 lines was a third of each frame (issue 12, the demos' cost). A line shows the
        row at its place (the row itself: a changed row is a new Row), so a line whose place holds the same row as
        before, or no row before and after, looks the same. Anything else that changed (scroll, size, a column, the
        cursor) draws the whole table again.
        """
        after = self._lines_shown()
        if before is None or after is None or before[0] != after[0]:
            self.refresh()
            return
        old, new = before[1], after[1]
        width = self.size.width
        for line in range(max(len(old), len(new))):
            was = old[line] if line < len(old) else None
            now = new[line] if line < len(new) else None
            if was is None or now is None or was[0] != now[0] or was[1] is not now[1]:
                self.refresh(Region(0, 1 + line, width, 1))  # line 0 is the header

    def _apply_rows(self) -> None:
        cursor_key = self.cursor_key
        if self.follow_top and self.cursor_row == 0:
            cursor_key = None
        query = self.filter_text
        wanted = {key: row for key, row in self._all.items() if not query or matches(row, query)}
        resort = False
        gone = [key for key in self._shown if key not in wanted]
        changed = bool(gone)
        if len(gone) > max(REBUILD_AT, len(self._shown) // 2):
            # DataTable.remove_row renumbers every row (O(rows)), so removing thousands one by one (a filter
            # typed over 5,000 pipes, a stress demo ending) takes seconds. Past this point one clear and
            # re-adding what stays is faster; the cursor is put back on its object below.
            self.clear()
            self._shown = {}
            resort = True
        else:
            for key in gone:
                self.remove_row(key)
                del self._shown[key]
        sort_index = self._sort_index()
        for key, row in wanted.items():
            old = self._shown.get(key)
            if old is None:
                self.add_row(*self.cells(row), key=key)
                resort = changed = True
            elif old is not row:
                for index, (column, new, previous) in enumerate(zip(self.spec, self.cells(row), self.cells(old),
                                                                    strict=True)):
                    if not new.same(previous):
                        self.update_cell(key, column.key, new, update_width=True)
                        resort = resort or index == sort_index
            self._shown[key] = row
        if resort:
            self._sort()
        if cursor_key is not None and cursor_key in self._shown:
            self.select_key(cursor_key)
        elif cursor_key is None and self.follow_top and self.row_count and (changed or resort or self.cursor_row):
            # Not when nothing moved: move_cursor scrolls the cursor into view, at every scan of an idle machine.
            self.move_cursor(row=0, animate=False)

    # --- cursor ---------------------------------------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        if not self._shown or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except (RowDoesNotExist, LookupError):
            return None
        return key

    @property
    def current_row(self) -> Row | None:
        key = self.cursor_key
        return self._shown.get(key) if key is not None else None

    def row_for(self, key: str) -> Row | None:
        return self._all.get(key)

    @property
    def shown_keys(self) -> list[str]:
        """Row keys in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def select_key(self, key: str) -> bool:
        """Put the cursor on a row (clearing a filter that hides it); False when no such row."""
        if key not in self._all:
            return False
        if key not in self._shown:
            self.filter_text = ""
            self._apply()
        index = self.get_row_index(key)
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)
        return True

    # --- sorting --------------------------------------------------------------------------------------------

    def _sort_index(self) -> int:
        return next(index for index, column in enumerate(self.spec) if column.key == self.sort_column)

    def _sort(self) -> None:
        # Ties are broken by the other columns, so equal rows never swap places between refreshes.
        index = self._sort_index()
        self.sort(
            key=lambda cells: (cells[index].sort_key, tuple(cell.sort_key for cell in cells)),
            reverse=self.sort_reverse,
        )

    def sort_by(self, column_key: str, reverse: bool | None = None) -> None:
        """Sort by a column; picking the current column again flips the order."""
        if reverse is None:
            reverse = not self.sort_reverse if column_key == self.sort_column else False
        previous = self.sort_column
        self.sort_column, self.sort_reverse = column_key, reverse
        for column in self.spec:
            if column.key in (previous, column_key):
                self.columns[ColumnKey(column.key)].label = self._label(column)
        cursor_key = self.cursor_key
        self._sort()
        if self.fit_columns():  # the sort column's label grew by its arrow
            self._require_update_dimensions = True
        self.refresh()
        if cursor_key is not None:
            self.select_key(cursor_key)

    def _label(self, column: Column) -> Text:
        arrow = (SORT_DOWN if self.sort_reverse else SORT_UP) if column.key == self.sort_column else ""
        return Text(column.label + arrow)

    def action_sort_next(self) -> None:
        keys = [column.key for column in self.spec]
        self.sort_by(keys[(keys.index(self.sort_column) + 1) % len(keys)], reverse=False)

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort_column, reverse=not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if event.column_key.value is not None:
            self.sort_by(event.column_key.value)
