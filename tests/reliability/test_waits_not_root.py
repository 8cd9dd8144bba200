"""Waits as an ordinary user: a process of the same user has its poll set read from its memory (ptrace-attach is
permitted), one that made itself non-dumpable, or root's, is not shown as waiting at all, and nothing ends in a
traceback."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import posix_ipc
import pytest

from tests.helpers import Cleanup, Spawn, new_name, scan_kinds, wait_until
from tests.reliability.cli import Unprivileged, unprivileged_setup


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup(["watchdog"])


_SELECTOR = """
import ctypes, os, select, sys
if {undumpable}:
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: only root may ptrace it (or read its memory)
read_end, write_end = os.pipe()
print("ready", read_end, os.fstat(read_end).st_ino, flush=True)
select.select([read_end], [], [])
"""


def _nobody_selector(nobody: Unprivileged, undumpable: bool) -> tuple[subprocess.Popen[bytes], int, int]:
    child = nobody.popen([nobody.python, "-c", _SELECTOR.format(undumpable=undumpable)], stdout=subprocess.PIPE)
    assert child.stdout is not None
    words = child.stdout.readline().split()
    assert words[:1] == [b"ready"], words
    return child, int(words[1]), int(words[2])


def _stuck(data: dict[str, Any], pid: int) -> dict[str, Any] | None:
    return next((entry for entry in data["stuck"] if entry["pid"] == pid), None)


def test_as_nobody_a_poll_of_its_own_process_is_read_and_others_are_not_guessed(
    nobody: Unprivileged, spawn: Spawn, tmp_path: Path
) -> None:
    own, own_fd, own_inode = _nobody_selector(nobody, undumpable=False)
    hidden, _, _ = _nobody_selector(nobody, undumpable=True)
    fifo = tmp_path / "root.fifo"
    os.mkfifo(fifo)
    root_opener = spawn(f"say('ready')\nopen({str(fifo)!r}, 'rb')\n")
    root_opener.expect()
    try:
        # Root sees all three waiting, so that what nobody does not see is hidden from it, not yet to happen.
        def all_waiting() -> bool:
            listed = {entry.pid for entry in scan_kinds("pipe").stuck}
            return {own.pid, hidden.pid, root_opener.pid} <= listed

        wait_until(all_waiting, "the three processes to wait")
        data = json.loads(nobody.run("snapshot", "--json", "--kind", "pipe").stdout)
        entry = _stuck(data, own.pid)
        assert entry is not None, "nobody's own selecting process is not listed as stuck"
        wait = entry["waiting"]
        assert wait["kind"] == "poll" and wait["object"] == f"pipe:[{own_inode}]"
        assert [(watched["fd"], watched["events"]) for watched in wait["watched"]] == [(own_fd, "read")]
        assert entry["releasers"] == [own.pid] and entry["since"] is not None
        # Non-dumpable: its system call is as hidden as its memory; root's opener likewise. Not listed.
        assert _stuck(data, hidden.pid) is None and _stuck(data, root_opener.pid) is None
    finally:
        for child in (own, hidden):
            child.kill()
            child.communicate()


def test_as_nobody_a_reader_whose_writer_it_cannot_see_is_waiting_on_that_unseen_writer(
    nobody: Unprivileged,
) -> None:
    # Root (this test) holds the write end of nobody's stdin and never writes: a read blocks only while a writer
    # exists, so the writer is in a process nobody cannot read, not "nobody".
    reader = nobody.popen([nobody.python, "-c", "import sys; print('ready', flush=True); sys.stdin.buffer.read(1)"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert reader.stdout is not None and reader.stdout.readline().split() == [b"ready"]
    try:
        found: list[dict[str, Any]] = []

        def reading() -> bool:
            data = json.loads(nobody.run("snapshot", "--json", "--kind", "pipe").stdout)
            entry = _stuck(data, reader.pid)
            found[:] = [entry] if entry is not None and entry["waiting"]["kind"] == "read" else []
            return bool(found)

        wait_until(reading, "nobody's reader to be seen waiting")
        entry = found[0]
        assert entry["state"] == "waiting" and entry["releasers"] == []
        assert entry["release"].startswith("a process ipcmon cannot read (the kernel blocks this call only while "
                                           "some process holds the write end)")
    finally:
        reader.kill()
        reader.communicate()


_RECEIVER = """
import ctypes, os
rt = ctypes.CDLL("librt.so.1", use_errno=True)
rt.mq_open.restype = ctypes.c_int
queue = rt.mq_open({name!r}.encode(), os.O_RDONLY)
assert queue >= 0, os.strerror(ctypes.get_errno())
print("ready", flush=True)
buffer = ctypes.create_string_buffer(64)
rt.mq_receive(queue, buffer, ctypes.c_size_t(64), None)
"""


def test_as_nobody_a_receiver_whose_senders_it_cannot_see_is_not_blocked_on_nobody(
    nobody: Unprivileged, cleanup: Cleanup
) -> None:
    # Root (this test) has the queue open for sending and never sends; nobody cannot read root's descriptors, and
    # root owns the queue: a sender may be out of sight, so the receiver waits, not "nobody: no process…".
    name = cleanup.mqueue(new_name("q"))
    queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, mode=0o666, max_messages=2, max_message_size=64,
                                   read=False)
    receiver = nobody.popen([nobody.python, "-c", _RECEIVER.format(name=name)], stdout=subprocess.PIPE)
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().split() == [b"ready"]
        found: list[dict[str, Any]] = []

        def receiving() -> bool:
            data = json.loads(nobody.run("snapshot", "--json", "--kind", "mqueue").stdout)
            entry = _stuck(data, receiver.pid)
            found[:] = [entry] if entry is not None and entry["waiting"]["kind"] == "receive" else []
            return bool(found)

        wait_until(receiving, "nobody's receiver to be seen waiting")
        entry = found[0]
        assert entry["state"] == "waiting" and entry["releasers"] == []
        assert entry["release"] == ("nobody ipcmon can see; a process ipcmon cannot read may have it open for "
                                    "sending (run as root to know)")
    finally:
        receiver.kill()
        receiver.communicate()
        queue.close()
