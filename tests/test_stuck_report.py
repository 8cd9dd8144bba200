"""Who is stuck on what, in the text snapshot, the JSON and the hazards (issue 13, items 4 and 5): a two-process
pipe deadlock, a process reading a pipe only it could write to, a writer blocked on a full pipe and an idle reader,
each built with real processes; the wording of the waits the scan cannot build yet from hand-made records."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys

import posix_ipc

from ipcmon import health, report
from ipcmon.export import dumps
from ipcmon.model import (
    Deadlock,
    DeadlockMember,
    Snapshot,
    Stuck,
    Waiting,
    Watched,
)
from ipcmon.text import deadlock_summary, since_text, stuck_problem, wait_text
from tests.helpers import REPO, Child, Cleanup, Spawn, new_name, scan_kinds, wait_until

FILL_AND_BLOCK = """
fd = {fd}
fill_pipe(fd)
say("ready")
os.write(fd, b"y" * 65536)   # blocks: the pipe is full and nobody reads
hold()
"""

READ_AND_WAIT = """
say("ready")
os.read({fd}, 1)   # blocks until someone writes
hold()
"""


def _until(condition: object, what: str, *kinds: str) -> Snapshot:
    """Scan (these kinds) until condition(snapshot) holds; the snapshot that satisfied it."""
    found: list[Snapshot] = []

    def ready() -> bool:
        found[:] = [scan_kinds(*(kinds or ("pipe",)))]
        return bool(condition(found[0]))  # type: ignore[operator]

    wait_until(ready, what)
    return found[0]


def _section(text: str, title: str) -> list[str]:
    """The lines of one ``== title`` section of the report, title line first."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"== {title}"))
    end = next((index for index in range(start + 1, len(lines)) if lines[index].startswith("== ")), len(lines))
    return [line for line in lines[start:end] if line]


def _deadlocked_pair(spawn: Spawn) -> tuple[Child, Child, int, int]:
    """Two children, each blocked writing a full pipe that only the other reads; the pipes' inodes."""
    a_read, a_write = os.pipe()
    b_read, b_write = os.pipe()
    inodes = os.fstat(a_read).st_ino, os.fstat(b_read).st_ino
    first = spawn(FILL_AND_BLOCK.format(fd=a_write), pass_fds=(a_write, b_read), comm="ipcm-dl-first")
    second = spawn(FILL_AND_BLOCK.format(fd=b_write), pass_fds=(b_write, a_read), comm="ipcm-dl-second")
    for fd in (a_read, a_write, b_read, b_write):
        os.close(fd)  # only the two children hold the pipes now
    first.expect()
    second.expect()
    return first, second, inodes[0], inodes[1]


