"""What a table costs the UI thread when its cells change or it is drawn again (issue 12: key latency, the demos' cost):
each changed column measured once, the table's style worked out once per frame."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
import textual.widgets._data_table
from rich.style import Style
from textual.app import App, ComposeResult
from textual.dom import DOMNode
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets.data_table import ColumnKey

from ipcmon.ui.view.table import Column, Row, text_cell
from ipcmon.ui.widgets.tables import ObjectTable
from tests.ui import canned
from tests.ui.conftest import canned_app, started
from tests.ui.test_idle_cost import orphans

ROWS = 300
CHANGED = 40
COLUMNS = (Column("name", "NAME"), Column("value", "VALUE"))


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield ObjectTable(COLUMNS)


def rows(values: dict[int, str]) -> list[Row]:
    """ROWS rows, ``name-N`` and its value (``values``, else ten x's)."""
    return [Row(key=f"row-{index}", cells=(text_cell(f"name-{index}"), text_cell(values.get(index, "x" * 10))),
                record=index, search=f"name-{index}") for index in range(ROWS)]


@contextmanager
def measured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every cell whose width is measured while the block runs: by DataTable (textual.render.measure, as its module
    imported it) or by ObjectTable._cell_width."""
    seen: list[object] = []
    original_measure = textual.widgets._data_table.measure

    def measure(console: object, renderable: object, default: int, **kwargs: object) -> int:
        seen.append(renderable)
        return original_measure(console, renderable, default, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(textual.widgets._data_table, "measure", measure)
        original_width = getattr(ObjectTable, "_cell_width", None)
        if original_width is not None:
            def cell_width(self: ObjectTable, row_key: object, column_key: object) -> int:
                seen.append((row_key, column_key))
                return original_width(self, row_key, column_key)  # type: ignore[no-any-return]

            patched.setattr(ObjectTable, "_cell_width", cell_width)
        yield seen


@asynccontextmanager
async def filled() -> AsyncIterator[tuple[Pilot[None], ObjectTable]]:
    """A TableApp at 100×30 whose table holds rows({}), drawn."""
    app = TableApp()
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one(ObjectTable)
        table.sync(rows({}))
        await pilot.pause()
        yield pilot, table


async def test_changed_cells_measure_each_column_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """DataTable measured the whole column again for each changed cell narrower than the column: CHANGED × ROWS."""
    async with filled() as (pilot, table):
        value = table.columns[ColumnKey("value")]
        assert value.content_width == 10
        with measured(monkeypatch) as seen:
            # CHANGED cells narrow (as counts do, while other rows keep wider ones): each cell measured once.
            table.sync(rows({index: "z" * 3 for index in range(CHANGED)}))
            await pilot.pause()
        assert value.content_width == 10
        assert len(seen) <= ROWS + CHANGED
        table.sync(rows({0: "y" * 30}))
        await pilot.pause()
        assert value.content_width == 30
        with measured(monkeypatch) as seen:
            table.sync(rows({0: "y" * 12}))  # the widest cell narrows: the whole column is looked at, once
            await pilot.pause()
        assert value.content_width == 12
        assert len(seen) <= ROWS + 1
        with measured(monkeypatch) as seen:
            table.sync(rows({0: "y" * 12, 5: "w" * 25}))  # a cell wider than the column: only it is measured
            await pilot.pause()
        assert value.content_width == 25
        assert len(seen) <= 2


async def test_a_table_works_out_its_style_once_per_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """DataTable asked for its style at every line, and Textual works it out from every ancestor each time."""
    app = canned_app(canned.canned_snapshot(extra_shm=orphans(20)))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        await pilot.pause()
        alerts = app.query_one("#alerts", ObjectTable)
        assert alerts.row_count > 20
        asked: list[DOMNode] = []
        original = DOMNode.rich_style

        def rich_style(self: DOMNode) -> Style:
            if self is alerts:
                asked.append(self)
            return original.fget(self)  # type: ignore[attr-defined,no-any-return]

        with monkeypatch.context() as patched:
            patched.setattr(DOMNode, "rich_style", property(rich_style))
            lines = alerts.render_lines(alerts.size.region)
            alerts.refresh()  # and drawn again as a frame draws it
            await pilot.pause()
        assert len(lines) > 20
        assert 1 <= len(asked) <= 3
        assert alerts._line_style is None  # outside a frame, the style is Textual's, worked out when asked


async def test_a_sync_that_changes_many_cells_asks_for_one_repaint(monkeypatch: pytest.MonkeyPatch) -> None:
    """DataTable.update_cell asks for the whole table to be drawn again, once per cell. A sync asks at most once for the
    whole table, or for each line on screen whose row changed (ObjectTable._refresh_changed_lines)."""
    async with filled() as (pilot, table):
        asked: list[tuple[object, ...]] = []
        original = Widget.refresh

        def refresh(self: Widget, *regions: Region, **kwargs: object) -> Widget:
            if self is table and not kwargs.get("layout"):
                asked.append(regions)
            return original(self, *regions, **kwargs)  # type: ignore[arg-type]

        with monkeypatch.context() as patched:
            patched.setattr(Widget, "refresh", refresh)
            table.sync(rows({index: f"v{index}" for index in range(CHANGED)}))
        whole = [regions for regions in asked if not regions]
        lines = [regions for regions in asked if regions]
        assert len(whole) <= 1 and len(lines) <= table.size.height, asked
        assert all(len(regions) == 1 and regions[0].height == 1 for regions in lines), lines  # type: ignore[attr-defined]
        await pilot.pause()
        assert table.get_row("row-1")[1].plain == "v1"
        assert table._repaints_held is None  # outside a sync, every repaint asked for is Textual's at once
        lines = "\n".join(strip.text for strip in table.screen._compositor.render_strips())
        assert " v1 " in lines  # drawn with its new value (name-1 is the second row)
