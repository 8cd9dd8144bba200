"""Events carry their actor (issue 16, part 4) and the journal is written while no recorder runs (part 2), on the real
kernel: the unlinker and the remaining holder of a segment; a creator gone before the poll; the order of an unlink and
the close that follows it; `ipcmon record`'s lock (watch writes the journal only while no recorder holds it, SIGKILL
releases it); a container's segment attributed with its place; lost kernel events noted. Needs root and tracefs
mounted (.ci/run mounts it), as CI is."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import posix_ipc
import pytest

from ipcmon.collect import ScanConfig
from ipcmon.journal import JournalReader
from ipcmon.live import tracefs
from ipcmon.live.monitor import Monitor
from ipcmon.model import Attribution, Event
from tests.containers import container
from tests.helpers import BLOCKS_SIGUSR1, DEADLINE, REPO, Cleanup, Spawn, new_name, wait_until
from tests.lifecycle.test_containers_front import _in_namespace
from tests.lifecycle.test_watch import _read_until, _unread
from tests.reliability.cli import Unprivileged, unprivileged_setup, watch_briefly


def _require_root() -> None:
    if os.geteuid() != 0 or tracefs.tracing_dir() is None:
        pytest.fail("actors need root (fanotify) and tracefs mounted, as CI is")


def _watch(*options: str, db: Path) -> subprocess.Popen[str]:
    """`ipcmon watch --json` on shm, started: its 'watching' line read."""
    return _started_watch("--json", *options, db=db)[0]


def _started_watch(*options: str, db: Path) -> tuple[subprocess.Popen[str], str]:
    """`ipcmon watch` on shm with these options, started; and its 'watching' line (stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ipcmon", "watch", "--kind", "shm", "--db", str(db), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    said = _read_until(process, lambda text: text.startswith("watching"), timeout=3 * DEADLINE, stderr=True)
    return process, said


def _stop(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> str:
    """Stop a process this test started (by its pid) and return its stderr."""
    return _stopped(process, signum)[1]


def _stopped(process: subprocess.Popen[str], signum: int = signal.SIGTERM) -> tuple[str, str]:
    """Stop a process this test started (by its pid): what it printed since last read, on stdout and stderr."""
    output = errors = ""
    slot = (process.pid, process.stdout.fileno()) if process.stdout is not None else None
    try:
        process.send_signal(signum)
        output, errors = process.communicate(timeout=3 * DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    unread = _unread.pop(slot, b"").decode() if slot is not None else ""
    return unread + (output or ""), errors or ""


def _events_of(process: subprocess.Popen[str], name: str, last: str) -> list[dict[str, Any]]:
    """watch --json's events about name, up to the first whose event is last."""
    events: list[dict[str, Any]] = []
    while True:
        line = _read_until(process, lambda text: f'"object": "{name}"' in text, timeout=3 * DEADLINE)
        events.append(json.loads(line))
        if events[-1]["event"] == last:
            return events


_HOLDER = """
import posix_ipc
memory = posix_ipc.SharedMemory(sys.argv[1])
address = map_fd(memory.fd, 4096)
memory.close_fd()
say("ready")
hold()
"""


def test_a_second_process_unlinks_what_a_third_maps_and_the_event_names_both(
        tmp_path: Path, spawn: Spawn, cleanup: Cleanup) -> None:
    _require_root()
    name = cleanup.shm(new_name("unl"))
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
    holder = spawn(_HOLDER.replace("sys.argv[1]", repr(name)), comm="ipcm-keeper")
    holder.expect()
    watch = _watch("--interval", "0.3", db=tmp_path / "journal.db")
    try:
        time.sleep(1.0)  # a poll or more: the holder is known
        # The unlinker stays until the event is out: fanotify gives its pid, and its name is read from /proc while
        # it lives (one that exits at once may be gone first: then the pid alone is known, as test_attribution.py
        # shows for a creator that is gone).
        code = ("import ctypes, os, sys, posix_ipc\nctypes.CDLL(None).prctl(15, b'ipcm-unlinker', 0, 0, 0)\n"
                "posix_ipc.unlink_shared_memory(sys.argv[1])\nprint(os.getpid(), flush=True)\nsys.stdin.read()\n")
        stay = subprocess.Popen([sys.executable, "-c", code, name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        try:
            assert stay.stdout is not None
            unlinker = int(stay.stdout.readline())
            [event] = _events_of(watch, name, "unlinked-while-held")
        finally:
            stay.communicate(timeout=DEADLINE)
    finally:
        _stop(watch)
    assert event["actor"]["pid"] == unlinker and event["actor"]["comm"] == "ipcm-unlinker", event
    assert event["source"] == "fanotify"
    assert event["detail"] == f"held by {holder.pid} ipcm-keeper"


def test_a_creator_gone_before_the_poll_is_named(tmp_path: Path, cleanup: Cleanup) -> None:
    _require_root()
    name = cleanup.shm(new_name("gone"))
    watch = _watch("--interval", "0.3", db=tmp_path / "journal.db")
    try:
        code = ("import ctypes, os, sys, posix_ipc\nctypes.CDLL(None).prctl(15, b'ipcm-maker', 0, 0, 0)\n"
                "posix_ipc.SharedMemory(sys.argv[1], posix_ipc.O_CREX, size=4096).close_fd()\nprint(os.getpid())\n")
        maker = int(subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=True,
                                   timeout=DEADLINE).stdout)
        assert not os.path.exists(f"/proc/{maker}/stat") or maker != os.getpid()  # reaped: the process is gone
        [event] = _events_of(watch, name, "created")
    finally:
        errors = _stop(watch)
    assert (event["actor"]["pid"], event["actor"]["comm"]) == (maker, "ipcm-maker"), event
    assert "Traceback" not in errors


def test_a_creator_gone_before_the_poll_is_named_by_the_poll(cleanup: Cleanup) -> None:
    # No inotify here: the poll's diff is the only one to see the segment, after its creator exited.
    _require_root()
    name = cleanup.shm(new_name("poll"))
    events: list[Event] = []
    monitor = Monitor(ScanConfig(kinds=("shm",)), on_event=events.append, actors=True)
    monitor.poll()
    monitor.start()
    try:
        watch, monitor._inotify = monitor._inotify, None  # the poll alone, as for a container's tmpfs
        if watch is not None:
            watch.stop()
        code = ("import ctypes, os, sys, posix_ipc\nctypes.CDLL(None).prctl(15, b'ipcm-maker2', 0, 0, 0)\n"
                "posix_ipc.SharedMemory(sys.argv[1], posix_ipc.O_CREX, size=4096).close_fd()\nprint(os.getpid())\n")
        maker = int(subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=True,
                                   timeout=DEADLINE).stdout)
        time.sleep(0.5)  # the Attributor holds its records SETTLE
        _, polled = monitor.poll()
    finally:
        monitor.stop()
    [created] = [event for event in polled if event.object == name and event.event == "created"]
    assert created.source == "poll" and created.actor is not None, created
    assert (created.actor.pid, created.actor.comm) == (maker, "ipcm-maker2")


_UNLINK_THEN_CLOSE = """
import posix_ipc, time
memory = posix_ipc.SharedMemory(sys.argv[1], posix_ipc.O_CREX, size=4096)
address = map_fd(memory.fd, 4096)
say("ready")
for command in commands():
    memory.unlink()
    if command == "pause":
        time.sleep(1.0)
    _libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(4096))
    memory.close_fd()
    say("done")
"""


@pytest.mark.parametrize("pause", [True, False], ids=["pause-between", "at-once"])
def test_unlink_then_close_prints_the_unlink_before_the_detach_and_the_destruction(
        tmp_path: Path, spawn: Spawn, cleanup: Cleanup, pause: bool) -> None:
    _require_root()
    name = cleanup.shm(new_name("order"))
    child = spawn(_UNLINK_THEN_CLOSE.replace("sys.argv[1]", repr(name)), comm="ipcm-order")
    child.expect()
    watch = _watch("--interval", "0.3", db=tmp_path / "journal.db")
    try:
        time.sleep(1.0)  # a poll or more: the segment and its holder are known
        child.tell("pause" if pause else "now")
        child.expect("done")
        events = _events_of(watch, name, "destroyed")
        time.sleep(1.0)  # three polls more: none may report a detach after the destruction
    finally:
        rest, _ = _stopped(watch)
    events += [json.loads(line) for line in rest.splitlines() if f'"object": "{name}"' in line]
    order = [event["event"] for event in events]
    assert order[-1] == "destroyed" and order.count("destroyed") == 1, order
    if pause:  # held for a second after the unlink: inotify sees it held
        assert order == ["unlinked-while-held", "detached", "destroyed"], order
        assert events[0]["actor"]["pid"] == child.pid
    elif "unlinked-while-held" in order:  # else the close came before inotify could look: detached, destroyed
        assert order.index("unlinked-while-held") < order.index("detached"), order


def _journal_events(path: Path, name: str) -> list[Event]:
    if not path.exists():
        return []
    with JournalReader(str(path)) as reader:
        return reader.events_for_object(name=name)


def test_watch_writes_the_journal_only_while_no_recorder_holds_its_lock(tmp_path: Path, cleanup: Cleanup) -> None:
    _require_root()
    path = tmp_path / "journal.db"
    recorder = subprocess.Popen([sys.executable, "-m", "ipcmon", "record", "--db", str(path), "--interval", "0.3"],
                                cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        _read_until(recorder, lambda text: "recording" in text, timeout=3 * DEADLINE, stderr=True)
        watch, said = _started_watch("--interval", "0.3", db=path)
        try:
            assert f"; not writing the journal {path}: an ipcmon record" in said, said
        finally:
            _stop(watch)
    finally:
        recorder.kill()  # SIGKILL: no clean exit, the kernel lets go of its lock
        recorder.wait()
    name = cleanup.shm(new_name("jrn"))
    watch, said = _started_watch("--interval", "0.3", db=path)
    try:
        assert f"; writing the journal {path} (no ipcmon record runs)" in said, said
        posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
        _read_until(watch, lambda text: name in text and " created " in text, timeout=3 * DEADLINE)
    finally:
        errors = _stop(watch)  # a clean stop writes what was queued
    assert "Traceback" not in errors
    [created] = [event for event in _journal_events(path, name) if event.event == "created"]
    assert created.actor is not None and created.actor.pid == os.getpid()


def test_record_marks_a_container_s_tmpfs_and_places_its_creator(tmp_path: Path) -> None:
    _require_root()
    name, queue = new_name("rctr"), new_name("rctrq")
    key = 0x1D000000 + secrets.randbelow(1 << 20)
    path = tmp_path / "journal.db"
    with container(name, queue, key, cgroup=True) as boxed:
        assert boxed.container_id is not None
        recorder = subprocess.Popen(
            [sys.executable, "-m", "ipcmon", "record", "--db", str(path), "--interval", "0.3"],
            cwd=REPO, stderr=subprocess.PIPE, text=True)
        try:
            _read_until(recorder, lambda text: f"fanotify /proc/{boxed.pid}/root/dev/shm: on" in text
                        or "/root/dev/shm: on" in text, timeout=3 * DEADLINE, stderr=True)
            made = name + "-inside"
            _in_namespace(boxed, f"import posix_ipc\nposix_ipc.SharedMemory({made!r}, posix_ipc.O_CREX, "
                                 "size=4096).close_fd()\n")

            def attributed() -> list[Attribution]:
                if not path.exists():
                    return []
                with JournalReader(str(path)) as reader:
                    return [r for r in reader.attributions_for_object(name=made) if r.action == "created"]

            wait_until(lambda: bool(attributed()), "the container's segment attributed in the journal")
        finally:
            _stop(recorder)
    [record] = attributed()
    assert record.place is not None and record.place.container is not None, record
    assert record.place.container.id == boxed.container_id
    assert record.place.ipc == boxed.ipc


class _Lossy:
    """A stand-in for the Attributor whose ``lost`` the test sets: FAN_Q_OVERFLOW cannot be forced reliably (the
    queue holds 16384 events and the reader drains it while a test fills it), so the note is tested on a stub."""

    def __init__(self) -> None:
        self.lost = 0

    def drain(self) -> list[Attribution]:
        return []

    def status(self) -> list[object]:
        return []

    def watch_shm_dir(self, path: str) -> None:
        pass


class _Notes:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def add(self, record: Attribution | Event) -> object:
        return True

    def note(self, text: str) -> None:
        self.notes.append(text)

    def close(self) -> None:
        pass


def test_lost_kernel_events_are_noted_once_per_growth() -> None:
    sink = _Notes()
    monitor = Monitor(ScanConfig(kinds=("shm",)), actors=True, sink=sink)
    lossy = _Lossy()
    monitor._attributor = lossy  # type: ignore[assignment]
    monitor.poll()
    assert list(monitor.notes) == [] and sink.notes == []
    lossy.lost = 3
    monitor.poll()  # the poll re-reads the state; the note says what is unknown
    assert list(monitor.notes) == sink.notes
    [note] = sink.notes
    assert note.startswith("3 kernel events lost") and "re-read by the poll" in note
    monitor.poll()
    assert len(sink.notes) == 1  # said once, not at every poll
    monitor._attributor = None


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup(["watchdog"])


def test_not_root_watch_says_which_source_is_missing_and_events_come_as_before(nobody: Unprivileged,
                                                                                cleanup: Cleanup) -> None:
    name = cleanup.shm(new_name("nr"))

    def create() -> None:
        fd = os.open(f"/dev/shm{name}", os.O_CREAT | os.O_RDWR, 0o644)
        os.close(fd)

    journal = os.path.join(nobody.home, "journal.db")
    status, out, err = watch_briefly(
        nobody.command([nobody.python, "-m", "ipcmon", "watch", "--kind", "shm", "--db", journal, "--interval",
                        "0.3"]), nobody.env(), nobody.home, create)
    errors = err.decode()
    assert status == 0 and "Traceback" not in errors, errors
    assert "fanotify /dev/shm: not root: who creates and removes segments and semaphores in /dev/shm stays " \
           "unknown (run as root)" in errors, errors
    [created] = [line for line in out.decode().splitlines() if name in line and " created " in line]
    assert "[inotify]" in created and " by " not in created, created


def test_watch_json_gives_a_sent_event_with_its_sender_as_actor(spawn: Spawn) -> None:
    # An Actor is no JSON value: each sent event used to raise in the handler and never be printed.
    _require_root()
    sleeper = spawn(BLOCKS_SIGUSR1, comm="ipcm-sleeper")
    sleeper.expect()
    watch = subprocess.Popen(
        [sys.executable, "-m", "ipcmon", "watch", "--json", "--kind", "signal", "--pid", str(sleeper.pid),
         "--interval", "0.3", "--no-journal"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        _read_until(watch, lambda text: text.startswith("watching"), timeout=3 * DEADLINE, stderr=True)
        os.kill(sleeper.pid, signal.SIGUSR1)
        sent = json.loads(_read_until(watch, lambda text: '"event": "sent"' in text, timeout=3 * DEADLINE))
    finally:
        _stop(watch)
    assert sent["actor"]["pid"] == os.getpid() and sent["actor"]["kernel"] is False, sent
    assert sent["detail"].endswith(f"→ {sleeper.pid} ipcm-sleeper: blocked, pending"), sent


def test_a_queue_s_creation_and_removal_name_their_process_through_tracefs(tmp_path: Path, cleanup: Cleanup) -> None:
    _require_root()
    name = cleanup.mqueue(new_name("q"))
    watch = subprocess.Popen(
        [sys.executable, "-m", "ipcmon", "watch", "--kind", "mqueue", "--json", "--db", str(tmp_path / "j.db"),
         "--interval", "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        _read_until(watch, lambda text: text.startswith("watching"), timeout=3 * DEADLINE, stderr=True)
        code = ("import ctypes, os, sys, time, posix_ipc\nctypes.CDLL(None).prctl(15, b'ipcm-queuer', 0, 0, 0)\n"
                "queue = posix_ipc.MessageQueue(sys.argv[1], posix_ipc.O_CREX)\ntime.sleep(0.5)\nqueue.close()\n"
                "queue.unlink()\nprint(os.getpid())\n")
        queuer = int(subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=True,
                                    timeout=DEADLINE).stdout)
        events = _events_of(watch, name, "destroyed")
    finally:
        _stop(watch)
    named = {event["event"]: event for event in events}
    for verb in ("created", "destroyed"):
        assert named[verb]["source"] == "tracefs", events
        assert (named[verb]["actor"]["pid"], named[verb]["actor"]["comm"]) == (queuer, "ipcm-queuer"), events


def test_a_second_recorder_on_one_journal_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    first = subprocess.Popen([sys.executable, "-m", "ipcmon", "record", "--db", str(path), "--interval", "0.5"],
                             cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        _read_until(first, lambda text: "recording" in text, timeout=3 * DEADLINE, stderr=True)
        second = subprocess.run([sys.executable, "-m", "ipcmon", "record", "--db", str(path)], cwd=REPO,
                                capture_output=True, text=True, timeout=3 * DEADLINE)
    finally:
        errors = _stop(first)
    assert second.returncode == 1 and "another ipcmon record is writing" in second.stderr, second.stderr
    assert "Traceback" not in errors
