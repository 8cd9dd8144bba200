"""The Overview and the process view over real stuck processes (issue 13, item 5): a two-process pipe deadlock
first of the alerts, then a writer blocked on a full pipe; the card counts them as stuck; the title never says
nothing is stuck; Enter on a deadlock or a blocked process opens its process view, which says the wait's kind,
object, since and who could release it."""

from __future__ import annotations

import os
import re

from rich.text import Text
from textual.widgets import Static

from ipcmon.model import Snapshot, Stuck, Waiting
from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.screens.process import ProcessScreen
from ipcmon.ui.widgets.overview import MetricCard, Overview
from ipcmon.ui.widgets.tables import ObjectTable
from tests.helpers import Spawn
from tests.lifecycle.test_watch_state import _scene
from tests.ui import canned
from tests.ui.conftest import canned_app, live_app, shown_names, started, view, wait_for


def _text(static: Static) -> str:
    shown = static.render()
    return shown.plain if isinstance(shown, Text) else str(shown)


def _process_text(app: IpcmonApp) -> str:
    screen = app.screen
    assert isinstance(screen, ProcessScreen)
    return screen.text.plain  # before it is wrapped to the screen


async def test_deadlock_first_then_the_blocked_writer_and_enter_opens_their_process(spawn: Spawn) -> None:
    first, second, writer, read_end, inode = _scene(spawn)
    low, high = sorted((first.pid, second.pid))
    try:
        app = live_app(interval=0.5, kinds=("pipe", "signal"), pids=frozenset({first.pid, second.pid, writer.pid}))
        async with app.run_test(size=(120, 40)) as pilot:
            await started(pilot, app)
            overview = app.query_one(Overview)
            alerts = overview.query_one("#alerts", ObjectTable)
            deadlock_key, blocked_key = f"deadlock:{low},{high}:deadlock", f"process:{writer.pid}:blocked"
            await wait_for(pilot, lambda: {deadlock_key, blocked_key} <= set(overview.alerts), "both alerts")
            await pilot.pause(0.2)
            # Only these three processes are selected: the deadlock is the first row, the blocked writer next.
            assert alerts.shown_keys[:2] == [deadlock_key, blocked_key]
            deadlock, blocked = overview.alerts[deadlock_key], overview.alerts[blocked_key]
            assert (deadlock.severity, deadlock.mechanism, deadlock.pid) == ("bad", "process", low)
            assert deadlock.problem.startswith(f"deadlock: pid {low} ")
            assert (blocked.severity, blocked.pid) == ("bad", writer.pid)
            assert re.sub(r" for \d[\dhmsd]*;", ";", blocked.problem).startswith(
                f"blocked: write pipe:[{inode}] (full: 64K of 64K); released by pid {os.getpid()} ")
            # The pipes' own "full" is said by the deadlock and the blocked writer, not as unrelated alerts.
            assert not [a for a in overview.alerts.values() if a.problem.startswith("full")]
            title = _text(overview.query_one("#alerts-title", Static))
            assert "none" not in title and "(2 serious)" in title  # the deadlock and the blocked writer
            card = _text(app.query_one("#card-signals", MetricCard).query_one(".summary", Static))
            assert card.endswith("3 processes waiting on IPC: 3 stuck (2 deadlocked)")

            # Enter on the deadlock: its first member's process view.
            alerts.select_key(deadlock_key)
            alerts.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen), "the process view")
            assert isinstance(app.screen, ProcessScreen) and app.screen.pid == low
            text = _process_text(app)
            assert "waiting     write pipe:[" in text
            assert "state       deadlocked: only members of its deadlock (below) could release it" in text
            assert "how         write: write(" in text
            assert "since       " in text
            assert f"released by pid {high} " in text and "(holds the read end, fd " in text
            assert f"deadlock    pid {low} " in text and "each wait on what only another of them could release" in text
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ProcessScreen), "back to the Overview")

            # Enter on the blocked writer: its process view.
            alerts.select_key(blocked_key)
            alerts.focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen), "the writer's process view")
            assert isinstance(app.screen, ProcessScreen) and app.screen.pid == writer.pid
            text = _process_text(app)
            assert f"waiting     write pipe:[{inode}]" in text
            assert "state       blocked: it cannot go on until someone else acts" in text
            assert f"released by pid {os.getpid()} " in text and f"(holds the read end, fd {read_end})" in text
            assert "deadlock " not in text
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ProcessScreen), "back to the Overview")

            # The Signals view's WAITING column marks the stuck ones with the bad glyph (readable without colour).
            await pilot.press("5")
            await wait_for(pilot, lambda: len(shown_names(app, "signals")) == 3, "the three processes")
            # By its key: LAST SENT comes before it when the dashboard knows senders (root, tracefs: issue 16).
            waiting = [column.key for column in view(app, "signals").table.spec].index("waiting")
            waits = dict(zip(shown_names(app, "signals"), shown_names(app, "signals", waiting), strict=True))
            assert waits[str(writer.pid)] == f"✖ write pipe:[{inode}]"
            assert waits[str(low)].startswith("✖ write pipe:[")
    finally:
        os.close(read_end)


def _with_wait(state: str, waiting: Waiting) -> Snapshot:
    """The canned snapshot with only a hazard-free process waiting (no other alerts): idle or blocked."""
    base = canned.canned_snapshot()
    process = next(p for p in base.processes if p.pid == 4311)
    entry = Stuck(4311, "reader", waiting, state, (4242,) if state == "waiting" else (),  # type: ignore[arg-type]
                  "pid 4242 producer (holds the write end, fd 1)" if state == "waiting" else "nobody", None)
    processes = tuple(p if p.pid != 4311 else type(p)(**{**_fields(process), "waiting": waiting})
                      for p in base.processes if p.pid in (4242, 4311))
    return Snapshot(taken_at=base.taken_at, kinds=base.kinds, processes=processes, stuck=(entry,))


def _fields(record: object) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}  # type: ignore[attr-defined]


async def test_the_title_says_none_only_when_nothing_is_blocked() -> None:
    read = Waiting("read", 0, "pipe_read", "pipe:[5637]", "pipe:12:5637", "read")
    idle = canned_app(_with_wait("waiting", read))
    async with idle.run_test(size=(120, 40)) as pilot:
        await started(pilot, idle)
        title = _text(idle.query_one("#alerts-title", Static))
        assert title.endswith("none: nothing orphaned, deleted, full, blocked or deadlocked")
        card = _text(idle.query_one("#card-signals", MetricCard).query_one(".summary", Static))
        assert card.endswith("1 process waiting on IPC: 0 stuck")

    receive = Waiting("mq_timedreceive", 3, "", "mqueue:/jobs", None, "receive")
    blocked = canned_app(_with_wait("blocked", receive))
    async with blocked.run_test(size=(120, 40)) as pilot:
        await started(pilot, blocked)
        overview = blocked.query_one(Overview)
        title = _text(overview.query_one("#alerts-title", Static))
        assert "none" not in title and title.startswith("Leaks and hazards: 1")
        [alert] = overview.alerts.values()
        assert (alert.severity, alert.pid, alert.problem) == (
            "warn", 4311, "blocked: mq_timedreceive mqueue:/jobs; released by nobody")
