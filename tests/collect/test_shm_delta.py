"""A Scanner's shm collector does work for what changed: a segment whose file is as listed before and that no process
that ran holds (or held) is the previous record, and when all are, the result is the previous tuple.

Each test lists its own directory (a plain directory works as the shm directory: only files inside it count,
issue 7), so no other test's segments come and go between two collects; its holders are real children, and the
descriptors and mappings of a settled one are the very objects of the last read, as a Scanner hands them over.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

from ipcmon.collect import ScanConfig, scan
from ipcmon.collect.fds import Devices, FdRef, MapRef, maps_token, read_fds, read_maps
from ipcmon.collect.recall import Recall
from ipcmon.collect.shm import Seen, collect
from ipcmon.model import Process, ShmSegment
from tests.helpers import Child, Spawn

SIZE = 4096
HOLDER = """
fd = os.open({path!r}, os.O_RDWR)
map_fd(fd, {size})
say("ready", fd)
for command in commands():
    verb, _, arg = command.partition(" ")
    if verb == "close":
        os.close(fd)
    elif verb == "rename":
        set_comm(arg)
    say("done")
"""


class Collecting:
    """collect() as a Scanner calls it, scan after scan, over one directory: a settled pid's descriptors and
    mappings are the last read's objects; any other pid is read again."""

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory)
        self.dev = os.stat(self.directory).st_dev
        self.recall: Recall[ShmSegment] = Recall()
        self.history: Recall[Seen] = Recall()
        self.tables: dict[int, tuple[list[FdRef], list[MapRef]]] = {}
        self.processes: dict[int, Process] = {}

    def __call__(self, pids: Collection[int], settled: Collection[int] = ()) -> tuple[ShmSegment, ...]:
        unread = set(pids) - set(settled)
        if unread:
            self.processes = {p.pid: p for p in scan(ScanConfig(kinds=("shm",))).processes if p.pid in pids}
        for pid in unread:
            self.tables[pid] = ([ref for ref in read_fds(pid, Devices(self.dev, None)) if ref.kind == "shm"],
                                read_maps(pid, maps_token(self.dev)))
        fds = [ref for pid in sorted(pids) for ref in self.tables[pid][0]]
        maps = [ref for pid in sorted(pids) for ref in self.tables[pid][1]]
        for kept in (self.recall, self.history):
            kept.turn()
        return collect(self.directory, self.processes, fds, maps, recall=self.recall, settled=settled,
                       history=self.history)


def segment_file(tmp_path: Path, name: str = "seg") -> str:
    path = tmp_path / name
    path.write_bytes(b"s" * SIZE)
    return str(path)


def holder(spawn: Spawn, path: str, comm: str | None = None) -> Child:
    child = spawn(HOLDER.format(path=path, size=SIZE), comm=comm)
    child.expect()
    return child


def holders_of(segment: ShmSegment) -> list[tuple[int, bool]]:
    return sorted((h.pid, h.mapped) for h in segment.holders)


def test_segments_nothing_changed_are_the_previous_result(spawn: Spawn, tmp_path: Path) -> None:
    path = segment_file(tmp_path)
    segment_file(tmp_path, "orphan")
    child = holder(spawn, path)
    collecting = Collecting(tmp_path)
    first = collecting({child.pid})
    again = collecting({child.pid}, settled={child.pid})
    read_again = collecting({child.pid})  # the holder read again, found as it was: still the same records
    assert again is first and read_again is first
    assert [segment.name for segment in first] == ["/orphan", "/seg"]
    (held,) = [segment for segment in first if segment.path == path]
    assert holders_of(held) == [(child.pid, False), (child.pid, True)]


def test_a_segment_changed_by_path_from_a_process_gone_since_is_read_again(spawn: Spawn, tmp_path: Path) -> None:
    """Anyone may open a segment by its path, resize or chmod it and exit between two scans: its holders never
    ran, so only the file as listed tells."""
    path = segment_file(tmp_path)
    other = segment_file(tmp_path, "other")
    child = holder(spawn, path)
    collecting = Collecting(tmp_path)
    first = collecting({child.pid})
    code = f"import os; os.truncate({path!r}, {3 * SIZE}); os.chmod({path!r}, 0o640)"
    subprocess.run([sys.executable, "-c", code], check=True)
    after = collecting({child.pid}, settled={child.pid})
    assert after is not first
    changed = {segment.path: segment for segment in after}
    assert (changed[path].size, changed[path].mode) == (3 * SIZE, 0o640)
    assert holders_of(changed[path]) == [(child.pid, False), (child.pid, True)]
    (unchanged,) = [segment for segment in first if segment.path == other]
    assert changed[other] is unchanged


