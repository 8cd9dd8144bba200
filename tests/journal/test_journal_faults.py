"""A full disk and a corrupt or locked journal, for real (issue 16): the recorder says so and goes on in memory,
and a full disk is written again once there is room; readers (leaks) give a note and the same output otherwise."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import posix_ipc

from ipcmon.journal import Journal
from tests.helpers import REPO, Cleanup, new_name
from tests.journal.common import actor_of, created, started
from tests.reliability.namespace import run_code

GARBAGE = bytes(range(256)) * 64
"""16 KiB that are no SQLite database (its header is 'SQLite format 3\\0')."""

FULL_DISK = """
import json, os, subprocess, tempfile, time
from ipcmon.journal import Journal, JournalReader
from ipcmon.model import Actor, Attribution

directory = tempfile.mkdtemp(prefix="ipcmon-test-full-")
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ipcmon-test-journal", directory], check=True)
try:
    ballast = directory + "/ballast"
    with open(ballast, "wb") as file:
        file.write(b"b" * (640 * 1024))  # tmpfs pages written: room for the journal is what is left
    said = []
    journal = Journal(directory + "/j.db", retry_every=0.2, on_problem=said.append)
    journal.start()
    me = Actor(os.getpid(), "filler", ("python3", "filler"), 0, 1)
    added = 0
    while journal.problem is None and added < 100_000:
        journal.add_all(Attribution(time.time(), "created", "shm", f"/ipcmon-test-full-{added + i}", me, "fanotify")
                        for i in range(200))
        added += 200
        journal.flush()
    kind = journal.problem.kind if journal.problem is not None else None
    in_memory = len(journal.memory)
    with JournalReader(directory + "/j.db") as reader:
        warned = reader.warnings(0)
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    os.unlink(ballast)  # room again: the next retry writes what memory kept
    deadline = time.time() + 20
    while journal.problem is not None and time.time() < deadline:
        journal.add(Attribution(time.time(), "created", "shm", f"/ipcmon-test-full-{added}", me, "fanotify"))
        added += 1
        journal.flush()
        time.sleep(0.05)
    recovered = journal.problem is None
    journal.stop()
    with JournalReader(directory + "/j.db") as reader:
        rows = len(reader.attributions_by_process(os.getpid(), limit=10**7))
        notes = [note.text for note in reader.notes()]
    print(json.dumps({"kind": kind, "in_memory": in_memory, "free": free, "said": said, "added": added,
                      "rows": rows, "notes": notes, "warned": warned, "recovered": recovered,
                      "dropped": journal.dropped}))
finally:
    subprocess.run(["umount", directory], check=True)
    os.rmdir(directory)
"""


def test_a_full_disk_is_said_kept_in_memory_and_written_when_there_is_room() -> None:
    report = run_code(FULL_DISK, timeout=180)
    assert report["kind"] == "full", report
    assert report["in_memory"] > 0 and report["free"] < 64 * 1024
    assert "is full: recording goes on in memory" in report["said"][0]
    assert len(report["warned"]) == 1 and "is full: what the recorder saw lately may be missing" in report["warned"][0]
    assert report["recovered"] and "is written again" in report["said"][-1]
    # Nothing was lost: what memory kept went in once there was room, and a note says when the gap was.
    assert report["dropped"] == 0 and report["rows"] == report["added"]
    assert len(report["notes"]) == 1 and "could not be written from" in report["notes"][0]
    assert "records kept in memory were written" in report["notes"][0]


def test_a_corrupt_journal_is_said_left_untouched_and_recording_goes_on_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(GARBAGE)
    journal, said = started(path)
    me = actor_of(os.getpid())
    journal.add_all(created(f"/ipcmon-test-corrupt-{i}", me) for i in range(10))
    assert journal.flush()
    journal.stop()
    assert journal.problem is not None and journal.problem.kind == "corrupt"
    assert len(said) == 1 and "is corrupt" in said[0] and "recording goes on in memory" in said[0]
    assert len(journal.memory) == 10
    assert path.read_bytes() == GARBAGE  # the user's file is theirs to move aside


def test_ipcmon_record_on_a_corrupt_journal_says_so_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(GARBAGE)
    recorder = subprocess.Popen([sys.executable, "-m", "ipcmon", "record", "--db", str(path), "--interval", "0.2"],
                                cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        recorder.send_signal(signal.SIGTERM)
        _, errors = recorder.communicate(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    assert recorder.returncode == 0, errors
    assert "is corrupt" in errors and "recording goes on in memory" in errors and "to in memory" in errors
    assert path.read_bytes() == GARBAGE


def _leaks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipcmon", "leaks", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def _same(text: str) -> str:
    return re.sub(r"\b\d+s\b", "Ns", text)  # AGE moves on between two runs


def _orphan(cleanup: Cleanup) -> str:
    name = cleanup.shm(new_name("journal"))
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
    return name


def test_leaks_with_a_corrupt_journal_gives_a_note_and_the_same_output(tmp_path: Path, cleanup: Cleanup) -> None:
    name = _orphan(cleanup)
    garbage = tmp_path / "journal.db"
    garbage.write_bytes(GARBAGE)
    without = _leaks("--match", name, "--db", str(tmp_path / "none.db"))
    corrupt = _leaks("--match", name, "--db", str(garbage))
    assert without.returncode == corrupt.returncode == 1
    assert name in corrupt.stdout and "who created" not in corrupt.stdout
    assert _same(corrupt.stdout) == _same(without.stdout)
    assert "journal" not in without.stderr
    assert re.search(r"note: the journal .* is corrupt .*: creators unknown", corrupt.stderr), corrupt.stderr
    as_json = _leaks("--match", name, "--db", str(garbage), "--json")
    assert as_json.returncode == 1 and [leak["created_by"] for leak in json.loads(as_json.stdout)] == [None]


def test_leaks_with_a_locked_journal_gives_a_note_and_the_same_output(tmp_path: Path, cleanup: Cleanup) -> None:
    name = _orphan(cleanup)
    path = tmp_path / "journal.db"
    journal = Journal(str(path))
    journal.start()
    journal.stop()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("INSERT INTO notes (time, text) VALUES (0, 'held')")
        locked = _leaks("--match", name, "--db", str(path))
    finally:
        holder.close()
    without = _leaks("--match", name, "--db", str(tmp_path / "none.db"))
    assert locked.returncode == without.returncode == 1
    assert _same(locked.stdout) == _same(without.stdout)
    assert re.search(r"note: the journal .* is locked by another process .*: creators unknown", locked.stderr), \
        locked.stderr
    released = _leaks("--match", name, "--db", str(path))
    assert "journal" not in released.stderr and f"  {name}: creator unknown\n" in released.stdout
