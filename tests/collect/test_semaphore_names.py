"""A POSIX named semaphore is shown under the name sem_open(3) was given (/NAME, kind sem), everywhere: the scan,
the snapshot's JSON and text, `leaks`, `--match` and `clean`; its file stays /dev/shm/sem.NAME."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import posix_ipc

from ipcmon.collect.shm import file_name_of, name_of
from tests.helpers import REPO, Cleanup, new_name, scan_kinds


def ipcmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipcmon", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=60)


def _semaphore(cleanup: Cleanup) -> str:
    name = cleanup.semaphore(new_name("sem"))
    posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600, initial_value=1).close()
    assert os.path.exists("/dev/shm/sem." + name[1:]), "glibc keeps a semaphore as the file sem.NAME"
    return name


def test_names_and_files_map_both_ways() -> None:
    assert name_of("sem.foo") == ("sem", "/foo")
    assert name_of("foo") == ("shm", "/foo")
    assert name_of("sem.") == ("shm", "/sem.")  # no name after the prefix: sem_open cannot have made it
    assert file_name_of("sem", "/foo") == "sem.foo" and file_name_of("shm", "/foo") == "foo"


def test_scan_snapshot_json_and_text_name_a_semaphore_as_sem_open_does(cleanup: Cleanup) -> None:
    name = _semaphore(cleanup)
    file_path = "/dev/shm/sem." + name[1:]

    (found,) = [segment for segment in scan_kinds("shm").shm if segment.path == file_path]
    assert (found.name, found.kind, found.inode) == (name, "sem", os.stat(file_path).st_ino)

    data = json.loads(ipcmon("snapshot", "--json", "--kind", "shm").stdout)
    (record,) = [segment for segment in data["shm"] if segment["path"] == file_path]
    assert (record["name"], record["kind"]) == (name, "sem")
    assert not any(segment["name"] == "/sem." + name[1:] for segment in data["shm"])

    text = ipcmon("snapshot", "--kind", "shm").stdout
    (row,) = [line for line in text.splitlines() if line.startswith(name + " ")]  # the table, not the hazards
    assert row.split()[:2] == [name, "sem"]
    assert "/sem." + name[1:] not in text


def test_leaks_and_clean_know_a_semaphore_by_its_name_and_its_file_name(cleanup: Cleanup) -> None:
    name = _semaphore(cleanup)
    bare = name[1:]
    for pattern in (name, bare, "sem." + bare, "/sem." + bare, name[:-2] + "*"):
        found = ipcmon("leaks", "--json", "--match", pattern)
        assert found.returncode == 1, (pattern, found.stdout, found.stderr)
        (leak,) = json.loads(found.stdout)
        assert (leak["name"], leak["mechanism"], leak["path"]) == (name, "sem", "/dev/shm/sem." + bare), pattern
    text = ipcmon("leaks", "--match", "sem." + bare)
    (row,) = [line for line in text.stdout.splitlines() if name in line.split()]
    assert row.split()[2:6] == ["sem", "orphaned", name, "32B"]  # LEVEL is two words: ✖ bad

    done = ipcmon("clean", "--yes", "--min-age", "0", "--match", "sem." + bare)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"removed sem {name}\n" in done.stdout
    assert not os.path.exists("/dev/shm/sem." + bare)
