"""`ipcmon limits` lists the largest objects of each budget, and who created each when the journal knows (issue
16): real segments and queues, a real creator that exits, a journal written as a recorder would have."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from ipcmon.collect import ScanConfig, scan
from ipcmon.collect.capacity import largest_in_budgets, mq_reservation
from ipcmon.safe import printable
from ipcmon.who import actor_text
from tests.helpers import REPO, Cleanup, Spawn, new_name
from tests.journal.common import creation_of, written

OWNER = 65_432
"""A uid no process runs as: the queue is chowned to it, so that `limits --user` shows its RLIMIT_MSGQUEUE budget
and nothing else's (the machine's other queues are not ours to count on)."""


def _limits(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipcmon", "limits", "--user", str(OWNER), *options],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_limits_names_the_largest_objects_of_each_budget_and_their_creators(
        spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> None:
    base = new_name("limwho")
    big, small, queue = cleanup.shm(base + "-big"), cleanup.shm(base + "-small"), cleanup.mqueue(base + "-q")
    maker = spawn(f"""
        import mmap, posix_ipc
        segment = posix_ipc.SharedMemory({big!r}, posix_ipc.O_CREX, size=1 << 20)
        with mmap.mmap(segment.fd, 1 << 20) as memory:
            memory.write(b"x" * (1 << 20))  # allocated: 1 MiB on the tmpfs
        segment.close_fd()
        posix_ipc.SharedMemory({small!r}, posix_ipc.O_CREX, size=4096).close_fd()
        posix_ipc.MessageQueue({queue!r}, posix_ipc.O_CREX, max_messages=4, max_message_size=1024).close()
        say("ready")
        hold()
        """, comm="ipcmon-lim\x1b]2;x")  # a hostile comm: printed escaped
    maker.expect()
    os.chown(f"/dev/mqueue/{queue.lstrip('/')}", OWNER, -1)
    records = {name: creation_of(name, maker.pid, mechanism) for name, mechanism in
               ((big, "shm"), (queue, "mqueue"))}
    path = written(tmp_path / "journal.db", *records.values())
    maker.stop()  # gone: every object is an orphan now

    # The selection, in full (other segments on this machine may be larger than ours: all of them here).
    snapshot = scan(ScanConfig(kinds=("shm", "mqueue")))
    assert snapshot.capacity is not None
    fillers = largest_in_budgets(snapshot, snapshot.capacity, shown=len(snapshot.shm) + len(snapshot.mqueues))
    on_shm = [filler for filler in fillers if filler.budget == "/dev/shm"]
    assert [filler.bytes for filler in on_shm] == sorted((filler.bytes for filler in on_shm), reverse=True)
    assert {filler.name: filler.state for filler in on_shm if filler.name in (big, small)} == {
        big: "orphaned", small: "orphaned"}
    assert [filler.bytes for filler in on_shm if filler.name == big] == [1 << 20]
    (charged,) = [filler for filler in fillers if filler.budget == "RLIMIT_MSGQUEUE" and filler.uid == OWNER]
    assert (charged.name, charged.bytes, charged.state) == (queue, mq_reservation(4, 1024), "orphaned")

    text = _limits("--db", str(path))
    assert text.returncode == 0, text.stderr
    assert f"who created each: journal {path}" in text.stdout
    (row,) = [line for line in text.stdout.splitlines() if f" {queue} " in line]
    said = printable(actor_text(records[queue].actor))
    assert row.startswith(f"RLIMIT_MSGQUEUE {OWNER}") and f" {mq_reservation(4, 1024):,} " in row, row
    assert re.search(rf"  created by {re.escape(said)} at [\d:]+; that process exited .* without unlinking$", row), row
    assert "\x1b" not in text.stdout and r"ipcmon-lim\x1b]2;x" in row

    data = json.loads(_limits("--db", str(path), "--json").stdout)
    assert data["journal"] == str(path)
    (entry,) = [entry for entry in data["largest"] if entry["name"] == queue]
    assert (entry["budget"], entry["uid"], entry["bytes"]) == ("RLIMIT_MSGQUEUE", OWNER, mq_reservation(4, 1024))
    assert (entry["created_by"]["pid"], entry["created_by"]["comm"]) == (maker.pid, "ipcmon-lim\x1b]2;x")

    none = _limits("--db", str(tmp_path / "none.db"))
    assert "CREATOR" not in none.stdout and "created by" not in none.stdout
    (row,) = [line for line in none.stdout.splitlines() if f" {queue} " in line]
    assert row.split()[-1] == "orphaned"
    assert json.loads(_limits("--db", str(tmp_path / "none.db"), "--json").stdout)["journal"] is None
    assert not (tmp_path / "none.db").exists()  # reading never creates a journal
