"""ipcmon hides itself, and an event loop's wake-up pipe is no "both-ends" hazard: real processes, real pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from ipcmon.collect import ScanConfig, Scanner
from ipcmon.model import Pipe, Snapshot
from tests.helpers import REPO, Spawn, scan_kinds


def pipe_by_inode(snapshot: Snapshot, inode: int) -> Pipe:
    found = [p for p in snapshot.pipes if p.inode == inode and p.kind == "pipe"]
    assert len(found) == 1, f"pipe {inode} appears {len(found)} times"
    return found[0]


WAKEUP_PIPE = """
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    os.write(write_end, b"!")  # a wake-up byte, as a signal handler writes it
    say("ready", os.fstat(read_end).st_ino, read_end, write_end)
    for command in commands():
        os.set_blocking(write_end, False if command == "nonblocking" else True)
        say("done")
"""


def test_one_process_with_a_nonblocking_pipe_to_itself_is_not_flagged(spawn: Spawn) -> None:
    child = spawn(WAKEUP_PIPE, comm="ipcm-selfpipe")
    inode, read_end, write_end = (int(word) for word in child.expect())

    found = pipe_by_inode(scan_kinds("pipe"), inode)
    assert [end.fd for end in found.readers] == [read_end]
    assert [end.fd for end in found.writers] == [write_end]
    assert found.buffered == 1
    assert found.flags == ()


def test_a_wakeup_pipe_made_blocking_is_flagged_at_the_next_repeated_scan(spawn: Spawn) -> None:
    """The Scanner reuses a pipe record only when its ends' flags are what they were."""
    child = spawn(WAKEUP_PIPE, comm="ipcm-selfpipe")
    inode, _, _ = (int(word) for word in child.expect())
    scanner = Scanner(ScanConfig(kinds=("pipe",)))
    assert pipe_by_inode(scanner.scan(), inode).flags == ()
    assert pipe_by_inode(scanner.scan(), inode).flags == ()

    child.tell("blocking")
    child.expect("done")
    assert pipe_by_inode(scanner.scan(), inode).flags == ("both-ends",)
    child.tell("nonblocking")
    child.expect("done")
    assert pipe_by_inode(scanner.scan(), inode).flags == ()


THREADS_PIPE = """
    import threading, select
    read_end, write_end = os.pipe()  # blocking, as watchdog's inotify thread's kill pipe (and so every ipcmon's)
    stop = threading.Event()
    def poll_it():
        while not stop.is_set():
            select.select([read_end], [], [], 0.05)
    helper = None
    say("ready", os.fstat(read_end).st_ino)
    for command in commands():
        if command == "thread":
            helper = threading.Thread(target=poll_it)
            helper.start()
        else:
            stop.set()
            helper.join()
        say("done")
"""


def test_a_blocking_pipe_between_a_processs_own_threads_is_not_flagged(spawn: Spawn) -> None:
    # Seen in review: every ipcmon record (watchdog's kill pipe, plain pipe(2)) was a "both-ends" hazard to the
    # other front ends. Single-threaded, the same pipe is the forgotten end of a fork, and flagged.
    child = spawn(THREADS_PIPE, comm="ipcm-threads")
    (inode,) = (int(word) for word in child.expect())
    scanner = Scanner(ScanConfig(kinds=("pipe",)))
    assert pipe_by_inode(scanner.scan(), inode).flags == ("both-ends",)
    child.tell("thread")
    child.expect("done")
    assert pipe_by_inode(scanner.scan(), inode).flags == ()
    assert pipe_by_inode(scan_kinds("pipe"), inode).flags == ()
    child.tell("join")
    child.expect("done")
    assert pipe_by_inode(scanner.scan(), inode).flags == ("both-ends",)


FORGETFUL_FORK = """
    read_end, write_end = os.pipe2(os.O_NONBLOCK) if {nonblocking} else os.pipe()
    inode = os.fstat(read_end).st_ino
    child = os.fork()
    if child == 0:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: goes when the test kills its parent
        hold()  # holds both ends: it forgot to close the one it does not use
    if not {parent_keeps}:
        os.close(read_end)
        os.close(write_end)
    say("ready", inode, child)
    hold()
"""


def test_a_child_that_kept_both_blocking_ends_after_fork_is_flagged(spawn: Spawn) -> None:
    parent = spawn(FORGETFUL_FORK.format(nonblocking=False, parent_keeps=False), comm="ipcm-forker")
    inode, child = (int(word) for word in parent.expect())

    found = pipe_by_inode(scan_kinds("pipe"), inode)
    assert {end.pid for end in found.readers} == {end.pid for end in found.writers} == {child}
    assert found.flags == ("both-ends",)


def test_a_nonblocking_pipe_held_by_two_processes_is_still_flagged(spawn: Spawn) -> None:
    parent = spawn(FORGETFUL_FORK.format(nonblocking=True, parent_keeps=True), comm="ipcm-forker")
    inode, child = (int(word) for word in parent.expect())

    found = pipe_by_inode(scan_kinds("pipe"), inode)
    assert {end.pid for end in found.readers} == {parent.pid, child}
    assert found.flags == ("both-ends",)


def snapshot_json(*options: str) -> tuple[dict[str, Any], int, int]:
    """`ipcmon snapshot --json --kind pipe` with options: the parsed output, the command's pid, and the inode
    of the pipe its stdout is (its write end is the command's, the read end this test's)."""
    command = subprocess.Popen(
        [sys.executable, "-m", "ipcmon", "snapshot", "--json", "--kind", "pipe", *options],
        stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert command.stdout is not None
    inode = os.fstat(command.stdout.fileno()).st_ino
    output, _ = command.communicate(timeout=60)
    assert command.returncode == 0
    return json.loads(output), command.pid, inode


def test_snapshot_leaves_out_ipcmon_itself_unless_show_self() -> None:
    data, pid, stdout_inode = snapshot_json()
    assert data["processes"], "the scan saw no process at all"
    assert pid not in {process["pid"] for process in data["processes"]}
    assert stdout_inode not in {pipe["inode"] for pipe in data["pipes"]}  # its own pipe, this test's end too

    data, pid, stdout_inode = snapshot_json("--show-self")
    assert pid in {process["pid"] for process in data["processes"]}
    [own] = [pipe for pipe in data["pipes"] if pipe["inode"] == stdout_inode]
    assert [end["pid"] for end in own["writers"]] == [pid]
    assert [end["pid"] for end in own["readers"]] == [os.getpid()]


def test_a_scan_that_hides_itself_keeps_every_other_process() -> None:
    shown = scan_kinds("pipe")
    hidden = scan_kinds("pipe", hide_self=True)
    me = os.getpid()
    assert me in {process.pid for process in shown.processes}
    assert me not in {process.pid for process in hidden.processes}
    assert me not in {end.pid for pipe in hidden.pipes for end in (*pipe.readers, *pipe.writers)}
    assert {p.pid for p in hidden.processes} >= {p.pid for p in shown.processes} - {me} - _exited(shown)


def _exited(snapshot: Snapshot) -> set[int]:
    """Processes of snapshot that are gone by now (they may have exited between the two scans)."""
    return {process.pid for process in snapshot.processes if not os.path.exists(f"/proc/{process.pid}")}
