"""Missing or odd system pieces: no mqueue mount, no /proc/sysvipc, /dev/shm missing or not a tmpfs, a 1 TiB
sparse segment, 10,000 segments, a process with 10,000 descriptors. Clear notes, right figures, no hang.

The command line is pointed elsewhere with IPCMON_MQUEUE_DIR, IPCMON_PROC and IPCMON_SHM_DIR (README.md).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import posix_ipc

from ipcmon.collect import ScanConfig, scan
from ipcmon.collect.scan import MOUNT_MQUEUE_HINT
from ipcmon.model import ShmSegment, Snapshot
from tests.helpers import Cleanup, Spawn, new_name, proc_view
from tests.reliability.cli import run_ipcmon

TIB = 1 << 40


def segment_named(snapshot: Snapshot, name: str) -> ShmSegment:
    (found,) = [segment for segment in snapshot.shm if segment.name == name]
    return found


QUEUE_HOLDER = """
    import posix_ipc
    q = posix_ipc.MessageQueue({name!r})
    say("ready")
    hold()
"""


def test_no_mqueue_mount_is_said_with_the_mount_command_and_held_queues_still_show(
    spawn: Spawn, cleanup: Cleanup
) -> None:
    name = cleanup.mqueue(new_name("unmounted"))
    posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=3, max_message_size=32).send(b"hi")
    child = spawn(QUEUE_HOLDER.format(name=name))
    child.expect()
    text = run_ipcmon("snapshot", "--kind", "mqueue", "--pid", str(child.pid), env={"IPCMON_MQUEUE_DIR": "none"})
    assert text.returncode == 0
    out = text.stdout.decode()
    assert "No mqueue filesystem is mounted" in out and MOUNT_MQUEUE_HINT in out
    assert "POSIX message queues (not mounted)" in out
    (row,) = [line for line in out.splitlines() if line.startswith(name + " ")]
    assert row.split()[1:3] == ["1", "3"]  # read through the holder's descriptor: 1 message of 3
    data = json.loads(run_ipcmon("snapshot", "--json", "--kind", "mqueue", env={"IPCMON_MQUEUE_DIR": "none"}).stdout)
    assert data["mqueue_dir"] is None
    assert any(MOUNT_MQUEUE_HINT in note for note in data["notes"])
    (queue,) = [queue for queue in data["mqueues"] if queue["name"] == name]
    assert (queue["messages"], queue["path"]) == (1, None)
    missing = run_ipcmon("snapshot", "--kind", "mqueue", env={"IPCMON_MQUEUE_DIR": "/nonexistent/mqueue"})
    assert "No mqueue filesystem is mounted" in missing.stdout.decode()


def _proc_without_sysvipc(directory: Path) -> str:
    directory.mkdir()
    for entry in os.listdir("/proc"):
        if entry != "sysvipc" and (entry.isdigit() or entry in ("self", "stat")):
            os.symlink(f"/proc/{entry}", directory / entry)
    return str(directory)


def test_no_proc_sysvipc_is_said_and_everything_else_still_works(tmp_path: Path) -> None:
    proc = _proc_without_sysvipc(tmp_path / "proc")
    snapshot = scan(ScanConfig(proc=proc))
    assert not snapshot.sysv.available
    assert any("/proc/sysvipc is missing" in note for note in snapshot.notes)
    assert snapshot.processes, "the processes are still read"
    text = run_ipcmon("snapshot", env={"IPCMON_PROC": proc})
    assert text.returncode == 0
    assert "note: /proc/sysvipc is missing" in text.stdout.decode()
    assert "SysV shared memory" not in text.stdout.decode()
    data = json.loads(run_ipcmon("snapshot", "--json", env={"IPCMON_PROC": proc}).stdout)
    assert data["sysv"]["available"] is False
    leaks = run_ipcmon("leaks", env={"IPCMON_PROC": proc})
    assert leaks.returncode in (0, 1)


def test_a_missing_shm_directory_is_said_and_no_command_fails(tmp_path: Path) -> None:
    env = {"IPCMON_SHM_DIR": str(tmp_path / "no-such-shm")}
    text = run_ipcmon("snapshot", env=env)
    assert text.returncode == 0
    assert f"note: {tmp_path}/no-such-shm does not exist: POSIX shared memory cannot be listed." in text.stdout.decode()
    assert "shm 0 (0 held, 0 orphaned, 0 deleted)" in text.stdout.decode()
    assert json.loads(run_ipcmon("snapshot", "--json", env=env).stdout)["shm_dir"] is None
    assert run_ipcmon("leaks", env=env).returncode in (0, 1)
    assert run_ipcmon("clean", env=env).returncode == 0


PLAIN_DIR_HOLDER = """
    import mmap
    fd = os.open({path!r}, os.O_RDWR)
    mapping = mmap.mmap(fd, 4096)
    say("ready")
    hold()
