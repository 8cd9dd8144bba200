"""Budgets as nobody (issue 14): another user's queue cannot be opened to read its size, and other users'
processes cannot be read; the budgets say what is known and what is not, and nothing crashes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import posix_ipc
import pytest

from tests.helpers import Cleanup, new_name
from tests.reliability.cli import Unprivileged, assert_no_traceback, unprivileged_setup

CODE = """
import dataclasses, json
from ipcmon.collect import ScanConfig, scan
snapshot = scan(ScanConfig(mqueue_dir="/dev/mqueue"))
capacity = snapshot.capacity
print(json.dumps({"budgets": [dataclasses.asdict(b) for b in capacity.budgets], "hidden": snapshot.hidden_processes,
                  "mounts": [dataclasses.asdict(m) for m in capacity.shm_mounts], "notes": list(capacity.notes)}))
"""


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup(["watchdog"])


def test_budgets_as_nobody_say_what_they_cannot_see(nobody: Unprivileged, cleanup: Cleanup) -> None:
    name = cleanup.mqueue(new_name("cap"))
    queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, mode=0o600)  # root's, closed to nobody
    queue.close()
    result = subprocess.run(nobody.command([nobody.python, "-c", CODE]), capture_output=True, env=nobody.env(),
                            cwd=nobody.home, timeout=120)
    assert_no_traceback(result)
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert report["hidden"] > 0
    root = [b for b in report["budgets"] if b["name"] == "RLIMIT_MSGQUEUE" and b["uid"] == 0]
    assert len(root) == 1
    assert "could not be opened" in root[0]["note"]  # its size, and so its reservation, is unknown
    assert root[0]["limit"] is not None  # /proc/PID/limits is readable by anyone
    queues_max = next(b for b in report["budgets"] if b["name"] == "fs.mqueue.queues_max")
    assert queues_max["used"] >= 1 and queues_max["limit"] is not None
    assert {b["area"] for b in report["budgets"]} >= {"mqueue", "pipe", "sysv"}
    assert report["mounts"] and report["mounts"][0]["size"]
    # Holders inside the processes nobody cannot read are not in the top list, and a note says so.
    assert any(note.startswith("The top holders of /dev/shm leave out ") for note in report["notes"])
