"""Not root: as nobody, everything readable is shown, what is hidden is counted and said, what hidden processes
might hold is said as unknown (issue 13: root's segments are ``orphaned?``, never orphaned hazards; a pipe whose
reader is root's is not ``no-reader``), actions that would fail are refused with a clear message, and nothing ends
in a traceback."""

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
from tests.reliability.cli import OTHER_UID, Unprivileged, assert_inert, unprivileged_setup, watch_briefly

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

ROOT_READER = """
    say("ready")
    hold()
"""

NOBODY_WRITER = """
import sys
print("ready", flush=True)
sys.stdin.read()
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
        self.other_orphan = cleanup.shm(p + "-other-orphan")
        posix_ipc.SharedMemory(self.other_orphan, posix_ipc.O_CREX, mode=0o600, size=4096).close_fd()
        os.chown(SHM_DIR + self.other_orphan, OTHER_UID, OTHER_UID)
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
        # Two pipes that nobody writes: root reads one (the reader nobody cannot see), nobody reads neither.
        read_end, write_end = os.pipe()
        dead_read, dead_write = os.pipe()
        try:
            self.mixed_pipe, self.dead_pipe = os.fstat(read_end).st_ino, os.fstat(dead_read).st_ino
            self.root_reader = spawn(ROOT_READER, pass_fds=(read_end,), comm="ipcm-rootread")
            self.root_reader.expect()
            self.writer = nobody.popen([nobody.python, "-c", NOBODY_WRITER], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, pass_fds=(write_end, dead_write))
            cleanup.add(self._stop_writer, None)
            assert self.writer.stdout is not None
            assert self.writer.stdout.readline().split() == [b"ready"]
        finally:
            for fd in (read_end, write_end, dead_read, dead_write):
                os.close(fd)

    def _stop_child(self, _: None) -> None:
        self.child.kill()
        self.child.communicate()

    def _stop_writer(self, _: None) -> None:
        self.writer.kill()
        self.writer.communicate()


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


def test_snapshot_as_nobody_says_unknown_what_root_might_hold(nobody: Unprivileged, world: World) -> None:
    """Issue 13, 12: root's segments (one held by a root process, one by none) are not orphaned as far as nobody
    can tell; objects no hidden process could hold are; a pipe whose reader is root's has a reader."""
    data = json.loads(nobody.run("snapshot", "--json").stdout)
    states = {segment["name"]: segment["state"] for segment in data["shm"]}
    assert states[world.root_held] == "orphaned?"
    assert states[world.root_orphan] == "orphaned?"
    assert states[world.nobody_orphan] == "orphaned"  # nobody's own, private: no hidden process could hold it
    assert states[world.other_orphan] == "orphaned"  # its owner has no process at all
    assert states[world.nobody_held] == "held"
    (queue,) = [queue for queue in data["mqueues"] if queue["name"] == world.root_queue]
    assert queue["maybe_held"] is True
    pipes = {pipe["inode"]: pipe for pipe in data["pipes"]}
    # Root reads the one, nobody cannot see that end: the kernel says a reader exists, so no flag.
    assert (pipes[world.mixed_pipe]["readers"], pipes[world.mixed_pipe]["flags"]) == ([], [])
    assert [end["pid"] for end in pipes[world.mixed_pipe]["writers"]] == [world.writer.pid]
    assert pipes[world.dead_pipe]["flags"] == ["no-reader"]  # nobody reads the other: a fact, from the kernel

    text = nobody.run("snapshot").stdout.decode()
    assert _row(text, world.root_held).split()[6] == "orphaned?"
    assert _row(text, world.nobody_orphan).split()[6] == "orphaned"
    summary = text.splitlines()[0]
    assert re.search(r"shm \d+ \(\d+ held, \d+ orphaned, \d+ orphaned\?, \d+ deleted\)", summary), summary
    hazards = text.split("== Leaks and hazards")[1]
    assert world.root_held not in hazards and world.root_orphan not in hazards and world.root_queue not in hazards
    (own_hazard,) = [line for line in hazards.splitlines() if world.nobody_orphan in line]
    assert "orphaned: no process holds this segment" in own_hazard
    assert f"pipe:[{world.mixed_pipe}]" not in hazards
    assert f"pipe:[{world.dead_pipe}]" in hazards


