"""`ipcmon clean` on real objects: what it removes (POSIX orphans, SysV segments with no attachment), what it
leaves (young orphans, deleted-but-held segments, other users' objects), and the action log line for each."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest
import sysv_ipc

from ipcmon.actions import remove_orphans
from ipcmon.collect import ScanConfig, scan
from ipcmon.leaks import SysvIdentity, find_leaks, matching
from tests.helpers import REPO, Cleanup, Spawn
from tests.reliability.cli import OTHER_UID, Unprivileged, unprivileged_setup

SHM_DIR = "/dev/shm"


def _prefix() -> str:
    return f"/ipcmon-test-{os.getpid()}-clean{uuid.uuid4().hex[:6]}"


def ipcmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipcmon", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=60)


def _orphan(cleanup: Cleanup, name: str, size: int = 4096) -> str:
    posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=size).close_fd()
    return name


def _log(action_log: str, needle: str) -> list[str]:
    """The action log's lines that mention needle (the log is shared by the whole test session)."""
    if not os.path.exists(action_log):
        return []
    return [line for line in Path(action_log).read_text().splitlines() if needle in line]


def _holding_child(spawn: Spawn, name: str) -> int:
    child = spawn(
        f"""
        import posix_ipc
        shm = posix_ipc.SharedMemory({name!r})
        say("ready"); hold()
        """
    )
    child.expect()
    return child.pid


def _sysv_orphan(cleanup: Cleanup, mode: int = 0o600) -> tuple[int, int]:
    """A SysV segment with a key of its own, written and detached (nattch 0): (key, shmid)."""
    while True:
        key = random.randint(0x10000000, 0x7FFFFFFF)
        try:
            memory = sysv_ipc.SharedMemory(key, sysv_ipc.IPC_CREX, mode=mode, size=8192)
        except sysv_ipc.ExistentialError:
            continue  # someone's key: pick another
        break
    cleanup.sysv_shm(memory.id)
    memory.write(b"x" * 4096)
    memory.detach()
    return key, memory.id


def _sysv_ids() -> set[int]:
    return {int(line.split()[1]) for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]}


def test_clean_dry_run_then_yes_removes_only_orphans(spawn: Spawn, cleanup: Cleanup, action_log: str) -> None:
    prefix = _prefix()
    orphan = _orphan(cleanup, prefix + "-orphan")
    queue = cleanup.mqueue(prefix + "-queue")
    posix_ipc.MessageQueue(queue, posix_ipc.O_CREX).close()
    held = _orphan(cleanup, prefix + "-held")
    _holding_child(spawn, held)

    dry = ipcmon("clean", "--min-age", "0", "--match", prefix + "*")
    assert dry.returncode == 0 and dry.stdout.startswith("would remove (dry run; add --yes to remove):\n")
    assert orphan in dry.stdout and held not in dry.stdout
    assert os.path.exists(SHM_DIR + orphan) and os.path.exists(SHM_DIR + held)
    assert _log(action_log, prefix) == [], "a dry run logs nothing"

    done = ipcmon("clean", "--yes", "--min-age", "0", "--match", prefix + "*")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removed shm {orphan}\n" in done.stdout and f"removed mqueue {queue}\n" in done.stdout
    assert not os.path.exists(SHM_DIR + orphan)
    assert os.path.exists(SHM_DIR + held)  # held: never touched, even though it matches
    lines = _log(action_log, prefix)
    assert len(lines) == 2 and all(line.endswith(": removed") for line in lines)
    assert any(f" remove shm {orphan} (shm:" in line for line in lines)
    assert any(f" remove mqueue {queue} (mqueue:" in line for line in lines)


