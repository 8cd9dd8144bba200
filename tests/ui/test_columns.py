"""Columns share the width by what they hold (issue 12). The Events view's, by what the lines on screen hold: every
header on screen at 80 and 120 columns, and a real segment with a very long name cut with an ellipsis instead of
pushing PID…DETAIL off screen. The object tables keep what says something whole at 80 columns (a mode)."""

from __future__ import annotations

from dataclasses import replace

import posix_ipc
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.screens.process import ProcessScreen
from ipcmon.ui.view.describe import hang_indent
from ipcmon.ui.view.timeline import EVENT_COLUMNS
from ipcmon.ui.views import VIEWS
from ipcmon.ui.widgets.object_view import DetailPane
from ipcmon.ui.widgets.tables import ObjectTable
from ipcmon.ui.widgets.timeline_table import SORT_DOWN, TimelineTable
from tests.helpers import Cleanup, Spawn
from tests.ui import canned
from tests.ui.conftest import canned_app, live_app, second_scan, started, ui_name, view, wait_for

# Real scans of a machine other tests keep busy: generous, but bounded.
pytestmark = pytest.mark.timeout(300)

SHORTS = 60
"""Short-named segments: more than two pages of lines."""
LONG = 200
"""Cells in the segment's name: more than a 120-column screen (NAME_MAX, 255, allows it)."""


def timeline(app: IpcmonApp) -> TimelineTable:
    table = view(app, "events").table
    assert isinstance(table, TimelineTable)
    return table


def assert_every_header_on_screen(table: TimelineTable) -> str:
    """Every column's label in the header line as drawn (but those left out at this width: Column.hide_below),
    with no sideways scroll; the header line."""
    header = table.render_line(0).text
    width = table.size.width
    for index, column in enumerate(EVENT_COLUMNS):
        label = column.label + (SORT_DOWN if index == 0 else "")
        if column.hide_below is not None and width < column.hide_below:
            assert label not in header, (label, header)  # its room goes to the others
        else:
            assert label in header, (label, header)
    assert table.virtual_size.width <= table.scrollable_content_region.width, (table.virtual_size, table.region)
    assert table.max_scroll_x == 0
    return header


async def created_event_shown(pilot: Pilot[None], app: IpcmonApp, name: str) -> TimelineTable:
    """The Events view shown, filtered to the segment's events, once its "created" event is there."""
    await wait_for(pilot, lambda: any(e.object == name and e.event == "created" for e in app.events),
                   "the long-named segment's created event")
    await pilot.press("6")
    table = timeline(app)
    await wait_for(pilot, lambda: table.row_count > 0, "the timeline's lines")
    return table


async def test_a_long_name_is_cut_and_every_column_stays_on_screen(cleanup: Cleanup) -> None:
    name = ui_name("long-" + "x" * LONG)[:LONG + 1]
    assert len(name) == LONG + 1
    app = live_app(interval=0.5, kinds=("shm",))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        shm = cleanup.add(lambda s: s.unlink(), posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=8192))
        shm.close_fd()
        table = await created_event_shown(pilot, app, name)
        await pilot.pause()
        # The whole timeline, whatever else the machine did: every header on screen.
        assert_every_header_on_screen(table)
        # Only this segment's events: the long name is the widest cell, and it is the one cut.
        table.set_filter(name)
        await wait_for(pilot, lambda: table.row_count >= 1, "the segment's lines")
        await pilot.pause()
        header = assert_every_header_on_screen(table)
        row = table.current_row
        assert row is not None and row.cells[2].plain == "created", row
        line = table.render_line(1).text
        assert name not in line and name[:10] in line and "…" in line, line
        # Cut in its middle: the end, where names a program makes differ (a counter, a pid), stays.
        tail = line[line.index("…") + 1:].split()
        assert tail and tail[0] in name[-40:], line
        # PID…DETAIL are on screen, under their headers, with what they hold (the size in DETAIL).
        detail = row.cells[-1].plain
        assert detail and detail in line, (detail, line)
        assert line.index(detail) == header.index("DETAIL"), (header, line)
        assert row.cells[0].plain in line  # TIME is whole
        # At 80×24 too: the header whole, the name still cut, DETAIL's column on screen.
        for columns, source in ((100, True), (99, False)):  # README: SOURCE is left out below 100 columns
            await pilot.resize_terminal(columns, 30)
            await pilot.pause()
            await pilot.pause()
            assert ("SOURCE" in table.render_line(0).text) is source, (columns, table.render_line(0).text)
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        header = assert_every_header_on_screen(table)
        line = table.render_line(1).text
        assert "…" in line and row.cells[0].plain in line and "created" in line, line
        assert len(line.rstrip()) <= table.scrollable_content_region.width
        # Without the filter the long line may scroll away; the widths then follow what is on screen, still
        # with every header.
        table.set_filter("")
        await pilot.pause()
        assert_every_header_on_screen(table)


