"""A scan that changes nothing on screen costs the UI thread almost nothing (issue 12, idle cost): no widget is
refreshed, no table cell drawn, and no timer wakes the dashboard between scans; and nothing is animated."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from textual.pilot import Pilot
from textual.widget import Widget

from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.widgets.demos_view import DemosView
from ipcmon.ui.widgets.tables import ObjectTable
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


async def rescan(pilot: Pilot[None], app: IpcmonApp, times: int) -> None:
    """Scan ``times`` times, each after the previous one reached the views."""
    for _ in range(times):
        shown = app.snapshot
        app.request_scan()
        await wait_for(pilot, lambda: app.snapshot is not shown, "the next scan")  # noqa: B023 (awaited here)
        await pilot.pause()


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
    drained: list[DemosView] = []
    original = DemosView._drain

    def drain(self: DemosView) -> None:
        drained.append(self)
        original(self)

    monkeypatch.setattr(DemosView, "_drain", drain)  # before the App is built: the timer calls this one
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
