"""A Scanner's mqueue collector hands over the previous record of a queue read exactly as before, and builds it again
when anything it comes from changed: a message sent by a process gone since, a holder that exits or renames itself.
And a scan inside a process that holds a queue twice reads it through the readable descriptor, whichever came
first (mqueue.own_descriptors)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Collection

import posix_ipc
import pytest

from ipcmon.collect import ScanConfig, Scanner, procfs, scan
from ipcmon.collect.fds import Devices, read_fds
from ipcmon.collect.mqueue import collect, own_descriptors
from ipcmon.collect.recall import Recall
from ipcmon.model import MessageQueue
from tests.helpers import Child, Cleanup, Spawn, first_arguments

MQUEUE_DIR = "/dev/mqueue"
HOLDER = """
import posix_ipc
queue = posix_ipc.MessageQueue({name!r})
say("ready")
for command in commands():
    set_comm(command)
    say("done")
"""


class Collecting:
    """collect() as a Scanner calls it, scan after scan: the given holders read every time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.recall: Recall[MessageQueue] = Recall()
        self.devices = Devices(None, os.stat(MQUEUE_DIR).st_dev)

    def __call__(self, pids: Collection[int]) -> MessageQueue:
        processes = {p.pid: p for p in scan(ScanConfig(kinds=("mqueue",))).processes if p.pid in pids}
        fds = [ref for pid in sorted(pids) for ref in read_fds(pid, self.devices) if ref.kind == "mqueue"]
        self.recall.turn()
        with procfs.PidFds() as pidfds:
            queues = collect(MQUEUE_DIR, processes, fds, pidfds, recall=self.recall)
        (found,) = [queue for queue in queues if queue.name == self.name]
        return found


def new_queue(cleanup: Cleanup, name: str) -> None:
    posix_ipc.MessageQueue(cleanup.mqueue(name), posix_ipc.O_CREX, max_messages=4, max_message_size=16).close()


def holder(spawn: Spawn, name: str) -> Child:
    child = spawn(HOLDER.format(name=name))
    child.expect()
    return child


def test_a_queue_read_as_before_is_the_previous_record(spawn: Spawn, cleanup: Cleanup, unique_name: str) -> None:
    new_queue(cleanup, unique_name)
    child = holder(spawn, unique_name)
    collecting = Collecting(unique_name)
    first = collecting({child.pid})
    assert collecting({child.pid}) is first
    assert [h.pid for h in first.holders] == [child.pid]


def test_a_message_sent_by_a_process_gone_since_shows(spawn: Spawn, cleanup: Cleanup, unique_name: str) -> None:
    new_queue(cleanup, unique_name)
    child = holder(spawn, unique_name)
    collecting = Collecting(unique_name)
    first = collecting({child.pid})
    code = f"import posix_ipc; posix_ipc.MessageQueue({unique_name!r}).send(b'hello')"
    subprocess.run([sys.executable, "-c", code], check=True)
    after = collecting({child.pid})
    assert (first.messages, after.messages, after.qsize_bytes) == (0, 1, 5)


def test_a_holder_that_exits_or_renames_itself_shows(spawn: Spawn, cleanup: Cleanup, unique_name: str) -> None:
    new_queue(cleanup, unique_name)
    staying, leaving = holder(spawn, unique_name), holder(spawn, unique_name)
    collecting = Collecting(unique_name)
    both = collecting({staying.pid, leaving.pid})
    leaving.stop()
    alone = collecting({staying.pid})
    staying.tell("ipcm-renamed")
    staying.expect("done")
    renamed = collecting({staying.pid})
    assert sorted(h.pid for h in both.holders) == sorted([staying.pid, leaving.pid])
    assert [h.pid for h in alone.holders] == [staying.pid]
    assert [h.comm for h in renamed.holders] == ["ipcm-renamed"]


def test_own_descriptors_prefer_a_readable_one_in_either_order(cleanup: Cleanup, unique_name: str) -> None:
    new_queue(cleanup, unique_name)
    path = f"{MQUEUE_DIR}{unique_name}"
    identity = (os.stat(path).st_dev, os.stat(path).st_ino)
    write_first = posix_ipc.MessageQueue(unique_name, write=True, read=False)
    read_second = posix_ipc.MessageQueue(unique_name, read=True, write=False)
    write_third = posix_ipc.MessageQueue(unique_name, write=True, read=False)
    try:
        assert own_descriptors()[identity] == read_second.mqd
        read_second.close()
        assert own_descriptors()[identity] in {write_first.mqd, write_third.mqd}  # none readable: one of them
    finally:
        write_first.close()
        write_third.close()


@pytest.mark.usefixtures("fds_above_1024")
def test_a_scanner_looks_at_its_own_queue_not_at_the_proc_files_it_keeps(
    cleanup: Cleanup, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """own_descriptors skips the /proc files a Scanner keeps open (ScanInputs.kept_fds; one fstat each, thousands on
    a large machine), and still reads a queue this process holds through its own descriptor."""
    queue = posix_ipc.MessageQueue(cleanup.mqueue(unique_name), posix_ipc.O_CREX, max_messages=4)
    try:
        queue.send(b"one")
        scanner = Scanner(ScanConfig(kinds=("mqueue",)))
        try:
            scanner.scan()
            scanner.scan()  # the /proc files are kept from a process's second scan
            kept = {int(name) for name in scanner._memory.files.numbers()}
            assert kept
            looked = first_arguments(monkeypatch, os, "fstat")
            snapshot = scanner.scan()
            monkeypatch.undo()
        finally:
            scanner.close()
        assert queue.mqd in looked
        assert not kept & set(looked)
        (found,) = [found for found in snapshot.mqueues if found.name == unique_name]
        assert found.messages == 1
    finally:
        queue.close()


def test_a_scan_whose_queues_are_all_the_previous_records_is_the_previous_tuple(
    spawn: Spawn, cleanup: Cleanup, unique_name: str
) -> None:
    """Recall.result: the very same records in the same order give the last tuple itself (events.diff and the
    Monitor then stop at identity); a changed record gives a new one."""
    new_queue(cleanup, unique_name)
    child = holder(spawn, unique_name)
    recall: Recall[MessageQueue] = Recall()
    devices = Devices(None, os.stat(MQUEUE_DIR).st_dev)
    processes = {p.pid: p for p in scan(ScanConfig(kinds=("mqueue",))).processes if p.pid == child.pid}
    fds = [ref for ref in read_fds(child.pid, devices) if ref.kind == "mqueue"]
    results = []
    with procfs.PidFds() as pidfds:
        for send in (False, False, True):
            if send:
                posix_ipc.MessageQueue(unique_name).send(b"hello")
            recall.turn()
            results.append(collect(MQUEUE_DIR, processes, fds, pidfds, recall=recall))
    first, again, sent = results
    # The same tuple exactly when every record is the same (another program's queue may change meanwhile).
    unchanged = len(first) == len(again) and all(a is b for a, b in zip(first, again, strict=False))
    assert (again is first) == unchanged
    assert next(queue for queue in again if queue.name == unique_name) is (
        next(queue for queue in first if queue.name == unique_name))
    assert sent is not again
    assert [queue.messages for queue in sent if queue.name == unique_name] == [1]
