"""A view switch draws only what it changes (issue 12, key latency): no table cell is drawn again."""

from __future__ import annotations

from dataclasses import replace

import pytest
from textual.screen import Screen
from textual.widgets._tabs import Underline

from ipcmon.ui.views import Views
from ipcmon.ui.widgets.footer import SteadyFooter
from ipcmon.ui.widgets.tables import ObjectTable
from tests.ui import canned
from tests.ui.conftest import canned_app, started, view, wait_for


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


async def test_a_view_switch_is_one_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch's own frame and no follow-up: Textual's Tabs moved the underline a frame later, and the footer's keys
    that changed width laid the screen out once more (issue 12, key latency: ~70 ms after the first frame)."""
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        for key in "1234567":  # each view shown once: the footer has every key widget it needs
            await pilot.press(key)
            await pilot.pause()
        frames: list[object] = []
        display = app._display

        def counted(screen: Screen[object], renderable: object) -> None:
            if renderable is not None:
                frames.append(renderable)
            display(screen, renderable)  # type: ignore[arg-type]

        monkeypatch.setattr(app, "_display", counted)
        footer = app.query_one(SteadyFooter)
        for key in "2615461":
            frames.clear()
            await pilot.press(key)
            await pilot.pause(0.2)  # long enough for follow-up frames, were there any
            assert len(frames) == 1, key
            # What the follow-up frames fixed is right in the first: the underline under the active tab, and each
            # key as wide as its label.
            views = app.query_one(Views)
            tab = views.get_tab(views.active)
            underline = views.query_one(Underline)
            span = tab.virtual_region.shrink(tab.styles.gutter).column_span
            assert (underline.highlight_start, underline.highlight_end) == span, key
            for shown in footer.shown_keys:
                label = shown.render().cell_len
                assert shown.region.width == label + shown.styles.gutter.width, (key, shown.description)


async def test_rows_that_move_are_not_drawn_again() -> None:
    """A row sorted in above the others moves them all down a line: only its own cells are drawn, the others are given
    their new row (which a click finds them by)."""
    base = canned.canned_snapshot()
    first = replace(base.shm[0], name="/a", path="/dev/shm/a", inode=4999)  # sorted first by name
    app = canned_app(base, canned.canned_snapshot(extra_shm=(first,)))
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        await pilot.pause()
        table = view(app, "shm").table
        assert isinstance(table, ObjectTable)
        keys = table.shown_keys
        drawn = table.cells_rendered
        app.request_scan()
        await wait_for(pilot, lambda: table.row_count == len(keys) + 1, "the new segment's row")
        await pilot.pause()
        assert table.shown_keys == [first.object_key, *keys]
        assert table.cells_rendered - drawn == len(table.columns)  # the new row's cells only
        drawn_lines = table.render_lines(table.size.region)  # as the frame drew them
        for row in range(table.row_count):
            strip = drawn_lines[row + table.header_height]
            assert {segment.style.meta.get("row") for segment in strip if segment.style and segment.style.meta} == {row}


async def test_the_current_view_is_the_table_shown_and_none_under_another_screen() -> None:
    """current_view finds the views once (check_action asks for it for every binding, several times a switch) and still
    says what a query of the App said: the table view shown, none for the Overview and Demos, none under a dialog."""
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        assert app.current_view() is None  # the Overview
        for key, view_id in (("2", "shm"), ("5", "signals"), ("6", "events"), ("3", "mqueue")):
            await pilot.press(key)
            await pilot.pause()
            assert app.current_view() is view(app, view_id), key
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: len(app.screen_stack) == 2, "the help screen")
        assert app.current_view() is None
        assert not app.check_action("filter", ())  # "/" is not offered under the help screen
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.screen_stack) == 1, "the help screen closed")
        assert app.current_view() is view(app, "mqueue")
        await pilot.press("7")
        await pilot.pause()
        assert app.current_view() is None  # Demos