async def test_columns_narrow_again_when_the_long_line_goes_from_the_screen(cleanup: Cleanup) -> None:
    long_name = ui_name("long-" + "y" * LONG)[:LONG + 1]
    short_name = ui_name("short")
    app = live_app(interval=0.5, kinds=("shm",))
    async with app.run_test(size=(200, 40)) as pilot:
        await started(pilot, app)
        for name in (short_name, long_name):
            cleanup.add(lambda s: s.unlink(), posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096)).close_fd()
        table = await created_event_shown(pilot, app, long_name)
        await wait_for(pilot, lambda: any(e.object == short_name for e in app.events), "the short one's event")
        # Both on screen: OBJECT takes what the long name needs, up to what the others leave it.
        table.set_filter(f"{short_name}|{long_name}")
        await pilot.pause()
        assert table.row_count >= 2
        wide = table._widths[3]
        assert wide > len(short_name) + 20, table._widths
        # Only the short one's lines on screen: OBJECT narrows to it, DETAIL takes the rest.
        table.set_filter(short_name)
        await pilot.pause()
        assert len(short_name) <= table._widths[3] < wide, table._widths
        assert short_name in table.render_line(1).text
        assert_every_header_on_screen(table)


async def test_scrolling_a_line_keeps_the_widths_and_a_page_away_fits_again(cleanup: Cleanup) -> None:
    base = ui_name("scroll")
    long_name = f"{base}-" + "z" * LONG
    shorts = [f"{base}-{number}" for number in range(SHORTS)]
    app = live_app(interval=0.5, kinds=("shm",))
    async with app.run_test(size=(200, 40)) as pilot:
        await started(pilot, app)
        # The long one first, then the short ones: newest first, the long line is at the bottom of the timeline.
        cleanup.add(lambda s: s.unlink(), posix_ipc.SharedMemory(long_name, posix_ipc.O_CREX, size=4096)).close_fd()
        table = await created_event_shown(pilot, app, long_name)
        for name in shorts:
            cleanup.add(lambda s: s.unlink(), posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096)).close_fd()
        await wait_for(pilot, lambda: sum(e.object in shorts and e.event == "created" for e in app.events) == SHORTS,
                       "the short ones' events")
        table.focus()
        table.set_filter(base)
        await wait_for(pilot, lambda: table.row_count == SHORTS + 1, "the test's lines only")
        await pilot.pause()
        assert 2 * table.size.height < SHORTS, (SHORTS, table.size)
        narrow = table._widths[3]
        assert narrow < len(shorts[-1]) + 5, table._widths
        # The oldest line, the long name, on screen: OBJECT widens for it.
        await pilot.press("end")
        await pilot.pause()
        wide = table._widths[3]
        assert wide > narrow + 50, table._widths
        # One line up: the long line is off screen, the widths hold (no jump at every step).
        table.scroll_to(y=table.scroll_y - 1, animate=False, immediate=True)
        await pilot.pause()
        assert all("zzzz" not in table.render_line(y).text for y in range(1, table.size.height))
        assert table._widths[3] == wide
        # A page and more away: the widths follow what is on screen again.
        await pilot.press("home")
        await pilot.pause()
        assert table._widths[3] == narrow
        assert_every_header_on_screen(table)


async def test_a_mode_stays_whole_at_80_columns(cleanup: Cleanup) -> None:
    # rw-r-----, cut to rw-r-…, said nothing; the name beside it is long enough to take what it can.
    name = ui_name("mode-" + "m" * 60)
    app = live_app(interval=0.5, kinds=("shm",))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        cleanup.add(lambda s: s.unlink(),
                    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o640, size=4096)).close_fd()
        await pilot.press("2")
        table = view(app, "shm").table
        await wait_for(pilot, lambda: app.snapshot is not None and any(s.name == name for s in app.snapshot.shm),
                       "the segment in a scan")
        table.set_filter(name)
        await wait_for(pilot, lambda: table.row_count == 1, "only its row")
        await pilot.pause()
        line = table.render_line(1).text
        assert "rw-r-----" in line and "…" in line, line  # the name is cut, the mode is not
        assert "MODE" in table.render_line(0).text