def test_clean_leaves_what_changed_within_its_default_min_age_and_logs_it(cleanup: Cleanup, action_log: str) -> None:
    assert "(default 10s," in " ".join(ipcmon("clean", "--help").stdout.split())
    prefix = _prefix()
    young = _orphan(cleanup, prefix + "-young")
    old = _orphan(cleanup, prefix + "-old")
    an_hour_ago = time.time() - 3600
    os.utime(SHM_DIR + old, (an_hour_ago, an_hour_ago))

    dry = ipcmon("clean", "--match", prefix + "*")
    assert dry.returncode == 0
    would, left = dry.stdout.split("left alone:\n")
    assert old in would and young not in would
    assert re.search(f"{young}  0B allocated  age [0-9]s  \\(kept: changed [0-9]s ago, under --min-age 10s\\)\n", left)

    done = ipcmon("clean", "--yes", "--match", prefix + "*")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removed shm {old}\n" in done.stdout
    assert re.search(f"kept shm {young}: changed [0-9]s ago, under --min-age 10s\n", done.stdout)
    assert not os.path.exists(SHM_DIR + old) and os.path.exists(SHM_DIR + young)
    (kept,) = _log(action_log, young)
    assert re.search(": kept: changed [0-9]s ago, under --min-age 10s$", kept)
    (removed,) = _log(action_log, old)
    assert removed.endswith(": removed")

    now = ipcmon("clean", "--yes", "--min-age", "0", "--match", young)
    assert (now.returncode, now.stdout) == (0, f"removed shm {young}\n")


def test_clean_never_touches_a_deleted_but_held_segment_and_names_who_must_free_it(
    spawn: Spawn, cleanup: Cleanup, action_log: str
) -> None:
    name = cleanup.shm(_prefix() + "-pinned")
    child = spawn(
        f"""
        fd = os.open("/dev/shm" + {name!r}, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.ftruncate(fd, 4096)
        os.pwrite(fd, b"x" * 4096, 0)
        os.unlink("/dev/shm" + {name!r})
        say("ready", fd)
        hold()
        """,
        comm="ipcm-pinner",
    )
    (fd,) = child.expect()
    why = f"deleted but still held by {child.pid} ipcm-pinner fd {fd}: clean cannot free it: each holder must " \
          "close it (and unmap it) or exit"

    dry = ipcmon("clean", "--min-age", "0", "--match", name)
    assert dry.returncode == 0
    assert re.fullmatch(f"nothing to remove\nleft alone:\n  shm      {name}  4.0K allocated  age [0-9]s  "
                        f"\\(kept: {re.escape(why)}\\)\n", dry.stdout), dry.stdout
    done = ipcmon("clean", "--yes", "--min-age", "0", "--match", name)
    assert (done.returncode, done.stdout) == (0, f"nothing to remove\nkept shm {name}: {why}\n")
    (line,) = _log(action_log, name)
    assert line.endswith(f": kept: {why}")
    assert child.popen.poll() is None and os.path.exists(f"/proc/{child.pid}/fd/{fd}")


def test_clean_removes_an_orphaned_sysv_segment_after_checking_it_again(cleanup: Cleanup, action_log: str) -> None:
    key, shmid = _sysv_orphan(cleanup)
    glob = f"key 0x{key:08x} *"
    listed = ipcmon("leaks", "--json", "--match", glob)
    assert listed.returncode == 1, listed.stderr
    (leak,) = json.loads(listed.stdout)
    assert (leak["mechanism"], leak["problem"], leak["name"]) == ("sysv-shm", "orphaned", f"key 0x{key:08x} id {shmid}")
    # sysv_ipc fills a new segment (init_character): both pages are resident, as /proc/sysvipc/shm says (rss).
    assert (leak["size"], leak["allocated"], leak["queued"], leak["removable"]) == (8192, 8192, None, True)
    assert (leak["sysv"]["shmid"], leak["sysv"]["ipc_key"]) == (shmid, key)
    assert "clean --yes --match" in ipcmon("leaks", "--match", glob).stdout
    for spelling in (f"0x{key:08x}", str(shmid)):  # as ipcs prints the key and the shmid
        (same,) = json.loads(ipcmon("leaks", "--json", "--match", spelling).stdout)
        assert same["sysv"]["shmid"] == shmid, spelling

    young = ipcmon("clean", "--yes", "--match", glob)  # detached a moment ago: under the default --min-age
    assert young.returncode == 0 and "under --min-age 10s" in young.stdout and shmid in _sysv_ids()
    dry = ipcmon("clean", "--min-age", "0", "--match", glob)
    assert re.fullmatch(f"would remove \\(dry run; add --yes to remove\\):\n  sysv-shm key 0x{key:08x} id {shmid}  "
                        "8.0K allocated  age [0-9]s\n", dry.stdout), dry.stdout
    done = ipcmon("clean", "--yes", "--min-age", "0", "--match", glob)
    assert (done.returncode, done.stdout) == (0, f"removed sysv-shm key 0x{key:08x} id {shmid}\n")
    assert shmid not in _sysv_ids()
    assert _log(action_log, f"(sysv-shm:{shmid})")[-1].endswith(f"remove sysv-shm key 0x{key:08x} id {shmid} "
                                                                f"(sysv-shm:{shmid}): removed")


