"""Front ends of containers and IPC namespaces (issue 15) over hand-built snapshots: the CONTAINER column and the
Namespaces section of the text report, --container/--ns selection (restrict_to_places), the JSON fields, events'
places, the leak lines and the dashboard's filter tokens.

Rendering only: the places are set by hand (tests/ui/canned.containers_snapshot), as the collectors would set them.
What the kernel gives is checked end to end in tests/lifecycle/test_containers_front.py.
"""

from __future__ import annotations

import json
from dataclasses import replace

from ipcmon.cli.arguments import any_place, parse_inode
from ipcmon.cli.lifecycle import event_to_dict, format_event, leak_table
from ipcmon.collect.scan import restrict_to_places
from ipcmon.export import dumps
from ipcmon.health import object_places
from ipcmon.leaks import find_leaks
from ipcmon.live.events import diff
from ipcmon.model import Holder, Namespace, Snapshot
from ipcmon.report import render
from ipcmon.text import PlaceSelector, holder_cell, several_places
from ipcmon.ui.view.rows import mqueue_rows, shm_rows
from ipcmon.ui.view.table import Context, RowCache, matches
from tests.ui.canned import BATCH_PLACE, HOST_PLACE, WEB, WEB_PLACE, canned_snapshot, containers_snapshot


def _on_host_only() -> Snapshot:
    """The canned snapshot with every object, process and mount placed on the host, as a scan of a machine without
    containers will place them."""
    base = canned_snapshot()
    assert base.capacity is not None
    return replace(
        base,
        shm=tuple(replace(s, place=HOST_PLACE) for s in base.shm),
        mqueues=tuple(replace(q, place=HOST_PLACE) for q in base.mqueues),
        sysv=replace(base.sysv, shm=tuple(replace(s, place=HOST_PLACE) for s in base.sysv.shm)),
        processes=tuple(replace(p, place=HOST_PLACE) for p in base.processes),
        capacity=replace(base.capacity, shm_mounts=tuple(replace(m, place=HOST_PLACE)
                                                         for m in base.capacity.shm_mounts)),
        namespaces=(Namespace(HOST_PLACE, 6, "/dev/shm", 23, "/dev/mqueue", 24, True),),
    )


def test_a_host_only_report_is_what_it_was() -> None:
    """No CONTAINER column, no Namespaces section, no place after a name: byte for byte the report of before."""
    assert render(_on_host_only()) == render(canned_snapshot())


def test_the_report_names_each_objects_container() -> None:
    text = render(containers_snapshot())
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("NAME ") and "KIND" in line)
    assert header.split()[:3] == ["NAME", "CONTAINER", "KIND"]
    frames = [line.split() for line in lines if line.startswith("/demo-frames ")]
    assert [row[1] for row in frames] == ["host", "web-1"]  # one name, two objects
    assert "7001 (1 in ns) gunicorn fd5 rw" in text
    assert any(line.split()[:2] == ["/batch-spill", "9b1e0c7d2a44"] for line in lines)  # no name: the short id
    queue = next(line for line in lines if line.startswith("/web-jobs "))
    assert queue.split()[1] == "web-1"
    sysv = [line.split() for line in lines if line.startswith("0x00001234 ")]
    assert [(row[1], row[2]) for row in sysv] == [("65538", "host"), ("0", "web-1")]
    mount = next(line for line in lines if line.startswith("/proc/7001/root/dev/shm "))
    assert mount.split()[1:3] == ["web-1", "64M"] and "95%" in mount.split()


def test_the_namespaces_section_lists_each_and_names_the_unreadable() -> None:
    lines = render(containers_snapshot()).splitlines()
    start = lines.index("== Namespaces (3)")
    assert lines[start + 1].startswith("1 namespace not fully readable (9b1e0c7d2a44)")
    assert lines[start + 2].split() == ["CONTAINER", "RUNTIME", "ID", "IPC", "MNT", "PROCS", "READ"]
    host, web, batch = (lines[start + offset].split() for offset in (3, 4, 5))
    assert host[:6] == ["host", "-", "-", "4026531839", "4026531841", "6"]
    assert web[:6] == ["web-1", "docker", WEB.short_id, "4026532281", "4026532279", "1"]
    assert "setns refused (not permitted)" in lines[start + 5] and batch[1] == "podman"


def test_hazards_name_where_a_containers_object_lives() -> None:
    text = render(containers_snapshot())
    assert "/batch-spill [9b1e0c7d2a44]" in text
    assert "key 0x00001234 id 0 [web-1]" in text
    # The container's tmpfs at 95 %: a hazard whose problem names the container once (not again after the path).
    (line,) = [line for line in text.splitlines() if "nearly full: /proc/7001/root/dev/shm" in line]
    assert "(container web-1)" in line and "[web-1]" not in line
    assert "/old-cache [" not in text  # the host's are named as before


