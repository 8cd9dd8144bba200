"""Severity you can read without colour, and one order of hazards (issue 12, item 5): an orphaned 1 MiB segment
(leaked memory) ranks above eleven pipes with no reader on a daemon's stdout, in the text report, in `ipcmon leaks`
and in the Overview's alert rows, each line carrying its level's glyph and word."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys

import posix_ipc

from ipcmon import health, report
from ipcmon.model import Snapshot
from ipcmon.ui.view.alerts import alert_row, find_alerts
from ipcmon.ui.view.table import Context
from tests.helpers import REPO, Child, Cleanup, Spawn, new_name, scan_kinds, wait_until

MIB = 1 << 20
PIPES = 11


def _orphan(cleanup: Cleanup) -> str:
    """A real 1 MiB segment, every page written (allocated), that nobody holds any more."""
    name = cleanup.shm(new_name("orphan"))
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=MIB)
    with mmap.mmap(shm.fd, MIB) as area:
        area.write(b"\x5a" * MIB)
    shm.close_fd()
    return name


def _daemon_with_unread_stdout(spawn: Spawn) -> tuple[Child, list[int]]:
    """A child writing to eleven pipes (its stdout among them) whose read ends are all closed: no reader."""
    ends = [os.pipe() for _ in range(PIPES)]
    write_ends = tuple(write for _, write in ends)
    try:
        child = spawn(f"""
            os.dup2({write_ends[0]}, 1)  # its stdout is the first pipe (so it never says a word)
            os.close({write_ends[0]})
            hold()
        """, pass_fds=write_ends)
    finally:
        inodes = [os.fstat(read).st_ino for read, _ in ends]
        for read, write in ends:
            os.close(read)
            os.close(write)
    return child, inodes


def _wait_for_no_reader(child: Child, inodes: list[int]) -> Snapshot:
    holder: list[Snapshot] = []

    def ready() -> bool:
        snapshot = scan_kinds("shm", "pipe")
        holder[:] = [snapshot]
        ours = [pipe for pipe in snapshot.pipes if pipe.inode in inodes]
        return len(ours) == PIPES and all("no-reader" in pipe.flags for pipe in ours)

    wait_until(ready, f"{PIPES} pipes of pid {child.pid} with no reader")
    return holder[0]


def test_leaked_memory_ranks_above_pipes_with_no_reader(spawn: Spawn, cleanup: Cleanup) -> None:
    name = _orphan(cleanup)
    child, inodes = _daemon_with_unread_stdout(spawn)
    snapshot = _wait_for_no_reader(child, inodes)
    pipe_labels = {f"pipe:[{inode}]" for inode in inodes}

    ours = [hazard for hazard in health.hazards(snapshot) if hazard.object == name or hazard.object in pipe_labels]
    assert [(hazard.level, hazard.object) for hazard in ours[:1]] == [("bad", name)]
    assert ours[0].bytes == MIB
    assert [hazard.level for hazard in ours[1:]] == ["warn"] * PIPES
    assert {hazard.object for hazard in ours[1:]} == pipe_labels

    # The text report: its own section, most serious first, each line with glyph and word.
    text = report.render(snapshot)
    section = text.split("== Leaks and hazards, most serious first", 1)[1].splitlines()[2:]
    lines = [line for line in section if name in line or any(label in line for label in pipe_labels)]
    assert len(lines) == 1 + PIPES
    assert lines[0].startswith("✖ bad") and "orphaned: no process holds this segment (1.0M allocated)" in lines[0]
    assert all(line.startswith("▲ warn") and "no reader" in line for line in lines[1:])

    # The Overview's rows: the glyph and the word (readable without colour), and the sort value is the rank.
    rows = [alert_row(alert, Context(snapshot)) for alert in find_alerts(snapshot)
            if alert.object == name or alert.object in pipe_labels]
    ranked = sorted(rows, key=lambda row: row.cells[0].sort_key)
    assert [row.cells[0].plain for row in ranked] == ["✖ bad"] + ["▲ warn"] * PIPES
    assert ranked[0].cells[2].plain == name


def test_leaks_lists_each_leak_with_its_level(cleanup: Cleanup) -> None:
    name = _orphan(cleanup)
    output = subprocess.run(
        [sys.executable, "-m", "ipcmon", "leaks", "--match", name],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert output.returncode == 1, output.stderr
    header, row = output.stdout.splitlines()[:2]
    assert header.split()[:3] == ["LEVEL", "KIND", "PROBLEM"]
    assert row.startswith("✖ bad") and name in row and "1.0M" in row


HOLDS_FD = """
    import posix_ipc
    memory = posix_ipc.SharedMemory(NAME)
    say("ready")
    hold()
"""


def test_a_deleted_segment_that_pins_nothing_is_a_warning_and_one_that_pins_memory_is_bad(
    spawn: Spawn, cleanup: Cleanup
) -> None:
    # A newcomer saw "deleted but still held: pins 0B" counted among the serious ones.
    levels = {}
    for written in (False, True):
        name = cleanup.shm(new_name("written" if written else "untouched"))
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=MIB)
        if written:
            with mmap.mmap(shm.fd, MIB) as area:
                area.write(b"\x5a" * MIB)
        shm.close_fd()
        holder = spawn(HOLDS_FD.replace("NAME", repr(name)))
        holder.expect()
        posix_ipc.unlink_shared_memory(name)
        snapshot = scan_kinds("shm")
        [hazard] = [h for h in health.hazards(snapshot) if h.object == name]
        levels[written] = (hazard.level, hazard.problem)
        leaks = subprocess.run([sys.executable, "-m", "ipcmon", "leaks", "--match", name], capture_output=True,
                               text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert leaks.returncode == (1 if written else 0), (leaks.stdout, leaks.stderr)  # no leak if it pins nothing
    assert levels[False][0] == "warn" and "pins nothing yet" in levels[False][1], levels
    assert levels[True][0] == "bad" and "pins 1.0M" in levels[True][1], levels
