"""Snapshots of real objects diffed into lifecycle events (ipcmon.live.events.diff) and the bounded log."""

from __future__ import annotations

import itertools
import mmap
import os
from pathlib import Path
from typing import Any

import posix_ipc
import pytest

from ipcmon.collect import ScanConfig, Scanner
from ipcmon.live import events
from ipcmon.live.events import EventLog, diff
from ipcmon.model import Event
from tests.helpers import Cleanup, Spawn, new_name, scan_kinds, wait_until


def _mine(events: list[Event], name: str) -> list[tuple[str, int | None]]:
    return [(event.event, event.pid) for event in events if event.object == name]


def test_shm_lifecycle_created_attached_detached_destroyed(spawn: Spawn, cleanup: Cleanup) -> None:
    name = cleanup.shm(new_name())
    before = scan_kinds("shm")
    child = spawn(
        f"""
        import posix_ipc
        shm = posix_ipc.SharedMemory({name!r}, posix_ipc.O_CREX, size=8192)
        say("ready")
        for command in commands():
            if command == "map":
                map_fd(shm.fd, 8192); shm.close_fd(); say("ready")
            if command == "unmap":
                break
        """
    )
    child.expect()
    created = scan_kinds("shm")
    child.tell("map")
    child.expect()
    mapped = scan_kinds("shm")
    child.stop()
    gone_holder = scan_kinds("shm")
    posix_ipc.unlink_shared_memory(name)
    destroyed = scan_kinds("shm")

    events = diff(before, created) + diff(created, mapped) + diff(mapped, gone_holder) + diff(gone_holder, destroyed)
    steps = _mine(events, name)
    assert steps[0] == ("created", None)
    assert ("attached", child.pid) in steps[:2]
    assert steps.index(("detached", child.pid)) > 0
    assert ("orphaned", None) in steps
    assert steps[-1] == ("destroyed", None)
    # attach by mapping appears with the mapping's protection
    attach_map = [e for e in events if e.object == name and e.event == "attached" and "mapped" in e.detail]
    assert attach_map and attach_map[0].detail.startswith("mapped rw-s")
    orphaned = next(e for e in events if e.object == name and e.event == "orphaned")
    assert str(child.pid) in orphaned.detail  # the last holder is named
    assert all(event.source == "poll" for event in events)


def test_unlinked_while_held_then_destroyed(cleanup: Cleanup) -> None:
    name = cleanup.shm(new_name())
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096)
    area = mmap.mmap(shm.fd, 4096)
    shm.close_fd()
    try:
        held = scan_kinds("shm")
        posix_ipc.unlink_shared_memory(name)
        unlinked = scan_kinds("shm")
    finally:
        area.close()
    after = scan_kinds("shm")
    steps = _mine(diff(held, unlinked) + diff(unlinked, after), name)
    assert ("unlinked-while-held", None) in steps
    assert steps[-1] == ("destroyed", None)


def test_mqueue_depth_notify_and_close(cleanup: Cleanup) -> None:
    name = cleanup.mqueue(new_name())
    queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=4, max_message_size=64)
    try:
        first = scan_kinds("mqueue")
        queue.send(b"one")
        queue.send(b"two")
        queue.request_notification(0)  # SIGEV_NONE-style registration by this process (posix_ipc: signal 0)
        second = scan_kinds("mqueue")
        queue.receive()
        third = scan_kinds("mqueue")
    finally:
        queue.close()
    closed = scan_kinds("mqueue")
    events = diff(first, second) + diff(second, third) + diff(third, closed)
    depth = [e.detail for e in events if e.object == name and e.event == "depth"]
    assert depth[0].startswith("0 → 2") and depth[1].startswith("2 → 1")
    assert any(e.object == name and e.event == "notify-registered" and e.pid == os.getpid() for e in events)
    assert ("closed", os.getpid()) in _mine(events, name)


def test_pipe_opened_full_drained_writer_closed() -> None:
    start = scan_kinds("pipe")
    read_end, write_end = os.pipe()
    inode = os.fstat(read_end).st_ino
    os.set_blocking(write_end, False)
    try:
        opened = scan_kinds("pipe")
        written = 0
        try:
            while True:
                written += os.write(write_end, b"x" * 4096)
        except BlockingIOError:
            pass
        full = scan_kinds("pipe")
        os.read(read_end, written)
        drained = scan_kinds("pipe")
        os.close(write_end)
        write_end = -1
        closed = scan_kinds("pipe")
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    gone = scan_kinds("pipe")
    snapshots = [start, opened, full, drained, closed, gone]
    events = [e for a, b in itertools.pairwise(snapshots) for e in diff(a, b) if e.object == f"pipe:[{inode}]"]
    assert [e.event for e in events] == ["opened", "full", "drained", "writer-closed", "closed"]
    assert events[3].pid == os.getpid()


