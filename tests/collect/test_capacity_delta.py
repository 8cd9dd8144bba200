"""A Scanner's budgets add up only what changed: the pipe pages and the shm mount's segments of the last scan, less
the records that are gone, plus the new ones. Each scan's figures must be those of a scan that adds up everything
(capacity.collect without a Scanner's memory, on the very same snapshot), as real pipes and segments come, change
and go."""

from __future__ import annotations

import os

import posix_ipc

from ipcmon.collect import ScanConfig, Scanner, capacity
from ipcmon.model import Budget, Snapshot
from tests.helpers import Child, Cleanup, Spawn

PIPER = """
import fcntl
ends = {}
say("ready")
for command in commands():
    verb, _, arg = command.partition(" ")
    if verb == "pipe":
        read_end, write_end = os.pipe()
        ends[read_end] = write_end
        say("done", read_end, os.fstat(read_end).st_ino)
    elif verb == "resize":
        fcntl.fcntl(int(arg), fcntl.F_SETPIPE_SZ, 256 * 1024)
        say("done")
    elif verb == "close":
        os.close(ends.pop(int(arg)))
        os.close(int(arg))
        say("done")
"""


def pipe_budgets(snapshot: Snapshot) -> list[Budget]:
    assert snapshot.capacity is not None
    return [budget for budget in snapshot.capacity.budgets if budget.area == "pipe"]


def added_up_afresh(snapshot: Snapshot) -> list[Budget]:
    found = capacity.collect(snapshot, hidden=snapshot.hidden_processes)
    assert found is not None
    return [budget for budget in found.budgets if budget.area == "pipe"]


def ask(child: Child, command: str) -> list[str]:
    child.tell(command)
    return child.expect("done")


def test_pipe_pages_follow_pipes_made_resized_and_closed(spawn: Spawn) -> None:
    child = spawn(PIPER)
    child.expect()
    scanner = Scanner(ScanConfig(kinds=("pipe",)))
    snapshots = [scanner.scan(), scanner.scan()]
    read_end, inode = (int(word) for word in ask(child, "pipe"))
    snapshots.append(scanner.scan())
    ask(child, f"resize {read_end}")
    snapshots.append(scanner.scan())
    ask(child, f"close {read_end}")
    snapshots += [scanner.scan(), scanner.scan()]
    mine = [[pipe.capacity for pipe in snapshot.pipes if pipe.inode == inode] for snapshot in snapshots]
    assert mine == [[], [], [16 * 4096], [256 * 1024], [], []]
    for snapshot in snapshots:
        assert pipe_budgets(snapshot) == added_up_afresh(snapshot)


def test_the_shm_mount_adds_up_segments_made_written_and_removed(cleanup: Cleanup, unique_name: str) -> None:
    shm_dev = os.stat("/dev/shm").st_dev
    scanner = Scanner(ScanConfig(kinds=("shm",)))

    def tallied() -> tuple[Snapshot, tuple[int, int, int, object]]:
        snapshot = scanner.scan()
        assert snapshot.capacity is not None
        (mount,) = [mount for mount in snapshot.capacity.shm_mounts if mount.path == "/dev/shm"]
        afresh = capacity.shm_mount(snapshot, "/dev/shm", shm_dev, [])
        assert afresh is not None
        assert (mount.named, mount.deleted, mount.semaphores, mount.top_holders) == \
            (afresh.named, afresh.deleted, afresh.semaphores, afresh.top_holders)
        return snapshot, (mount.named, mount.deleted, mount.semaphores, mount.top_holders)

    tallied()
    tallied()
    name = cleanup.shm(unique_name)
    segment = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=8 * 4096)
    try:
        made, _ = tallied()
        os.pwrite(segment.fd, b"x" * 5 * 4096, 0)
        written, _ = tallied()
    finally:
        segment.close_fd()
    posix_ipc.unlink_shared_memory(name)
    removed, _ = tallied()
    allocated = [[s.allocated for s in snapshot.shm if s.name == name] for snapshot in (made, written, removed)]
    assert allocated == [[0], [5 * 4096], []]
