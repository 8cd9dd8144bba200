"""Tables over canned data: sorting, filtering, stable rows, hostile names shown inertly, actions refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
from rich.text import Text
from textual.events import Key

from ipcmon.model import Event
from ipcmon.ui.messages import ScanDone
from ipcmon.ui.screens.confirm import ConfirmScreen
from ipcmon.ui.screens.process import ProcessScreen
from ipcmon.ui.screens.signal import SignalPicker
from ipcmon.ui.widgets.object_view import ESCAPED_DIGITS, DetailPane
from tests.ui import canned
from tests.ui.conftest import canned_app, jump, record_notifications, second_scan, shown_names, started, view, wait_for


async def test_sort_by_column_key_and_header() -> None:
    app = canned_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: len(shown_names(app, "shm")) == 5, "the shm rows")
        names = shown_names(app, "shm")
        assert names[:4] == ["/demo-frames", "/old-cache", "/ticket", "/unlinked-buffer"]
        assert names[4].startswith("key 0x00001234")
        # s: sort by the next column (KIND); S: reverse it.
        await pilot.press("s")
        assert view(app, "shm").table.sort_column == "kind"
        kinds = shown_names(app, "shm", 1)
        assert kinds == sorted(kinds)
        await pilot.press("S")
        assert shown_names(app, "shm", 1) == sorted(kinds, reverse=True)
        # Clicking the SIZE header sorts by size as a number (8.0K < 64K < 1.0M), not as text.
        table = view(app, "shm").table
        table.sort_by("size")
        sizes = shown_names(app, "shm", 2)
        assert sizes == ["32B", "4.0K", "8.0K", "64K", "1.0M"]
        table.sort_by("size")  # the same column again flips the order
        assert shown_names(app, "shm", 2) == ["1.0M", "64K", "8.0K", "4.0K", "32B"]
        assert "▼" in str(table.columns[next(k for k in table.columns if k.value == "size")].label)


async def test_filter_by_words_and_fields() -> None:
    app = canned_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2", "slash")
        await pilot.press(*"consumer")  # a holder's command
        await wait_for(pilot, lambda: shown_names(app, "shm") == ["/demo-frames", "/ticket"], "the filter")
        await pilot.press("enter")
        assert app.focused is view(app, "shm").table
        await pilot.press("slash", *"x" * 0)
        box = view(app, "shm").query_one(".filter")
        box.value = "pid:4242 state:deleted"  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: shown_names(app, "shm") == ["/unlinked-buffer"], "field filter")
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(shown_names(app, "shm")) == 5, "the filter cleared")
        # Events can be filtered by mechanism, event and pid.
        assert view(app, "events").spec.filter_help.startswith("filter: mechanism:")


async def test_rows_keep_their_identity_and_the_cursor_across_refreshes() -> None:
    app = canned_app(canned.canned_snapshot(), canned.later_snapshot())
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        shm_view = view(app, "shm")
        await wait_for(pilot, lambda: shm_view.table.row_count == 5, "rows")
        target = next(s for s in canned.canned_snapshot().shm if s.name == "/ticket")
        assert shm_view.select_key(target.object_key)
        before = shm_view.table.get_row(target.object_key)
        app.request_scan()
        await wait_for(pilot, lambda: "/fresh" in shown_names(app, "shm"), "the second snapshot")
        assert "/old-cache" not in shown_names(app, "shm")
        assert shm_view.table.cursor_key == target.object_key  # a row above went away; the cursor did not move
        assert shm_view.table.get_row(target.object_key) == before  # unchanged cells are the same objects
        # The event diff reached the Events view and the object's own history.
        await pilot.press("6")
        await wait_for(pilot, lambda: "created" in shown_names(app, "events", 2), "events")
        fresh_key = next(s.object_key for s in canned.later_snapshot().shm if s.name == "/fresh")
        assert [e.event for e in app.history_for(fresh_key)] == ["created", "attached"]


async def test_hostile_names_render_inertly(export_dir: str) -> None:
    app = canned_app(canned.canned_snapshot(hostile=True), export_dir=export_dir)
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        await wait_for(pilot, lambda: len(shown_names(app, "shm")) == 10, "the hostile rows")
        names = shown_names(app, "shm")
        assert "/[@click=app.quit]x" in names
        assert "/foo[/]bar" in names
        assert "/title\\x1b]2;pwned\\x07" in names
        assert "/two\\x0alines" in names
        assert "/bad-utf8-\\xff\\xfe" in names
        table = view(app, "shm").table
        for key in table.shown_keys:
            for cell in table.get_row(key):
                assert isinstance(cell, Text)
                assert not any(ord(char) < 0x20 or 0xDC80 <= ord(char) <= 0xDCFF for char in cell.plain)
        # Walk over every row (detail pane renders each), press Enter, click the name: nothing fires.
        for _ in range(10):
            await pilot.press("down")
        await pilot.click(table, offset=(3, 3))
        await pilot.press("c")  # copy the path: the notification is markup-free
        await wait_for(pilot, lambda: any(m.startswith("Copied /dev/shm") for m in messages), "the copy notice")
        assert app.is_running
        screen = app.export_screenshot()
        assert "\x1b" not in screen and "pwned\x07" not in screen
        assert "[@click=app.quit]x" in screen.replace("&#160;", " ")
        # The command palette shows the names as text as well.
        await pilot.press("ctrl+p")
        await pilot.press(*"click")
        await pilot.pause(0.5)
        await pilot.press("escape")
        assert app.is_running


async def test_read_only_refuses_every_change() -> None:
    orphan = next(s for s in canned.canned_snapshot().shm if s.name == "/old-cache")
    app = canned_app(read_only=True)
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await jump(pilot, app, "shm", orphan.object_key)
        await pilot.press("d")
        await pilot.press("k")
        await wait_for(pilot, lambda: sum("Read-only" in m for m in messages) == 2, f"two refusals in {messages}")
        assert not isinstance(app.screen, ConfirmScreen | SignalPicker)


async def test_held_object_cannot_be_removed_from_canned_data() -> None:
    app = canned_app()
    held = canned.canned_snapshot().shm[0]
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await jump(pilot, app, "shm", held.object_key)
        await pilot.press("d")
        await wait_for(pilot, lambda: any("Refused" in m and "4242" in m for m in messages), f"refusal in {messages}")
        assert not isinstance(app.screen, ConfirmScreen)


async def test_process_view_and_palette_jump() -> None:
    app = canned_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("5")
        await wait_for(pilot, lambda: shown_names(app, "signals", 0)[:1] == ["4400"], "pending first")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ProcessScreen", "the process view")
        screen = app.screen
        assert isinstance(screen, ProcessScreen)
        text = screen.text.plain  # before it is wrapped to the screen
        assert "SIGRTMIN+3" in text or "RTMIN+3" in text
        assert "worker-io" in text
        await pilot.press("escape")
        # Jump to an object through the command palette.
        await pilot.press("ctrl+p")
        await pilot.press(*"mqueue /forgotten")
        await pilot.pause(0.5)
        await pilot.press("enter")
        forgotten = canned.canned_snapshot().mqueues[1]
        await wait_for(pilot, lambda: view(app, "mqueue").table.cursor_key == forgotten.object_key, "palette jump")
        assert app.active_view == "mqueue"


async def test_pause_and_interval() -> None:
    app = canned_app(interval=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("p")
        assert app.paused
        await pilot.press("minus")
        assert app.interval == 2.0
        await pilot.press("plus", "plus")
        assert app.interval == 0.5
        await pilot.press("space")
        assert not app.paused


async def test_a_scan_that_ends_while_paused_is_shown_only_on_resume() -> None:
    # Seen in review: a scan under way when p was pressed changed the alerts under the cursor, and Enter opened
    # another object, "PAUSED" in the header all the while.
    app = canned_app(canned.canned_snapshot(), canned.later_snapshot())  # every scan after the first: the later
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        first = app.snapshot
        await pilot.press("p")
        app.post_message(ScanDone(canned.later_snapshot(), []))  # the one that was under way
        await pilot.pause()
        await pilot.pause()
        assert app.snapshot is first
        await pilot.press("p")
        await wait_for(pilot, lambda: app.snapshot is not first, "the scan held while paused")


def test_canned_later_snapshot_differs() -> None:
    first, later = canned.canned_snapshot(), canned.later_snapshot()
    assert replace(first, taken_at=later.taken_at) != later


async def test_missing_pieces_are_explained_in_place() -> None:
    from ipcmon.collect.scan import MOUNT_MQUEUE_HINT
    from ipcmon.model import Sysv

    no_mqueue = f"No mqueue filesystem is mounted: only queues some process holds open are listed. {MOUNT_MQUEUE_HINT}"
    no_sysv = "/proc/sysvipc is missing: this kernel has no SysV IPC (or /proc is not mounted)."
    snapshot = replace(canned.canned_snapshot(), notes=(no_mqueue, no_sysv), mqueue_dir=None,
                       sysv=Sysv(available=False), hidden_processes=7)
    app = canned_app(snapshot, is_root=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        header = str(app.query_one("#status").render())
        assert "not root: 7 processes unreadable" in header
        await pilot.press("3")
        notes = str(view(app, "mqueue").query_one(".notes").render())
        assert "No mqueue filesystem is mounted" in notes and "mount -t mqueue" in notes
        assert "/proc/sysvipc is missing" in notes
        await pilot.press("4")
        assert not view(app, "pipes").query_one(".notes").display  # nothing missing for pipes


async def test_a_view_number_typed_right_behind_enter_or_escape_switches_the_view() -> None:
    """The App forwards each key into the focused widget's queue: a digit queued behind Enter or Escape in the
    filter box must switch views, not be typed into the filter (the race tests/ui/test_tmux.py ran into)."""
    from textual.events import Key

    app = canned_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2", "slash", *"demo")
        box = view(app, "shm").query_one(".filter")
        # Both keys are read before either is handled, as when a person types fast or tmux sends them.
        app.post_message(Key("enter", None))
        app.post_message(Key("4", "4"))
        await wait_for(pilot, lambda: app.active_view == "pipes", "the Pipes view")
        assert box.value == "demo"  # type: ignore[attr-defined]
        assert shown_names(app, "shm") == ["/demo-frames"]
        await pilot.press("2", "slash")
        app.post_message(Key("escape", None))
        app.post_message(Key("3", "3"))
        await wait_for(pilot, lambda: app.active_view == "mqueue", "the Message queues view")
        assert box.value == ""  # type: ignore[attr-defined]
        assert len(shown_names(app, "shm")) == 5


async def test_an_event_detail_shows_the_history_of_its_object() -> None:
    """The Events view's rows are keyed by event; the detail pane's history is the object's (it showed (0))."""
    app = canned_app(canned.canned_snapshot(), canned.later_snapshot())
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await second_scan(pilot, app)
        await pilot.press("6")
        await wait_for(pilot, lambda: view(app, "events").table.current_row is not None, "an event selected")
        event = view(app, "events").table.current_row.record  # type: ignore[union-attr]
        assert isinstance(event, Event)
        detail = view(app, "events").query_one(DetailPane).text.plain
        history = [e for e in app.events if e.key == event.key]
        assert history and f"History since ipcmon started ({len(history)})" in detail


