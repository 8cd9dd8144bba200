"""`ipcmon snapshot` reads the journal (issue 16): who created each POSIX segment and queue (a CREATED BY column,
``created_by`` in JSON) and who sent each process its signals (LAST SENT, ``received``), from real objects a real
child made before it exited and a real sleeper that blocks SIGUSR1; without a journal, the output of before."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import time
from pathlib import Path

import pytest

from ipcmon.journal import Journal
from ipcmon.model import Actor, Attribution, file_key
from ipcmon.safe import printable
from tests.helpers import BLOCKS_SIGUSR1, Cleanup, Spawn, new_name
from tests.journal.common import actor_of, created
from tests.test_snapshot_cli import ipcmon, rows_with, snapshot_json

pytestmark = pytest.mark.timeout(120)

HOSTILE = "[b]\x1b]2;p\x07"
"""A comm as a hostile process could name itself: markup and a terminal escape."""

KINDS = ("--kind", "shm,mqueue,signal")


def _signal_row(output: bytes, pid: object) -> bytes:
    """The signals table's row of the process pid."""
    table = output.split(b"\n== Signals", 1)[1].split(b"\n== ", 1)[0]
    (row,) = [line for line in table.split(b"\n") if line.startswith(b"%d " % pid)]  # type: ignore[str-format]
    return row


def _sent(target: int, signo: int, sender: Actor, when: float, *, blocked: bool) -> Attribution:
    """What tracefs records of a real kill(2): sender, target, signal, and whether the target blocks it."""
    return Attribution(when, "sent", "signal", f"{target} ipcmon-snap-slp", sender, "tracefs", f"signal:{target}",
                       signal=signo, target=target, target_comm="ipcmon-snap-slp", result="delivered",
                       blocked=blocked)


