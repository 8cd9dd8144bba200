"""The dashboard over the real kernel: objects the test creates appear, change and go; signals and removal act."""

from __future__ import annotations

import mmap
import os
import uuid

import posix_ipc
import pytest

from ipcmon.model import ShmSegment
from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.screens.confirm import ConfirmScreen
from ipcmon.ui.screens.signal import SignalPicker
from ipcmon.ui.widgets.object_view import DetailPane
from tests.helpers import Cleanup, Spawn
from tests.ui.conftest import jump, live_app, record_notifications, started, ui_name, view, wait_for

SIGUSR1_BIT = 1 << (10 - 1)

# Real scans of a machine other tests keep busy: generous, but bounded.
pytestmark = pytest.mark.timeout(300)


def segment(app: IpcmonApp, name: str) -> ShmSegment | None:
    snapshot = app.snapshot
    if snapshot is None:
        return None
    return next((s for s in snapshot.shm if s.name == name), None)


def shm_app() -> IpcmonApp:
    return live_app(interval=0.5, kinds=("shm",))


async def test_segment_appears_gets_a_holder_and_goes(cleanup: Cleanup) -> None:
    name = ui_name()
    app = shm_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        shm = cleanup.add(lambda s: s.unlink(), posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=8192))
        await wait_for(pilot, lambda: segment(app, name) is not None, "the new segment in a scan")
        key = segment(app, name).object_key  # type: ignore[union-attr]
        table = view(app, "shm").table
        await wait_for(pilot, lambda: table.row_for(key) is not None and key in table.shown_keys, "its row")
        # Its history starts with "created" (checked now: other tests' churn can push old events out of the
        # bounded log before this test ends).
        await wait_for(pilot, lambda: "created" in [e.event for e in app.history_for(key)], "its created event")
        # The creator's descriptor is a holder; once closed, the segment is orphaned.
        shm.close_fd()
        await wait_for(pilot, lambda: segment(app, name).state == "orphaned", "orphaned")  # type: ignore[union-attr]
        await jump(pilot, app, "shm", key)
        assert "orphaned" in table.get_cell(key, "state").plain
        # Attach by mapping it (no descriptor kept): this process becomes a holder by mapping.
        fd = os.open(f"/dev/shm{name}", os.O_RDWR)
        mapping = mmap.mmap(fd, 8192)
        os.close(fd)
        try:
            await wait_for(pilot, lambda: str(os.getpid()) in table.get_cell(key, "holders").plain,
                           "the holder in the row")
            assert "held" in table.get_cell(key, "state").plain
            detail = view(app, "shm").query_one(DetailPane).text.plain
            assert f"{os.getpid()}" in detail and "mapped rw-s" in detail
        finally:
            mapping.close()
        shm.unlink()
        await wait_for(pilot, lambda: key not in table.shown_keys, "the row gone after unlink")
        # Then attached, …, destroyed (inotify may report the removal before a scan has named the object,
        # so that one is matched by name).
        assert "attached" in [event.event for event in app.history_for(key)]
        await wait_for(pilot, lambda: any(e.object == name and e.event == "destroyed" for e in app.events),
                       "the destroyed event")


