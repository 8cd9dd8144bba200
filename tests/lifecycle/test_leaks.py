"""`ipcmon leaks` on real orphaned, held and unlinked-but-held objects: its columns, JSON, remedies and --match."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import posix_ipc

from ipcmon.leaks import parse_duration
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


def _deleted_but_held(spawn: Spawn, name: str, *, wait: float = 0.0) -> tuple[int, int, float]:
    """A child creates name, writes its first page, unlinks it after `wait` seconds and keeps its descriptor:
    (pid, fd, the segment's ctime after the unlink, by fstat in the child)."""
    child = spawn(
        f"""
        import time
        fd = os.open("/dev/shm" + {name!r}, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.ftruncate(fd, 8192)
        os.pwrite(fd, b"x" * 4096, 0)  # the first page is allocated: the deleted segment pins it
        time.sleep({wait})
        os.unlink("/dev/shm" + {name!r})
        say("ready", fd, os.fstat(fd).st_ctime)
        hold()
        """,
        comm="ipcm-holder",
    )
    fd, ctime = child.expect()
    return child.pid, int(fd), float(ctime)


def test_leaks_says_when_nothing_matches_and_when_what_matches_does_not_leak(spawn: Spawn, cleanup: Cleanup) -> None:
    prefix = _prefix()
    for command in (("leaks",), ("clean",), ("clean", "--yes")):
        none = ipcmon(*command, "--match", prefix + "*")
        assert (none.returncode, none.stdout) == (0, f"nothing matches {prefix}*\n"), command
    as_json = ipcmon("leaks", "--json", "--match", prefix + "*")
    assert (as_json.returncode, as_json.stdout, as_json.stderr) == (0, "[]\n", f"nothing matches {prefix}*\n")

    held = cleanup.shm(prefix + "-held")
    posix_ipc.SharedMemory(held, posix_ipc.O_CREX, size=4096).close_fd()
    _holding_child(spawn, held)
    # With or without the leading slash (as ls /dev/shm prints it), the held segment matches and is no leak.
    for glob in (prefix + "*", prefix[1:] + "*"):
        clean = ipcmon("leaks", "--match", glob)
        assert (clean.returncode, clean.stdout) == (0, f"no leaks found among 1 object matching {glob}\n")


def test_leaks_columns_and_json_say_what_each_number_is(spawn: Spawn, cleanup: Cleanup) -> None:
    prefix = _prefix()
    orphan = cleanup.shm(prefix + "-orphan")
    memory = posix_ipc.SharedMemory(orphan, posix_ipc.O_CREX, size=8192)
    os.pwrite(memory.fd, b"x" * 4096, 0)  # one page of two allocated
    memory.close_fd()
    queue = cleanup.mqueue(prefix + "-queue")
    sender = posix_ipc.MessageQueue(queue, posix_ipc.O_CREX)
    sender.send(b"12345678901")
    sender.close()
    semaphore = cleanup.semaphore(prefix + "-sem")
    posix_ipc.Semaphore(semaphore, posix_ipc.O_CREX).close()
    held = cleanup.shm(prefix + "-held")
    posix_ipc.SharedMemory(held, posix_ipc.O_CREX, size=4096).close_fd()
    _holding_child(spawn, held)
    pinned = cleanup.shm(prefix + "-pinned")
    pid, fd, ctime = _deleted_but_held(spawn, pinned, wait=1.5)

    found = ipcmon("leaks", "--json", "--match", prefix + "*")
    assert found.returncode == 1, found.stderr
    by_name = {leak["name"]: leak for leak in json.loads(found.stdout)}
    assert set(by_name) == {orphan, queue, semaphore, pinned}
    assert "bytes" not in by_name[orphan]
    numbers = {name: (leak["size"], leak["allocated"], leak["queued"]) for name, leak in by_name.items()}
    assert numbers[orphan] == (8192, 4096, None)
    assert numbers[queue] == (None, None, 11)
    assert numbers[pinned] == (8192, 4096, None)
    assert numbers[semaphore] == (32, 4096, None)  # sem_open sizes the file to a sem_t and writes it
    assert by_name[orphan]["problem"] == "orphaned" and by_name[orphan]["mechanism"] == "shm"
    assert "ipcmon tests" in by_name[orphan]["hint"] and "owner root" in by_name[orphan]["hint"]
    assert by_name[queue]["mechanism"] == "mqueue"
    assert by_name[semaphore]["mechanism"] == "sem"
    assert [by_name[name]["removable"] for name in (orphan, queue, semaphore)] == [True, True, True]
    assert by_name[orphan]["age"] >= 0

    deleted = by_name[pinned]
    assert (deleted["problem"], deleted["removable"], deleted["path"]) == ("deleted-but-held", False, None)
    assert f"held by {pid} ipcm-holder fd {fd}" in deleted["hint"] and "clean cannot free it" in deleted["hint"]
    assert "clean cannot free it" in deleted["refusal"]
    # Its age is since the unlink (the ctime, read through the holder's descriptor), not since it was written:
    # the child waited 1.5 s between the two.
    taken = json.loads(ipcmon("snapshot", "--json", "--kind", "shm").stdout)
    (segment,) = [s for s in taken["shm"] if s["name"] == pinned]
    assert segment["ctime"] == ctime and segment["mtime"] is not None and segment["mtime"] < ctime - 1
    assert 0 <= deleted["age"] < 1.4 + (time.time() - ctime)

    text = ipcmon("leaks", "--match", prefix + "*")
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["LEVEL", "KIND", "PROBLEM", "NAME", "SIZE", "ALLOC", "QUEUED", "AGE", "HINT"]
    rows = {line.split()[4]: line.split()[5:8] for line in lines[1:-1]}  # LEVEL is a glyph and a word
    assert rows[orphan] == ["8.0K", "4.0K", "-"]
    assert rows[queue] == ["-", "-", "11B"]
    assert rows[pinned] == ["8.0K", "4.0K", "-"]
    closing = lines[-1]
    assert closing.startswith("4 leaks, 12K of memory and 11B queued in all; 3 orphans can be removed: "
                              f"ipcmon clean --yes --match '{prefix}*' (3 changed in the last 10s")
    assert "1 deleted segment still held: clean cannot free it" in closing

    young = ipcmon("leaks", "--min-age", "1h", "--match", prefix + "*")
    assert young.returncode == 0


def test_leaks_does_not_offer_clean_for_a_deleted_segment_alone(spawn: Spawn, cleanup: Cleanup) -> None:
    pinned = cleanup.shm(_prefix() + "-pinned")
    pid, fd, _ = _deleted_but_held(spawn, pinned)
    text = ipcmon("leaks", "--match", pinned)
    assert text.returncode == 1
    assert "clean --yes" not in text.stdout
    assert text.stdout.splitlines()[-1] == ("1 leak, 4.0K of memory in all; 1 deleted segment still held: clean "
                                            "cannot free it; its holders (HINT) must close it or exit.")
    (row,) = [line for line in text.stdout.splitlines() if pinned in line]
    assert f"held by {pid} ipcm-holder fd {fd}; clean cannot free it" in row


def test_parse_duration() -> None:
    assert [parse_duration(text) for text in ("90", "90s", "5m", "2h", "1d", "0.5h")] == [90, 90, 300, 7200, 86400,
                                                                                          1800]


def test_leaks_are_listed_most_serious_first_as_snapshot_lists_its_hazards(cleanup: Cleanup) -> None:
    """The leak demo's scene, made here: a queue with 32 bytes in it, then a 64 KiB and a 1 MiB segment, every
    page written, all orphaned. Oldest first would be the queue, 64K, 1M; the hazards' order (health.rank) is the
    bigger leak first and memory before queues: 1M, 64K, the queue, in the text, in --json and in snapshot."""
    import mmap

    prefix = _prefix()
    queue = cleanup.mqueue(prefix + "-q")
    sender = posix_ipc.MessageQueue(queue, posix_ipc.O_CREX)
    sender.send(b"x" * 16)
    sender.send(b"y" * 16)
    sender.close()
    sizes = {prefix + "-a": 64 << 10, prefix + "-b": 1 << 20}
    for name, size in sizes.items():
        time.sleep(0.05)  # each younger than the one before: age order is the reverse of the rank
        memory = posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=size)
        with mmap.mmap(memory.fd, size) as area:
            area.write(b"z" * size)
        memory.close_fd()
    expected = [prefix + "-b", prefix + "-a", queue]

    as_json = ipcmon("leaks", "--json", "--match", prefix + "*")
    assert as_json.returncode == 1, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert [leak["name"] for leak in listed] == expected
    ages = {leak["name"]: leak["age"] for leak in listed}
    assert ages[queue] > ages[prefix + "-a"] > ages[prefix + "-b"]  # so not merely oldest first

    text = ipcmon("leaks", "--match", prefix + "*")
    assert text.returncode == 1, text.stderr
    rows = [line.split() for line in text.stdout.splitlines()[1:4]]
    assert [(row[2], row[4], row[6] if row[2] == "shm" else row[7]) for row in rows] == [
        ("shm", prefix + "-b", "1.0M"), ("shm", prefix + "-a", "64K"), ("mqueue", queue, "32B")]

    snapshot = ipcmon("snapshot", "--kind", "shm,mqueue")
    section = snapshot.stdout.split("== Leaks and hazards, most serious first", 1)[1]
    ours = [word for line in section.splitlines() for word in line.split() if word.startswith(prefix)]
    assert ours == expected