def test_a_two_process_deadlock_in_the_text_json_and_hazards(spawn: Spawn, cleanup: Cleanup) -> None:
    # An orphaned 1 MiB segment, every page written: the biggest leak there is; the deadlock still comes first.
    orphan = cleanup.shm(new_name("orphan"))
    shm = posix_ipc.SharedMemory(orphan, posix_ipc.O_CREX, size=1 << 20)
    with mmap.mmap(shm.fd, 1 << 20) as area:
        area.write(b"\x5a" * (1 << 20))
    shm.close_fd()
    first, second, first_pipe, second_pipe = _deadlocked_pair(spawn)
    pids = tuple(sorted((first.pid, second.pid)))
    snapshot = _until(lambda s: any(d.pids == pids for d in s.deadlocks), "the deadlock", "pipe", "shm")

    text = report.render(snapshot)
    stuck = _section(text, "Stuck")
    assert stuck[0].startswith("== Stuck (")
    header = next(line for line in stuck if line.startswith("PID"))
    assert header.split() == ["PID", "COMM", "STATE", "WAITS", "ON", "SINCE", "RELEASED", "BY"]
    row = next(line for line in stuck if line.startswith(f"{first.pid} "))
    assert row.split()[:4] == [str(first.pid), "ipcm-dl-first", "deadlocked", "write"]
    assert f"pipe:[{first_pipe}]" in row
    assert f"pid {second.pid} ipcm-dl-second (holds the read end, fd " in row
    deadlocks = _section(text, "Deadlocks")
    ours = next(index for index, line in enumerate(deadlocks) if str(first.pid) in line)
    block = deadlocks[ours:ours + 3]
    assert block[0].endswith(f"pid {pids[0]} {'ipcm-dl-first' if pids[0] == first.pid else 'ipcm-dl-second'} and "
                             f"pid {pids[1]} {'ipcm-dl-first' if pids[1] == first.pid else 'ipcm-dl-second'} each "
                             "wait on what only another of them could release: none can go on")
    member = next(line for line in block[1:] if line.startswith(f"  pid {second.pid} "))
    assert member.startswith(f"  pid {second.pid} ipcm-dl-second: write pipe:[{second_pipe}]; released only by "
                             f"pid {first.pid} ipcm-dl-first (holds the read end, fd ")

    # Hazards: deadlocks first of all (ours, and any other on this shared machine), above a 1 MiB leak; the full
    # pipes are said by the deadlock, not again.
    hazards = health.hazards(snapshot)
    ours = next(index for index, hazard in enumerate(hazards) if hazard.pids == pids)
    assert (hazards[ours].level, hazards[ours].name, hazards[ours].key) == (
        "bad", "deadlock", f"deadlock:{pids[0]},{pids[1]}")
    assert {hazard.name for hazard in hazards[:ours]} <= {"deadlock"}
    leak = next(index for index, hazard in enumerate(hazards) if hazard.object == orphan)
    assert hazards[leak].name == "orphaned" and leak > ours
    assert not [h for h in hazards if h.object in (f"pipe:[{first_pipe}]", f"pipe:[{second_pipe}]")]
    lines = _section(text, "Leaks and hazards")
    row = next(line for line in lines if f"{pids[0]} " in line and "deadlock: " in line)
    assert row.split()[:4] == ["✖", "bad", "process", f"{pids[0]}"]
    assert lines.index(row) < next(index for index, line in enumerate(lines) if orphan in line)

    # The JSON: the pids, the key and the sentence; each stuck entry in words with its age field.
    data = json.loads(dumps(snapshot))
    [deadlock] = [d for d in data["deadlocks"] if d["pids"] == list(pids)]
    assert deadlock["key"] == f"deadlock:{pids[0]},{pids[1]}"
    assert deadlock["summary"].endswith("each wait on what only another of them could release: none can go on")
    assert {m["pid"]: m["released_by"] for m in deadlock["members"]} == {first.pid: [second.pid],
                                                                         second.pid: [first.pid]}
    entry = next(s for s in data["stuck"] if s["pid"] == first.pid)
    assert (entry["state"], entry["waits_on"], entry["releasers"]) == (
        "deadlocked", f"write pipe:[{first_pipe}]", [second.pid])
    assert entry["waiting"]["kind"] == "write" and "since_seconds" in entry
    # The names README.md's JSON contract promises.
    assert set(CONTRACT["stuck"].split()) <= entry.keys()
    assert set(CONTRACT["waiting"].split()) <= entry["waiting"].keys()
    assert set(CONTRACT["deadlock"].split()) <= deadlock.keys()
    assert set(CONTRACT["member"].split()) <= deadlock["members"][0].keys()


CONTRACT = {
    "stuck": "pid comm waiting state releasers release since since_seconds waits_on",
    "waiting": "syscall fd wchan object key kind path missing watched children signals",
    "deadlock": "members pids key summary",
    "member": "pid comm waits_on released_by",
}


def test_the_json_of_the_command_names_the_deadlock(spawn: Spawn) -> None:
    first, second, _, _ = _deadlocked_pair(spawn)
    pids = sorted((first.pid, second.pid))
    _until(lambda s: any(list(d.pids) == pids for d in s.deadlocks), "the deadlock")
    result = subprocess.run([sys.executable, "-m", "ipcmon", "snapshot", "--json", "--kind", "pipe", "--pid",
                             str(first.pid)], capture_output=True, cwd=REPO, check=True, timeout=60)
    data = json.loads(result.stdout)
    # --pid keeps the whole deadlock its process is in, with each member's stuck entry (what it waits on).
    assert [d["pids"] for d in data["deadlocks"]] == [pids]
    assert sorted((s["pid"], s["state"]) for s in data["stuck"]) == [(pid, "deadlocked") for pid in pids]


