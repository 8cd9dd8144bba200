"""Fixtures for the dashboard tests: unique names, a canned-data app, and waiting on the live app."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot

from ipcmon.model import Snapshot
from ipcmon.ui.app import IpcmonApp, make_app
from ipcmon.ui.widgets.object_view import ObjectView
from tests.ui import canned

DEADLINE = 60.0
"""Generous: a loaded 2-core machine may take seconds for a scan that usually takes milliseconds."""


def ui_name(tag: str = "") -> str:
    """/ipcmon-test-ui-<pid>-<random>[-tag]: no other test or process uses it."""
    return f"/ipcmon-test-ui-{os.getpid()}-{uuid.uuid4().hex[:8]}{'-' + tag if tag else ''}"


async def wait_for(pilot: Pilot[None], condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.05)


def view(app: IpcmonApp, view_id: str) -> ObjectView:
    return app.query_one(f"#view-{view_id}", ObjectView)


def shown_names(app: IpcmonApp, view_id: str, column: int = 0) -> list[str]:
    """The text of one column of a view's table, in display order."""
    table = view(app, view_id).table
    return [table.get_row(key)[column].plain for key in table.shown_keys]


def canned_app(*snapshots: Snapshot, **options: object) -> IpcmonApp:
    """The dashboard over fixed data: no clock, host or kernel from this machine, one scan until asked."""
    source = canned.Sequence(*(snapshots or (canned.canned_snapshot(),)))
    defaults: dict[str, object] = {
        "interval": 3600.0, "host": canned.HOST, "kernel": canned.KERNEL, "is_root": True,
        "export_dir": tempfile.gettempdir(),
    }
    defaults.update(options)
    return make_app(source, **defaults)  # type: ignore[arg-type]


@pytest.fixture
def utc() -> Iterator[None]:
    """Event times print in local time; pin it so the SVG snapshots match anywhere."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.fixture
def export_dir(tmp_path: Path) -> str:
    return str(tmp_path)


def record_notifications(app: IpcmonApp) -> list[str]:
    """Every message the app notifies from now on (toasts expire, so the tests keep their own list)."""
    seen: list[str] = []
    notify = app.notify

    def recording(message: str, *args: object, **kwargs: object) -> None:
        assert kwargs.get("markup") is False, f"notify without markup=False: {message!r}"
        seen.append(message)
        notify(message, *args, **kwargs)  # type: ignore[arg-type]

    app.notify = recording  # type: ignore[method-assign]
    return seen


async def started(pilot: Pilot[None], app: IpcmonApp) -> None:
    """Wait for the first scan to reach every view."""
    await wait_for(
        pilot,
        lambda: app.snapshot is not None and all(v.snapshot is app.snapshot for v in app.query(ObjectView)),
        "the first scan",
    )


async def second_scan(pilot: Pilot[None], app: IpcmonApp) -> None:
    """Scan again and wait until the change between the first two snapshots is in the event log."""
    app.request_scan()
    await wait_for(pilot, lambda: app.events, "the second scan's events")


async def jump(pilot: Pilot[None], app: IpcmonApp, view_id: str, key: str) -> None:
    """Put the cursor on an object's row, as the palette or an alert would."""
    app.jump_to(view_id, key)
    await wait_for(pilot, lambda: view(app, view_id).table.cursor_key == key, f"the cursor on {key}")


def live_app(**options: object) -> IpcmonApp:
    """The dashboard over the real system; an export (an "e" typed by mistake) lands in the temp directory."""
    options.setdefault("export_dir", tempfile.gettempdir())
    return make_app(None, **options)  # type: ignore[arg-type]
