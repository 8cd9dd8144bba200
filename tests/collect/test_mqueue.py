"""POSIX message queues: real queues with messages, openers and a notification, read back through scan()."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import posix_ipc

from ipcmon.collect import ScanConfig, scan
from ipcmon.collect.scan import MOUNT_MQUEUE_HINT
from ipcmon.model import Holder, MessageQueue, Snapshot
from tests.helpers import Cleanup, Spawn, new_name, proc_view

MQUEUE_DIR = "/dev/mqueue"  # .ci/run mounts it; the README's test instructions ask for it


def queue(snapshot: Snapshot, name: str) -> MessageQueue:
    found = [q for q in snapshot.mqueues if q.name == name]
    assert len(found) == 1, f"{name} appears {len(found)} times in {snapshot.mqueues}"
    return found[0]


def create_queue(cleanup: Cleanup, **options: int) -> tuple[str, posix_ipc.MessageQueue]:
    name = cleanup.mqueue(new_name())
    return name, posix_ipc.MessageQueue(name, posix_ipc.O_CREX, **options)


OPENER = """
    import posix_ipc
    q = posix_ipc.MessageQueue({name!r}, read={read}, write={write})
    if {notify}:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the notification must not fire, but never kill us
        q.request_notification(signal.SIGUSR1)
    say("ready", q.mqd)
    hold()
