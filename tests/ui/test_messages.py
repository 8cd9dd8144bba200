"""The dashboard's structure: widgets and screens post, the App decides; the watcher thread only posts, merged.

Asserted on what the App dispatched (``run_test(message_hook=…)``) and on its state afterwards. Last, the
Overview's Shared memory card over memfd and anonymous regions (issue 11), and without them as before.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import replace

from textual.message import Message

from ipcmon.model import Event, Holder, SharedRegion
from ipcmon.ui.messages import Goto, OpenRow, SignalProcess, StartDemo, WatchedEvents
from ipcmon.ui.screens.process import ProcessScreen
from ipcmon.ui.view.alerts import find_alerts
from ipcmon.ui.widgets.overview import Overview
from tests.helpers import REPO
from tests.ui import canned
from tests.ui.conftest import canned_app, record_notifications, started, view, wait_for

BURST = 300


def inotify_created(number: int) -> Event:
    name = f"/ipcmon-test-burst-{number}"
    return Event(canned.TAKEN_AT, "shm", "created", name, f"shm:0:{900_000 + number}", source="inotify")


async def test_watcher_thread_only_posts_and_a_burst_is_handled_once() -> None:
    app = canned_app()
    dispatched: list[tuple[Message, int]] = []

    def hook(message: Message) -> None:
        dispatched.append((message, threading.get_ident()))

    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await started(pilot, app)
        logged = len(app.event_log)
        burst = [inotify_created(number) for number in range(BURST)]

        def watcher() -> None:  # what Monitor's observer thread does: call the App's callback per event
            for event in burst:
                app.inotify_event(event)
            app.inotify_event(Event(canned.TAKEN_AT, "shm", "created", "/polled", "shm:0:1"))  # a poll event: dropped

        thread = threading.Thread(target=watcher)
        thread.start()
        thread.join()  # blocks the UI thread: the whole burst is queued before the App looks at it
        await wait_for(pilot, lambda: len(app.event_log) == logged + BURST, "the burst in the App's event log")
        handled = [message for message, _ in dispatched if isinstance(message, WatchedEvents)]
        assert len(handled) < 10, f"{len(handled)} WatchedEvents handled for one burst of {BURST}"
        assert sum(len(message.events) for message in handled) == BURST
        assert {ident for message, ident in dispatched if isinstance(message, WatchedEvents)} == {
            threading.get_ident()
        }
        # The burst asked for a rescan; its events reach the views with it, in order, newest first.
        await wait_for(pilot, lambda: app.events[:1] == [burst[-1]], "the burst in the events the views see")
        assert [event.object for event in app.events[:BURST]] == [event.object for event in reversed(burst)]


async def test_an_alert_posts_goto_and_the_app_jumps() -> None:
    # Without the canned blocked writer, whose alert (first) opens its process view (test_stuck_overview.py).
    quiet = replace(canned.canned_snapshot(), stuck=())
    app = canned_app(quiet)
    dispatched: list[Message] = []
    async with app.run_test(size=(120, 40), message_hook=dispatched.append) as pilot:
        await started(pilot, app)
        first = app.query_one(Overview).query_one("#alerts").current_row  # type: ignore[attr-defined]
        alert = next(a for a in find_alerts(quiet) if a.alert_key == first.key)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(isinstance(m, Goto) for m in dispatched), "the Goto message")
        goto = next(m for m in dispatched if isinstance(m, Goto))
        assert (goto.view, goto.key) == (alert.view, alert.key)
        await wait_for(pilot, lambda: view(app, alert.view).table.cursor_key == alert.key, "the jump")
        assert app.active_view == alert.view


async def test_rows_screens_and_demos_post_and_the_app_decides() -> None:
    app = canned_app(read_only=True)
    messages = record_notifications(app)
    dispatched: list[Message] = []
    async with app.run_test(size=(120, 40), message_hook=dispatched.append) as pilot:
        await started(pilot, app)
        # Enter on a row of the Signals view: OpenRow, and the App opens the process view.
        await pilot.press("5")
        await wait_for(pilot, lambda: view(app, "signals").table.current_row is not None, "a signals row")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen), "the process view")
        assert any(isinstance(m, OpenRow) for m in dispatched)
        # k in the process view: SignalProcess, and the App refuses it (read-only).
        await pilot.press("k")
        await wait_for(pilot, lambda: any("Read-only" in m for m in messages), "the refusal")
        assert any(isinstance(m, SignalProcess) for m in dispatched)
        await pilot.press("escape")
        # Enter on a demo: StartDemo, and the App refuses it (read-only): nothing runs.
        await pilot.press("7")
        await wait_for(pilot, lambda: app.focused is app.query_one("#demo-list"), "the demo list")
        await pilot.press("enter")
        await wait_for(pilot, lambda: sum("Read-only" in m for m in messages) == 2, "the second refusal")
        assert any(isinstance(m, StartDemo) for m in dispatched)
        assert not app.demo_processes


def test_widgets_and_screens_never_import_the_app() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import ipcmon.ui.widgets as widgets, ipcmon.ui.screens as screens\n"
        "for package in (widgets, screens):\n"
        "    for module in pkgutil.iter_modules(package.__path__):\n"
        "        importlib.import_module(f'{package.__name__}.{module.name}')\n"
        "print('ipcmon.ui.app' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


async def test_memfd_and_anonymous_regions_are_counted_in_the_shared_memory_card() -> None:
    regions = (
        SharedRegion("memfd", "wl_shm", 7, 3001, 65536, 65536, (Holder(4242, "producer", 5, False, "rw"),)),
        SharedRegion("anon", "anonymous", 7, 3002, 8192, None, (Holder(4243, "consumer", None, True, "rw"),)),
    )
    app = canned_app(replace(canned.canned_snapshot(), regions=regions))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        card = str(app.query_one("#card-shm .summary").render())
        assert "2 memfd/anonymous" in card
        # A scan of memfd alone still shows the Shared memory view (no "not scanned" note).
        assert "memfd" in view(app, "shm").spec.kinds
    plain = canned_app()
    async with plain.run_test(size=(120, 40)) as pilot:
        await started(pilot, plain)
        assert "memfd" not in str(plain.query_one("#card-shm .summary").render())
