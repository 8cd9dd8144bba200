"""A table whose rows grow past its height brings its scrollbars in without laying the screen out, and without
recursing (scrolling.resize_in_place)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from ipcmon.ui.view.table import Cell, Column, Row
from ipcmon.ui.widgets.tables import ObjectTable

COLUMNS = (Column("name", "NAME", None, keep=40), Column("kind", "KIND", None, keep=40),
           Column("holders", "HOLDERS", None, keep=50))


class TallApp(App[None]):
    CSS = "ObjectTable { height: 20; }"

    def compose(self) -> ComposeResult:
        yield ObjectTable(COLUMNS)


def rows(count: int) -> list[Row]:
    """Rows wider than the screen (150 cells of text): a vertical scrollbar would leave room for a horizontal one."""
    return [Row(key=f"row-{index}", cells=(Cell(f"/obj-{index}".ljust(50, "x"), (index,)),
                                           Cell("shm".ljust(50, "y"), (0,)), Cell("h".ljust(50, "z"), (0,))),
                record=index, search=f"obj-{index}") for index in range(count)]


@pytest.mark.parametrize("counts", [(1, 20), (19, 20), (1, 21), (1, 20, 1, 40)])
async def test_rows_growing_past_the_height_bring_a_scrollbar_without_recursing(counts: tuple[int, ...]) -> None:
    """A newcomer's crash (RecursionError): the rows of a filtered shm view grew past the table's height while no
    scrollbar showed; showing one asked the table for a layout, which showed or hid it again, without end."""
    app = TallApp()
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.query_one(ObjectTable)
        for count in counts:
            table.sync(rows(count))
            await pilot.pause()
            assert table.row_count == count
            assert table.show_vertical_scrollbar == (count + 1 > 20)  # the header is a line too
