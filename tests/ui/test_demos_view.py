"""The Demos view: start a demo from the dashboard, read its narration, find its objects, stop it cleanly."""

from __future__ import annotations

import os

import pytest
from textual.widgets import Static

from ipcmon.demos import OBJECT_PREFIX
from tests.ui.conftest import canned_app, live_app, record_notifications, started, view, wait_for

# Real scans of a machine other tests keep busy: generous, but bounded.
pytestmark = pytest.mark.timeout(300)


def demo_files(pid: int) -> list[str]:
    prefix = f"{OBJECT_PREFIX[1:]}{pid}-"
    return [name for name in os.listdir("/dev/shm") if name.startswith(prefix)]


async def test_start_demo_follow_its_objects_and_stop_it() -> None:
    app = live_app(interval=0.3, kinds=("shm", "signal"), demo_step=0.4)
    record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("7")
        demos = app.query_one("#view-demos")
        table = demos.query_one("#demo-list")
        assert table.cursor_key == "shm"  # type: ignore[attr-defined]
        await pilot.press("enter")
        try:
            await wait_for(pilot, lambda: "shm" in app.demo_processes, "the demo to start")
            process = app.demo_processes["shm"]
            await wait_for(pilot, lambda: any(line.startswith("step 1/") for line in demos.narration["shm"]),  # type: ignore[attr-defined]
                           "the first narration line")
            # The demo's segment is badged in the Shared memory view, and g jumps to it.
            await wait_for(pilot, lambda: any(s.name.startswith(process.prefix) for s in app.snapshot.shm),  # type: ignore[union-attr]
                           "the demo's segment in a scan")
            # The lesson loops, so its segment comes and goes: g again until it lands on one.
            async def jumped_to_demo_segment() -> bool:
                await pilot.press("7")
                await wait_for(pilot, lambda: app.focused is table, "the demo list focused")
                await pilot.press("g")
                await wait_for(pilot, lambda: app.active_view == "shm", "the jump to Shared memory")
                row = view(app, "shm").table.current_row
                return row is not None and row.cells[0].plain.startswith("◆ " + process.prefix)

            for _ in range(20):
                if await jumped_to_demo_segment():
                    break
                await pilot.pause(0.3)
            else:
                pytest.fail("g never put the cursor on the demo's segment")
            await pilot.press("7")
            await wait_for(pilot, lambda: app.focused is table, "the demo list focused")
        finally:
            await pilot.press("enter")  # stop it: SIGINT, and it removes what it made
            await wait_for(pilot, lambda: not app.demo_processes["shm"].running, "the demo to stop")
        await wait_for(pilot, lambda: not demo_files(process.pid), "the demo's segments removed")
        assert "ended" in table.get_row("shm")[1].plain  # type: ignore[attr-defined]


async def test_demos_end_with_the_dashboard() -> None:
    app = live_app(interval=0.5, kinds=("shm",), demos=["shm"], demo_step=0.3)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await wait_for(pilot, lambda: "shm" in app.demo_processes, "the --demo to start")
        process = app.demo_processes["shm"]
        await wait_for(pilot, lambda: demo_files(process.pid), "the demo's segment")
    assert not process.running
    assert not demo_files(process.pid)


def test_every_demo_says_where_its_objects_show() -> None:
    """`g` in the Demos view goes to DEMO_VIEWS[name]: a demo missing there went to the Overview (memfd did)."""
    from ipcmon.demos import DEMOS
    from ipcmon.ui.views import VIEWS
    from ipcmon.ui.widgets.demos_view import DEMO_VIEWS

    assert set(DEMO_VIEWS) == set(DEMOS)
    assert set(DEMO_VIEWS.values()) <= {view_id for view_id, _ in VIEWS}
    assert DEMO_VIEWS["memfd"] == "shm"


def test_demo_objects_are_marked_by_name_with_or_without_a_slash() -> None:
    """POSIX names start with a slash, memfd names do not: both mark a demo's object (◆)."""
    from ipcmon.model import Snapshot
    from ipcmon.ui.view.table import Context

    ctx = Context(Snapshot(taken_at=0.0, kinds=()))
    assert ctx.is_demo(f"{OBJECT_PREFIX}42-frames", ())
    assert ctx.is_demo(f"{OBJECT_PREFIX[1:]}42-frames", ())
    assert not ctx.is_demo("/ipcmon-test-42", ())
    assert not ctx.is_demo("anonymous", ())


async def test_the_read_only_banner_does_not_offer_to_start_a_demo() -> None:
    for read_only in (False, True):
        app = canned_app(read_only=read_only)
        async with app.run_test(size=(120, 40)) as pilot:
            await started(pilot, app)
            await pilot.press("7")
            await pilot.pause()
            hint = str(app.query_one("#view-demos .hint", Static).render())
            if read_only:
                # Enter on a stopped demo is refused under --read-only: the banner says how to start one instead.
                assert "Enter starts" not in hint and "--demo NAME" in hint and "Enter stops" in hint, hint
            else:
                assert "Enter starts or stops" in hint, hint


async def test_g_on_a_demo_that_has_not_run_says_so_and_stays() -> None:
    """A reviewer's `g` on the stopped leak demo switched to Shared memory unfiltered, every segment there passed off
    as the demo's (issue 12: g filters to the demo's objects)."""
    app = canned_app()
    said = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("7")
        table = app.query_one("#view-demos").query_one("#demo-list")
        await wait_for(pilot, lambda: app.focused is table, "the demo list focused")
        table.move_cursor(row=table.get_row_index("leak"))  # type: ignore[attr-defined]
        await pilot.press("g")
        await wait_for(pilot, lambda: said, "a notice")
        assert app.active_view == "demos"
        assert said == ["Demo leak has not run from this dashboard: Enter starts it, then g shows its objects."]
        table.move_cursor(row=table.get_row_index("stress"))  # type: ignore[attr-defined]
        await pilot.press("g")
        await wait_for(pilot, lambda: len(said) == 2, "a second notice")
        assert app.active_view == "demos" and "stress" in said[1]
