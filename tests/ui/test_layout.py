"""The dashboard at every size (issue 12): 80×24 keeps the hazards, tabs, scan time and read-only state on screen;
columns share the width by what they hold; the sort arrow always shows; the split follows the content; Home,
End, PageUp and PageDown move the cursor; the hidden-process note is one line, names the pid, and goes away."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual.widgets import Sparkline, Tabs

from ipcmon.model import Holder, Snapshot
from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.view.table import fit_widths
from ipcmon.ui.views import OBJECT_SPECS, VIEWS, tab_labels
from ipcmon.ui.widgets.demos_view import NarrationLog
from ipcmon.ui.widgets.header import StatusHeader
from ipcmon.ui.widgets.object_view import DetailPane, Notes
from ipcmon.ui.widgets.overview import MetricCard
from ipcmon.ui.widgets.tables import ObjectTable
from tests.ui import canned
from tests.ui.conftest import canned_app, second_scan, started, view, wait_for

SMALL = (80, 24)
LARGE = (200, 60)


def with_hidden(snapshot: Snapshot, *pids: int) -> Snapshot:
    """The snapshot with these processes not fully readable (as the scan marks them), counted in the total."""
    processes = tuple(replace(p, hidden=p.pid in pids) for p in snapshot.processes)
    return replace(snapshot, processes=processes, hidden_processes=len(pids))


def many_segments(count: int) -> Snapshot:
    extra = tuple(replace(canned.canned_snapshot().shm[1], name=f"/many-{index:03}", path=f"/dev/shm/many-{index:03}",
                          inode=1000 + index) for index in range(count))
    return canned.canned_snapshot(extra_shm=extra)


def header_text(app: IpcmonApp) -> str:
    return str(app.query_one(StatusHeader).render())


async def test_overview_at_80x24_keeps_alerts_tabs_scan_time_and_read_only() -> None:
    app = canned_app(read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.pause()
        screen = app.screen.region
        alerts = app.query_one("#alerts", ObjectTable)
        # The hazards list is on screen with room for rows, below the (compressed) cards.
        assert alerts.region.height >= 5 and screen.contains_region(alerts.region), (alerts.region, screen)
        assert app.query_one("#view-overview").has_class("-compact")
        assert not any(spark.display for spark in app.query(Sparkline))
        # Every tab is inside the screen, with its number and a label.
        tabs = list(app.query_one(Tabs).query("Tab"))
        assert len(tabs) == len(VIEWS)
        for tab, label in zip(tabs, tab_labels(SMALL[0]), strict=True):
            assert screen.contains_region(tab.region), (label, tab.region)
            assert str(tab.label) == label
        assert [str(tab.label) for tab in tabs][:2] == ["1 Overview", "2 Shm"]
        # The header keeps the scan time and says read-only, within 80 columns.
        header = header_text(app)
        assert "scan 12 ms" in header and "read-only" in header and "live" in header
        assert len(header) <= SMALL[0]


async def test_header_at_80_columns_not_root_paused_read_only() -> None:
    app = canned_app(is_root=False, read_only=True, host="a-rather-long-host-name.example.org")
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("p")
        await pilot.pause()
        header = header_text(app)
        for part in ("not root: 1 process unreadable", "read-only", "PAUSED", "scan 12 ms"):
            assert part in header, header
        assert len(header) <= SMALL[0] and "example.org" not in header  # the host gave way first


async def test_full_tab_titles_and_cards_when_large() -> None:
    app = canned_app()
    async with app.run_test(size=LARGE) as pilot:
        await started(pilot, app)
        await pilot.pause()
        assert [str(tab.label) for tab in app.query_one(Tabs).query("Tab")][1] == "2 Shared memory"
        assert not app.query_one("#view-overview").has_class("-compact")
        assert all(spark.display for spark in app.query(Sparkline))
        assert "Linux 6.1.0-canned" in header_text(app) and "read-only" not in header_text(app)


def test_tab_labels_shorten_to_fit() -> None:
    for width in (120, 80, 60):
        labels = tab_labels(width)
        assert sum(len(label) + 2 for label in labels) <= width, (width, labels)
        assert [label.split()[0] for label in labels] == [str(n) for n in range(1, len(VIEWS) + 1)]
    assert tab_labels(60)[0] == "1 Ovw"


async def test_every_view_works_at_80x24() -> None:
    app = canned_app(canned.canned_snapshot(), canned.later_snapshot())
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await second_scan(pilot, app)
        for number, (view_id, _) in enumerate(VIEWS[1:6], start=2):
            await pilot.press(str(number))
            await pilot.pause()
            table = view(app, view_id).table
            pane = view(app, view_id).query_one(DetailPane)
            assert table.row_count, view_id
            assert table.region.height >= 3 and pane.region.height >= 4, (view_id, table.region, pane.region)
            assert app.screen.region.contains_region(pane.region), view_id


def test_fit_widths_shares_by_what_columns_hold() -> None:
    # Everything fits: each column gets what it holds.
    assert fit_widths([5, 10, 30], [4, 8, 8], 60) == [5, 10, 30]
    # Too narrow: the widest gives up room first, the short ones keep theirs.
    assert fit_widths([5, 10, 30], [4, 8, 8], 30) == [5, 10, 15]
    assert fit_widths([5, 20, 30], [4, 8, 8], 30) == [5, 13, 12]
    # Never below the minimums (the table then scrolls sideways).
    assert fit_widths([5, 20, 30], [5, 8, 8], 10) == [5, 8, 8]


def test_fit_widths_gives_up_the_minimums_before_scrolling() -> None:
    # A name that keeps 20, a mode 9, holders 8; labels 6, 4 and 7: the minimums (37) do not fit 30 cells, the labels
    # do. The largest minimum gives way first, down to a common level: the name, not the mode.
    natural, minimum, labels = [30, 9, 30], [20, 9, 8], [6, 4, 7]
    assert fit_widths(natural, minimum, 30, floors=(labels,)) == [13, 9, 8]
    # Narrower: all of them come down to a common level, none below its label.
    assert fit_widths(natural, minimum, 21, floors=(labels,)) == [7, 7, 7]
    assert fit_widths(natural, minimum, 17, floors=(labels,)) == [6, 4, 7]
    # Each floor in turn: below the labels, the first column (the sort column, say) keeps its label.
    assert fit_widths(natural, minimum, 14, floors=(labels, [6, 3, 3])) == [6, 4, 4]
    # Not even the last floor fits: the columns get it, and the table scrolls sideways.
    assert fit_widths(natural, minimum, 10, floors=(labels, [6, 3, 3])) == [6, 3, 3]
    assert fit_widths(natural, minimum, 10, floors=(labels,)) == labels
    # No floors: the minimums, as before.
    assert fit_widths(natural, minimum, 30) == minimum


async def test_columns_share_the_width() -> None:
    holders = tuple(Holder(4242, "producer", fd, False, "rw") for fd in range(3, 40))
    segment = replace(canned.canned_snapshot().shm[0], name="/crowded", path="/dev/shm/crowded", inode=999,
                      holders=holders)
    app = canned_app(canned.canned_snapshot(extra_shm=(segment,)))
    async with app.run_test(size=(220, 50)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        await pilot.pause()
        table = view(app, "shm").table
        holders_column = table.columns[next(key for key in table.columns if key.value == "holders")]
        assert holders_column.width > 100  # it stopped at 60 before issue 12
        assert table.virtual_size.width <= table.scrollable_content_region.width
        # At 160 the pipes table's last column (READERS) is on screen.
        await pilot.resize_terminal(160, 40)
        await pilot.press("4")
        await pilot.pause()
        pipes = view(app, "pipes").table
        assert pipes.virtual_size.width <= pipes.scrollable_content_region.width
        assert "READERS" in pipes.render_line(0).text
        # At 80 the signal masks are not cut while COMM has room to spare.
        await pilot.resize_terminal(*SMALL)
        await pilot.press("5")
        await pilot.pause()
        signals = view(app, "signals").table
        header = signals.render_line(0).text
        for label in ("IGNORED", "CAUGHT", "WAITING"):
            assert label in header
        caught = signals.columns[next(key for key in signals.columns if key.value == "caught")]
        assert caught.width >= len("USR1,TERM")


async def test_sort_arrow_shows_in_every_column_at_80_columns() -> None:
    app = canned_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        for number, (view_id, _) in enumerate(VIEWS[1:5], start=2):
            await pilot.press(str(number))
            table = view(app, view_id).table
            assert isinstance(table, ObjectTable)
            for column in table.spec:
                for _ in range(2):  # ▲ then ▼
                    table.sort_by(column.key)
                    await pilot.pause()
                    arrow = "▼" if table.sort_reverse else "▲"
                    shown = table.columns[next(key for key in table.columns if key.value == column.key)]
                    assert shown.width >= len(column.label) + 2, (view_id, column.label, shown.width)
                    header = table.render_line(0).text
                    # On screen as the table is, not scrolled to: the columns share the width, labels whole.
                    assert table.max_scroll_x == 0, (view_id, column.label, table.virtual_size)
                    assert column.label + " " + arrow in header, (view_id, header)
                    assert header.index(arrow) < table.scrollable_content_region.width, (view_id, header)
        # The Events timeline is always newest first: its TIME column says so.
        await pilot.press("6")
        await pilot.pause()
        assert "TIME ▼" in view(app, "events").table.render_line(0).text


async def test_home_end_page_keys_move_the_cursor() -> None:
    app = canned_app(many_segments(80))
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        table = view(app, "shm").table
        await wait_for(pilot, lambda: table.row_count == 85, "85 rows")
        assert table.cursor_row == 0
        await pilot.press("end")
        assert table.cursor_row == table.row_count - 1
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("pagedown")
        page = table.cursor_row
        assert 2 <= page < table.row_count - 1
        await pilot.press("pagedown")
        assert table.cursor_row > page
        await pilot.press("pageup", "pageup")
        assert table.cursor_row == 0
        # The Overview's alerts and the Events view's table are ObjectTables too: the same keys.
        await pilot.press("1", "end")
        alerts = app.query_one("#alerts", ObjectTable)
        assert alerts.cursor_row == alerts.row_count - 1
        await pilot.press("home")
        assert alerts.cursor_row == 0


async def test_split_follows_the_content() -> None:
    snapshot = canned.canned_snapshot()
    app = canned_app(replace(snapshot, mqueues=snapshot.mqueues[:1]))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("3")
        await pilot.pause()
        table = view(app, "mqueue").table
        pane = view(app, "mqueue").query_one(DetailPane)
        assert table.row_count == 1
        assert table.region.height == 3  # header and one row (3 is the least a table takes)
        # The detail pane has the rest, and all of its lines fit (the history is not cut off).
        assert pane.region.height > 25
        assert pane.wanted_height(pane.region.width) <= pane.region.height
        assert pane.max_scroll_y == 0


async def test_hidden_note_is_one_line_with_the_pid_and_dismissed_everywhere() -> None:
    app = canned_app(with_hidden(canned.canned_snapshot(), 4300))
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.pause()
        notes = app.query_one("#view-overview").query_one(Notes)
        assert notes.display and notes.region.height == 1
        text = str(notes.render())
        assert "pid 4300 forgetful" in text and "x or click: hide" in text
        await pilot.press("2")
        await pilot.pause()
        shm_notes = view(app, "shm").query_one(Notes)
        assert shm_notes.display and shm_notes.region.height == 1
        await pilot.press("x")
        await pilot.pause()
        assert not shm_notes.display
        await pilot.press("1")
        await pilot.pause()
        assert not notes.display  # hidden in every view
        # A process newly hidden brings the note back; a click hides it again.
        app.snapshot = with_hidden(canned.canned_snapshot(), 4300, 4310)
        await wait_for(pilot, lambda: notes.display, "the note back for pid 4310")
        assert "pid 4300 forgetful, 4310 writer" in str(notes.render())
        await pilot.pause()  # laid out again, with the note
        assert await pilot.click(notes)
        await pilot.pause()
        assert not notes.display


async def test_hidden_note_without_pids_says_so() -> None:
    app = canned_app()  # the canned snapshot counts a hidden process without naming it
    async with app.run_test(size=LARGE) as pilot:
        await started(pilot, app)
        assert "1 process not fully readable (pid unknown)" in str(app.query_one(Notes).render())


async def test_cards_of_kinds_not_scanned_say_so() -> None:
    app = canned_app(replace(canned.canned_snapshot(), kinds=("shm",)))
    async with app.run_test(size=LARGE) as pilot:
        await started(pilot, app)
        await pilot.pause()
        for card in app.query(MetricCard):
            summary = str(card.query_one(".summary").render())
            if card.metric.id == "budgets":  # read whatever --kind says; two lines, no sparkline
                assert not card.has_class("-unscanned") and not card.query(Sparkline)
            elif card.metric.id == "shm":
                assert not card.has_class("-unscanned") and card.query_one(Sparkline).display
            else:
                assert "not scanned: ipcmon was started with --kind shm" in summary, card.metric.id
                assert not card.query_one(Sparkline).display and not card.query_one(".caption").display


async def test_narration_wraps_to_the_pane() -> None:
    app = canned_app()
    async with app.run_test(size=LARGE) as pilot:
        await started(pilot, app)
        await pilot.press("7")
        await pilot.pause()
        log = app.query_one(NarrationLog)
        log.add(Text(" ".join(f"word{index}" for index in range(60))))
        await pilot.pause()
        widest = max(strip.cell_length for strip in log.lines)
        assert 100 < widest <= log.scrollable_content_region.width
        await pilot.resize_terminal(60, 24)
        await pilot.pause()
        await pilot.pause()
        assert max(strip.cell_length for strip in log.lines) <= log.scrollable_content_region.width <= 60
        assert any("word59" in strip.text for strip in log.lines)


def test_specs_cover_the_table_views() -> None:
    # The tests above walk views 2-6 by number: they are the object views and Events.
    assert [spec.id for spec in OBJECT_SPECS] == [view_id for view_id, _ in VIEWS[1:5]]


def test_a_sparkline_redraws_only_when_its_picture_changes() -> None:
    from ipcmon.ui.widgets.overview import redraws

    assert redraws([], [5.0])  # first point
    assert redraws([5.0], [5.0, 5.0])  # one point is a full bar, two a flat row
    assert redraws([5.0, 5.0], [5.0, 5.0, 5.0]) is False  # constant stays a flat row of lowest bars
    assert redraws([5.0, 5.0], [7.0, 7.0]) is False  # any constant series looks the same
    assert redraws([5.0, 5.0], [5.0, 5.0, 6.0])  # a change shows
    assert redraws([1.0, 2.0], [1.0, 2.0, 2.0])  # a non-constant series moves as the window slides
    assert redraws([1.0, 2.0], [1.0, 2.0]) is False


async def test_names_stay_readable_at_80_columns() -> None:
    # A newcomer at 80×24: every name was cut to ten cells while MODE and OWNER kept their full width.
    app = canned_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        await pilot.pause()
        table = view(app, "shm").table
        assert isinstance(table, ObjectTable)
        name_width = table.columns[next(key for key in table.columns if key.value == "name")].width
        # Every column is on screen (HOLDERS whole), so the name gives up a few cells of the 20 it keeps when there is
        # room: 14, cut in its middle, its start and its end both read.
        assert name_width >= 14, name_width
        header = table.render_line(0).text
        assert "HOLDERS" in header and table.max_scroll_x == 0, header
        line = table.render_line(1 + table.get_row_index("shm:23:103")).text  # /unlinked-buffer
        assert "/unlin…-buffer" in line, line


async def test_a_more_serious_alert_arriving_above_takes_the_cursor() -> None:
    # Without the canned blocked writer: a blocked process ranks above any leak (health.FIRST), whatever its bytes.
    quiet = replace(canned.canned_snapshot(), stuck=())
    app = canned_app(quiet)
    async with app.run_test(size=LARGE) as pilot:
        await started(pilot, app)
        alerts = app.query_one("#alerts", ObjectTable)
        assert alerts.cursor_row == 0
        top = alerts.current_row
        assert top is not None
        # A bigger orphan appears: it ranks first, and the cursor, on the top row, follows it there.
        bigger = replace(quiet.shm[1], name="/huge-orphan", path="/dev/shm/huge-orphan", inode=9999,
                         size=1 << 30, allocated=1 << 30, state="orphaned", holders=())
        app._show(replace(canned.canned_snapshot(extra_shm=(bigger,)), stuck=()))
        await pilot.pause()
        current = alerts.current_row
        assert current is not None and "/huge-orphan" in current.cells[2].plain, current