async def test_wrapped_detail_lines_start_under_their_value(cleanup: Cleanup) -> None:
    # The path of a segment with a long name wraps in the detail pane at 80 columns: its second line started at
    # the first column, under the labels.
    name = ui_name("wrapped-" + "w" * 90)
    app = live_app(interval=0.5, kinds=("shm",))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        cleanup.add(lambda s: s.unlink(), posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096)).close_fd()
        await pilot.press("2")
        await wait_for(pilot, lambda: app.snapshot is not None and any(s.name == name for s in app.snapshot.shm),
                       "the segment in a scan")
        shm = view(app, "shm")
        shm.table.set_filter(name)
        await wait_for(pilot, lambda: shm.table.row_count == 1, "only its row")
        pane = shm.query_one(DetailPane)
        await wait_for(pilot, lambda: f"/dev/shm{name}" in pane.text.plain, "its detail")
        await pilot.pause()
        body = shm.query_one(".detail-body", Static)
        lines = [body.render_line(y).text.rstrip() for y in range(body.size.height)]
        path = next(index for index, line in enumerate(lines) if line.startswith("  path"))
        state = next(line for line in lines if line.startswith("  state"))
        value_at = len(state) - len(state[len("  state"):].lstrip())
        # The path starts on its label's line (a word too long for the line is cut, not moved below it)…
        assert lines[path][value_at:].startswith("/dev/shm/"), lines
        rest = lines[path + 1]
        # … and goes on under itself.
        assert rest[:value_at].strip() == "" and rest[value_at] != " " and rest.strip() in f"/dev/shm{name}", lines


def test_a_detail_line_hangs_under_its_value() -> None:
    assert hang_indent("  path        /dev/shm/x") == 14  # a label's value
    assert hang_indent("     26801 memfd:sealed-91  fd 0  line_io_tools") == 28  # a holder: after pid and command
    assert hang_indent("  08:25:41.577  created 4096 bytes") == 16  # a history line: after its time
    assert hang_indent("  nobody holds it: an orphan (d removes it)") == 2  # no gap: under its own start
    assert hang_indent("Holders (0)") == 0


async def test_the_process_views_wrapped_lines_start_under_their_value(spawn: Spawn) -> None:
    """The process view wraps as the detail pane does: a long command line goes on under its value, not at the
    first column."""
    child = spawn("say('ready')\nhold()\n" + "# " + "c" * 150 + "\n", comm="ipcm-long-cmd")
    child.expect()
    app = live_app(interval=0.5, kinds=("signal",))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await wait_for(pilot, lambda: app.snapshot is not None
                       and any(p.pid == child.pid for p in app.snapshot.processes), "the child in a scan")
        app.show_process(child.pid)
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen) and "command" in app.screen.text.plain,
                       "the process view")
        await pilot.pause()
        body = app.screen.query_one("#process-text", Static)
        lines = [body.render_line(y).text.rstrip() for y in range(body.size.height)]
        command = next(index for index, line in enumerate(lines) if line.startswith("  command"))
        value_at = len(lines[command]) - len(lines[command][len("  command"):].lstrip())
        rest = lines[command + 1]
        assert rest[:value_at].strip() == "" and rest[value_at] != " ", lines


def test_a_name_cut_in_its_middle_keeps_its_end_and_its_width() -> None:
    from rich.text import Text

    from ipcmon.ui.view.table import cut_middle

    name = Text("◆ /ipcmon-demo-5849-seg-1042", style="bold")
    assert cut_middle(name, 40) is name
    cut = cut_middle(name, 20)
    assert (cut.plain, cut.cell_len) == ("◆ /ipcmon…9-seg-1042", 20)
    assert (cut.spans and cut.spans[0].style == "bold") or cut.style == "bold"
    assert cut_middle(Text("abcdef"), 1).plain == "…"


def labels_of(table: ObjectTable) -> list[str]:
    """The column labels as the header shows them, the sort column's with its arrow."""
    return [table.columns[key].label.plain for key in table.columns]


def assert_labels_whole_on_screen(table: ObjectTable, where: str) -> str:
    """Every label whole in the header line as drawn, within the table's width, with no sideways scroll."""
    header = table.render_line(0).text
    width = table.scrollable_content_region.width
    for label in labels_of(table):
        assert label in header, (where, label, header)
        assert header.index(label) + len(label) <= width, (where, label, header)
    assert table.max_scroll_x == 0, (where, table.virtual_size, table.region)
    return header