def test_a_sysv_segment_attached_or_changed_after_listing_is_kept(
    spawn: Spawn, cleanup: Cleanup, action_log: str
) -> None:
    key, shmid = _sysv_orphan(cleanup)
    (leak,) = matching(find_leaks(scan(ScanConfig(kinds=("sysv",)))), f"key 0x{key:08x} *")
    assert leak.sysv is not None and leak.removable

    changed = dataclasses.replace(leak, sysv=SysvIdentity(shmid, key, leak.sysv.ctime - 1))
    (outcome,) = remove_orphans([changed])
    assert (outcome.removed, outcome.reason) == (False, "replaced or changed since it was listed (its key or ctime "
                                                        "differs)")
    child = spawn(f"""
        import sysv_ipc
        memory = sysv_ipc.attach({shmid})
        say("ready")
        hold()
    """)
    child.expect()
    (outcome,) = remove_orphans([leak])
    assert (outcome.removed, outcome.reason) == (False, f"attached now (1 attachments, last by pid {child.pid})")
    assert shmid in _sysv_ids()
    lines = _log(action_log, f"(sysv-shm:{shmid})")
    assert lines[-2].endswith(": kept: replaced or changed since it was listed (its key or ctime differs)")
    assert lines[-1].endswith(f": kept: attached now (1 attachments, last by pid {child.pid})")


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup([])


def test_what_this_user_may_not_remove_is_not_removable_and_clean_keeps_it(
    nobody: Unprivileged, cleanup: Cleanup
) -> None:
    prefix = _prefix()
    # Another user's orphan, readable by nobody else: no process nobody cannot read could hold it (root's power to
    # open anything is not counted, health.qualify), so for nobody it is an orphan in fact, and not nobody's.
    other_orphan = _orphan(cleanup, prefix + "-other")
    os.chmod(SHM_DIR + other_orphan, 0o600)
    os.chown(SHM_DIR + other_orphan, OTHER_UID, OTHER_UID)
    key, shmid = _sysv_orphan(cleanup, mode=0o644)

    listed = nobody.run("leaks", "--json", "--match", prefix + "*")
    (leak,) = json.loads(listed.stdout)
    assert (leak["name"], leak["removable"]) == (other_orphan, False)
    assert leak["refusal"].startswith(f"not permitted: it belongs to {OTHER_UID}")
    (sysv_leak,) = json.loads(nobody.run("leaks", "--json", "--match", f"key 0x{key:08x} *").stdout)
    assert sysv_leak["removable"] is False
    assert sysv_leak["refusal"].startswith("not permitted: it belongs to root, and only its owner, its creator or root")
    text = nobody.run("leaks", "--match", f"key 0x{key:08x} *").stdout.decode()
    assert "clean --yes" not in text and "1 orphan is not yours to remove (run as root)" in text

    done = nobody.run("clean", "--yes", "--min-age", "0", "--match", f"key 0x{key:08x} *")
    assert done.returncode == 1
    assert done.stdout.decode().startswith(f"kept sysv-shm key 0x{key:08x} id {shmid}: not permitted")
    assert shmid in _sysv_ids()
    with open(nobody.action_log) as log:
        (line,) = [line for line in log if f"(sysv-shm:{shmid})" in line]
    assert " uid=65534(nobody) " in line and ": kept: not permitted" in line


def test_a_sysv_segment_never_attached_says_so(cleanup: Cleanup) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    key = random.randint(0x10000000, 0x7FFFFFFF)
    shmid = libc.shmget(key, 4096, 0o1000 | 0o2000 | 0o600)  # IPC_CREAT | IPC_EXCL: made, never shmat'ed
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    cleanup.sysv_shm(shmid)
    (leak,) = json.loads(ipcmon("leaks", "--json", "--match", str(shmid)).stdout)
    assert leak["hint"] == f"created by pid {os.getpid()}, never attached"