def test_a_holder_that_exits_is_gone_from_the_segment_the_one_left_holds(spawn: Spawn, tmp_path: Path) -> None:
    """The holder left never ran, and the file is as it was: the holder gone is the change."""
    path = segment_file(tmp_path)
    leaving, staying = holder(spawn, path), holder(spawn, path)
    collecting = Collecting(tmp_path)
    both = {leaving.pid, staying.pid}
    collecting(both)
    (first,) = collecting(both, settled=both)
    assert {pid for pid, _ in holders_of(first)} == both
    leaving.stop()
    (alone,) = collecting({staying.pid}, settled={staying.pid})
    assert holders_of(alone) == [(staying.pid, False), (staying.pid, True)]


def test_a_new_holder_shows_on_a_segment_its_old_holder_keeps(spawn: Spawn, tmp_path: Path) -> None:
    path = segment_file(tmp_path)
    old = holder(spawn, path)
    collecting = Collecting(tmp_path)
    collecting({old.pid})
    (first,) = collecting({old.pid}, settled={old.pid})
    new = holder(spawn, path)
    (now,) = collecting({old.pid, new.pid}, settled={old.pid})
    assert holders_of(first) == [(old.pid, False), (old.pid, True)]
    assert holders_of(now) == sorted([(old.pid, False), (old.pid, True), (new.pid, False), (new.pid, True)])


def test_what_a_holder_that_ran_did_shows_on_its_segment(spawn: Spawn, tmp_path: Path) -> None:
    """A holder closes its descriptor and renames itself: neither changes the file."""
    path = segment_file(tmp_path)
    child = holder(spawn, path, comm="ipcm-before")
    collecting = Collecting(tmp_path)
    collecting({child.pid})
    (first,) = collecting({child.pid}, settled={child.pid})
    child.tell("close")
    child.expect("done")
    child.tell("rename ipcm-after")
    child.expect("done")
    (after,) = collecting({child.pid})
    assert [(h.mapped, h.comm) for h in first.holders] == [(False, "ipcm-before"), (True, "ipcm-before")]
    assert [(h.mapped, h.comm) for h in after.holders] == [(True, "ipcm-after")]


def test_a_segment_removed_or_made_by_path_shows_though_no_holder_ran(spawn: Spawn, tmp_path: Path) -> None:
    path = segment_file(tmp_path)
    removed = segment_file(tmp_path, "removed")
    child = holder(spawn, path)
    collecting = Collecting(tmp_path)
    collecting({child.pid})
    first = collecting({child.pid}, settled={child.pid})
    os.unlink(removed)
    fewer = collecting({child.pid}, settled={child.pid})
    segment_file(tmp_path, "made")
    more = collecting({child.pid}, settled={child.pid})
    assert [segment.name for segment in first] == ["/removed", "/seg"]
    assert [segment.name for segment in fewer] == ["/seg"]
    assert [segment.name for segment in more] == ["/made", "/seg"]
    assert fewer[0] is first[1] and more[1] is first[1]


def test_an_unlinked_segment_a_new_process_holds_shows_beside_unchanged_ones(spawn: Spawn, tmp_path: Path) -> None:
    path = segment_file(tmp_path)
    child = holder(spawn, path)
    collecting = Collecting(tmp_path)
    collecting({child.pid})
    (first,) = collecting({child.pid}, settled={child.pid})
    gone = str(tmp_path / "gone")
    maker = spawn(f"fd = os.open({gone!r}, os.O_RDWR | os.O_CREAT, 0o600)\nos.ftruncate(fd, {SIZE})\n"
                  f"os.unlink({gone!r})\nsay('ready')\nhold()\n")
    maker.expect()
    now = collecting({child.pid, maker.pid}, settled={child.pid})
    assert [(segment.name, segment.state) for segment in now] == [("/gone", "deleted"), ("/seg", "held")]
    assert now[1] is first
    assert [h.pid for h in now[0].holders] == [maker.pid]