def test_container_selects_by_name_id_prefix_short_id_and_host() -> None:
    snapshot = containers_snapshot()
    for given in ("web-1", "WEB-1", WEB.id, WEB.short_id, WEB.id[:4]):
        web = restrict_to_places(snapshot, PlaceSelector(container=given).matches)
        assert [s.name for s in web.shm] == ["/demo-frames"] and web.shm[0].place == WEB_PLACE, given
        assert [q.name for q in web.mqueues] == ["/web-jobs"]
        assert [s.id for s in web.sysv.shm] == [0]
        assert [p.pid for p in web.processes] == [7001]
        assert [n.place for n in web.namespaces] == [WEB_PLACE]
        assert web.capacity is not None and snapshot.capacity is not None
        assert [m.dev for m in web.capacity.shm_mounts] == [61]
        assert web.capacity.budgets == snapshot.capacity.budgets  # machine-wide: kept
        assert not web.pipes and not web.signals and not web.stuck  # the host's processes' are not its
    assert not restrict_to_places(snapshot, PlaceSelector(container=WEB.id[:3]).matches).shm  # too short a prefix
    host = restrict_to_places(snapshot, PlaceSelector(container="host").matches)
    assert {s.place for s in host.shm} == {HOST_PLACE} and len(host.shm) == 4
    assert host.pipes == snapshot.pipes and host.stuck == snapshot.stuck


def test_ns_selects_by_ipc_or_mount_inode_and_keeps_sysv_of_that_ipc_namespace() -> None:
    snapshot = containers_snapshot()
    by_mount = restrict_to_places(snapshot, PlaceSelector(ns=WEB_PLACE.mnt).matches)
    by_ipc = restrict_to_places(snapshot, PlaceSelector(ns=WEB_PLACE.ipc).matches)
    for selected in (by_mount, by_ipc):
        assert [s.name for s in selected.shm] == ["/demo-frames"]
        assert [s.id for s in selected.sysv.shm] == [0]  # IPC-namespaced: selected by its namespace's mount too
    assert parse_inode("ipc:[4026532281]") == 4026532281


def test_a_selection_that_matches_nothing_is_told() -> None:
    snapshot = containers_snapshot()
    assert any_place(restrict_to_places(snapshot, PlaceSelector(container="web-1").matches))
    assert not any_place(restrict_to_places(snapshot, PlaceSelector(container="nosuch").matches))
    assert not any_place(restrict_to_places(snapshot, PlaceSelector(ns=12345).matches))
    # Unplaced (a scan that did not read namespaces): nothing is selected, not everything.
    assert not any_place(restrict_to_places(canned_snapshot(), PlaceSelector(container="host").matches))


def test_a_label_as_the_column_prints_it_selects_and_the_unreadable_stay_counted() -> None:
    snapshot = containers_snapshot()
    unnamed = replace(WEB_PLACE, container=None)
    moved = replace(snapshot, shm=tuple(replace(s, place=unnamed) if s.place == WEB_PLACE else s for s in snapshot.shm))
    by_label = restrict_to_places(moved, PlaceSelector(container=f"IPC:{unnamed.ipc}").matches)
    assert [s.name for s in by_label.shm] == ["/demo-frames"]  # ipc:INODE, as the CONTAINER column prints it
    # Where an unreadable process runs is unknown: whatever is selected, its count and note stay.
    hidden = replace(snapshot, hidden_processes=3, notes=(*snapshot.notes, "3 processes could not be fully read"))
    host = restrict_to_places(hidden, PlaceSelector(container="host").matches)
    assert host.hidden_processes == 3 and "3 processes could not be fully read" in host.notes


