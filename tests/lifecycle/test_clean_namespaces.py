"""`ipcmon clean` inside other IPC and mount namespaces (issue 15): an unattached SysV segment is re-checked and
removed inside its own namespace and nowhere else, and a container's POSIX orphan is unlinked through
/proc/PID/root after its device and inode were compared there; every attempt is logged with the namespace."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import subprocess
import sys
from pathlib import Path

from ipcmon.actions import remove_orphans
from ipcmon.collect import ScanConfig, ipcns, scan, sysv
from ipcmon.leaks import Recheck, find_leaks
from ipcmon.model import Place, ShmSegment, Snapshot
from tests.containers import Scene, container
from tests.helpers import REPO, new_name


def _key() -> int:
    return random.randrange(0x10000000, 0x7FFFFFFF)


def _tables(*scenes: Scene) -> dict[int, list[tuple[int, int, int]]]:
    """Each scene's SysV segments as (key, shmid, nattch), read inside its namespace."""
    found = ipcns.in_ipc_namespaces(
        {scene.ipc: [scene.pid] for scene in scenes},
        lambda inode: [(row["key"], row["shmid"], row["nattch"])
                       for row in sysv.parse_table(sysv.read_tables()[0] or b"")])
    assert not any(isinstance(rows, OSError) for rows in found.values()), found
    return {inode: rows for inode, rows in found.items() if not isinstance(rows, OSError)}


def _log(action_log: str, needle: str) -> list[str]:
    if not os.path.exists(action_log):
        return []
    return [line for line in Path(action_log).read_text().splitlines() if needle in line]


