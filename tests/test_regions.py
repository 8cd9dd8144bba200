"""memfd and anonymous shared memory through the base layers: report section, JSON, events, rows, detail, health.

The collector is written separately; these records are built by hand, as the collector will build them.
"""

from __future__ import annotations

import json
from dataclasses import replace

from ipcmon import export, health
from ipcmon.leaks import find_leaks
from ipcmon.live.events import diff
from ipcmon.model import Holder, Process, SharedRegion, Snapshot
from ipcmon.report import render
from ipcmon.ui.view.alerts import find_alerts
from ipcmon.ui.view.describe import describe_process, describe_record
from ipcmon.ui.view.rows import shm_rows
from ipcmon.ui.view.table import Context, RowCache

KINDS = ("shm", "memfd", "mqueue", "pipe", "signal", "sysv")
NOW = 1_790_000_000.0

PARENT = Holder(500, "parent", 4, False, "rw")
PARENT_MAP = Holder(500, "parent", None, True, "rw", shared=True, prot="rw-s", mapped_bytes=4096)
CHILD_MAP = Holder(501, "child", None, True, "rw", shared=True, prot="rw-s", mapped_bytes=4096)

MEMFD = SharedRegion("memfd", "wayland-shm", 1, 9001, 65536, 8192, (PARENT, PARENT_MAP))
ANON = SharedRegion("anon", "anonymous", 1, 9002, 4096, None, (PARENT_MAP, CHILD_MAP))


def _snapshot(*regions: SharedRegion, at: float = NOW, kinds: tuple[str, ...] = KINDS) -> Snapshot:
    return Snapshot(taken_at=at, kinds=kinds, regions=regions)


def test_region_key_and_label() -> None:
    assert MEMFD.object_key == "memfd:1:9001"
    assert ANON.object_key == "anon:1:9002"
    assert (MEMFD.label, ANON.label) == ("wayland-shm", "anonymous:[9002]")


def test_report_has_a_region_section() -> None:
    text = render(_snapshot(MEMFD, ANON))
    lines = text.splitlines()
    start = lines.index("== memfd and anonymous shared memory (2)")
    assert lines[start + 1].split() == ["NAME", "KIND", "SIZE", "ALLOC", "HOLDERS"]
    assert lines[start + 2].split()[:4] == ["wayland-shm", "memfd", "64K", "8.0K"]
    assert lines[start + 2].endswith("500 parent fd4 rw, 500 parent map rw-s 4.0K")
    assert lines[start + 3].split()[:4] == ["anonymous:[9002]", "anon", "4.0K", "?"]
    # The section comes right after POSIX shared memory, and only when the scan asked for memfd.
    assert lines[start - 2] == "== POSIX shared memory and semaphores (0)"
    assert "memfd and anonymous" not in render(_snapshot(MEMFD, kinds=("shm", "mqueue")))


def test_json_lists_regions_with_their_holders() -> None:
    data = json.loads(export.dumps(_snapshot(MEMFD)))
    (region,) = data["regions"]
    assert list(region) == ["kind", "name", "dev", "inode", "size", "allocated", "holders"]
    assert (region["kind"], region["name"]) == ("memfd", "wayland-shm")
    assert (region["size"], region["allocated"]) == (65536, 8192)
    assert [holder["fd"] for holder in region["holders"]] == [4, None]
    assert region["holders"][1]["prot"] == "rw-s"


def test_events_created_attached_detached_destroyed() -> None:
    first = _snapshot(at=NOW)
    created = _snapshot(replace(ANON, holders=(PARENT_MAP,)), at=NOW + 1)
    attached = _snapshot(ANON, at=NOW + 2)
    detached = _snapshot(replace(ANON, holders=(PARENT_MAP,)), at=NOW + 3)
    gone = _snapshot(at=NOW + 4)
    events = diff(first, created) + diff(created, attached) + diff(attached, detached) + diff(detached, gone)
    steps = [(event.mechanism, event.event, event.pid) for event in events]
    assert steps == [
        ("anon", "created", None),
        ("anon", "attached", 500),
        ("anon", "attached", 501),
        ("anon", "detached", 501),
        ("anon", "detached", 500),
        ("anon", "destroyed", None),
    ]
    assert all(event.object == "anonymous:[9002]" and event.key == "anon:1:9002" for event in events)
    assert events[0].detail == "4.0K"
    assert events[2].detail == "mapped rw-s 4.0K"


def test_events_need_memfd_in_both_scans() -> None:
    assert diff(_snapshot(kinds=("shm",)), _snapshot(MEMFD, kinds=KINDS)) == []


def test_a_region_is_never_orphaned_nor_a_leak_nor_an_alert() -> None:
    lonely = replace(MEMFD, holders=())
    snapshot = _snapshot(MEMFD, lonely)
    assert health.region_state(lonely) == "held"
    assert find_leaks(snapshot) == []
    assert list(find_alerts(snapshot)) == []
    events = diff(_snapshot(MEMFD), _snapshot(lonely, at=NOW + 1))
    assert "orphaned" not in {event.event for event in events}


def test_shared_memory_view_rows() -> None:
    ctx = Context(_snapshot(MEMFD, ANON))
    rows = list(shm_rows(ctx, RowCache()))
    assert [row.key for row in rows] == ["memfd:1:9001", "anon:1:9002"]
    cells = [cell.plain for cell in rows[0].cells]
    assert cells == ["wayland-shm", "memfd", "64K", "8.0K", "-", "-", "held",
                     "500 parent fd4 rw, 500 parent map rw-s 4.0K"]
    assert rows[1].cells[3].plain == "?"
    assert rows[1].pids == (500, 501)
    assert rows[1].fields["kind"] == frozenset({"anon"})
    assert rows[1].fields["state"] == frozenset({"held"})


def test_region_detail_and_process_view() -> None:
    parent = Process(500, 1, "parent", ("./parent",), 0, "root", 1500, NOW - 60)
    ctx = Context(replace(_snapshot(MEMFD), processes=(parent,)))
    detail = describe_record(MEMFD, ctx, ()).plain
    assert detail.startswith("memfd wayland-shm\n")
    assert "state       held" in detail
    assert "Holders (2)" in detail
    assert "fd 4  rw" in detail and "mapped rw-s shared 4.0K" in detail
    held = describe_process(500, ctx).plain
    assert "memfd    wayland-shm  fd 4  rw" in held