def test_a_process_reading_a_pipe_only_it_can_write_is_a_deadlock_of_one(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    inode = os.fstat(read_end).st_ino
    child = spawn(READ_AND_WAIT.format(fd=read_end), pass_fds=(read_end, write_end), comm="ipcm-self")
    os.close(read_end)
    os.close(write_end)
    child.expect()
    snapshot = _until(lambda s: any(d.pids == (child.pid,) for d in s.deadlocks), "the deadlock of one")
    deadlocks = _section(report.render(snapshot), "Deadlocks")
    line = next(line for line in deadlocks if f"pid {child.pid} ipcm-self waits" in line)
    assert line.endswith(f"pid {child.pid} ipcm-self waits on pipe:[{inode}] that only it could write to: it holds "
                         "the write end itself")
    assert "each wait" not in line and "others" not in line
    [hazard] = [h for h in health.hazards(snapshot) if h.pids == (child.pid,)]
    assert hazard.problem == f"deadlock: {line.split(': ', 1)[1]}"


def test_a_blocked_writer_is_stuck_and_an_idle_reader_is_only_counted(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    idle_read, idle_write = os.pipe()
    try:
        inode = os.fstat(read_end).st_ino
        writer = spawn(FILL_AND_BLOCK.format(fd=write_end), pass_fds=(write_end,), comm="ipcm-blocked")
        reader = spawn(READ_AND_WAIT.format(fd=idle_read), pass_fds=(idle_read,), comm="ipcm-idle")
        os.close(write_end)
        write_end = -1
        writer.expect()
        reader.expect()
        states = {writer.pid: "blocked", reader.pid: "waiting"}
        snapshot = _until(
            lambda s: {e.pid: e.state for e in s.stuck if e.pid in states} == states, "the writer blocked")

        text = report.render(snapshot)
        stuck = _section(text, "Stuck")
        row = next(line for line in stuck if line.startswith(f"{writer.pid} "))
        assert row.split()[:5] == [str(writer.pid), "ipcm-blocked", "blocked", "write", f"pipe:[{inode}]"]
        # This test process holds the read end and is not blocked: it could drain the pipe.
        assert row.endswith(f"pid {os.getpid()} {_comm(os.getpid())} (holds the read end, fd {read_end})")
        assert not [line for line in stuck if line.startswith(f"{reader.pid} ")]
        idle = sum(entry.state == "waiting" for entry in snapshot.stuck)
        assert stuck[1].startswith(f"{idle} more process") and stuck[1].endswith("--all-waits lists them")

        every = _section(report.render(snapshot, all_waits=True), "Stuck and waiting")
        row = next(line for line in every if line.startswith(f"{reader.pid} "))
        idle_pipe = f"pipe:[{os.fstat(idle_read).st_ino}]"
        assert row.split()[:5] == [str(reader.pid), "ipcm-idle", "waiting", "read", idle_pipe]

        # One hazard for the writer, bad, naming the full pipe; the pipe's own "full" is folded into it.
        ours = [h for h in health.hazards(snapshot) if h.pids == (writer.pid,) or h.object == f"pipe:[{inode}]"]
        assert [(h.level, h.name, h.mechanism) for h in ours] == [("bad", "blocked", "process")]
        assert ours[0].problem.startswith(f"blocked: write pipe:[{inode}] (full: 64K of 64K)")
        assert not [h for h in health.hazards(snapshot) if h.pids == (reader.pid,)]  # idle: no hazard
    finally:
        for fd in (read_end, write_end, idle_read, idle_write):
            if fd >= 0:
                os.close(fd)


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as comm:
        return comm.read().strip()


def _snapshot(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "ipcmon", "snapshot", "--kind", "pipe", *args], capture_output=True,
                          cwd=REPO, check=True, timeout=60, text=True).stdout


def test_all_waits_on_the_command_line(spawn: Spawn) -> None:
    idle_read, idle_write = os.pipe()
    try:
        reader = spawn(READ_AND_WAIT.format(fd=idle_read), pass_fds=(idle_read,), comm="ipcm-idle")
        reader.expect()
        _until(lambda s: any(e.pid == reader.pid and e.state == "waiting" for e in s.stuck), "the reader waiting")
        plain = _snapshot("--pid", str(reader.pid))
        assert _section(plain, "Stuck")[:2] == [
            "== Stuck (0)",
            "1 more process waits in the ordinary way (reading while a writer holds the other end, polling, waiting "
            "for a signal or a running child): --all-waits lists them",
        ]
        assert _section(plain, "Deadlocks") == ["== Deadlocks (0)"]
        every = _snapshot("--all-waits", "--pid", str(reader.pid))
        lines = _section(every, "Stuck and waiting")
        assert lines[0] == "== Stuck and waiting (1)"
        assert lines[2].split()[:3] == [str(reader.pid), "ipcm-idle", "waiting"]
    finally:
        os.close(idle_read)
        os.close(idle_write)


# --- the waits the scan cannot build yet: hand-made records (issue 13 item 1 is another branch's) ---------------

NOW = 1_790_000_000.0


def _stuck(pid: int, wait: Waiting, state: str = "blocked", release: str = "nobody", since: float | None = None,
           releasers: tuple[int, ...] = ()) -> Stuck:
    return Stuck(pid, f"p{pid}", wait, state, releasers, release, since)  # type: ignore[arg-type]


def test_each_kind_of_wait_reads_as_call_and_object() -> None:
    fifo = Waiting("openat", None, "fifo_open", "fifo:/run/in.fifo", None, "open", "/run/in.fifo", "writer")
    assert wait_text(fifo) == "openat fifo:/run/in.fifo (no writer)"
    unread = Waiting("openat", None, "fifo_open", "fifo (waiting for the other end to open)", None, "open")
    assert wait_text(unread) == "openat fifo (waiting for the other end to open)"
    watched = tuple(Watched(fd, f"pipe:[{fd}]", None, "read") for fd in (7, 9, 11, 12, 13))
    assert wait_text(Waiting("select", None, "do_select", "pipe:[7]", None, "poll", watched=watched[:2])) == (
        "select pipe:[7], pipe:[9]")
    assert wait_text(Waiting("ppoll", None, "do_sys_poll", "pipe:[7]", None, "poll", watched=watched)) == (
        "ppoll pipe:[7], pipe:[9], pipe:[11] and 2 more")
    assert wait_text(Waiting("wait4", None, "do_wait", "child 42", None, "child", children=(42,))) == "wait4 child 42"
    assert wait_text(Waiting("waitid", None, "do_wait", None, None, "child", children=(42, 43))) == (
        "waitid children 42, 43")
    assert wait_text(Waiting("rt_sigtimedwait", None, "do_sigtimedwait", "signal", None, "signal",
                             signals=("SIGUSR1", "SIGTERM"))) == "rt_sigtimedwait SIGUSR1, SIGTERM"
    assert wait_text(Waiting("pause", None, "", "signal", None, "signal")) == "pause a signal"
    assert wait_text(Waiting("semop", None, "", "sysv-sem:5", "sysv-sem:5", "sysv")) == "semop sysv-sem:5"
    assert wait_text(Waiting("mq_timedsend", 3, "", "mqueue:/jobs", "mqueue:24:1", "send")) == (
        "mq_timedsend mqueue:/jobs")


def test_since_reads_as_an_age_and_unknown_as_a_question_mark() -> None:
    assert since_text(NOW - 125, NOW) == "2m05s ago"
    assert since_text(None, NOW) == "?"
    wait = Waiting("write", 4, "pipe_write", "pipe:[77]", "pipe:15:77", "write")
    entry = _stuck(5, wait, release="pid 6 cat (holds the read end, fd 3)", since=NOW - 125, releasers=(6,))
    assert stuck_problem(entry, NOW) == (
        "blocked: write pipe:[77] for 2m05s; released by pid 6 cat (holds the read end, fd 3)")
    assert stuck_problem(_stuck(5, wait), NOW) == "blocked: write pipe:[77]; released by nobody"
    assert stuck_problem(_stuck(5, wait, release="unknown"), NOW) == (
        "blocked: write pipe:[77]; who could release it is unknown")


def test_a_fifo_open_is_listed_with_its_path_and_a_hostile_one_stays_inert() -> None:
    path = "/tmp/in\x1b]2;pwned\x07.fifo"
    fifo = Waiting("openat", None, "fifo_open", f"fifo:{path}", None, "open", path, "writer")
    entry = _stuck(5, fifo, release=f"anyone who opens {path} for writing", since=NOW - 3600)
    snapshot = Snapshot(taken_at=NOW, kinds=("pipe",), stuck=(entry,))
    text = report.render(snapshot)
    row = next(line for line in _section(text, "Stuck") if line.startswith("5 "))
    assert row.split()[:5] == ["5", "p5", "blocked", "openat", "fifo:/tmp/in\\x1b]2;pwned\\x07.fifo"]
    assert "(no writer)  1h00m ago  anyone who opens /tmp/in\\x1b]2;pwned\\x07.fifo for writing" in row
    assert "\x1b" not in text and "\x07" not in text
    [hazard] = health.hazards(snapshot)
    assert (hazard.level, hazard.name, hazard.pids) == ("bad", "blocked", (5,))
    assert hazard.problem.startswith(f"blocked: openat fifo:{path} (no writer) for 1h00m; released by anyone")


def test_blocked_levels_by_kind_and_idle_waits_are_no_hazard() -> None:
    child = Waiting("wait4", None, "do_wait", "child 42", None, "child", children=(42,))
    receive = Waiting("mq_timedreceive", 3, "", "mqueue:/jobs", None, "receive")
    poll = Waiting("epoll_wait", None, "ep_poll", "pipe:[7]", None, "poll")
    snapshot = Snapshot(taken_at=NOW, kinds=("pipe",), stuck=(
        _stuck(1, child), _stuck(2, receive), _stuck(3, poll, state="waiting", releasers=(9,))))
    levels = {hazard.pids: (hazard.level, hazard.name) for hazard in health.hazards(snapshot)}
    assert levels == {(1,): ("bad", "blocked"), (2,): ("warn", "blocked")}


def test_one_member_deadlocks_say_what_only_it_could_do() -> None:
    cases = {
        "read": "pid 5 p5 waits on pipe:[9] that only it could write to: it holds the write end itself",
        "write": "pid 5 p5 waits on pipe:[9] that only it could read from: it holds the read end itself",
        "receive": "pid 5 p5 waits on pipe:[9] that only it could send to: it has it open for sending itself",
        "send": "pid 5 p5 waits on pipe:[9] that only it could receive from: it has it open for receiving itself",
    }
    for kind, words in cases.items():
        wait = Waiting(kind, 3, "", "pipe:[9]", "pipe:15:9", kind)  # type: ignore[arg-type]
        deadlock = Deadlock((DeadlockMember(5, "p5", f"{kind} pipe:[9]", (5,)),))
        assert deadlock_summary(deadlock, {5: _stuck(5, wait, "deadlocked")}) == words
    # A poll that only reads its set is worded as a read; anything else says it holds the other end.
    deadlock = Deadlock((DeadlockMember(5, "p5", "select pipe:[9]", (5,)),))
    reading = Waiting("select", None, "do_select", "pipe:[9]", "pipe:15:9", "poll",
                      watched=(Watched(4, "pipe:[9]", "pipe:15:9", "read"),))
    assert deadlock_summary(deadlock, {5: _stuck(5, reading, "deadlocked")}) == cases["read"]
    both = Waiting("ppoll", None, "do_sys_poll", "pipe:[9]", "pipe:15:9", "poll",
                   watched=(Watched(4, "pipe:[9]", "pipe:15:9", "read,write"),))
    assert deadlock_summary(deadlock, {5: _stuck(5, both, "deadlocked")}) == (
        "pid 5 p5 waits on pipe:[9] that only it could release: it holds the other end itself")


def test_a_deadlock_over_a_child_wait_names_both_members() -> None:
    # The Python subprocess docs' deadlock: a parent in wait() for a child blocked writing a pipe only it drains.
    parent_wait = Waiting("wait4", None, "do_wait", "child 11", None, "child", children=(11,))
    child_wait = Waiting("write", 1, "pipe_write", "pipe:[77]", "pipe:15:77", "write")
    stuck = (
        _stuck(10, parent_wait, "deadlocked", "pid 11 p11 (its child)", NOW - 60, (11,)),
        _stuck(11, child_wait, "deadlocked", "pid 10 p10 (holds the read end, fd 5)", NOW - 61, (10,)),
    )
    deadlock = Deadlock((DeadlockMember(10, "p10", "wait4 child 11", (11,)),
                         DeadlockMember(11, "p11", "write pipe:[77]", (10,))))
    snapshot = Snapshot(taken_at=NOW, kinds=("pipe",), stuck=stuck, deadlocks=(deadlock,))
    text = report.render(snapshot)
    assert _section(text, "Deadlocks") == [
        "== Deadlocks (1)",
        "deadlock 1: pid 10 p10 and pid 11 p11 each wait on what only another of them could release: none can go on",
        "  pid 10 p10: wait4 child 11; released only by pid 11 p11 (its child)",
        "  pid 11 p11: write pipe:[77]; released only by pid 10 p10 (holds the read end, fd 5)",
    ]
    rows = _section(text, "Stuck")[2:]
    assert [row.split()[:5] for row in rows] == [["10", "p10", "deadlocked", "wait4", "child"],
                                                ["11", "p11", "deadlocked", "write", "pipe:[77]"]]
    assert "1m00s ago" in rows[0] and "1m01s ago" in rows[1]
    data = json.loads(dumps(snapshot))
    assert data["deadlocks"][0]["pids"] == [10, 11]
    assert [s["since_seconds"] for s in data["stuck"]] == [60.0, 61.0]
    assert data["stuck"][0]["waiting"]["children"] == [11]
    [hazard] = health.hazards(snapshot)  # the members are not blocked hazards of their own
    assert (hazard.name, hazard.pids, hazard.key) == ("deadlock", (10, 11), "deadlock:10,11")


def test_a_hostile_comm_stays_inert_in_the_stuck_deadlock_and_hazard_lines(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    hostile = '_libc.prctl(15, b"\\x1b]2;pwned\\x07", 0, 0, 0)\n'
    child = spawn(hostile + READ_AND_WAIT.format(fd=read_end), pass_fds=(read_end, write_end))
    os.close(read_end)
    os.close(write_end)
    child.expect()
    snapshot = _until(lambda s: any(d.pids == (child.pid,) for d in s.deadlocks), "the deadlock of one")
    text = report.render(snapshot)
    assert "\x1b" not in text and "\x07" not in text
    row = next(line for line in _section(text, "Stuck") if line.startswith(f"{child.pid} "))
    assert row.split()[1] == "\\x1b]2;pwned\\x07"
    line = next(line for line in _section(text, "Deadlocks") if f"pid {child.pid} " in line)
    assert f"pid {child.pid} \\x1b]2;pwned\\x07 waits on pipe:[" in line
    hazard = next(line for line in _section(text, "Leaks and hazards") if f"{child.pid} " in line)
    assert "\\x1b]2;pwned\\x07" in hazard


def test_pid_keeps_a_deadlock_whole_with_what_each_member_waits_on(spawn: Spawn) -> None:
    first, second, _, _ = _deadlocked_pair(spawn)
    _until(lambda s: any(first.pid in d.pids for d in s.deadlocks), "the deadlock")
    text = _snapshot("--pid", str(first.pid))
    stuck = _section(text, "Stuck")
    assert {line.split()[0] for line in stuck[2:]} == {str(first.pid), str(second.pid)}
    members = [line for line in _section(text, "Deadlocks") if line.startswith("  pid ")]
    assert len(members) == 2 and all("(holds the read end, fd " in line for line in members)
    # The full pipes are said by the deadlock, as without --pid, not as hazards of their own.
    assert not [line for line in _section(text, "Leaks and hazards") if " full: " in line]
