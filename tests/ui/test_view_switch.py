"""A view switch draws only what it changes (issue 12, key latency): no table cell is drawn again."""

from __future__ import annotations

from ipcmon.ui.widgets.tables import ObjectTable
from tests.ui.conftest import canned_app, started, view


async def test_coming_back_to_a_view_draws_none_of_its_cells_again() -> None:
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        for key in "5156":
            await pilot.press(key)
            await pilot.pause()
        table = view(app, "signals").table
        assert isinstance(table, ObjectTable) and table.row_count > 0
        drawn = table.cells_rendered
        assert drawn > 0
        for key in "5151":
            await pilot.press(key)
            await pilot.pause()
        # DataTable itself drops every drawn cell at each focus change and resize, that is at each switch.
        assert table.cells_rendered == drawn