def test_signal_pending_then_delivered(spawn: Spawn) -> None:
    child = spawn(
        """
        import signal
        signal.signal(signal.SIGUSR1, lambda *a: say("handled"))
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        say("ready")
        for command in commands():
            if command == "unblock":
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        """
    )
    child.expect()
    base = scan_kinds("signal", pids=frozenset({child.pid}))
    os.kill(child.pid, 10)
    pending = scan_kinds("signal", pids=frozenset({child.pid}))
    child.tell("unblock")
    child.expect("handled")
    delivered = scan_kinds("signal", pids=frozenset({child.pid}))
    events = [e for e in diff(base, pending) + diff(pending, delivered) if e.pid == child.pid]
    assert ("pending", "SIGUSR1") in [(e.event, e.detail) for e in events]
    assert ("delivered", "SIGUSR1") in [(e.event, e.detail) for e in events]
    assert ("mask-unblocked", "SIGUSR1") in [(e.event, e.detail) for e in events]


def test_first_snapshot_has_no_events() -> None:
    assert diff(None, scan_kinds("shm", "pipe")) == []


def test_event_log_is_bounded_and_newest_first() -> None:
    log = EventLog(maxlen=100)
    log.extend(Event(float(i), "shm", "created", f"/x{i}", f"k{i % 3}") for i in range(1000))
    assert len(log) == 100
    assert next(iter(log)).time == 999.0
    assert [e.time for e in log.for_key("k0")][:2] == [900.0, 903.0]


def test_a_diff_reuses_the_last_later_snapshots_tables_and_only_those(cleanup: Cleanup) -> None:
    """diff keeps the later snapshot's records by key for the next diff (whose earlier snapshot it is): a chain of
    diffs and a diff out of the chain, in either order, say the same."""
    name = cleanup.shm(new_name())
    first = scan_kinds("shm")
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
    second = scan_kinds("shm")
    posix_ipc.unlink_shared_memory(name)
    third = scan_kinds("shm")
    chain = [_mine(diff(first, second), name), _mine(diff(second, third), name)]
    assert chain == [[("created", None)], [("destroyed", None)]]
    assert _mine(diff(first, third), name) == []  # out of the chain: not handed second's table
    assert _mine(diff(third, second), name) == [("created", None)]
    assert _mine(diff(second, first), name) == [("destroyed", None)]
    assert _mine(diff(second, third), name) == [("destroyed", None)]


def test_a_scanner_s_tables_are_diffed_by_walking_them_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """events._Emitter.changes: two scans with the same keys in the same places (a resize) are diffed by a walk
    comparing identities, without keyed tables; a one-for-one replacement (as many records, other keys) is still
    a destroy and a create."""
    first, second = tmp_path / "seg-a", tmp_path / "seg-b"
    first.write_bytes(b"")
    scanner = Scanner(ScanConfig(kinds=("shm",), shm_dir=str(tmp_path)))
    before = scanner.scan()
    second.write_bytes(b"")  # before the unlink: a new inode (the same inode number would be the same object)
    first.unlink()
    replaced = scanner.scan()
    assert len(replaced.shm) == len(before.shm) == 1
    # Only the segments' events: the scans read every process, whose waits other programs on the machine change.
    assert [(event.event, event.object) for event in diff(before, replaced) if event.mechanism == "shm"] == [
        ("destroyed", "/seg-a"), ("created", "/seg-b")]
    second.write_bytes(b"x" * 4096)
    resized = scanner.scan()
    keyed: list[object] = []
    monkeypatch.setattr(events, "_by_key", lambda records: keyed.append(records) or {})
    assert [(event.event, event.object) for event in diff(replaced, resized) if event.mechanism == "shm"] == [
        ("resized", "/seg-b")]
    assert keyed == []


def test_a_scanner_s_waits_are_diffed_by_walking_the_processes_side_by_side(spawn: Spawn) -> None:
    """events._waiting_pairs: a process whose record is the same object at both scans (it did not move) is not
    compared or keyed; one whose wait changed gives wait-ended and waiting, in that order."""
    pauser = spawn("say('ready')\nsignal.pause()\n")
    pauser.expect()
    mover = spawn("say('ready')\nfor line in commands():\n    say('pausing')\n    signal.pause()\n")
    mover.expect()
    scanner = Scanner(ScanConfig(kinds=("pipe",), pids=frozenset({pauser.pid, mover.pid})))

    def both_waiting() -> bool:
        snapshots.append(scanner.scan())
        waits = {process.pid: process.waiting for process in snapshots[-1].processes}
        return waits.get(pauser.pid) is not None and waits.get(mover.pid) is not None and len(snapshots) > 2

    snapshots: list[Any] = []
    wait_until(both_waiting, "both children waiting, seen by three scans")
    mover.tell("pause")
    mover.expect("pausing")
    before = snapshots[-1]

    def paused() -> bool:
        snapshots.append(scanner.scan())
        return any(process.pid == mover.pid and process.waiting is not None and process.waiting.kind == "signal"
                   for process in snapshots[-1].processes)

    wait_until(paused, "the mover paused")
    after = snapshots[-1]
    old, new = events._waiting_pairs(before.processes, after.processes)
    assert [key.pid for key in old] == [key.pid for key in new] == [mover.pid]
    found = [(event.event, event.pid) for event in diff(before, after) if event.pid == mover.pid]
    assert found == [("wait-ended", mover.pid), ("waiting", mover.pid)]