"""


def test_queue_counts_notification_and_holders(spawn: Spawn, cleanup: Cleanup) -> None:
    name, mine = create_queue(cleanup, mode=0o640, max_messages=5, max_message_size=64)
    # Send before the notification is registered: mq_notify fires (and unregisters) on empty → non-empty.
    mine.send(b"hello", priority=1)
    mine.send(b"ipcmon!", priority=2)
    mine.close()
    reader = spawn(OPENER.format(name=name, read=True, write=False, notify=True), comm="ipcm-reader")
    writer = spawn(OPENER.format(name=name, read=False, write=True, notify=False), comm="ipcm-writer")
    (reader_fd,) = reader.expect()
    (writer_fd,) = writer.expect()

    snapshot = scan(ScanConfig(kinds=("mqueue",), mqueue_dir=MQUEUE_DIR))
    found = queue(snapshot, name)
    st = os.stat(f"{MQUEUE_DIR}{name}")
    assert found.path == f"{MQUEUE_DIR}{name}"
    assert (found.messages, found.max_messages, found.message_size) == (2, 5, 64)
    assert found.qsize_bytes == len(b"hello") + len(b"ipcmon!")
    assert found.fill == 2 / 5
    assert (found.notify, found.signo, found.notify_pid) == (0, signal.SIGUSR1, reader.pid)  # 0: SIGEV_SIGNAL
    assert (found.uid, found.gid, found.owner, found.mode) == (0, 0, "root", 0o640)
    assert (found.dev, found.inode) == (st.st_dev, st.st_ino)
    assert found.deleted is False
    expected = [
        Holder(pid=reader.pid, comm="ipcm-reader", fd=int(reader_fd), mapped=False, access="r"),
        Holder(pid=writer.pid, comm="ipcm-writer", fd=int(writer_fd), mapped=False, access="w"),
    ]
    assert found.holders == tuple(sorted(expected, key=lambda holder: holder.pid))


def test_queue_nobody_holds_is_listed_from_the_mount(cleanup: Cleanup) -> None:
    name, mine = create_queue(cleanup, max_messages=3, max_message_size=16)
    mine.send(b"x")
    mine.close()
    found = queue(scan(ScanConfig(kinds=("mqueue",))), name)  # the mount found in mountinfo
    assert found.path == f"{MQUEUE_DIR}{name}"
    assert (found.messages, found.max_messages, found.message_size, found.qsize_bytes) == (1, 3, 16, 1)
    assert (found.notify, found.signo, found.notify_pid) == (None, None, None)
    assert found.holders == ()


def test_queue_unlinked_while_open_is_deleted(spawn: Spawn, cleanup: Cleanup) -> None:
    name, mine = create_queue(cleanup, max_messages=4, max_message_size=32)
    mine.send(b"still here")
    mine.close()
    holder = spawn(OPENER.format(name=name, read=True, write=True, notify=False), comm="ipcm-holder")
    (fd,) = holder.expect()
    posix_ipc.unlink_message_queue(name)

    found = queue(scan(ScanConfig(kinds=("mqueue",), mqueue_dir=MQUEUE_DIR)), name)
    assert found.deleted is True
    assert found.path is None
    assert (found.messages, found.max_messages, found.message_size) == (1, 4, 32)  # read through the holder's fd
    assert found.qsize_bytes == len(b"still here")
    assert found.holders == (Holder(pid=holder.pid, comm="ipcm-holder", fd=int(fd), mapped=False, access="rw"),)


def test_queue_seen_only_through_a_descriptor_when_nothing_is_mounted(spawn: Spawn, cleanup: Cleanup) -> None:
    name, mine = create_queue(cleanup, max_messages=6, max_message_size=8, mode=0o600)
    mine.send(b"abc")
    mine.close()
    holder = spawn(OPENER.format(name=name, read=False, write=True, notify=False), comm="ipcm-holder")
    (fd,) = holder.expect()

    snapshot = scan(ScanConfig(kinds=("mqueue",), find_mqueue=False))
    assert snapshot.mqueue_dir is None
    assert any(MOUNT_MQUEUE_HINT in note for note in snapshot.notes)
    assert "mount -t mqueue" in MOUNT_MQUEUE_HINT
    found = queue(snapshot, name)
    assert found.path is None
    assert found.deleted is False
    assert (found.messages, found.max_messages, found.message_size, found.qsize_bytes) == (1, 6, 8, 3)
    assert (found.mode, found.uid) == (0o600, 0)
    assert found.holders == (Holder(pid=holder.pid, comm="ipcm-holder", fd=int(fd), mapped=False, access="w"),)


def test_scans_receive_nothing_and_keep_the_notification(spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> None:
    name, mine = create_queue(cleanup, max_messages=8, max_message_size=32)
    sent = [(b"first, low", 1), (b"second, high", 7), (b"third, low", 1), (b"fourth, middle", 4)]
    for message, priority in sent:
        mine.send(message, priority=priority)
    reader = spawn(OPENER.format(name=name, read=True, write=False, notify=True))
    reader.expect()

    proc = proc_view(tmp_path / "proc", [reader.pid, os.getpid()])
    for _ in range(50):
        found = queue(scan(ScanConfig(kinds=("mqueue",), proc=proc)), name)
        assert [holder.pid for holder in found.holders] == sorted([reader.pid, os.getpid()])
        assert found.messages == len(sent)
        assert found.notify_pid == reader.pid
    # The reader still owns the notification, so the queue still refuses anyone else's (EBUSY).
    try:
        mine.request_notification(signal.SIGUSR2)
    except posix_ipc.BusyError:
        pass
    else:
        raise AssertionError("the notification registration was lost during the scans")

    received = [mine.receive(timeout=0) for _ in sent]
    assert received == [
        (b"second, high", 7), (b"fourth, middle", 4), (b"first, low", 1), (b"third, low", 1),
    ]
    mine.close()


def test_scanning_inside_the_notification_owner_keeps_its_registration(cleanup: Cleanup) -> None:
    """ipcmon used in-process (the pytest plugin): any close of a queue fd by the owner drops its mq_notify."""
    name, mine = create_queue(cleanup, max_messages=4, max_message_size=16)
    mine.send(b"one")
    mine.request_notification(signal.SIGUSR2)

    for config in (ScanConfig(kinds=("mqueue",)), ScanConfig(kinds=("mqueue",), find_mqueue=False)):
        found = queue(scan(config), name)
        assert (found.messages, found.qsize_bytes) == (1, 3)
        assert (found.notify_pid, found.signo) == (os.getpid(), signal.SIGUSR2)

    # Read by another process: its close cannot touch our registration (ours would have).
    text = subprocess.run(["cat", f"{MQUEUE_DIR}{name}"], capture_output=True, text=True, check=True).stdout
    assert f"NOTIFY_PID:{os.getpid()} " in text
    mine.close()