def test_escape_and_a_digit_read_together_are_named_as_textual_reads_them() -> None:
    # A terminal's ESC then 2, in one read (typed quickly, or over ssh), is one key to Textual: "™" (macOS's Option+2).
    from textual._xterm_parser import XTermParser

    for digit in "1234567890":
        (key,) = list(XTermParser().feed(f"\x1b{digit}"))
        assert ESCAPED_DIGITS[key.key] == digit, (digit, key)


@pytest.mark.parametrize("focus", ["filter", "table"])
async def test_escape_and_a_digit_read_together_clear_the_filter_and_switch_views(focus: str) -> None:
    app = canned_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2", "slash", *"consumer")
        await wait_for(pilot, lambda: shown_names(app, "shm") == ["/demo-frames", "/ticket"], "the filter")
        box = view(app, "shm").query_one(".filter")
        if focus == "table":
            await pilot.press("enter")
        (key,) = [name for name, digit in ESCAPED_DIGITS.items() if digit == "6"]
        app.post_message(Key(key, "§"))  # what Textual's parser makes of ESC 6 (the test above)
        await wait_for(pilot, lambda: app.active_view == "events", "the Events view")
        assert "§" not in box.value  # type: ignore[attr-defined]
        if focus == "filter":  # Escape in the box clears it, as alone
            await wait_for(pilot, lambda: box.value == "", "the filter cleared")  # type: ignore[attr-defined]
