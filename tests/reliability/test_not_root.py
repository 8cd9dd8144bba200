"""Not root: as nobody, everything readable is shown, what is hidden is counted and said, actions that would
fail are refused with a clear message, and nothing ends in a traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Iterator

import posix_ipc
import pytest

from tests.helpers import Cleanup, Spawn
from tests.reliability.cli import Unprivileged, assert_inert, unprivileged_setup, watch_briefly

SHM_DIR = "/dev/shm"


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup(["watchdog"])


ROOT_HOLDER = """
    import posix_ipc
    shm = posix_ipc.SharedMemory({name!r})
    read_end, write_end = os.pipe()
    say("ready", os.fstat(read_end).st_ino)
    hold()
"""

NOBODY_HOLDER = """
import os, sys
fd = os.open({path!r}, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
os.ftruncate(fd, 4096)
read_end, write_end = os.pipe()
print("ready", os.getuid(), os.fstat(read_end).st_ino, flush=True)
sys.stdin.read()
"""


class World:
    """Objects of root and of nobody, some held, some orphaned, all under one prefix."""

    def __init__(self, spawn: Spawn, cleanup: Cleanup, nobody: Unprivileged) -> None:
        self.prefix = f"/ipcmon-test-{os.getpid()}-nr{uuid.uuid4().hex[:6]}"
        p = self.prefix
        self.root_held = cleanup.shm(p + "-root-held")
        posix_ipc.SharedMemory(self.root_held, posix_ipc.O_CREX, mode=0o600, size=4096).close_fd()
        root_child = spawn(ROOT_HOLDER.format(name=self.root_held), comm="ipcm-rootheld")
        (root_pipe,) = root_child.expect()
        self.root_pid, self.root_pipe = root_child.pid, int(root_pipe)
        self.root_orphan = cleanup.shm(p + "-root-orphan")
        posix_ipc.SharedMemory(self.root_orphan, posix_ipc.O_CREX, mode=0o600, size=4096).close_fd()
        self.root_queue = cleanup.mqueue(p + "-root-queue")
        queue = posix_ipc.MessageQueue(self.root_queue, posix_ipc.O_CREX, mode=0o600, max_messages=4)
        queue.send(b"one")
        queue.send(b"two")
        queue.close()
        self.nobody_orphan = cleanup.shm(p + "-nobody-orphan")
        posix_ipc.SharedMemory(self.nobody_orphan, posix_ipc.O_CREX, mode=0o600, size=4096).close_fd()
        os.chown(SHM_DIR + self.nobody_orphan, 65534, 65534)
        self.nobody_held = cleanup.shm(p + "-nobody-held")
        self.child = nobody.popen([nobody.python, "-c", NOBODY_HOLDER.format(path=SHM_DIR + self.nobody_held)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        cleanup.add(self._stop_child, None)
        assert self.child.stdout is not None
        words = self.child.stdout.readline().split()
        assert words[:2] == [b"ready", b"65534"], words
        self.nobody_pid, self.nobody_pipe = self.child.pid, int(words[2])

    def _stop_child(self, _: None) -> None:
        self.child.kill()
        self.child.communicate()


@pytest.fixture
def world(spawn: Spawn, cleanup: Cleanup, nobody: Unprivileged) -> World:
    return World(spawn, cleanup, nobody)


def _row(text: str, name: str) -> str:
    (row,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return row


def test_snapshot_as_nobody_shows_what_it_can_and_counts_what_it_cannot(nobody: Unprivileged, world: World) -> None:
    result = nobody.run("snapshot")
    assert result.returncode == 0
    assert_inert(result.stdout)
    text = result.stdout.decode()
    summary = text.splitlines()[0]
    match = re.search(r" processes \((\d+) not fully readable\)", summary)
    assert match, summary
    hidden = int(match.group(1))
    assert hidden >= 2  # at least pid 1 and the root holder
    assert f"note: {hidden} processes could not be fully read (not permitted)" in text
    assert "run as root to see them" in text
    # Root's segments are listed with what stat tells (size, owner); their holders cannot be seen.
    assert _row(text, world.root_held).split()[1:6] == ["shm", "4.0K", "0B", "rw-------", "root"]
    # Nobody's own process is fully visible: its descriptor on its segment, its pipe.
    assert f"{world.nobody_pid} python3 fd3 rw" in _row(text, world.nobody_held)
    # Root's queue cannot be opened by nobody: its counts are unknown, shown as "?", never as 0.
    assert _row(text, world.root_queue).split()[1:3] == ["?", "?"]

    data = json.loads(nobody.run("snapshot", "--json").stdout)
    assert data["hidden_processes"] >= 2
    processes = {process["pid"]: process for process in data["processes"]}
    assert processes[world.root_pid]["hidden"] is True
    assert processes[world.nobody_pid]["hidden"] is False
    (queue,) = [queue for queue in data["mqueues"] if queue["name"] == world.root_queue]
    assert (queue["messages"], queue["max_messages"], queue["owner"]) == (None, None, "root")
    pipes = {pipe["inode"]: pipe for pipe in data["pipes"]}
    assert world.root_pipe not in pipes
    assert {end["pid"] for end in pipes[world.nobody_pipe]["readers"]} == {world.nobody_pid}


def test_leaks_as_nobody_reports_and_says_what_it_could_not_read(nobody: Unprivileged, world: World) -> None:
    result = nobody.run("leaks", "--match", world.prefix + "*")
    assert result.returncode == 1
    assert world.root_orphan.encode() in result.stdout and world.nobody_orphan.encode() in result.stdout
    assert b"processes could not be fully read" in result.stderr
    assert_inert(result.stdout)
    assert nobody.run("leaks", "--json", "--match", world.prefix + "*").returncode == 1


def test_clean_as_nobody_refuses_roots_objects_clearly_and_removes_its_own(nobody: Unprivileged, world: World) -> None:
    dry = nobody.run("clean", "--min-age", "0", "--match", world.prefix + "*")
    assert dry.returncode == 0
    lines = dry.stdout.decode().splitlines()
    (root_line,) = [line for line in lines if world.root_orphan in line]
    assert "(cannot: not permitted: it belongs to root, and only its owner or root may remove it" in root_line
    (own_line,) = [line for line in lines if world.nobody_orphan in line]
    assert "cannot" not in own_line
    assert b"warning:" in dry.stderr and b"could not be fully read" in dry.stderr

    done = nobody.run("clean", "--yes", "--min-age", "0", "--match", world.prefix + "*")
    assert done.returncode == 1  # some were kept
    out = done.stdout.decode()
    assert f"kept shm {world.root_orphan}: not permitted: it belongs to root" in out
    assert f"removed shm {world.nobody_orphan}" in out
    assert os.path.exists(SHM_DIR + world.root_orphan)
    assert os.path.exists(SHM_DIR + world.root_held)
    assert not os.path.exists(SHM_DIR + world.nobody_orphan)
    with open(nobody.action_log) as log:
        entries = [line for line in log if world.prefix in line]
    assert any(world.nobody_orphan in line and line.rstrip().endswith(": removed") for line in entries)
    assert any(world.root_orphan in line and ": kept: not permitted" in line for line in entries)
    assert all(" uid=65534(nobody) " in line for line in entries)


def test_watch_as_nobody_streams_events_and_stops_cleanly(nobody: Unprivileged, cleanup: Cleanup) -> None:
    name = f"/ipcmon-test-{os.getpid()}-nrwatch{uuid.uuid4().hex[:6]}"

    def create() -> None:
        posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=4096).close_fd()

    code, stdout, stderr = watch_briefly(
        nobody.command([nobody.python, "-m", "ipcmon", "watch", "--kind", "shm", "--interval", "0.5"]),
        nobody.env(), nobody.home, create,
    )
    assert code == 0, stderr.decode(errors="replace")
    assert b"Traceback" not in stderr
    assert_inert(stdout)
    assert any(name in line and "created" in line for line in stdout.decode().splitlines())


def test_signals_nobody_may_not_send_are_refused_with_a_message(nobody: Unprivileged, world: World) -> None:
    """The dashboard's signal action (ipcmon.actions.send_signal) as nobody, on root's process."""
    code = textwrap.dedent(f"""
        from ipcmon.actions import send_signal
        outcome = send_signal({world.root_pid}, None, {int(signal.SIGTERM)}, "root-process")
        print("sent" if outcome.sent else "refused:", outcome.text)
    """)
    result = subprocess.run(nobody.command([nobody.python, "-c", code]), capture_output=True, env=nobody.env(),
                            cwd=nobody.home, timeout=60)
    assert b"Traceback" not in result.stderr, result.stderr
    expected = f"refused: not permitted to signal process {world.root_pid}; SIGTERM not sent"
    assert result.stdout.decode().strip() == expected
    assert os.path.exists(f"/proc/{world.root_pid}")