def test_clean_yes_removes_an_unattached_segment_inside_its_namespace_only(action_log: str) -> None:
    name = new_name("cleanns")
    key = _key()
    with container(name, name + "-q", key) as first, container(name, name + "-q", key) as second:
        first.tell("detach-sysv")
        glob = f"0x{key:08x}"
        dry = subprocess.run([sys.executable, "-m", "ipcmon", "clean", "--min-age", "0", "--match", glob],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
        # "in ipc:INODE", or "in LABEL ipc:INODE" once collect/namespaces.py names its container or unit
        assert re.search(f"sysv-shm key {glob} id {first.sysv_id} in (\\S+ )?ipc:{first.ipc}  ", dry.stdout), dry.stdout
        assert f"ipc:{second.ipc}" not in dry.stdout  # attached there: no leak
        done = subprocess.run([sys.executable, "-m", "ipcmon", "clean", "--yes", "--min-age", "0", "--match", glob],
                              capture_output=True, text=True, cwd=REPO, timeout=60)
        assert done.returncode == 0, done.stderr
        assert re.fullmatch(f"removed sysv-shm key {glob} id {first.sysv_id} in (\\S+ )?ipc:{first.ipc}\n",
                            done.stdout), done.stdout
        tables = _tables(first, second)
        assert tables[first.ipc] == []
        assert tables[second.ipc] == [(key, second.sysv_id, 1)]
        (line,) = _log(action_log, f"(sysv-shm:{first.ipc}:{first.sysv_id})")
        assert re.search(f"remove sysv-shm key {glob} id {first.sysv_id} \\(sysv-shm:{first.ipc}:{first.sysv_id}\\) "
                         f"in (\\S+ )?ipc:{first.ipc}: removed$", line), line


def test_removal_touches_only_the_namespace_asked_and_rechecks_there(action_log: str) -> None:
    name = new_name("rmidns")
    key = _key()
    with container(name, name + "-q", key) as first, container(name, name + "-q", key) as second:
        first.tell("detach-sysv")
        second.tell("detach-sysv")  # two orphans of the same key (and, typically, the same shmid)
        leaks = [leak for leak in find_leaks(scan(ScanConfig(kinds=("sysv",))))
                 if leak.sysv is not None and leak.sysv.ipc in (first.ipc, second.ipc)]
        by_namespace = {leak.sysv.ipc: leak for leak in leaks if leak.sysv is not None}
        assert set(by_namespace) == {first.ipc, second.ipc}
        mine, theirs = by_namespace[first.ipc], by_namespace[second.ipc]
        assert mine.place is not None and mine.place.ipc == first.ipc and mine.removable

        # Re-checked inside the namespace: a changed segment is kept.
        assert theirs.sysv is not None
        changed = dataclasses.replace(theirs, sysv=dataclasses.replace(theirs.sysv, ctime=theirs.sysv.ctime - 1))
        (kept,) = remove_orphans([changed])
        assert (kept.removed, kept.reason) == (False, "replaced or changed since it was listed (its key or ctime "
                                                      "differs)")
        (removed,) = remove_orphans([mine])
        assert (removed.removed, removed.reason) == (True, "removed")
        tables = _tables(first, second)
        assert tables[first.ipc] == []
        assert tables[second.ipc] == [(key, second.sysv_id, 0)]  # the same key and id elsewhere: untouched
        assert _log(action_log, f"(sysv-shm:{second.ipc}:{second.sysv_id})")[-1].endswith(
            f"ipc:{second.ipc}: kept: replaced or changed since it was listed (its key or ctime differs)")
    # Its namespace is gone with its processes: nothing to enter, nothing removed.
    (gone,) = remove_orphans([theirs])
    assert (gone.removed, gone.reason) == (False, "gone already (no process is left in its IPC namespace)")


def _orphan_segment(scene: Scene) -> ShmSegment:
    """The scene's unheld POSIX segment as collect/namespaces.py lists it: named through its holder's
    /proc/PID/root, placed in its namespaces (built by hand until that collector lands)."""
    path = f"/proc/{scene.pid}/root/dev/shm/{scene.name.removeprefix('/')}-orphan"
    st = os.stat(path)
    assert st.st_dev == scene.shm_dev
    return ShmSegment(name=scene.name + "-orphan", path=path, kind="shm", size=st.st_size,
                      allocated=st.st_blocks * 512, mode=st.st_mode & 0o777, uid=st.st_uid, gid=st.st_gid,
                      owner="root", group="root", mtime=st.st_mtime, ctime=st.st_ctime, dev=st.st_dev,
                      inode=st.st_ino, state="orphaned", place=Place(ipc=scene.ipc, mnt=scene.mnt))


def test_a_containers_posix_orphan_is_unlinked_through_its_root_after_a_check_there(action_log: str) -> None:
    name = new_name("posixns")
    with container(name, name + "-q", _key()) as first, container(name, name + "-q", _key()) as second:
        segments = (_orphan_segment(first), _orphan_segment(second))
        snapshot = Snapshot(taken_at=(segments[0].mtime or 0) + 60, kinds=("shm",), shm=segments)
        leaks = {leak.place.ipc: leak for leak in find_leaks(snapshot) if leak.place is not None}
        assert set(leaks) == {first.ipc, second.ipc}

        # The name now names another file (deleted and made again): its inode differs, so it is kept.
        other = leaks[second.ipc]
        assert other.path is not None
        os.unlink(other.path)
        os.close(os.open(other.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        (kept,) = remove_orphans([other], recheck=Recheck(snapshot))
        assert (kept.removed, kept.reason) == (False, "replaced by another object of the same name")
        assert os.path.exists(other.path)

        (removed,) = remove_orphans([leaks[first.ipc]], recheck=Recheck(snapshot))
        assert (removed.removed, removed.reason) == (True, "removed")
        assert not os.path.exists(segments[0].path or "")
        assert os.path.exists(f"/proc/{first.pid}/root/dev/shm/{first.name.removeprefix('/')}")  # its held one
        # Device numbers and inodes of a fresh tmpfs repeat from scene to scene: the unique name tells ours.
        (line,) = [line for line in _log(action_log, f"(shm:{first.shm_dev}:{segments[0].inode})")
                   if segments[0].name in line]
        assert line.endswith(f"in ipc:{first.ipc}: removed")
