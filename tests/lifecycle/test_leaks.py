"""`ipcmon leaks` and `ipcmon clean` on real orphaned, held and unlinked-but-mapped objects."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import uuid

import posix_ipc

from ipcmon.actions import remove_orphans
from ipcmon.collect import ScanConfig, scan
from ipcmon.leaks import find_leaks, matching, parse_duration
from tests.helpers import REPO, Cleanup, Spawn


def _prefix() -> str:
    return f"/ipcmon-test-{os.getpid()}-leak{uuid.uuid4().hex[:6]}"


def ipcmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipcmon", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=60)


def _holding_child(spawn: Spawn, name: str) -> int:
    child = spawn(
        f"""
        import posix_ipc
        shm = posix_ipc.SharedMemory({name!r})
        map_fd(shm.fd, 4096); shm.close_fd()
        say("ready"); hold()
        """
    )
    child.expect()
    return child.pid


def test_leaks_exit_codes_and_json(spawn: Spawn, cleanup: Cleanup) -> None:
    prefix = _prefix()
    none = ipcmon("leaks", "--match", prefix + "*")
    assert (none.returncode, none.stdout.strip()) == (0, "no leaks found")

    orphan = cleanup.shm(prefix + "-orphan")
    posix_ipc.SharedMemory(orphan, posix_ipc.O_CREX, size=8192).close_fd()
    queue = cleanup.mqueue(prefix + "-queue")
    posix_ipc.MessageQueue(queue, posix_ipc.O_CREX).close()
    semaphore = cleanup.semaphore(prefix + "-sem")
    posix_ipc.Semaphore(semaphore, posix_ipc.O_CREX).close()
    held = cleanup.shm(prefix + "-held")
    posix_ipc.SharedMemory(held, posix_ipc.O_CREX, size=4096).close_fd()
    _holding_child(spawn, held)
    pinned = cleanup.shm(prefix + "-pinned")
    memory = posix_ipc.SharedMemory(pinned, posix_ipc.O_CREX, size=4096)
    with mmap.mmap(memory.fd, 4096) as page:
        page.write(b"x" * 4096)  # written: the page is allocated, so the deleted segment pins it
    memory.close_fd()
    _holding_child(spawn, pinned)
    posix_ipc.unlink_shared_memory(pinned)

    found = ipcmon("leaks", "--json", "--match", prefix + "*")
    assert found.returncode == 1, found.stderr
    by_name = {leak["name"]: leak for leak in json.loads(found.stdout)}
    sem_name = "/sem." + semaphore.lstrip("/")
    assert set(by_name) == {orphan, queue, sem_name, pinned}
    assert by_name[orphan]["problem"] == "orphaned" and by_name[orphan]["mechanism"] == "shm"
    assert "ipcmon tests" in by_name[orphan]["hint"] and "owner root" in by_name[orphan]["hint"]
    assert by_name[queue]["mechanism"] == "mqueue"
    assert by_name[sem_name]["mechanism"] == "sem"
    assert by_name[pinned]["problem"] == "deleted-but-held" and by_name[pinned]["removable"] is False
    assert by_name[orphan]["age"] >= 0

    text = ipcmon("leaks", "--match", prefix + "*")
    assert text.returncode == 1 and "ipcmon clean --yes" in text.stdout

    young = ipcmon("leaks", "--min-age", "1h", "--match", prefix + "*")
    assert young.returncode == 0


def test_clean_dry_run_then_yes_removes_only_orphans(spawn: Spawn, cleanup: Cleanup) -> None:
    prefix = _prefix()
    orphan = cleanup.shm(prefix + "-orphan")
    posix_ipc.SharedMemory(orphan, posix_ipc.O_CREX, size=4096).close_fd()
    queue = cleanup.mqueue(prefix + "-queue")
    posix_ipc.MessageQueue(queue, posix_ipc.O_CREX).close()
    held = cleanup.shm(prefix + "-held")
    posix_ipc.SharedMemory(held, posix_ipc.O_CREX, size=4096).close_fd()
    _holding_child(spawn, held)
    shm_dir = "/dev/shm"

    dry = ipcmon("clean", "--match", prefix + "*")
    assert dry.returncode == 0 and "dry run" in dry.stdout
    assert orphan in dry.stdout and held not in dry.stdout
    assert os.path.exists(shm_dir + orphan) and os.path.exists(shm_dir + held)

    done = ipcmon("clean", "--yes", "--match", prefix + "*")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removed shm {orphan}" in done.stdout and f"removed mqueue {queue}" in done.stdout
    assert not os.path.exists(shm_dir + orphan)
    assert os.path.exists(shm_dir + held)  # held: never touched, even though it matches


def test_clean_rechecks_before_unlinking(spawn: Spawn, cleanup: Cleanup) -> None:
    prefix = _prefix()
    name = cleanup.shm(prefix + "-late")
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
    stale = matching(find_leaks(scan(ScanConfig(kinds=("shm",)))), name)
    assert [leak.name for leak in stale] == [name]
    pid = _holding_child(spawn, name)  # someone attaches after the leak was listed
    results = remove_orphans(stale)
    assert [(r.removed, r.reason.startswith(f"held now by {pid}")) for r in results] == [(False, True)]
    assert os.path.exists("/dev/shm" + name)


def test_parse_duration() -> None:
    assert [parse_duration(text) for text in ("90", "90s", "5m", "2h", "1d", "0.5h")] == [90, 90, 300, 7200, 86400,
                                                                                          1800]