def test_an_ordinary_users_snapshot_piped_to_cat_has_a_reader_for_its_output(nobody: Unprivileged) -> None:
    """Issue 13, 12: `ipcmon snapshot | cat` as an ordinary user, whose output root reads (here, this test):
    cat's stdout pipe has a reader nobody cannot see, so it is not flagged no-reader."""
    for options in ("--json", ""):
        process = subprocess.Popen(
            nobody.command(["sh", "-c", f"{nobody.python} -m ipcmon snapshot --kind pipe {options} | cat"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=nobody.env(), cwd=nobody.home,
            stdin=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        inode = os.fstat(process.stdout.fileno()).st_ino
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0 and b"Traceback" not in stderr, stderr
        if options:
            (pipe,) = [pipe for pipe in json.loads(stdout)["pipes"] if pipe["inode"] == inode]
            assert "cat" in {end["comm"] for end in pipe["writers"]}
            assert (pipe["readers"], pipe["flags"]) == ([], [])
        else:
            (row,) = [line for line in stdout.decode().splitlines() if line.startswith(f"pipe  {inode} ")]
            assert row.split()[5] == "-", row  # FLAGS
            assert f"pipe:[{inode}]" not in stdout.decode().split("== Leaks and hazards")[1]


UNASKED = """
import json
from ipcmon.collect import ScanConfig, scan
snapshot = scan(ScanConfig(kinds=("pipe",), pipe_fill=False, pids=frozenset({{{pid}}})))
print(json.dumps({{pipe.inode: list(pipe.flags) for pipe in snapshot.pipes}}))
"""


def test_without_the_kernels_answer_a_missing_reader_is_unknown(nobody: Unprivileged, world: World) -> None:
    """With no end borrowed (pipe_fill off), nobody cannot know whether root reads a pipe: ``no-reader?``."""
    result = subprocess.run(nobody.command([nobody.python, "-c", UNASKED.format(pid=world.writer.pid)]),
                            capture_output=True, env=nobody.env(), cwd=nobody.home, timeout=60)
    assert result.returncode == 0, result.stderr
    flags = {int(inode): value for inode, value in json.loads(result.stdout).items()}
    assert flags[world.mixed_pipe] == ["no-reader?"]
    assert flags[world.dead_pipe] == ["no-reader?"]


def test_pid_as_nobody_counts_and_notes_only_the_selection(nobody: Unprivileged, world: World) -> None:
    own = nobody.run("snapshot", "--pid", str(world.nobody_pid)).stdout.decode()
    assert ": 1 process, shm " in own.splitlines()[0]
    assert "could not be fully read" not in own
    roots = nobody.run("snapshot", "--pid", str(world.root_pid)).stdout.decode()
    assert ": 1 process (1 not fully readable), shm " in roots.splitlines()[0]
    assert "note: 1 process could not be fully read (not permitted)" in roots
    missing = nobody.run("snapshot", "--pid", "0")
    assert (missing.returncode, missing.stderr) == (1, b"ipcmon: no such process: 0\n")


def test_leaks_as_nobody_lists_facts_only_and_says_what_it_could_not_read(nobody: Unprivileged, world: World) -> None:
    result = nobody.run("leaks", "--match", world.prefix + "*")
    assert result.returncode == 1
    assert world.nobody_orphan.encode() in result.stdout and world.other_orphan.encode() in result.stdout
    # Root's segments: a root process nobody cannot read might hold them: not a leak as far as nobody knows, and
    # said so in one line of their own.
    (unknown,) = [line for line in result.stdout.decode().splitlines()
                  if world.root_orphan in line or world.root_held in line]
    assert world.root_orphan in unknown and world.root_held in unknown
    assert unknown.endswith("no process ipcmon can read holds them, but a process it cannot read may (orphaned?): "
                            "not listed as leaks; run as root to know")
    assert b"processes could not be fully read" in result.stderr
    assert_inert(result.stdout)
    data = json.loads(nobody.run("leaks", "--json", "--match", world.prefix + "*").stdout)
    assert {leak["name"] for leak in data} == {world.nobody_orphan, world.other_orphan}


def test_clean_as_nobody_refuses_other_users_objects_clearly_and_removes_its_own(
    nobody: Unprivileged, world: World
) -> None:
    dry = nobody.run("clean", "--min-age", "0", "--match", world.prefix + "*")
    assert dry.returncode == 0
    lines = dry.stdout.decode().splitlines()
    (other_line,) = [line for line in lines if world.other_orphan in line]
    assert f"(cannot: not permitted: it belongs to {OTHER_UID}, and only its owner or root may remove it" in other_line
    (own_line,) = [line for line in lines if world.nobody_orphan in line]
    assert "cannot" not in own_line
    (unknown,) = [line for line in lines if world.root_orphan in line or world.root_held in line]
    assert "(orphaned?)" in unknown and world.root_orphan in unknown and world.root_held in unknown
    assert b"warning:" in dry.stderr and b"could not be fully read" in dry.stderr

    done = nobody.run("clean", "--yes", "--min-age", "0", "--match", world.prefix + "*")
    assert done.returncode == 1  # some were kept
    out = done.stdout.decode()
    assert f"kept shm {world.other_orphan}: not permitted: it belongs to {OTHER_UID}" in out
    assert f"removed shm {world.nobody_orphan}" in out
    assert os.path.exists(SHM_DIR + world.other_orphan)
    assert os.path.exists(SHM_DIR + world.root_orphan)
    assert os.path.exists(SHM_DIR + world.root_held)
    assert not os.path.exists(SHM_DIR + world.nobody_orphan)
    with open(nobody.action_log) as log:
        entries = [line for line in log if world.prefix in line]
    assert any(world.nobody_orphan in line and line.rstrip().endswith(": removed") for line in entries)
    assert any(world.other_orphan in line and ": kept: not permitted" in line for line in entries)
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


def test_a_scan_as_nobody_leaves_no_reference_cycles(nobody: Unprivileged) -> None:
    """As nobody, most of /proc refuses (Denied, Gone): an exception kept in a local refers to its own frame through
    its traceback, and such a cycle kept a whole scan's tables alive until the garbage collector ran. A Scanner's
    scans must leave nothing for it (procfs.translate)."""
    code = textwrap.dedent("""
        import gc
        from ipcmon.collect import Scanner
        scanner = Scanner()
        gc.collect()
        gc.disable()
        hidden = [scanner.scan().hidden_processes for _ in range(3)]
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        print(min(hidden), sorted({type(thing).__name__ for thing in gc.garbage}))
    """)
    result = subprocess.run(nobody.command([nobody.python, "-c", code]), capture_output=True, text=True,
                            env=nobody.env(), cwd=nobody.home, timeout=120, check=True)
    hidden, garbage = result.stdout.split(" ", 1)
    assert int(hidden) > 0  # root's processes refused it: the Denied paths ran
    assert garbage.strip() == "[]"