def test_json_gives_each_object_its_namespace_and_container() -> None:
    data = json.loads(dumps(containers_snapshot()))
    web = next(s for s in data["shm"] if s["dev"] == 61)
    assert web["namespace"] == {"ipc": WEB_PLACE.ipc, "mnt": WEB_PLACE.mnt}
    assert web["container"] == {"id": WEB.id, "runtime": "docker", "name": "web-1", "pod": None}
    assert web["place"] == "web-1"
    assert web["holders"][0]["nspid"] == 1 and web["holders"][0]["pid"] == 7001
    host = next(s for s in data["shm"] if s["dev"] == 23)
    assert host["container"] is None and host["namespace"]["ipc"] == HOST_PLACE.ipc and host["place"] == "host"
    queue = next(q for q in data["mqueues"] if q["name"] == "/web-jobs")
    assert queue["container"]["name"] == "web-1" and queue["fill_percent"] == 0.0
    sysv = next(s for s in data["sysv"]["shm"] if s["id"] == 0)
    assert sysv["namespace"]["ipc"] == WEB_PLACE.ipc
    mount = next(m for m in data["capacity"]["shm_mounts"] if m["dev"] == 61)
    assert mount["container"]["name"] == "web-1" and mount["fill_percent"] == 95.3
    process = next(p for p in data["processes"] if p["pid"] == 7001)
    assert process["nspid"] == 1 and process["namespace"]["mnt"] == WEB_PLACE.mnt
    namespaces = data["namespaces"]
    assert [n["ipc"] for n in namespaces] == [HOST_PLACE.ipc, WEB_PLACE.ipc, BATCH_PLACE.ipc]
    assert namespaces[0]["host"] is True and namespaces[0]["container"] is None
    assert namespaces[1]["processes"] == 1 and namespaces[1]["container"]["runtime"] == "docker"
    assert namespaces[2]["access"] == "partial" and namespaces[2]["sysv"] is False
    assert "setns refused" in namespaces[2]["note"]
    unplaced = json.loads(dumps(canned_snapshot()))
    assert unplaced["shm"][0]["namespace"] is None and unplaced["shm"][0]["container"] is None
    assert unplaced["namespaces"] == []


def test_events_carry_their_objects_place() -> None:
    before = containers_snapshot()
    web_segment = next(s for s in before.shm if s.place == WEB_PLACE)
    gone = replace(before, taken_at=before.taken_at + 2, shm=tuple(s for s in before.shm if s is not web_segment))
    events = diff(before, gone)
    destroyed = next(e for e in events if e.event == "destroyed")
    assert destroyed.object == "/demo-frames" and destroyed.place == WEB_PLACE
    assert "/demo-frames [web-1]" in format_event(destroyed)
    record = event_to_dict(destroyed)
    assert record["namespace"] == {"ipc": WEB_PLACE.ipc, "mnt": WEB_PLACE.mnt}
    assert record["container"]["id"] == WEB.id and json.dumps(record)
    host_gone = replace(before, taken_at=before.taken_at + 2, shm=before.shm[1:])
    host_event = next(e for e in diff(before, host_gone) if e.event == "destroyed")
    assert host_event.place == HOST_PLACE and "[" not in format_event(host_event)


def test_leak_lines_name_a_containers_orphan() -> None:
    snapshot = containers_snapshot()
    leaks = find_leaks(snapshot)
    rows = [line.split() for line in leak_table(leaks, {}, object_places(snapshot))]
    assert rows[0][3:5] == ["NAME", "CONTAINER"]
    assert ["/batch-spill", "9b1e0c7d2a44"] in [row[3:5] for row in rows]
    assert ["/old-cache", "host"] in [row[3:5] for row in rows]
    on_host = [line.split() for line in leak_table(find_leaks(_on_host_only()), {}, object_places(_on_host_only()))]
    assert "CONTAINER" not in on_host[0] and ["/old-cache", "1.0M"] in [row[3:5] for row in on_host]


def test_the_dashboard_filters_by_container_and_namespace() -> None:
    snapshot = containers_snapshot()
    ctx = Context(snapshot)
    shm = list(shm_rows(ctx, RowCache()))
    queues = list(mqueue_rows(ctx, RowCache()))

    def names(rows: list, query: str) -> list[str]:  # type: ignore[type-arg]
        return sorted(str(getattr(row.record, "label", "")) for row in rows if matches(row, query))

    assert names(shm, "container:web-1") == ["/demo-frames", "key 0x00001234 id 0"]
    assert names(shm, f"container:{WEB.id[:6]}") == names(shm, "container:web-1")
    assert names(shm, f"ns:{WEB_PLACE.mnt}") == names(shm, "container:web-1")
    assert names(shm, "container:9b1e0c7d2a44") == ["/batch-spill"]
    assert "/demo-frames" in names(shm, "container:host") and "/batch-spill" not in names(shm, "container:host")
    assert names(queues, "container:web-1 jobs") == ["/web-jobs"]
    assert names(shm, "container:nosuch") == [] and names(shm, "ns:notanumber") == []
    assert several_places(row.place for row in shm) and not several_places(row.place for row in shm[:4])


def test_a_holder_in_another_pid_namespace_shows_both_pids() -> None:
    assert holder_cell(Holder(7001, "gunicorn", 5, False, "rw", nspid=1)) == "7001 (1 in ns) gunicorn fd5 rw"
    assert holder_cell(Holder(7001, "gunicorn", 5, False, "rw")) == "7001 gunicorn fd5 rw"