async def test_signal_dialog_delivers_and_cancel_sends_nothing(spawn: Spawn) -> None:
    child = spawn(
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        say("ready")
        hold()
        """,
        comm="ipcmon-ui-sig",
    )
    child.expect("ready")
    app = live_app(interval=0.5, kinds=("signal",), pids=frozenset({child.pid}))
    messages = record_notifications(app)

    def pending() -> int:
        return int(child.status()["ShdPnd"], 16)

    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("5")
        await jump(pilot, app, "signals", f"signal:{child.pid}")
        # Cancel in the picker.
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker), "the signal picker")
        await pilot.press("escape")
        await wait_for(pilot, lambda: any("Cancelled" in m for m in messages), "the cancel notice")
        # Choose SIGUSR1, then say no at the confirmation.
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker), "the signal picker")
        await pilot.press(*"usr1", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("n")
        await wait_for(pilot, lambda: sum("Cancelled" in m for m in messages) == 2, "the second cancel notice")
        assert pending() == 0
        # Now send it for real.
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker), "the signal picker")
        await pilot.press(*"usr1", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: pending() & SIGUSR1_BIT, "SIGUSR1 pending in the child")
        await wait_for(pilot, lambda: any(m.startswith("sent SIGUSR1 (10)") for m in messages), "the result")
        # The dashboard shows it pending, in red, first in the list.
        table = view(app, "signals").table
        await wait_for(pilot, lambda: "USR1" in table.get_row(f"signal:{child.pid}")[2].plain, "pending in the row")


async def test_remove_orphan_and_refuse_held(cleanup: Cleanup) -> None:
    orphan_name, held_name = ui_name("orphan"), ui_name("held")
    orphan = posix_ipc.SharedMemory(cleanup.shm(orphan_name), posix_ipc.O_CREX, size=4096)
    orphan.close_fd()
    held = posix_ipc.SharedMemory(cleanup.shm(held_name), posix_ipc.O_CREX, size=4096)  # this process holds its fd
    app = shm_app()
    messages = record_notifications(app)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await started(pilot, app)
            await wait_for(pilot, lambda: segment(app, orphan_name) and segment(app, held_name), "both segments")
            # A held segment is refused outright.
            await jump(pilot, app, "shm", segment(app, held_name).object_key)  # type: ignore[union-attr]
            await pilot.press("d")
            await wait_for(pilot, lambda: any(m.startswith("Refused") and str(os.getpid()) in m for m in messages),
                           "the refusal")
            assert not isinstance(app.screen, ConfirmScreen)
            assert os.path.exists(f"/dev/shm{held_name}")
            # The orphan is removed after confirmation.
            await jump(pilot, app, "shm", segment(app, orphan_name).object_key)  # type: ignore[union-attr]
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("y")
            await wait_for(pilot, lambda: not os.path.exists(f"/dev/shm{orphan_name}"), "the orphan unlinked")
            await wait_for(pilot, lambda: segment(app, orphan_name) is None, "the orphan gone from the view")
            assert any(m == f"Removed {orphan_name}." for m in messages)
            assert os.path.exists(f"/dev/shm{held_name}")
    finally:
        held.close_fd()


async def test_hostile_real_names_render_inertly(cleanup: Cleanup) -> None:
    token = uuid.uuid4().hex[:8]
    base = f"ipcmon-test-ui-{os.getpid()}-{token}"
    # A file name cannot hold "/", so the closing-tag case ("foo[/]bar") is in the canned-data test.
    tails = [b"[@click=app.quit]x", b"foo[b]bar", b"t\x1b]2;pwned\x07", b"two\nlines", b"bad\xff\xfe"]
    for tail in tails:
        path = os.fsencode(f"/dev/shm/{base}-") + tail
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        cleanup.path(path)
    app = shm_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2", "slash", *token)  # the random part is enough to find ours
        table = view(app, "shm").table
        await wait_for(pilot, lambda: table.row_count == len(tails), "the five hostile rows")
        shown = sorted(table.get_row(key)[0].plain for key in table.shown_keys)
        assert shown == sorted([
            f"/{base}-[@click=app.quit]x",
            f"/{base}-bad\\xff\\xfe",
            f"/{base}-foo[b]bar",
            f"/{base}-t\\x1b]2;pwned\\x07",
            f"/{base}-two\\x0alines",
        ])
        await pilot.press("enter")  # focus back on the table
        for _ in tails:
            await pilot.press("down")  # the detail pane shows each name too
        await pilot.press("enter")  # no holder: a notice, nothing fired
        await pilot.pause()
        assert app.is_running
        assert "\x1b" not in app.export_screenshot()
