"""The dashboard's keys of issue 12: Ctrl+C quits, k refuses an exited process at once, the footer leaves out what
--read-only refuses, e writes to the export directory (or says why not), g filters to a demo's objects."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import posix_ipc
import pytest

from ipcmon import export
from ipcmon.model import Snapshot
from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.screens.process import ProcessScreen
from ipcmon.ui.screens.signal import SignalPicker
from ipcmon.ui.view.table import Row, matches
from ipcmon.ui.widgets.demos_view import DemosView, demo_query
from ipcmon.ui.widgets.overview import Overview
from ipcmon.ui.widgets.tables import ObjectTable
from tests.helpers import Cleanup, Spawn
from tests.ui import canned
from tests.ui.conftest import canned_app, jump, live_app, record_notifications, started, ui_name, view, wait_for

# Real scans of a machine other tests keep busy: generous, but bounded.
pytestmark = pytest.mark.timeout(300)


def footer_keys(app: IpcmonApp) -> set[str]:
    """The keys the footer of the current screen offers (what Textual's Footer shows)."""
    return {key for key, active in app.screen.active_bindings.items() if active.binding.show}


# --- Ctrl+C ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["table", "filter box", "dialog"])
async def test_ctrl_c_quits_from_anywhere(where: str) -> None:
    """As in htop. Textual binds Ctrl+C to a notice saying to press Ctrl+Q (and, in a text box, to copy)."""
    app = canned_app()
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        if where == "filter box":
            await pilot.press("/")
            await wait_for(pilot, lambda: view(app, "shm").query_one(".filter").has_focus, "the filter box")
        elif where == "dialog":
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: len(app.screen_stack) > 1, "the help screen")
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.is_running, "the dashboard to quit")
    assert app.return_code == 0
    assert not any("quit" in message.lower() for message in messages), messages


# --- k on a process that has exited ---------------------------------------------------------------------------


async def test_k_on_a_process_that_has_exited_refuses_at_once(spawn: Spawn) -> None:
    """While it runs, k opens the picker (test_live.py); once it has exited, k says so at once."""
    child = spawn('say("ready")\nhold()\n', comm="ipcmon-ui-gone")
    child.expect("ready")
    # No rescan while the test runs: the table still shows the child after it has exited.
    app = live_app(interval=3600.0, kinds=("signal",), pids=frozenset({child.pid}))
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("5")
        await jump(pilot, app, "signals", f"signal:{child.pid}")
        child.stop()  # SIGKILL and reaped: gone, though the last scan still lists it
        assert view(app, "signals").table.cursor_key == f"signal:{child.pid}"
        await pilot.press("k")
        await wait_for(pilot, lambda: any(m.startswith("No signal sent") for m in messages), "the refusal")
        assert f"No signal sent: process {child.pid} has exited." in messages
        await pilot.pause(0.2)
        assert not isinstance(app.screen, SignalPicker)

        # The same from the process view.
        app.show_process(child.pid)
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen), "the process view")
        await pilot.press("k")
        await wait_for(pilot, lambda: sum(m.startswith("No signal sent") for m in messages) == 2, "the second refusal")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ProcessScreen)
        assert "k" in footer_keys(app)  # the last scan still lists it

        # Once a scan no longer lists it, the process view stops offering k (and k still says why).
        app.request_scan()
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen) and app.screen.exited, "the exit seen")
        await pilot.pause()
        assert "k" not in footer_keys(app)


# --- --read-only: the footer -----------------------------------------------------------------------------------


async def test_read_only_footer_leaves_out_k_and_d_and_the_keys_still_say_why() -> None:
    orphan = next(s for s in canned.canned_snapshot().shm if s.name == "/old-cache")
    writable = canned_app()
    async with writable.run_test(size=(120, 40)) as pilot:
        await started(pilot, writable)
        await jump(pilot, writable, "shm", orphan.object_key)
        assert {"k", "d"} <= footer_keys(writable)
        writable.show_process(4242)
        await wait_for(pilot, lambda: isinstance(writable.screen, ProcessScreen), "the process view")
        assert "k" in footer_keys(writable)

    app = canned_app(read_only=True)
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await jump(pilot, app, "shm", orphan.object_key)
        shown = footer_keys(app)
        assert "k" not in shown and "d" not in shown, shown
        assert {"q", "e", "c"} <= shown  # what looking needs stays
        await pilot.press("d")
        await pilot.press("k")
        await wait_for(pilot, lambda: sum("Read-only" in m for m in messages) == 2, f"two refusals in {messages}")
        app.show_process(4242)
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen), "the process view")
        assert "k" not in footer_keys(app)
        await pilot.press("k")
        await wait_for(pilot, lambda: sum("Read-only" in m for m in messages) == 3, "the refusal in the process view")
        assert isinstance(app.screen, ProcessScreen)


