"""Issue 13: a pipe with no reader (or writer) in sight asks the kernel whether one exists anywhere, through a poll
of a borrowed end, so an end held by a process the scan does not read clears the flag and a missing end is fact.

The processes the scan does not read are left out of a /proc look-alike (tests.helpers.proc_view): the kernel
still counts their ends."""

from __future__ import annotations

import os
from pathlib import Path

from ipcmon.collect import ScanConfig, scan
from ipcmon.model import Pipe, Snapshot
from tests.helpers import Spawn, proc_view

HOLD = """
    say("ready")
    hold()
"""


def _pipe(snapshot: Snapshot, inode: int) -> Pipe:
    (pipe,) = [pipe for pipe in snapshot.pipes if pipe.inode == inode]
    return pipe


def test_ends_out_of_sight_are_counted_by_the_kernel_and_missing_ones_are_fact(spawn: Spawn, tmp_path: Path) -> None:
    pipes = {name: os.pipe() for name in ("unseen-reader", "no-reader", "unseen-writer", "no-writer")}
    try:
        writer = spawn(HOLD, pass_fds=(pipes["unseen-reader"][1], pipes["no-reader"][1]), comm="ipcm-writer")
        reader = spawn(HOLD, pass_fds=(pipes["unseen-writer"][0], pipes["no-writer"][0]), comm="ipcm-reader")
        unseen = spawn(HOLD, pass_fds=(pipes["unseen-reader"][0], pipes["unseen-writer"][1]), comm="ipcm-unseen")
        for child in (writer, reader, unseen):
            child.expect()
        inodes = {name: os.fstat(ends[0]).st_ino for name, ends in pipes.items()}
    finally:
        for ends in pipes.values():
            for fd in ends:
                os.close(fd)
    # The third process is not in this /proc: the scan cannot see its ends.
    view = proc_view(tmp_path / "proc", [writer.pid, reader.pid])
    snapshot = scan(ScanConfig(kinds=("pipe",), proc=view))
    assert unseen.pid not in {process.pid for process in snapshot.processes}

    unseen_reader = _pipe(snapshot, inodes["unseen-reader"])
    assert (unseen_reader.readers, unseen_reader.flags) == ((), ())  # the kernel knows of a reader
    assert _pipe(snapshot, inodes["no-reader"]).flags == ("no-reader",)
    unseen_writer = _pipe(snapshot, inodes["unseen-writer"])
    assert (unseen_writer.writers, unseen_writer.flags) == ((), ())
    assert _pipe(snapshot, inodes["no-writer"]).flags == ("no-writer",)

    # Without the kernel's answer (no end borrowed) and with every process of this /proc read, the scan takes
    # what it sees as all there is: it cannot know of the third process.
    unasked = scan(ScanConfig(kinds=("pipe",), proc=view, pipe_fill=False))
    assert _pipe(unasked, inodes["unseen-reader"]).flags == ("no-reader",)
    assert _pipe(unasked, inodes["unseen-writer"]).flags == ("no-writer",)
