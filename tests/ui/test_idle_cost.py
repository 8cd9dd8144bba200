"""A scan that changes nothing on screen costs the UI thread almost nothing (issue 12, idle cost): no widget is
refreshed, no table cell drawn, and no timer wakes the dashboard between scans; and nothing is animated."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from ipcmon.model import Event, ShmSegment
from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.view.alerts import find_alerts
from ipcmon.ui.widgets.demos_view import DemosView
from ipcmon.ui.widgets.overview import METRICS, MetricCard, Overview, update_if_changed
from ipcmon.ui.widgets.tables import ObjectTable
from ipcmon.ui.widgets.timeline_table import TimelineTable
from tests.ui import canned
from tests.ui.conftest import canned_app, started, wait_for

SCANS = 3


@contextmanager
def refreshes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The widgets asked to redraw (Widget.refresh) while the block runs, by type."""
    asked: list[str] = []
    original = Widget.refresh

    def refresh(self: Widget, *args: object, **kwargs: object) -> Widget:
        asked.append(type(self).__name__)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(Widget, "refresh", refresh)
        yield asked


class Layouts(list[str]):
    """The screens laid out, by type; ``asked``: for each layout, the widgets whose layout was asked for and their
    children that asked (``Type#id``)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[set[str]] = []


@contextmanager
def screen_layouts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Layouts]:
    """The screen-wide layouts (Screen._refresh_layout, not a scroll's reflow) while the block runs: the screen each."""
    laid_out = Layouts()
    original = Screen._refresh_layout

    def refresh_layout(self: Screen[object], size: object = None, scroll: bool = False) -> None:
        if not (scroll and not self._layout_widgets):  # as Textual tells a scroll from a layout
            laid_out.append(type(self).__name__)
            laid_out.asked.append({f"{type(widget).__name__}#{widget.id}" for parent, children in
                                   self._layout_widgets.items() for widget in (parent, *children)})
        original(self, size, scroll)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(Screen, "_refresh_layout", refresh_layout)
        yield laid_out


def calls(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[object]:
    """Each object the method ``owner.name`` is called on from now on (it still runs): patch before the App is built
    when a timer holds the method."""
    called: list[object] = []
    original = getattr(owner, name)

    def counting(self: object) -> None:
        called.append(self)
        original(self)

    monkeypatch.setattr(owner, name, counting)
    return called


async def rescan(pilot: Pilot[None], app: IpcmonApp, times: int) -> None:
    """Scan ``times`` times, each once the screen settled from what came before (settled)."""
    for _ in range(times):
        await settled(pilot, app)
        shown = app.snapshot
        app.request_scan()
        await wait_for(pilot, lambda: app.snapshot is not shown, "the next scan")  # noqa: B023 (awaited here)
        await pilot.pause()
        await settled(pilot, app)


async def settled(pilot: Pilot[None], app: IpcmonApp) -> None:
    """Until the screen has no layout, scroll or repaint pending after every widget handled what it was sent.

    pilot.pause alone is not enough on a busy machine: its idle test reads this process's CPU time, which a process
    starved of CPU does not use either, so it returned with a layout still to come, and the layout (and the Resize
    events it sends) landed in the next block a test measured (seen with two busy loops on 2 cores)."""
    screen = app.screen

    def calm() -> bool:
        return not (screen._layout_required or screen._layout_widgets or screen._scroll_required
                    or screen._repaint_required or screen._dirty_widgets)

    for _ in range(3):  # a layout's Resize events may ask for another
        await pilot._wait_for_screen()
        await wait_for(pilot, calm, "the screen to settle")


def equal_snapshots(count: int) -> list[canned.Snapshot]:
    """The canned snapshot, then ``count`` equal copies of it (new records, as each real scan makes)."""
    first = canned.canned_snapshot()
    return [first, *(copy.deepcopy(first) for _ in range(count))]


@pytest.mark.parametrize("key", ["1", "5", "6", "7"])
async def test_a_scan_that_changes_nothing_redraws_nothing(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = canned_app(*equal_snapshots(SCANS + 1))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        await pilot.press(key)
        await rescan(pilot, app, 1)  # the view shown has taken a scan since
        tables = list(app.query(ObjectTable))
        drawn = {table: table.cells_rendered for table in tables}
        with refreshes(monkeypatch) as asked:
            await rescan(pilot, app, SCANS)
        assert asked == []
        assert {table: table.cells_rendered for table in tables} == drawn


async def test_the_narration_timer_waits_for_a_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    drained = calls(monkeypatch, DemosView, "_drain")  # before the App is built: the timer calls this one
    app = canned_app(interval=3600.0)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        await pilot.pause(1.0)  # four ticks of the narration timer, were it running
        assert drained == []


def test_no_animations_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tab underline's slide was 18 more frames per view switch (issue 12); TEXTUAL_ANIMATIONS still decides."""
    monkeypatch.delenv("TEXTUAL_ANIMATIONS", raising=False)
    assert canned_app().animation_level == "none"
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "full")
    monkeypatch.setattr("textual.constants.TEXTUAL_ANIMATIONS", "full")  # read by Textual when it is imported
    assert canned_app().animation_level == "full"


def shm_events(count: int, start: float, first: int = 0) -> list[Event]:
    """``count`` created events of distinct segments (the timeline's lines), numbered from ``first``."""
    return [Event(time=start + index, mechanism="shm", event="created", object=f"/ipcmon-idle-{index}",
                  key=f"shm:0:{index}") for index in range(first, first + count)]


async def test_events_taken_in_while_the_events_view_is_hidden_lay_nothing_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = canned_app(*equal_snapshots(3))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        await pilot.press("6")
        await pilot.press("1")
        await pilot.pause()
        timeline = app.query_one(TimelineTable)
        laid_out: list[str] = []
        original = Widget.refresh

        def refresh(self: Widget, *args: object, layout: bool = False, **kwargs: object) -> Widget:
            if layout:
                laid_out.append(type(self).__name__)
            return original(self, *args, layout=layout, **kwargs)  # type: ignore[arg-type]

        with monkeypatch.context() as patched:
            patched.setattr(Widget, "refresh", refresh)
            app.event_log.extend(shm_events(200, time.time()))
            with refreshes(monkeypatch) as asked:
                await rescan(pilot, app, 1)
        assert "TimelineTable" not in laid_out
        # Nor redrawn: a widget off screen that asks for a repaint makes Textual arrange the whole screen again.
        assert "TimelineTable" not in asked
        assert timeline.virtual_size.height > 200  # taken in all the same
        await pilot.press("6")
        await pilot.pause()
        assert timeline.vertical_scrollbar.window_virtual_size == timeline.virtual_size.height
        screen = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "/ipcmon-idle-199" in screen  # its lines drawn again, not those it had when it was hidden


async def test_a_card_lays_the_screen_out_only_when_its_height_may_change(monkeypatch: pytest.MonkeyPatch) -> None:
    app = canned_app()
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        summary = app.query_one("#card-shm .summary", Static)
        line = app.query_one("#card-shm .line", Static)  # the compact form, hidden at this size
        laid_out: list[Widget] = []
        original = Widget.refresh

        def refresh(self: Widget, *args: object, layout: bool = False, **kwargs: object) -> Widget:
            if layout:
                laid_out.append(self)
            return original(self, *args, layout=layout, **kwargs)  # type: ignore[arg-type]

        with monkeypatch.context() as patched:
            patched.setattr(Widget, "refresh", refresh)
            # Two lines, as the canned scan's summary: drawn again, not laid out; the hidden compact form neither.
            update_if_changed(summary, Text("4 POSIX\n2.0M allocated"))
            update_if_changed(line, Text("Shared memory: 4 POSIX; 2.0M allocated"))
            assert laid_out == []
            assert "4 POSIX" in str(summary.render())
            update_if_changed(summary, Text("4 POSIX\n2.0M allocated\none more line"))
            assert laid_out == [summary]


async def test_a_card_that_needs_a_line_less_keeps_its_height(monkeypatch: pytest.MonkeyPatch) -> None:
    """A card's summary wraps to a line more or less as its numbers change: the cards and the hazard list jumped, and
    the screen was laid out each time (issue 12, the demos' cost). It keeps its tallest height until the width
    changes."""
    app = canned_app(*equal_snapshots(8))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        card = app.query_one("#card-shm", MetricCard)
        summary = app.query_one("#card-shm .summary", Static)
        texts = ["4 POSIX\n2.0M allocated\nand a third line", "4 POSIX\n2.0M allocated",
                 "4 POSIX\n1.0M allocated\nthird", "4 POSIX\n3.0M allocated"]
        shown: list[str] = []

        def summary_of(snapshot: object) -> str:
            shown.append(texts[min(len(shown), len(texts) - 1)])
            return shown[-1]

        card.metric = replace(card.metric, summary=summary_of)
        await rescan(pilot, app, 1)  # three lines: the card grows, and the screen is laid out for it
        height = card.outer_size.height
        assert summary.outer_size.height == 3
        with screen_layouts(monkeypatch) as laid_out:
            await rescan(pilot, app, 2)  # two lines, then three again
        assert laid_out == []
        assert card.outer_size.height == height
        assert "1.0M allocated" in summary.render().plain  # type: ignore[union-attr]
        await pilot.resize_terminal(150, 50)  # a new width: the text's own height again
        await rescan(pilot, app, 1)
        assert "3.0M allocated" in summary.render().plain  # type: ignore[union-attr]
        assert summary.outer_size.height == 2


def orphans(count: int) -> tuple[ShmSegment, ...]:
    """``count`` orphaned segments more than the canned snapshot's, each one more alert on the Overview."""
    orphan = next(segment for segment in canned.canned_snapshot().shm if segment.state == "orphaned")
    return tuple(replace(orphan, name=f"/idle-orphan-{index}", path=f"/dev/shm/idle-orphan-{index}",
                              inode=5000 + index) for index in range(count))


async def test_an_alert_that_comes_or_goes_lays_out_no_screen(monkeypatch: pytest.MonkeyPatch) -> None:
    """DataTable lays the whole screen out when it loses a row or its virtual size changes: once a scan with the
    lesson demos running (issue 12). The alerts table's own size stays, so its layout stays its own."""
    base, more = canned.canned_snapshot(), canned.canned_snapshot(extra_shm=orphans(1))
    app = canned_app(base, more, copy.deepcopy(base), copy.deepcopy(more), copy.deepcopy(base))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        await rescan(pilot, app, 1)  # the cards' first change since they were drawn may lay them out: not counted
        alerts = app.query_one("#alerts", ObjectTable)
        before = alerts.row_count - 1
        assert 0 < before < alerts.scrollable_content_region.height - 2  # no scrollbar comes or goes
        with screen_layouts(monkeypatch) as laid_out:
            for rows in (before, before + 1, before):
                await rescan(pilot, app, 1)
                assert alerts.row_count == rows
                assert alerts.virtual_size.height == rows + alerts.header_height
                orphan = more.shm[-1].object_key + ":"
                assert any(key.startswith(orphan) for key in alerts.shown_keys) == (rows > before)
        # None asked for by the alerts table. (The cards' text changes here too, and a 2-core machine busy with other
        # work let their first layout land inside this block: the card tests above are theirs.)
        assert [asked for asked in laid_out.asked if "ObjectTable#alerts" in asked] == []


def shown_on_screen(app: IpcmonApp, widget: Widget) -> list[str]:
    """The widget's lines as the screen shows them: composed from what each widget keeps drawn (a line it was not told
    to draw again stays as it was)."""
    region = widget.region
    strips = app.screen._compositor.render_strips()
    return [strips[y].crop(region.x, region.right).text for y in range(region.y, region.bottom)]


async def test_alerts_that_come_and_go_draw_only_their_lines_and_the_screen_shows_them_all(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The alerts table draws again only the lines whose alert changed (the empty lines under the rows were drawn at
    every scan of the demos, issue 12), and every line on screen still shows what the table holds: alerts added above
    others, removed, and the rows under them moved."""
    base = canned.canned_snapshot()
    steps = [canned.canned_snapshot(extra_shm=orphans(1)), canned.canned_snapshot(extra_shm=orphans(3)),
             canned.canned_snapshot(extra_shm=orphans(3)[1:]), copy.deepcopy(base)]
    app = canned_app(base, copy.deepcopy(base), *steps)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        await rescan(pilot, app, 1)  # the cards' first change since they were drawn may lay them out (all drawn again)
        alerts = app.query_one("#alerts", ObjectTable)
        assert shown_on_screen(app, alerts) == [alerts.render_line(y).text for y in range(alerts.size.height)]
        drawn: list[int] = []
        render_line = alerts.render_line

        def counted(y: int) -> object:
            drawn.append(y)
            return render_line(y)

        monkeypatch.setattr(alerts, "render_line", counted)
        for step in steps:
            drawn.clear()
            await rescan(pilot, app, 1)
            assert alerts.row_count == len(list(find_alerts(step)))
            lines = [render_line(y).text for y in range(alerts.size.height)]
            assert shown_on_screen(app, alerts) == lines
            assert 0 < len(set(drawn)) < alerts.size.height - 5, drawn  # the changed lines, not the empty ones


async def test_alerts_past_the_table_bring_its_scrollbar(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrollbar that comes or goes changes what the table holds: then the screen is laid out, as Textual does."""
    app = canned_app(canned.canned_snapshot(), canned.canned_snapshot(extra_shm=orphans(60)), canned.canned_snapshot())
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        alerts = app.query_one("#alerts", ObjectTable)
        assert not alerts.show_vertical_scrollbar
        for shown in (True, False):
            with screen_layouts(monkeypatch) as laid_out:
                await rescan(pilot, app, 1)
            assert alerts.show_vertical_scrollbar is shown
            assert (alerts.vertical_scrollbar in app.screen._compositor.visible_widgets) is shown
            assert laid_out
            if shown:
                assert alerts.vertical_scrollbar.window_virtual_size == alerts.virtual_size.height


async def test_events_taken_in_while_the_events_view_is_shown_lay_out_no_screen(
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = canned_app(*equal_snapshots(4))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        await pilot.press("6")
        timeline = app.query_one(TimelineTable)
        app.event_log.extend(shm_events(100, time.time()))
        await rescan(pilot, app, 1)  # past the table's height: its scrollbar comes, and the screen is laid out
        assert timeline.show_vertical_scrollbar
        await pilot.press("down")  # off the top, the cursor stays on its event: the detail pane keeps its text
        await pilot.pause()
        with screen_layouts(monkeypatch) as laid_out:
            app.event_log.extend(shm_events(100, time.time() + 100, first=100))
            await rescan(pilot, app, 1)
        assert laid_out == []
        assert timeline.virtual_size.height > 200
        assert timeline.vertical_scrollbar.window_virtual_size == timeline.virtual_size.height


async def test_the_same_scan_shown_again_leaves_the_overview_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The App shows its snapshot again when only the senders of signals are new (none of the Overview's business)."""
    refreshed = calls(monkeypatch, Overview, "refresh_view")
    app = canned_app(*equal_snapshots(1))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, app)
        overview = app.query_one(Overview)
        points = {metric: len(history) for metric, history in overview.history.items()}
        refreshed.clear()
        assert app.snapshot is not None
        app._show(app.snapshot)
        await pilot.pause()
        assert refreshed == []
        assert {metric: len(history) for metric, history in overview.history.items()} == points
        await rescan(pilot, app, 1)  # a new scan, equal or not, is a point more
        assert refreshed == [overview]
        charted = [metric.id for metric in METRICS if metric.value is not None]  # Budgets has no sparkline
        assert all(len(overview.history[metric]) == points[metric] + 1 for metric in charted)