# --- e: export -------------------------------------------------------------------------------------------------


async def test_export_creates_its_directory_private_and_says_where(tmp_path: Path) -> None:
    target = tmp_path / "state" / "ipcmon"
    app = canned_app(export_dir=str(target))
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("e")
        await pilot.press("e")  # likely the same second: a second file all the same, not the first overwritten
        await wait_for(pilot, lambda: sum(m.startswith("Exported") for m in messages) == 2, "two exports")
    files = sorted(target.glob("ipcmon-snapshot-*.json"))
    assert len(files) == 2, files
    assert {f"Exported the snapshot to {file}" for file in files} == {m for m in messages if m.startswith("Exported")}
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(file.stat().st_mode) == 0o600 for file in files)
    assert '"schema": 1' in files[0].read_text()


@pytest.mark.parametrize("under", [True, False], ids=["under-a-file", "a-file"])
async def test_export_to_an_unwritable_place_says_why(tmp_path: Path, under: bool) -> None:
    # Root writes anywhere chmod allows nothing: a directory under a regular file, or in its place, cannot exist for
    # anyone. In its place, the kernel's own word was "File exists" (a reviewer's finding).
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    directory = blocker / "exports" if under else blocker
    app = canned_app(export_dir=str(directory))
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("e")
        await wait_for(pilot, lambda: any(m.startswith("Export failed") for m in messages), "the failure")
    (failure,) = [m for m in messages if m.startswith("Export failed")]
    assert failure == (f"Export failed: could not create the directory {directory}: a file is in the way (not a "
                       "directory). Set IPCMON_EXPORT_DIR to choose another directory.")
    assert blocker.read_text() == ""


def test_the_export_directory_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("IPCMON_EXPORT_DIR", raising=False)
    assert export.export_dir() == str(tmp_path / "home" / ".local" / "state" / "ipcmon")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/state")  # ignored, as the XDG spec says
    assert export.export_dir() == str(tmp_path / "home" / ".local" / "state" / "ipcmon")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert export.export_dir() == str(tmp_path / "xdg" / "ipcmon")
    monkeypatch.setenv("IPCMON_EXPORT_DIR", str(tmp_path / "chosen"))
    assert export.export_dir() == str(tmp_path / "chosen")
    # The dashboard uses it when no directory is given (the CLI gives none).
    assert canned_app(export_dir=None).export_dir == str(tmp_path / "chosen")


# --- g: a demo's objects ---------------------------------------------------------------------------------------


def test_a_token_of_alternatives_matches_either() -> None:
    row = Row(key="k", cells=(), record=None, search="/ipcmon-demo-42-frames shm held 7 python3 /x/demos/shm.py",
              fields={"pid": frozenset({"7"}), "kind": frozenset({"shm"})})
    assert matches(row, "ipcmon-demo-42-|demos/pipe.py")
    assert matches(row, "ipcmon-demo-43-|demos/shm.py")
    assert matches(row, "kind:mqueue|pid:7 held")
    assert not matches(row, "ipcmon-demo-43-|demos/pipe.py")
    assert not matches(row, "ipcmon-demo-42-|x held-not")
    assert matches(row, "|")  # nothing to match: ignored, as an empty filter


