"""Deadlocks over every edge, built with real processes: the stdout/stderr pair, wait() on a child blocked on a
pipe only the parent drains, a process reading its own pipe, two selects on each other's pipes (with and
without a timeout), two processes each opening a FIFO the other opens second; every member named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ipcmon.live.events import diff
from ipcmon.model import Deadlock, Snapshot, Stuck
from ipcmon.text import deadlock_summary
from tests.helpers import DIE_WITH_PARENT, REPO, WAIT_FOR_BLOCKED_CHILD, Spawn, kill_pids, scan_kinds, wait_until


def _deadlock(pid: int, kinds: tuple[str, ...] = ("pipe",)) -> tuple[Snapshot, Deadlock]:
    """Scan until a deadlock with pid in it is reported; the snapshot and the deadlock."""
    found: list[tuple[Snapshot, Deadlock]] = []

    def reported() -> bool:
        snapshot = scan_kinds(*kinds)
        found[:] = [(snapshot, group) for group in snapshot.deadlocks if pid in group.pids]
        return bool(found)

    wait_until(reported, f"a deadlock with pid {pid} in it")
    return found[0]


def _entry(snapshot: Snapshot, pid: int) -> Stuck:
    return next(entry for entry in snapshot.stuck if entry.pid == pid)


def test_stdout_stderr_pair_is_a_deadlock(spawn: Spawn) -> None:
    # The parent reads the child's stdout to EOF; the child fills stderr, which nobody reads, and blocks.
    child_code = DIE_WITH_PARENT + "import sys; sys.stderr.write('e' * 200000); sys.stderr.flush()"
    parent = spawn(
        f"""
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", {child_code!r}], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        say("ready", child.pid, child.stdout.fileno(), child.stderr.fileno())
        child.stdout.read()
        """,
        comm="dl-parent",
    )
    child, stdout_fd, stderr_fd = map(int, parent.expect())
    try:
        snapshot, deadlock = _deadlock(parent.pid)
        assert deadlock.pids == tuple(sorted((parent.pid, child)))
        members = {member.pid: member for member in deadlock.members}
        stdout_pipe = os.readlink(f"/proc/{parent.pid}/fd/{stdout_fd}")
        stderr_pipe = os.readlink(f"/proc/{parent.pid}/fd/{stderr_fd}")
        assert members[parent.pid].waits_on == f"read {stdout_pipe}" and members[parent.pid].released_by == (child,)
        assert members[child].waits_on == f"write {stderr_pipe}" and members[child].released_by == (parent.pid,)
        stuck = {entry.pid: entry for entry in snapshot.stuck}
        assert deadlock_summary(deadlock, stuck) == (
            f"pid {min(parent.pid, child)} {members[min(parent.pid, child)].comm} and pid {max(parent.pid, child)} "
            f"{members[max(parent.pid, child)].comm} each wait on what only another of them could release: none can "
            "go on")
        waiter, writer = _entry(snapshot, parent.pid), _entry(snapshot, child)
        assert waiter.state == writer.state == "deadlocked"
        assert waiter.release == f"pid {child} python3 (holds the write end, fd 1)"
        assert writer.release == f"pid {parent.pid} dl-parent (holds the read end, fd {stderr_fd})"
        assert "full" in next(pipe.flags for pipe in snapshot.pipes if pipe.ref == stderr_pipe)
    finally:
        kill_pids(child)


def test_wait_for_a_child_blocked_on_a_pipe_only_the_parent_drains_is_a_deadlock(spawn: Spawn) -> None:
    parent = spawn(
        WAIT_FOR_BLOCKED_CHILD,
        comm="dl-waiter",
    )
    (child,) = map(int, parent.expect())
    try:
        snapshot, deadlock = _deadlock(parent.pid)
        members = {member.pid: member for member in deadlock.members}
        assert set(members) == {parent.pid, child}
        assert members[parent.pid].waits_on == f"wait4 child {child}" and members[parent.pid].kind == "child"
        assert members[parent.pid].released_by == (child,) and members[child].released_by == (parent.pid,)
        waiter = _entry(snapshot, parent.pid)
        assert waiter.waiting.children == (child,) and waiter.state == "deadlocked"
        blocked_on = _entry(snapshot, child).waiting.object
        assert waiter.release == f"child {child} python3 (itself deadlocked: write {blocked_on})"
    finally:
        kill_pids(child)


def test_wait_for_a_child_blocked_on_a_pipe_someone_else_drains_is_no_deadlock(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()  # this test holds the read end: it could drain the pipe
    try:
        parent = spawn(
            f"""
            import subprocess
            child = subprocess.Popen(
                [sys.executable, "-c", {DIE_WITH_PARENT!r} + "import os; os.write({write_end}, b'x' * 200000)"],
                pass_fds=({write_end},))
            say("ready", child.pid)
            child.wait()
            """,
            pass_fds=(write_end,),
        )
        (child,) = map(int, parent.expect())
        os.close(write_end)
        write_end = -1
        try:
            found: list[Snapshot] = []

            def both_listed() -> bool:
                snapshot = scan_kinds("pipe")
                found[:] = [snapshot]
                return {parent.pid, child} <= {entry.pid for entry in snapshot.stuck}

            wait_until(both_listed, "the parent and its child to be listed as stuck")
            snapshot = found[0]
            assert not [group for group in snapshot.deadlocks if parent.pid in group.pids]
            # The child cannot go on until someone reads; its parent waits for it, so is blocked as well.
            assert _entry(snapshot, child).state == "blocked" and _entry(snapshot, parent.pid).state == "blocked"
            assert "itself blocked: write pipe:" in _entry(snapshot, parent.pid).release
        finally:
            kill_pids(child)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_a_process_reading_its_own_pipe_is_a_deadlock_of_one(spawn: Spawn) -> None:
    child = spawn("r, w = os.pipe()\nsay('ready', r, w)\nos.read(r, 1)\n", comm="dl-self")
    read_fd, write_fd = map(int, child.expect())
    snapshot, deadlock = _deadlock(child.pid)
    assert deadlock.pids == (child.pid,)
    assert deadlock.members[0].released_by == (child.pid,)
    pipe = os.readlink(f"/proc/{child.pid}/fd/{read_fd}")
    assert deadlock_summary(deadlock, {entry.pid: entry for entry in snapshot.stuck}) == (
        f"pid {child.pid} dl-self waits on {pipe} that only it could write to: it holds the write end itself")
    entry = _entry(snapshot, child.pid)
    assert entry.state == "deadlocked" and entry.releasers == (child.pid,)
    assert entry.release == f"pid {child.pid} dl-self (holds the write end, fd {write_fd})"
    assert entry.waiting.fd == read_fd


_SELECT_PAIR = """
import select
say("ready")
while True:
    select.select([{fd}], [], [], {timeout})