@pytest.fixture
def made(spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> dict[str, object]:
    """A segment and a queue a real child created and left behind when it exited, a real sleeper that blocks
    SIGUSR1 and has one pending, and a journal that says who created both and who signalled the sleeper."""
    segment, queue = new_name(), new_name()
    cleanup.shm(segment)
    cleanup.mqueue(queue)
    creator = spawn(f"""
        import posix_ipc
        posix_ipc.SharedMemory({segment!r}, posix_ipc.O_CREX, size=4096).close_fd()
        posix_ipc.MessageQueue({queue!r}, posix_ipc.O_CREX).close()
        say("ready")
        hold()
        """, comm="ipcmon-snap-mk")
    creator.expect()
    shm_stat = os.stat(f"/dev/shm/{segment.lstrip('/')}")
    queue_stat = os.stat(f"/dev/mqueue/{queue.lstrip('/')}")
    actor = actor_of(creator.pid)
    sleeper = spawn(BLOCKS_SIGUSR1, comm="ipcmon-snap-slp")
    sleeper.expect()
    os.kill(sleeper.pid, signal.SIGUSR1)  # blocked: it stays pending, so the signals table lists the sleeper
    sender = dataclasses.replace(actor_of(os.getpid()), comm=HOSTILE)
    path = tmp_path / "journal.db"
    journal = Journal(str(path))
    journal.start()
    now = time.time()
    journal.add(created(segment, actor, key=file_key("shm", shm_stat.st_dev, shm_stat.st_ino)))
    journal.add(created(queue, dataclasses.replace(actor, comm=HOSTILE), mechanism="mqueue",
                        key=file_key("mqueue", queue_stat.st_dev, queue_stat.st_ino)))
    journal.add(_sent(sleeper.pid, signal.SIGTERM, actor_of(os.getpid()), now - 0.5, blocked=False))
    journal.add(_sent(sleeper.pid, signal.SIGUSR1, sender, now, blocked=True))
    journal.stop()
    creator.stop()  # it exits without unlinking either
    return {"segment": segment, "queue": queue, "creator": creator.pid, "sleeper": sleeper.pid, "db": str(path),
            "me": os.getpid()}


def test_text_names_the_creator_of_each_object_and_the_last_sender(made: dict[str, object]) -> None:
    result = ipcmon("snapshot", *KINDS, "--db", str(made["db"]))
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr and b"note:" not in result.stderr, result.stderr
    out = result.stdout
    creator, hostile = made["creator"], printable(HOSTILE).encode()
    assert b"\x1b" not in out and b"\x07" not in out
    shm_table = out.split(b"== POSIX shared memory and semaphores", 1)[1].split(b"\n== ", 1)[0]
    assert re.search(rb"  CREATED BY +HOLDERS$", shm_table.split(b"\n")[1])  # before the last column, which runs on
    (segment_row,) = rows_with(out, str(made["segment"]).encode() + b" ")
    assert b"  %d ipcmon-snap-mk, exited  " % creator in segment_row, segment_row
    (queue_row,) = rows_with(out, str(made["queue"]).encode() + b" ")
    assert b"  %d %s, exited  " % (creator, hostile) in queue_row, queue_row  # inert: \x1b and \x07 as text
    header = out.split(b"== Signals", 1)[1].split(b"\n")[1]
    assert header.split()[:4] == [b"PID", b"COMM", b"PENDING", b"LAST"], header
    sleeper_row = _signal_row(out, made["sleeper"])
    # The blocked SIGUSR1 is shown before the newer-or-not SIGTERM (marked first), with the count of the others.
    assert "▲ SIGUSR1 ← ".encode() + b"%d %s, blocked +1" % (made["me"], hostile) in sleeper_row, sleeper_row


def test_json_has_created_by_received_and_the_journal(made: dict[str, object]) -> None:
    data = snapshot_json(*KINDS, "--db", str(made["db"]))
    assert data["journal"] == made["db"]
    (segment,) = [entry for entry in data["shm"] if entry["name"] == made["segment"]]
    assert segment["created_by"]["pid"] == made["creator"]
    assert segment["created_by"]["comm"] == "ipcmon-snap-mk"
    assert segment["created_by"]["exited"] is True and segment["created_by"]["source"] == "fanotify"
    (queue,) = [entry for entry in data["mqueues"] if entry["name"] == made["queue"]]
    assert (queue["created_by"]["pid"], queue["created_by"]["comm"]) == (made["creator"], HOSTILE)  # raw in JSON
    (sleeper,) = [entry for entry in data["signals"] if entry["pid"] == made["sleeper"]]
    received = sleeper["received"]
    assert [(sent["signal"], sent["outcome"]) for sent in received] == [("SIGUSR1", "blocked, pending"),
                                                                       ("SIGTERM", "delivered")]  # newest first
    assert received[0]["sender"]["pid"] == made["me"] and received[0]["sender"]["comm"] == HOSTILE
    assert received[0]["time"] > received[1]["time"]
    others = [entry for entry in data["signals"] if entry["pid"] != made["sleeper"]]
    assert others and all(entry["received"] == [] for entry in others)


def test_without_a_journal_nothing_new_is_shown(spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> None:
    segment = cleanup.shm(new_name())
    os.close(os.open(f"/dev/shm/{segment.lstrip('/')}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    sleeper = spawn(BLOCKS_SIGUSR1, comm="ipcmon-snap-slp")
    sleeper.expect()
    os.kill(sleeper.pid, signal.SIGUSR1)
    missing = str(tmp_path / "none.db")
    result = ipcmon("snapshot", *KINDS, "--db", missing)
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    assert rows_with(result.stdout, segment.encode() + b" ") and b"ipcmon-snap-slp" in _signal_row(result.stdout,
                                                                                                sleeper.pid)
    assert b"CREATED BY" not in result.stdout and b"LAST SENT" not in result.stdout
    data = snapshot_json(*KINDS, "--db", missing)
    assert data["journal"] is None
    (entry,) = [entry for entry in data["shm"] if entry["name"] == segment]
    assert entry["created_by"] is None
    assert all(entry["received"] == [] for entry in data["signals"]) and data["signals"]
    assert all(queue["created_by"] is None for queue in data["mqueues"])
    assert not os.path.exists(missing)  # reading creates no journal


def test_a_journal_that_knows_none_of_them_adds_no_column(spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> None:
    segment = cleanup.shm(new_name())
    os.close(os.open(f"/dev/shm/{segment.lstrip('/')}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    path = tmp_path / "journal.db"
    journal = Journal(str(path))
    journal.start()
    journal.add(created(new_name(), actor_of(os.getpid())))  # another object's creator
    journal.stop()
    result = ipcmon("snapshot", *KINDS, "--db", str(path))
    assert result.returncode == 0 and b"note:" not in result.stderr, result.stderr
    assert rows_with(result.stdout, segment.encode() + b" ")
    assert b"CREATED BY" not in result.stdout
    data = snapshot_json(*KINDS, "--db", str(path))
    assert data["journal"] == str(path)
    (entry,) = [entry for entry in data["shm"] if entry["name"] == segment]
    assert entry["created_by"] is None


def test_a_corrupt_journal_is_a_note_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"not a database\n" * 100)
    result = ipcmon("snapshot", *KINDS, "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert b"Traceback" not in result.stderr
    assert b"note: " in result.stderr and b"creators and senders unknown" in result.stderr, result.stderr
    assert b"CREATED BY" not in result.stdout