async def test_g_shows_the_demos_objects_and_only_them(cleanup: Cleanup) -> None:
    other = ui_name("not-the-demo")
    cleanup.add(lambda s: s.unlink(), posix_ipc.SharedMemory(other, posix_ipc.O_CREX, size=4096))
    # Slow steps: the segment lives about 16 s, so it is there when g is pressed (the lesson then starts over).
    app = live_app(interval=0.3, kinds=("shm",), demos=["shm"], demo_step=2.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await wait_for(pilot, lambda: "shm" in app.demo_processes, "the demo to start")
        process = app.demo_processes["shm"]
        try:
            await wait_for(pilot, lambda: _demo_segment(app.snapshot, process.prefix), "the demo's segment in a scan")
            await pilot.press("7")
            demos = app.query_one(DemosView)
            await wait_for(pilot, lambda: app.focused is demos.table, "the demo list focused")
            assert demos.table.cursor_key == "shm"
            await pilot.press("g")
            await wait_for(pilot, lambda: app.active_view == "shm", "the Shared memory view")
            shm = view(app, "shm")
            await wait_for(pilot, lambda: shm.table.filter_text == demo_query(process), "the filter")
            assert shm.query_one(".filter").value == demo_query(process)  # type: ignore[attr-defined]
            assert app.focused is shm.table
            shown = [shm.table.row_for(key) for key in shm.table.shown_keys]
            assert shown, "no row shown"
            # Every row is the demo's: named with its prefix, or held by its processes (it forks, never execs).
            for row in shown:
                assert row is not None
                named = row.record.name.startswith(process.prefix)
                held = any("demos/shm.py" in " ".join(app.context.processes[pid].cmdline)
                           for pid in row.pids if pid in app.context.processes)
                assert named or held, row.record
            assert other not in {row.record.name for row in shown if row is not None}
            # Escape clears it: the other segment is back.
            await pilot.press("escape")
            await wait_for(pilot, lambda: not shm.table.filter_text, "the filter cleared")
            assert any(shm.table.row_for(key).record.name == other for key in shm.table.shown_keys)  # type: ignore[union-attr]
        finally:
            process.stop()


def _demo_segment(snapshot: Snapshot | None, prefix: str) -> bool:
    return snapshot is not None and any(s.name.startswith(prefix) for s in snapshot.shm)


def test_export_dir_is_not_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`e` used to write to the current directory (a checkout got an untracked file)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IPCMON_EXPORT_DIR", raising=False)
    assert not export.export_dir().startswith(os.getcwd())


# --- Enter on an alert ----------------------------------------------------------------------------------------


async def test_the_selected_row_stays_in_sight_when_the_table_gets_shorter(cleanup: Cleanup) -> None:
    # Seen in review: after a resize to 80x24 (and after a jump with 2,000 segments, which the detail pane's split
    # then made shorter) the selected row was below the table until Down was pressed.
    prefix = ui_name("rows")
    names = [cleanup.shm(f"{prefix}-{number:02d}") for number in range(40)]
    for name in names:
        posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
    app = live_app(interval=3600.0, kinds=("shm",))
    async with app.run_test(size=(120, 50)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        shm = view(app, "shm")
        shm.table.set_filter(prefix)
        await wait_for(pilot, lambda: shm.table.row_count == 40, "its 40 rows")
        shm.table.focus()
        await pilot.press("home")
        height = shm.table.scrollable_content_region.height
        for _ in range(height - 2):  # near the bottom of what shows
            await pilot.press("down")
        await pilot.pause()
        assert shm.table.scroll_y <= shm.table.cursor_row < shm.table.scroll_y + height
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        table = shm.table
        assert table.scrollable_content_region.height < height
        assert table.scroll_y <= table.cursor_row < table.scroll_y + table.scrollable_content_region.height, (
            table.cursor_row, table.scroll_y, table.scrollable_content_region)


async def test_enter_on_an_orphan_alert_shows_its_row(cleanup: Cleanup) -> None:
    name = ui_name("orphan-alert")
    segment = posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=4096)
    segment.close_fd()
    app = live_app(interval=3600.0, kinds=("shm",))  # rescans only when asked (and on inotify)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        overview = app.query_one(Overview)
        alerts = overview.query_one("#alerts", ObjectTable)

        def alert_key() -> str | None:
            return next((key for key, alert in overview.alerts.items() if alert.object == name), None)

        await wait_for(pilot, alert_key, "the orphan's alert")
        alert = overview.alerts[alert_key()]  # type: ignore[index]
        alerts.select_key(alert.alert_key)
        alerts.focus()
        await pilot.press("enter")
        shm = view(app, "shm").table
        await wait_for(pilot, lambda: app.active_view == "shm" and shm.cursor_key == alert.key, "the jump")
        await pilot.pause(0.2)
        # On screen, not just selected: the row lies within the table's scrolled window.
        assert shm.scroll_y <= shm.cursor_row < shm.scroll_y + shm.scrollable_content_region.height