"""


def test_two_selects_on_each_others_pipes_deadlock_only_without_a_timeout(spawn: Spawn) -> None:
    """Each process selects on the read end of a pipe whose only writer is the other. Without a timeout,
    neither can ever return: a deadlock. With a finite one each wakes up on its own: an idle event loop,
    never a deadlock (waiting.analyse: a timed wait is no edge)."""
    pairs = []
    for timeout in (None, 0.5):
        a_read, a_write = os.pipe()
        b_read, b_write = os.pipe()
        first = spawn(_SELECT_PAIR.format(fd=a_read, timeout=timeout), pass_fds=(a_read, b_write))
        second = spawn(_SELECT_PAIR.format(fd=b_read, timeout=timeout), pass_fds=(b_read, a_write))
        for fd in (a_read, a_write, b_read, b_write):
            os.close(fd)  # only the two children hold the pipes now
        first.expect()
        second.expect()
        pairs.append((first.pid, second.pid))
    (endless_a, endless_b), (timed_a, timed_b) = pairs
    snapshot, deadlock = _deadlock(endless_a)
    assert deadlock.pids == tuple(sorted((endless_a, endless_b)))
    assert {member.kind for member in deadlock.members} == {"poll"}
    assert _entry(snapshot, endless_a).releasers == (endless_b,)

    seen: list[Snapshot] = []

    def timed_pair_listed() -> bool:
        snapshot = scan_kinds("pipe")
        seen.append(snapshot)
        return {timed_a, timed_b} <= {entry.pid for entry in snapshot.stuck}

    wait_until(timed_pair_listed, "the pair with a timeout to be seen in select together")
    for snapshot in seen:
        assert not [group for group in snapshot.deadlocks if {timed_a, timed_b} & set(group.pids)]
    entry = _entry(seen[-1], timed_a)
    assert entry.state == "waiting" and entry.waiting.timed and entry.releasers == (timed_b,)


def test_two_processes_each_opening_a_fifo_the_other_opens_second(spawn: Spawn, tmp_path: Path) -> None:
    first_fifo, second_fifo = tmp_path / "one.fifo", tmp_path / "two.fifo"
    os.mkfifo(first_fifo)
    os.mkfifo(second_fifo)
    # Each opens for reading first what the other opens for writing second: neither ever gets there.
    one = spawn(f"say('ready')\nopen({str(first_fifo)!r}, 'rb')\nopen({str(second_fifo)!r}, 'wb')\n", comm="dl-one")
    two = spawn(f"say('ready')\nopen({str(second_fifo)!r}, 'rb')\nopen({str(first_fifo)!r}, 'wb')\n", comm="dl-two")
    one.expect()
    two.expect()
    snapshot, deadlock = _deadlock(one.pid)
    assert deadlock.pids == tuple(sorted((one.pid, two.pid)))
    assert {member.kind for member in deadlock.members} == {"open"}
    assert deadlock_summary(deadlock, {entry.pid: entry for entry in snapshot.stuck}).endswith(
        "each wait in open() for another to open a FIFO's other end (inferred: they are related and nobody has "
        "those FIFOs open)")
    members = {member.pid: member for member in deadlock.members}
    assert members[one.pid].released_by == (two.pid,) and members[two.pid].released_by == (one.pid,)
    assert members[one.pid].waits_on == f"openat fifo:{first_fifo} (no writer)"
    entry = _entry(snapshot, one.pid)
    assert entry.state == "deadlocked" and entry.waiting.missing == "writer"
    assert entry.release == (f"anyone who opens {first_fifo} for writing; pid {two.pid} dl-two may (it is blocked "
                             f"opening {second_fifo} itself)")


def test_one_process_opening_a_fifo_is_blocked_not_deadlocked(spawn: Spawn, tmp_path: Path) -> None:
    fifo = tmp_path / "alone.fifo"
    os.mkfifo(fifo)
    child = spawn(f"say('ready')\nopen({str(fifo)!r}, 'wb')\n")
    child.expect()
    found: list[Snapshot] = []

    def listed() -> bool:
        snapshot = scan_kinds("pipe")
        found[:] = [snapshot]
        return child.pid in {entry.pid for entry in snapshot.stuck}

    wait_until(listed, "the FIFO opener to be listed")
    assert _entry(found[0], child.pid).state == "blocked"
    assert not [group for group in found[0].deadlocks if child.pid in group.pids]


def test_a_parent_waiting_for_a_deadlocked_child_is_blocked_not_a_member(spawn: Spawn) -> None:
    # The child reads a pipe only it could write to (a deadlock of one); its parent waits for it. The parent cannot
    # go on either, but it is not in the cycle: blocked, released by the deadlocked child.
    parent = spawn(
        f"""
        import subprocess
        code = {DIE_WITH_PARENT!r} + "import os; r, w = os.pipe(); os.read(r, 1)"
        child = subprocess.Popen([sys.executable, "-c", code])
        say("ready", child.pid)
        child.wait()
        """,
        comm="dl-shell",
    )
    (child,) = map(int, parent.expect())
    try:
        snapshot, deadlock = _deadlock(child)
        assert deadlock.pids == (child,)
        assert deadlock_summary(deadlock, {entry.pid: entry for entry in snapshot.stuck}).endswith(
            "that only it could write to: it holds the write end itself")

        def parent_blocked() -> bool:
            found = [entry for entry in scan_kinds("pipe").stuck if entry.pid == parent.pid]
            return bool(found) and found[0].state == "blocked"

        wait_until(parent_blocked, "the waiting parent to be blocked")
        entry = _entry(scan_kinds("pipe"), parent.pid)
        assert entry.release.startswith(f"child {child} python3 (itself deadlocked: read pipe:[")
    finally:
        kill_pids(child)


def test_the_shell_that_runs_ipcmon_waits_for_ipcmon_itself(tmp_path: Path) -> None:
    # ipcmon hides itself, yet its parent waits for it: that wait is released by ipcmon, not by nobody.
    out = tmp_path / "snapshot.json"
    script = f'exec 3>{out}; {sys.executable} -m ipcmon snapshot --json --kind pipe --pid $$ >&3'
    subprocess.run(["bash", "-c", script], check=True, timeout=60, cwd=REPO)
    data = json.loads(out.read_text())
    (shell,) = data["processes"]
    (entry,) = [entry for entry in data["stuck"] if entry["pid"] == shell["pid"]]
    assert entry["waiting"]["kind"] == "child" and entry["state"] == "waiting"
    (ipcmon_pid,) = entry["waiting"]["children"]
    assert entry["release"] == f"child {ipcmon_pid} (ipcmon itself)"
    assert not data["deadlocks"]


def test_fifo_openers_of_different_process_groups_and_parents_are_no_deadlock(spawn: Spawn, tmp_path: Path) -> None:
    first_fifo, second_fifo = tmp_path / "one.fifo", tmp_path / "two.fifo"
    os.mkfifo(first_fifo)
    os.mkfifo(second_fifo)
    one = spawn(f"say('ready')\nopen({str(first_fifo)!r}, 'rb')\n", comm="dl-solo-one")
    # The other is a grandchild in a process group of its own: same session, nothing else in common.
    middle = spawn(
        f"""
        import subprocess
        code = {DIE_WITH_PARENT!r} + "import os; os.setpgid(0, 0); open({str(second_fifo)!r}, 'rb')"
        other = subprocess.Popen([sys.executable, "-c", code])
        say("ready", other.pid)
        other.wait()
        """,
    )
    one.expect()
    (other,) = map(int, middle.expect())
    try:
        def both_listed() -> bool:
            states = {entry.pid: entry.state for entry in scan_kinds("pipe").stuck}
            return states.get(one.pid) == states.get(other) == "blocked"

        wait_until(both_listed, "both openers to be blocked")
        snapshot = scan_kinds("pipe")
        assert not [group for group in snapshot.deadlocks if one.pid in group.pids or other in group.pids]
    finally:
        kill_pids(other)


def test_a_deadlock_that_ends_is_an_event(spawn: Spawn) -> None:
    child = spawn("r, w = os.pipe()\nsay('ready')\nos.read(r, 1)\n", comm="dl-ends")
    child.expect()
    before, deadlock = _deadlock(child.pid)
    kill_pids(child.pid)
    child.popen.wait(timeout=10)
    after = scan_kinds("pipe")
    ended = [event for event in diff(before, after) if event.event == "deadlock-ended"]
    assert [(event.mechanism, event.key, event.detail) for event in ended] == [
        ("process", deadlock.key, f"pid {child.pid} dl-ends exited")]