async def test_every_column_is_on_screen_at_80_columns_with_its_label_whole() -> None:
    # At 80×24 HOLDERS was cut to a few cells and THREADS and WAITING were off screen, while MODE and OWNER kept their
    # width and the first column its 20 cells: the soft minimums now give way before the table scrolls sideways.
    app = canned_app(canned.canned_snapshot(), canned.later_snapshot())
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await second_scan(pilot, app)
        for number, (view_id, _) in enumerate(VIEWS[1:5], start=2):
            await pilot.press(str(number))
            await pilot.pause()
            table = view(app, view_id).table
            assert isinstance(table, ObjectTable)
            assert_labels_whole_on_screen(table, view_id)
            # Sorted by the last column, its arrow is on screen.
            table.sort_by(table.spec[-1].key)
            await pilot.pause()
            header = assert_labels_whole_on_screen(table, view_id)
            assert f"{table.spec[-1].label} ▲" in header, (view_id, header)
            # A short column keeps what it holds (a mode, an owner, a pid).
            for key in ("mode", "owner", "pid", "size"):
                if any(column.key == key for column in table.spec):
                    shown = table.columns[next(k for k in table.columns if k.value == key)]
                    assert shown.width >= shown.content_width, (view_id, key, shown.width, shown.content_width)
        await pilot.press("6")
        await pilot.pause()
        await pilot.pause()
        events = timeline(app)
        assert events.row_count
        assert_every_header_on_screen(events)


async def test_a_narrow_table_keeps_the_sort_arrow_on_screen() -> None:
    # Even the labels do not fit 56 columns: the long columns' labels are cut before the sort column's, so its arrow
    # stays on screen, with nothing scrolled off to the right.
    app = canned_app()
    async with app.run_test(size=(56, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("5")
        await pilot.pause()
        table = view(app, "signals").table
        table.sort_by("waiting", reverse=True)
        await pilot.pause()
        header = table.render_line(0).text
        assert "WAITING ▼" in header, header
        assert header.index("WAITING ▼") + len("WAITING ▼") <= table.scrollable_content_region.width, header
        assert table.max_scroll_x == 0, table.virtual_size


async def test_the_event_name_is_whole_while_object_and_detail_have_room_to_give() -> None:
    # At 80 columns EVENT read writer-clo…, notify-reg… while OBJECT and DETAIL had cells to give. Two seconds later a
    # process registers for a queue's notification, and a segment with a long name comes.
    later = canned.later_snapshot()
    long_name = "/ipcmon-demo-4731-a-segment-with-a-long-name"
    segment = replace(later.shm[1], name=long_name, path=f"/dev/shm{long_name}", inode=950)
    notified = replace(later.mqueues[1], notify=0, signo=10, notify_pid=4243)
    later = replace(later, shm=(*later.shm, segment), mqueues=(later.mqueues[0], notified, *later.mqueues[2:]))
    app = canned_app(canned.canned_snapshot(), later)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await second_scan(pilot, app)
        await pilot.press("6")
        await pilot.pause()
        table = timeline(app)
        lines = [table.render_line(y).text for y in range(1, 1 + min(table.row_count, table.size.height - 1))]
        rows = [table.row_for(key) for key in table.shown_keys[:len(lines)]]
        names = [row.cells[2].plain for row in rows if row is not None]
        assert "notify-registered" in names, names
        for name, line in zip(names, lines, strict=True):
            assert f" {name} " in line, (name, line)
        width = table._widths
        assert width[2] >= max(map(len, names)), width


async def test_two_names_that_differ_at_their_end_are_told_apart() -> None:
    # /ipcmon-demo-9281-leak-a and -leak-b, cut at their end in a narrow NAME column, read the same.
    segments = tuple(replace(canned.canned_snapshot().shm[1], name=f"/ipcmon-demo-9281-leak-{end}",
                             path=f"/dev/shm/ipcmon-demo-9281-leak-{end}", inode=900 + index)
                     for index, end in enumerate("ab"))
    app = canned_app(canned.canned_snapshot(extra_shm=segments))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        await pilot.pause()
        table = view(app, "shm").table
        name_width = table.columns[next(key for key in table.columns if key.value == "name")].width
        assert name_width < len("◆ /ipcmon-demo-9281-leak-a"), name_width  # the test needs them cut
        shown = []
        for segment in segments:
            line = table.render_line(1 + table.get_row_index(segment.object_key)).text
            cell = line[1:1 + name_width]
            assert "…" in cell and cell.endswith(f"leak-{segment.name[-1]}"), (cell, line)
            shown.append(cell)
        assert shown[0] != shown[1], shown
        # The cell cache keeps them apart as the width changes.
        await pilot.resize_terminal(70, 24)
        await pilot.pause()
        narrower = table.columns[next(key for key in table.columns if key.value == "name")].width
        assert narrower < name_width
        cells = [table.render_line(1 + table.get_row_index(s.object_key)).text[1:1 + narrower] for s in segments]
        assert cells[0].endswith("-a") and cells[1].endswith("-b"), cells
