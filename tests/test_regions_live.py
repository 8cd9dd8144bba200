"""memfd and anonymous shared regions held by real children, as every front end shows them: the text snapshot,
the JSON, `ipcmon watch` and the dashboard's Shared memory view (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from ipcmon.collect import ScanConfig, scan
from ipcmon.model import SharedRegion
from tests.helpers import REPO, Child, Spawn, new_name, wait_until
from tests.lifecycle.test_watch import _read_until, _watch
from tests.ui.conftest import live_app, started, view, wait_for

PAGE = os.sysconf("SC_PAGE_SIZE")

# A parent maps an anonymous shared region and forks a child that keeps it; the parent also holds a memfd by
# descriptor and by mapping.
SHARER = """
    fd = os.memfd_create({name!r})
    os.ftruncate(fd, {size})
    map_fd(fd, {size})
    anonymous = map_fd(-1, {size}, flags=0x21)  # MAP_SHARED | MAP_ANONYMOUS
    touch(anonymous, {size})
    child = os.fork()
    if child == 0:
        _libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: it goes when its parent is killed
        os.close(fd)
        hold()
        os._exit(0)
    say("ready", fd, child)
    hold()
"""


def start_sharer(spawn: Spawn, name: str) -> tuple[Child, int, int]:
    sharer = spawn(SHARER.format(name=name, size=4 * PAGE), comm="ipcm-sharer")
    fd, child = (int(word) for word in sharer.expect())
    return sharer, fd, child


def ipcmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipcmon", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60, check=True)


def test_text_snapshot_lists_both_regions_with_their_holders(spawn: Spawn) -> None:
    name = new_name()[1:]
    sharer, fd, child = start_sharer(spawn, name)
    text = ipcmon("snapshot", "--pid", f"{sharer.pid},{child}").stdout
    section = text.split("== memfd and anonymous shared memory (2)\n", 1)[1].split("\n\n", 1)[0]
    rows = section.splitlines()
    assert rows[0].split() == ["NAME", "KIND", "SIZE", "ALLOC", "HOLDERS"]
    memfd_row = next(row for row in rows if row.startswith(name))
    assert memfd_row.split()[1:4] == ["memfd", "16K", "0B"]
    assert f"{sharer.pid} ipcm-sharer fd{fd} rw" in memfd_row
    anon_row = next(row for row in rows if row.startswith("anonymous:["))
    assert anon_row.split()[1:4] == ["anon", "16K", "16K"]
    assert f"{sharer.pid} ipcm-sharer map rw-s 16K" in anon_row and f"{child} ipcm-sharer map rw-s 16K" in anon_row


def test_json_regions_have_kind_name_sizes_and_holders(spawn: Spawn) -> None:
    name = new_name()[1:]
    sharer, fd, child = start_sharer(spawn, name)
    document = json.loads(ipcmon("snapshot", "--json", "--kind", "memfd", "--pid", f"{sharer.pid},{child}").stdout)
    assert document["kinds"] == ["memfd"]
    memfd = next(region for region in document["regions"] if region["name"] == name)
    st = os.stat(f"/proc/{sharer.pid}/fd/{fd}")
    assert {key: memfd[key] for key in ("kind", "dev", "inode", "size", "allocated")} == {
        "kind": "memfd", "dev": st.st_dev, "inode": st.st_ino, "size": 4 * PAGE, "allocated": 0,
    }
    # The forked child closed its copy of the descriptor but keeps the mapping it inherited.
    assert [(h["pid"], h["fd"], h["mapped"], h["access"]) for h in memfd["holders"]] == [
        (sharer.pid, fd, False, "rw"), (sharer.pid, None, True, "rw"), (child, None, True, "rw"),
    ]
    (anonymous,) = (region for region in document["regions"] if region["kind"] == "anon"
                    and sharer.pid in {holder["pid"] for holder in region["holders"]})
    assert anonymous["name"] == "anonymous"
    assert sorted(holder["pid"] for holder in anonymous["holders"]) == sorted((sharer.pid, child))


def next_event(watch: subprocess.Popen[str], predicate: Callable[[dict[str, object]], bool]) -> dict[str, object]:
    """The next JSON line of `ipcmon watch --json` that satisfies predicate."""
    event: dict[str, object] = json.loads(_read_until(watch, lambda line: predicate(json.loads(line)), timeout=30))
    return event


def test_watch_reports_created_attached_and_destroyed(spawn: Spawn) -> None:
    name = new_name()[1:]
    watch = _watch("--json", "--kind", "memfd", "--interval", "0.2")
    try:
        _read_until(watch, lambda text: text.startswith("watching"), stderr=True)
        sharer, fd, _ = start_sharer(spawn, name)
        created = next_event(watch, lambda event: event["object"] == name)
        assert (created["mechanism"], created["event"]) == ("memfd", "created")
        key = created["key"]
        assert isinstance(key, str) and key.startswith("memfd:")
        # One event for the sharer's descriptor and mapping together (one per process, issue 12).
        by_fd = next_event(watch, lambda event: (event["key"], event["pid"]) == (key, sharer.pid)
                           and f"fd {fd} rw" in event["detail"].split(", "))
        assert by_fd["event"] == "attached"
        sharer.stop()  # its forked child follows it
        destroyed = next_event(watch, lambda event: event["key"] == key and event["event"] == "destroyed")
        assert destroyed["object"] == name
    finally:
        os.kill(watch.pid, signal.SIGTERM)
        _, stderr = watch.communicate(timeout=10)
    assert watch.returncode == 0
    assert "Traceback" not in stderr


def _region(pid: int, kind: str) -> SharedRegion | None:
    snapshot = scan(ScanConfig(kinds=("memfd",), pids=frozenset({pid})))
    return next((region for region in snapshot.regions if region.kind == kind), None)


async def test_dashboard_shared_memory_view_shows_the_regions(spawn: Spawn) -> None:
    name = new_name()[1:]
    sharer, _, child = start_sharer(spawn, name)
    wait_until(lambda: _region(sharer.pid, "anon") is not None, "the anonymous region in a scan")
    anonymous = _region(sharer.pid, "anon")
    memfd = _region(sharer.pid, "memfd")
    assert anonymous is not None and memfd is not None
    app = live_app(interval=0.5, kinds=("memfd",), pids=frozenset({sharer.pid, child}))
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        table = view(app, "shm").table
        await wait_for(pilot, lambda: {memfd.object_key, anonymous.object_key} <= set(table.shown_keys),
                       "both regions' rows")
        cells = [cell.plain for cell in table.get_row(memfd.object_key)]
        assert cells[0].endswith(name) and "memfd" in cells
        assert any(f"{sharer.pid}" in cell for cell in cells)
        anon_cells = [cell.plain for cell in table.get_row(anonymous.object_key)]
        assert "anonymous" in anon_cells[0] and "anon" in anon_cells
        assert any(str(child) in cell for cell in anon_cells)
