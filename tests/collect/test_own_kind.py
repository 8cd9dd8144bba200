"""Issue 13: each collector accepts only its own kind of object. A descriptor on the shm or mqueue mount's own
directory, a directory, FIFO or symlink parked in /dev/shm, or a subdirectory of a listed queue directory is no
segment and no queue (a held FIFO in /dev/shm is still a FIFO)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ipcmon.collect import ScanConfig, scan
from ipcmon.collect.scan import find_mqueue_dir
from tests.helpers import Cleanup, Spawn, new_name, proc_view

SHM_DIR = "/dev/shm"

HOLDER = """
    import os
    fds = [os.open(path, flags) for path, flags in {opens!r}]
    say("ready", *fds)
    hold()
"""


def test_directories_fifos_and_symlinks_on_the_ipc_mounts_are_no_segments_or_queues(
    spawn: Spawn, cleanup: Cleanup
) -> None:
    mqueue_dir = find_mqueue_dir()
    assert mqueue_dir is not None, "the mqueue filesystem must be mounted (.ci/run mounts it)"
    base = SHM_DIR + new_name("own")
    fifo, directory, link = base + "-fifo", base + "-dir", base + "-link"
    os.mkfifo(cleanup.path(fifo), 0o600)
    os.mkdir(directory, 0o700)
    cleanup.add(os.rmdir, directory)
    os.symlink("/etc/hostname", cleanup.path(link))
    opens = [
        (SHM_DIR, os.O_RDONLY),  # the shm mount's root
        (mqueue_dir, os.O_RDONLY),  # the mqueue mount's root
        (directory, os.O_RDONLY),  # a directory someone made in /dev/shm
        (fifo, os.O_RDWR),  # a FIFO parked in /dev/shm: a FIFO, not a segment
        (link, os.O_PATH | os.O_NOFOLLOW),  # the symlink itself
    ]
    child = spawn(HOLDER.format(opens=opens), comm="ipcm-ownkind")
    fds = [int(word) for word in child.expect()]
    assert len(fds) == len(opens)

    snapshot = scan(ScanConfig(pids=frozenset({child.pid})))
    assert [segment.path for segment in snapshot.shm] == []
    assert [queue.name for queue in snapshot.mqueues] == []
    (fifo_pipe,) = [pipe for pipe in snapshot.pipes if pipe.kind == "fifo"]
    assert fifo_pipe.path == fifo
    assert {(end.pid, end.fd) for end in fifo_pipe.readers} == {(child.pid, fds[3])}

    # Listed without any holder: the shm directory's listing takes only regular files.
    everything = scan(ScanConfig(kinds=("shm",)))
    assert {fifo, directory, link}.isdisjoint(segment.path for segment in everything.shm)


def test_a_listed_queue_directory_takes_only_regular_files(tmp_path: Path) -> None:
    """A plain directory given as the mqueue mount (IPCMON_MQUEUE_DIR): a subdirectory or FIFO in it is no queue.

    Scanned through a /proc with no process in it: only the listing is looked at (other people's files on the
    same filesystem, held open, would otherwise be taken for queues of that device)."""
    proc = proc_view(tmp_path / "proc", [])
    tmp_path = tmp_path / "queues"
    tmp_path.mkdir()
    (tmp_path / "subdir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "queue").write_bytes(b"")
    assert stat.S_ISREG((tmp_path / "queue").stat().st_mode)
    snapshot = scan(ScanConfig(kinds=("mqueue",), mqueue_dir=str(tmp_path), proc=proc))
    assert [queue.name for queue in snapshot.mqueues] == ["/queue"]