"""


def test_a_plain_directory_on_a_disk_filesystem_lists_only_its_own_files(spawn: Spawn, cleanup: Cleanup) -> None:
    # /var/tmp is on the root filesystem here, like the libraries every process maps: none of those may be
    # mistaken for segments because they share the device.
    directory = tempfile.mkdtemp(prefix="ipcmon-test-plainshm-", dir="/var/tmp")
    cleanup.add(os.rmdir, directory)
    path = str(cleanup.path(f"{directory}/segment"))
    with open(path, "wb") as segment:
        segment.truncate(8192)
    child = spawn(PLAIN_DIR_HOLDER.format(path=path))
    child.expect()
    snapshot = scan(ScanConfig(kinds=("shm",), shm_dir=directory))
    assert [segment.path for segment in snapshot.shm] == [path]
    (segment,) = snapshot.shm
    assert (segment.name, segment.size, segment.state) == ("/segment", 8192, "held")
    assert {(holder.pid, holder.mapped) for holder in segment.holders} == {(child.pid, False), (child.pid, True)}
    assert any("is not a tmpfs mount" in note for note in snapshot.notes)
    text = run_ipcmon("snapshot", "--kind", "shm", env={"IPCMON_SHM_DIR": directory}).stdout.decode()
    assert f"note: {directory} is not a tmpfs mount" in text
    assert "shm 1 (1 held, 0 orphaned, 0 deleted)" in text


SPARSE_HOLDER = """
    import mmap
    fd = os.open({path!r}, os.O_RDWR)
    address = map_fd(fd, {size})
    touch(address, 4096)  # one page really allocated
    say("ready")
    hold()
"""


def test_a_one_tebibyte_sparse_segment_has_its_size_allocation_and_mapping_right(
    spawn: Spawn, cleanup: Cleanup, tmp_path: Path
) -> None:
    name = cleanup.shm(new_name("sparse"))
    path = f"/dev/shm{name}"
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.ftruncate(fd, TIB)
    os.close(fd)
    child = spawn(SPARSE_HOLDER.format(path=path, size=TIB))
    child.expect()
    started = time.monotonic()
    segment = segment_named(scan(ScanConfig(kinds=("shm",), proc=proc_view(tmp_path / "proc", [child.pid]))), name)
    assert time.monotonic() - started < 5
    assert segment.size == TIB
    assert 4096 <= segment.allocated <= 1 << 20
    (mapping,) = [holder for holder in segment.holders if holder.mapped]
    assert mapping.mapped_bytes == TIB
    text = run_ipcmon("snapshot", "--kind", "shm", "--pid", str(child.pid), timeout=60).stdout.decode()
    (row,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    assert row.split()[2:4] == ["1.0T", "4.0K"]


def test_ten_thousand_segments_are_all_listed(tmp_path: Path) -> None:
    prefix = f"ipcmon-test-{os.getpid()}-many{uuid.uuid4().hex[:6]}-"
    count = 10_000
    try:
        for index in range(count):
            os.close(os.open(f"/dev/shm/{prefix}{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        started = time.monotonic()
        snapshot = scan(ScanConfig(kinds=("shm",), proc=proc_view(tmp_path / "proc", [])))
        assert time.monotonic() - started < 20
        mine = {segment.name for segment in snapshot.shm if segment.name.startswith("/" + prefix)}
        assert mine == {f"/{prefix}{index}" for index in range(count)}
        text = run_ipcmon("snapshot", "--kind", "shm", timeout=90).stdout.decode()
        assert sum(line.startswith("/" + prefix) for line in text.splitlines()) == count
        dry_run = run_ipcmon("clean", "--match", f"/{prefix}*", timeout=90)
        assert dry_run.returncode == 0
        assert dry_run.stdout.decode().count(prefix) == count
        assert len(glob.glob(f"/dev/shm/{prefix}*")) == count, "the dry run removed something"
    finally:
        for path in glob.glob(f"/dev/shm/{prefix}*"):
            os.unlink(path)


MANY_FDS = """
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (12000, 12000))
    shm_fd = os.open({path!r}, os.O_RDWR)
    read_end, write_end = os.pipe()
    kept = [shm_fd, read_end, write_end]
    kept += [os.dup(shm_fd) for _ in range(3999)]
    kept += [os.dup(read_end) for _ in range(2999)]
    kept += [os.dup(write_end) for _ in range(2999)]
    say("ready", os.fstat(read_end).st_ino, len(kept))
    hold()
"""


def test_a_process_with_ten_thousand_descriptors_is_counted_exactly(
    spawn: Spawn, cleanup: Cleanup, tmp_path: Path
) -> None:
    name = cleanup.shm(new_name("manyfds"))
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
    child = spawn(MANY_FDS.format(path=f"/dev/shm{name}"))
    inode, total = map(int, child.expect())
    assert total == 10_000
    started = time.monotonic()
    snapshot = scan(ScanConfig(proc=proc_view(tmp_path / "proc", [child.pid])))
    assert time.monotonic() - started < 20
    segment = segment_named(snapshot, name)
    assert len([holder for holder in segment.holders if holder.pid == child.pid and holder.fd is not None]) == 4000
    (pipe,) = [pipe for pipe in snapshot.pipes if pipe.inode == inode]
    assert (len(pipe.readers), len(pipe.writers)) == (3000, 3000)
    assert "both-ends" in pipe.flags
    data = json.loads(run_ipcmon("snapshot", "--json", "--pid", str(child.pid), timeout=90).stdout)
    (shown,) = [segment for segment in data["shm"] if segment["name"] == name]
    assert len(shown["holders"]) == 4000
    (shown_pipe,) = [pipe for pipe in data["pipes"] if pipe["inode"] == inode]
    assert (len(shown_pipe["readers"]), len(shown_pipe["writers"])) == (3000, 3000)
    text = run_ipcmon("snapshot", "--pid", str(child.pid), timeout=90).stdout.decode()
    (row,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    assert row.count(f"{child.pid} python3 fd") == 4000
