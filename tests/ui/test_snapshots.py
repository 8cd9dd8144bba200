"""SVG snapshots of the main views over canned data (fixed times, host and kernel; no clock on screen).

Regenerate after a deliberate change with `pytest tests/ui/test_snapshots.py --snapshot-update`, then look at
the SVGs in tests/ui/__snapshots__ before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace

import pytest
from textual.pilot import Pilot

from ipcmon.ui.app import IpcmonApp
from tests.ui import canned
from tests.ui.conftest import canned_app, second_scan, started

SIZE = (120, 40)
SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def _utc(utc: None) -> Iterator[None]:
    yield


def ready(app: IpcmonApp, *keys: str, rescan: bool = False) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Wait for the first scan (and a second, for events), then press keys."""

    async def run_before(pilot: Pilot[None]) -> None:
        await started(pilot, app)
        if rescan:
            await second_scan(pilot, app)
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("overview", ()),
        ("shm", ("2",)),
        ("mqueue", ("3",)),
        ("pipes", ("4", "down", "down")),
        ("signals", ("5",)),
        ("process", ("5", "enter")),
        ("help", ("question_mark",)),
        ("demos", ("7",)),
    ],
)
def test_view(snap_compare: SnapCompare, name: str, keys: tuple[str, ...]) -> None:
    app = canned_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, *keys))


def test_events_view(snap_compare: SnapCompare) -> None:
    app = canned_app(canned.canned_snapshot(), canned.later_snapshot())
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, "6", rescan=True))


def test_hostile_names(snap_compare: SnapCompare) -> None:
    app = canned_app(canned.canned_snapshot(hostile=True))
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, "2", "down"))


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
@pytest.mark.parametrize(("name", "keys"), [("overview", ()), ("shm", ("2",)), ("signals", ("5",))])
def test_view_at_size(snap_compare: SnapCompare, name: str, keys: tuple[str, ...], size: tuple[int, int]) -> None:
    """Issue 12: every view at the smallest usual terminal and a large one (read-only, a hidden process named)."""
    snapshot = canned.canned_snapshot()
    hidden = replace(snapshot, processes=tuple(replace(p, hidden=p.pid == 4300) for p in snapshot.processes))
    app = canned_app(hidden, read_only=True)
    assert snap_compare(app, terminal_size=size, run_before=ready(app, *keys))


@pytest.mark.parametrize(("name", "keys"), [("overview", ()), ("shm", ("2", "down", "down"))])
def test_containers(snap_compare: SnapCompare, name: str, keys: tuple[str, ...]) -> None:
    """Issue 15: a machine that runs containers: the Overview's places, the CONTAINER column (host, web-1, a podman
    container by its short id), the detail pane of web-1's /demo-frames with its place and its holder's pid 1."""
    app = canned_app(canned.containers_snapshot())
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(app, *keys))
