"""`ipcmon record` across a restart, the recorder writing the exit of a creator, `leaks` naming it, and `history`
(issue 16): real segments, real processes, a journal in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import posix_ipc

from ipcmon.collect import ScanConfig
from ipcmon.journal import JournalReader, Note, ProcessExit, process_start_ticks
from ipcmon.model import Actor, Attribution, Event, file_key
from ipcmon.recorder import RECORD_KINDS, Recorder
from ipcmon.safe import printable
from ipcmon.who import actor_text
from tests.helpers import REPO, Cleanup, Spawn, new_name, wait_until
from tests.journal.common import actor_of, created, started


def _record(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ipcmon", "record", "--db", str(path), "--interval", "0.2"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)


def _stop(recorder: subprocess.Popen[str], signum: int = signal.SIGTERM) -> tuple[int, str]:
    try:
        recorder.send_signal(signum)
        _, errors = recorder.communicate(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
    return recorder.returncode, errors


def _events(path: Path, name: str) -> list[str]:
    if not path.exists():
        return []
    with JournalReader(str(path)) as reader:
        return [event.event for event in reader.events_for_object(name=name)]


def test_the_recorder_restarts_and_keeps_its_history(tmp_path: Path, cleanup: Cleanup) -> None:
    path = tmp_path / "journal.db"
    name = cleanup.shm(new_name("rec"))
    recorder = _record(path)
    try:
        wait_until(lambda: "recording" in (recorder.stderr.readline() if recorder.stderr else ""),
                   "the recorder to start", timeout=30)
        posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
        wait_until(lambda: "created" in _events(path, name), "the creation in the journal")
    finally:
        status, errors = _stop(recorder)
    assert status == 0, errors
    assert "stopped:" in errors and "records written" in errors
    recorder = _record(path)  # the same journal again: it goes on where it was
    try:
        wait_until(lambda: "recording" in (recorder.stderr.readline() if recorder.stderr else ""),
                   "the recorder to start again", timeout=30)
        posix_ipc.unlink_shared_memory(name)
        wait_until(lambda: "destroyed" in _events(path, name), "the removal in the journal")
    finally:
        status, errors = _stop(recorder, signal.SIGINT)  # Ctrl-C by hand: the same clean stop
    assert status == 0, errors
    assert _events(path, name) == ["created", "destroyed"]  # the first run's record is still there
    history = subprocess.run([sys.executable, "-m", "ipcmon", "history", name, "--db", str(path)],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    lines = history.stdout.splitlines()
    assert history.returncode == 0 and lines[0].startswith(f"{name}: 2 records in the journal")
    assert [line.split()[3] for line in lines[1:]] == ["created", "destroyed"]


class Handed:
    """An attribution source that hands over the records it is given (what the Attributor's drain() returns)."""

    def __init__(self) -> None:
        self.pending: list[Attribution] = []
        self.lost = 0

    def drain(self) -> list[Attribution]:
        pending, self.pending = self.pending, []
        return pending


def test_leaks_names_the_creator_that_exited_without_unlinking(tmp_path: Path, spawn: Spawn,
                                                             cleanup: Cleanup) -> None:
    exited_name = cleanup.shm(new_name("exited"))
    mine = cleanup.shm(new_name("mine"))
    unknown = cleanup.shm(new_name("unknown"))
    child = spawn(f"""
        import posix_ipc
        posix_ipc.SharedMemory({exited_name!r}, posix_ipc.O_CREX, size=4096).close_fd()
        say("ready")
        hold()
        """, comm="ipcm-creator")
    child.expect()
    creator = actor_of(child.pid)
    for name in (mine, unknown):
        posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()

    def key(name: str) -> str:
        st = os.stat("/dev/shm" + name)
        return file_key("shm", st.st_dev, st.st_ino)

    path = tmp_path / "journal.db"
    journal, said = started(path)
    source = Handed()
    recorder = Recorder(journal, config=ScanConfig(kinds=RECORD_KINDS), source=source)
    source.pending = [created(exited_name, creator, key=key(exited_name)),
                      created(mine, actor_of(os.getpid()), key=key(mine))]
    recorder.poll()
    assert recorder.exits == 0  # both creators run
    child.stop()  # the creator exits; its segment stays
    recorder.poll()
    assert recorder.exits == 1
    journal.stop()
    assert said == []
    with JournalReader(str(path)) as reader:
        [gone] = reader.exits_of(child.pid)
    assert (gone.pid, gone.start_ticks, gone.comm) == (child.pid, creator.start_ticks, "ipcm-creator")

    glob = exited_name.rsplit("-", 2)[0] + "-*"
    leaks = subprocess.run([sys.executable, "-m", "ipcmon", "leaks", "--match", glob, "--db", str(path)],
                           capture_output=True, text=True, cwd=REPO, timeout=60)
    assert leaks.returncode == 1, leaks.stderr
    clock = r"\d\d:\d\d:\d\d"
    command = printable(actor_text(creator))[:60]  # '4988 ipcm-creator /usr/bin/python3 -c …', cut at COMMAND_MAX
    assert re.search(rf"^  {re.escape(exited_name)}: created by {re.escape(command)}.* at {clock}; "
                     rf"that process exited at {clock} without unlinking$", leaks.stdout, re.MULTILINE), leaks.stdout
    assert re.search(rf"^  {re.escape(mine)}: created by {os.getpid()} .* at {clock}; that process is still "
                     r"running$", leaks.stdout, re.MULTILINE), leaks.stdout
    assert f"  {unknown}: creator unknown\n" in leaks.stdout
    as_json = subprocess.run([sys.executable, "-m", "ipcmon", "leaks", "--match", glob, "--json"],
                             capture_output=True, text=True, cwd=REPO, timeout=60,
                             env={**os.environ, "IPCMON_JOURNAL": str(path)})
    by_name = {leak["name"]: leak["created_by"] for leak in json.loads(as_json.stdout)}
    assert by_name[unknown] is None and by_name[mine]["exited"] is False
    found = by_name[exited_name]
    assert (found["pid"], found["comm"], found["start_ticks"], found["exited"]) == (
        child.pid, "ipcm-creator", creator.start_ticks, True)
    assert abs(found["exited_at"] - gone.time) < 0.001 and found["source"] == "fanotify"


def test_history_of_an_object_and_of_a_process_text_and_json(tmp_path: Path) -> None:
    me = actor_of(os.getpid())
    hostile = "/ipcmon-test-hist-\x1b]2;x\x07-\udcff"
    now = time.time()
    sender = Actor(4_100_000, "kill\x1b[2J", ("kill", "-USR1", str(me.pid)), 0, 77)
    records = [
        created(hostile, sender, key="shm:9:1", when=now - 3),
        Event(now - 2.9, "shm", "created", hostile, "shm:9:1", source="inotify", detail="4096 bytes"),
        Event(now - 2, "shm", "attached", hostile, "shm:9:1", me.pid, me.comm, "poll", "fd 3 rw"),
        Attribution(now - 1.5, "sent", "signal", f"{me.pid} python3", sender, "tracefs", f"signal:{me.pid}",
                    signal=10, target=me.pid, target_comm=me.comm, result="delivered", blocked=True),
        ProcessExit(now - 1, sender.pid, 77, sender.comm, sender.cmdline),
        # The same exit as a second journal writer recorded it, without the start time: listed once.
        ProcessExit(now - 0.9, sender.pid, None, sender.comm, None),
        # Its removal as fanotify saw it, and as inotify did, by its remover known by pid alone (no start time):
        # one line, and the same exit, listed once all the same.
        Attribution(now - 0.6, "removed", "shm", hostile, sender, "fanotify", "shm:9:1"),
        Event(now - 0.5, "shm", "destroyed", hostile, "shm:9:1", source="inotify",
              actor=Actor(sender.pid, sender.comm, None, 0, None)),
        Note(now - 2.5, "12 records dropped: the journal's writer fell behind (12 shm attached)"),
        Note(now - 3600, "an old note, before anything this history shows"),
    ]
    path = tmp_path / "journal.db"
    journal, _ = started(path)
    journal.add_all(records)
    assert journal.flush()
    journal.stop()

    def history(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ipcmon", "history", *args, "--db", str(path)],
                              capture_output=True, text=True, cwd=REPO, timeout=60, errors="surrogateescape")

    text = history(hostile.removeprefix("/"))
    assert text.returncode == 0, text.stderr
    assert "\x1b" not in text.stdout and "\x07" not in text.stdout and "\\x1b]2;x\\x07-\\xff" in text.stdout
    lines = text.stdout.splitlines()
    assert lines[0].endswith(f"4 records in the journal {path}")  # the signal is the process's, not the object's
    assert [line.split()[3] for line in lines[1:]] == ["created", "attached", "exited", "removed"]
    assert r"by 4100000 kill\x1b[2J kill -USR1" in lines[4] and lines[4].endswith("  [fanotify, inotify]")
    # One line for the creation fanotify and inotify both saw: who (fanotify's) and the size (inotify's).
    assert r"by 4100000 kill\x1b[2J kill -USR1" in lines[1] and lines[1].endswith("  4096 bytes  [fanotify, inotify]")
    assert f"pid {me.pid}" in lines[2] and "fd 3 rw" in lines[2]
    assert re.fullmatch(r"note: 1 note in the journal since .*, the last at .*: 12 records dropped: the journal's "
                        r"writer fell behind \(12 shm attached\)\n", text.stderr), text.stderr

    as_json = json.loads(history(hostile, "--json").stdout)
    assert [(r["type"], r.get("action") or r.get("event")) for r in as_json["records"]] == [
        ("attribution", "created"), ("event", "created"), ("event", "attached"), ("exit", None),
        ("attribution", "removed"), ("event", "destroyed")]  # JSON keeps each source's record, each exit once
    assert as_json["records"][0]["object"] == hostile  # raw, as stored: \udcff is the byte 0xff
    assert as_json["records"][0]["actor"]["cmdline"] == list(sender.cmdline or ())
    assert len(as_json["warnings"]) == 1 and "12 records dropped" in as_json["warnings"][0]

    process = history(f"pid:{me.pid}")
    assert process.returncode == 0
    sent = [line for line in process.stdout.splitlines() if "SIGUSR1" in line]
    assert len(sent) == 1 and f"→ {me.pid}" in sent[0] and ": blocked, pending by " in sent[0]
    assert "\x1b" not in process.stdout and r"by 4100000 kill\x1b[2J kill -USR1" in sent[0]
    by_sender = json.loads(history("pid:4100000", "--json").stdout)
    assert [r["type"] for r in by_sender["records"]] == ["attribution", "attribution", "exit", "attribution", "event"]
    by_sender_text = history("pid:4100000")
    assert "named" not in by_sender_text.stderr
    # The removal fanotify and inotify both saw is one line here too, and the exit two writers recorded one.
    assert [line.split()[3] for line in by_sender_text.stdout.splitlines()[1:]] == [
        "created", "SIGUSR1", "exited", "removed"]
    later = Actor(4_100_000, "reused", None, 0, 999)  # the kernel gave the pid to another process later
    journal, _ = started(path)
    journal.add(created("/ipcmon-test-hist-later", later, key="shm:9:2"))
    assert journal.flush()
    journal.stop()
    assert "note: pid 4100000 named 2 processes in the journal (start ticks 77, 999)" in history("pid:4100000").stderr

    assert history("/ipcmon-test-never-there").returncode == 1
    missing = subprocess.run([sys.executable, "-m", "ipcmon", "history", "pid:1", "--db", str(tmp_path / "no.db")],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert missing.returncode == 2 and "no journal at" in missing.stderr
    assert process_start_ticks(me.pid) == me.start_ticks


STORM = """
import os, sys, time
prefix = sys.argv[1]
end = time.monotonic() + float(sys.argv[2])
count = 0
while time.monotonic() < end:
    name = f"/dev/shm/{prefix}-{count % 64}"
    os.close(os.open(name, os.O_CREAT | os.O_RDWR, 0o600))
    os.unlink(name)
    count += 1
print(count)
"""


def test_the_journal_stays_bounded_under_a_create_unlink_storm(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    prefix = new_name("storm").removeprefix("/")
    bound = 256 * 1024
    recorder = subprocess.Popen([sys.executable, "-m", "ipcmon", "record", "--db", str(path), "--interval", "0.2",
                                 "--max-size", "256K"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    sizes: list[int] = []
    try:
        wait_until(lambda: "recording" in (recorder.stderr.readline() if recorder.stderr else ""),
                   "the recorder to start", timeout=30)
        storm = subprocess.Popen([sys.executable, "-c", STORM, prefix, "4"], stdout=subprocess.PIPE, text=True)
        while storm.poll() is None:
            sizes.append(sum(os.stat(f"{path}{suffix}").st_size for suffix in ("", "-wal")
                             if os.path.exists(f"{path}{suffix}")))
            time.sleep(0.05)
        made = int(storm.communicate(timeout=30)[0])
        time.sleep(1)  # the last inotify events and a scan
    finally:
        status, errors = _stop(recorder)
        for i in range(64):
            try:
                os.unlink(f"/dev/shm/{prefix}-{i}")
            except FileNotFoundError:
                pass
    assert status == 0, errors
    assert made > 10_000  # a storm: thousands of creations and removals a second
    written = int(re.search(r"stopped: ([\d,]+) records written", errors).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert written > 1000, errors
    final = os.stat(path).st_size + (os.stat(f"{path}-wal").st_size if os.path.exists(f"{path}-wal") else 0)
    assert max([*sizes, final]) <= bound, (max(sizes), final)
    with JournalReader(str(path)) as reader:  # the storm is in it (which of its records survive the bound and the
        # writer's full queue, where the newest are dropped and counted, depends on the machine's speed)
        assert any(reader.events_for_object(name=f"/{prefix}-{i}") or reader.attributions_for_object(
            name=f"/{prefix}-{i}") for i in range(64)), (errors, [note.text for note in reader.notes()][-5:])


def test_with_ipcmon_record_running_leaks_names_a_creator_that_exited_without_unlinking(
        tmp_path: Path, cleanup: Cleanup) -> None:
    """Issue 16's first case, end to end with the real sources: `ipcmon record` runs (fanotify for the segment and
    the semaphore, tracefs for the queue); a child with a known pid and comm creates all three and exits without
    unlinking; the one-shot `leaks` names it, and says it exited."""
    if os.geteuid() != 0:
        raise AssertionError("needs root (fanotify, tracefs), as CI is")
    base = new_name("e2e")
    segment, semaphore, queue = cleanup.shm(base + "-seg"), base + "-sem", base + "-q"
    path = tmp_path / "journal.db"
    recorder = _record(path)
    try:
        wait_until(lambda: "recording" in (recorder.stderr.readline() if recorder.stderr else ""),
                   "the recorder to start", timeout=30)
        code = ("import ctypes, os, sys, posix_ipc\nctypes.CDLL(None).prctl(15, b'ipcm-leaker', 0, 0, 0)\n"
                "posix_ipc.SharedMemory(sys.argv[1], posix_ipc.O_CREX, size=4096).close_fd()\n"
                "posix_ipc.Semaphore(sys.argv[2], posix_ipc.O_CREX).close()\n"
                "posix_ipc.MessageQueue(sys.argv[3], posix_ipc.O_CREX).close()\nprint(os.getpid())\n")
        try:
            child = int(subprocess.run([sys.executable, "-c", code, segment, semaphore, queue], capture_output=True,
                                       text=True, check=True, timeout=60).stdout)

            def exited_and_attributed() -> bool:
                if not path.exists():
                    return False
                with JournalReader(str(path)) as reader:
                    return bool(reader.exits_of(child)) and all(
                        reader.attributions_for_object(name=name) for name in (segment, semaphore, queue))

            wait_until(exited_and_attributed, "the three creations and the creator's exit in the journal",
                       timeout=30)
        finally:
            status, errors = _stop(recorder)
        assert status == 0, errors
        leaks = subprocess.run([sys.executable, "-m", "ipcmon", "leaks", "--min-age", "0", "--match", base + "-*",
                                "--db", str(path)], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert leaks.returncode == 1, leaks.stderr
        clock = r"\d\d:\d\d:\d\d"
        for name in (segment, semaphore, queue):
            assert re.search(rf"^  {re.escape(name)}: created by {child} .* at {clock}; that process exited at "
                             rf"{clock} without unlinking$", leaks.stdout, re.MULTILINE), (name, leaks.stdout)
        history = subprocess.run([sys.executable, "-m", "ipcmon", "history", segment, "--db", str(path)],
                                 capture_output=True, text=True, cwd=REPO, timeout=60).stdout
        created_lines = [line for line in history.splitlines() if f" created {segment} " in line]
        assert len(created_lines) == 1 and f"by {child} ipcm-leaker" in created_lines[0], history
    finally:
        for remove in (lambda: posix_ipc.unlink_semaphore(semaphore), lambda: posix_ipc.unlink_message_queue(queue)):
            try:
                remove()
            except posix_ipc.ExistentialError:
                pass
