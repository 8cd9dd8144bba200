"""Issue 13's real cases, each built with real processes and read back through every front end at once: the text
snapshot, its JSON, `watch`'s opening state lines and the Overview (Pilot).

- a parent reads its child's stdout to EOF while the child blocks writing a full stderr pipe (deadlock);
- a daemon opens its input FIFO with no writer running (blocked in open(), the FIFO named by its path);
- a worker waits in select() for EOF on a pipe whose write end its parent kept open (waiting, the writer named);
- a parent sits in wait() for a child blocked writing a pipe only the parent would drain (deadlock).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from ipcmon.live.events import diff
from ipcmon.ui.widgets.overview import Overview
from ipcmon.ui.widgets.tables import ObjectTable
from tests.helpers import DIE_WITH_PARENT, REPO, WAIT_FOR_BLOCKED_CHILD, Spawn, kill_pids, scan_kinds, wait_until
from tests.lifecycle.test_watch import _read_until, _watch
from tests.ui.conftest import live_app, started, wait_for


@dataclass(frozen=True)
class Scene:
    stdout_parent: int
    stderr_child: int
    stderr_pipe: str
    fifo_opener: int
    fifo: Path
    selector: int
    select_pipe: str
    select_writer_fd: int
    waiter: int
    blocked_child: int

    @property
    def pids(self) -> list[int]:
        return [self.stdout_parent, self.stderr_child, self.fifo_opener, self.selector, self.waiter,
                self.blocked_child]


@pytest.fixture
def scene(spawn: Spawn, tmp_path: Path) -> Iterator[Scene]:
    child_code = DIE_WITH_PARENT + "import sys; sys.stderr.write('e' * 200000); sys.stderr.flush()"
    stdout_parent = spawn(
        f"""
        import subprocess
        child = subprocess.Popen([sys.executable, "-c", {child_code!r}], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        say("ready", child.pid, child.stderr.fileno())
        child.stdout.read()
        """,
        comm="sc-reader",
    )
    stderr_child, stderr_fd = map(int, stdout_parent.expect())
    stderr_pipe = os.readlink(f"/proc/{stdout_parent.pid}/fd/{stderr_fd}")

    fifo = tmp_path / "daemon-input.fifo"
    os.mkfifo(fifo)
    fifo_opener = spawn(f"say('ready')\nopen({str(fifo)!r}, 'rb')\nhold()\n", comm="sc-daemon")
    fifo_opener.expect()

    read_end, write_end = os.pipe()  # this test is the parent that keeps the write end open
    selector = spawn(f"import select\nsay('ready')\nselect.select([{read_end}], [], [])\nhold()\n",
                     pass_fds=(read_end,), comm="sc-worker")
    selector.expect()
    select_pipe = f"pipe:[{os.fstat(read_end).st_ino}]"
    os.close(read_end)

    waiter = spawn(
        WAIT_FOR_BLOCKED_CHILD,
        comm="sc-waiter",
    )
    (blocked_child,) = map(int, waiter.expect())
    built = Scene(stdout_parent.pid, stderr_child, stderr_pipe, fifo_opener.pid, fifo, selector.pid, select_pipe,
                  write_end, waiter.pid, blocked_child)

    def settled() -> bool:
        snapshot = scan_kinds("pipe")
        states = {entry.pid: entry.state for entry in snapshot.stuck}
        return (states.get(built.stdout_parent) == states.get(built.waiter) == "deadlocked"
                and states.get(built.fifo_opener) == "blocked" and states.get(built.selector) == "waiting")

    try:
        wait_until(settled, "every scene to be seen as it is")
        yield built
    finally:
        kill_pids(stderr_child, blocked_child)  # grandchildren: the spawn fixture stops the rest
        os.close(write_end)


def _ipcmon(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "ipcmon", *args], capture_output=True, text=True, cwd=REPO,
                          check=True, timeout=60).stdout


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"== {title}"))
    end = next((index for index in range(start + 1, len(lines)) if lines[index].startswith("== ")), len(lines))
    return [line for line in lines[start + 1 : end] if line]


def _row(lines: list[str], pid: int) -> str:
    (row,) = [line for line in lines if line.split()[:1] == [str(pid)]]
    return row


def test_text_json_and_watch_name_who_is_stuck_on_what(scene: Scene) -> None:
    pids = ",".join(map(str, scene.pids))
    text = _ipcmon("snapshot", "--kind", "pipe", "--all-waits", "--pid", pids)

    stuck = _section(text, "Stuck and waiting")
    reader = _row(stuck, scene.stdout_parent)
    assert reader.split()[1:3] == ["sc-reader", "deadlocked"] and f"pid {scene.stderr_child} " in reader
    writer = _row(stuck, scene.stderr_child)
    assert f"write {scene.stderr_pipe}" in writer and "deadlocked" in writer
    assert f"pid {scene.stdout_parent} sc-reader (holds the read end" in writer
    daemon = _row(stuck, scene.fifo_opener)
    assert daemon.split()[1:3] == ["sc-daemon", "blocked"]
    assert f"fifo:{scene.fifo} (no writer)" in daemon and f"anyone who opens {scene.fifo} for writing" in daemon
    worker = _row(stuck, scene.selector)
    # select(2) is pselect6 in glibc's x86_64 build: either name, then the pipe.
    assert worker.split()[1:3] == ["sc-worker", "waiting"] and worker.split()[3] in ("select", "pselect6")
    assert worker.split()[4] == scene.select_pipe
    assert f"pid {os.getpid()} " in worker and f"fd {scene.select_writer_fd})" in worker
    waiter = _row(stuck, scene.waiter)
    assert waiter.split()[1:3] == ["sc-waiter", "deadlocked"] and f"wait4 child {scene.blocked_child}" in waiter

    # Without --all-waits the worker is only counted, and named as the longest ordinary wait.
    plain = _section(_ipcmon("snapshot", "--kind", "pipe", "--pid", str(scene.selector)), "Stuck")
    (longest,) = [line for line in plain if line.startswith("longest: ")]
    assert longest.startswith(f"longest: pid {scene.selector} sc-worker, ")
    assert f" {scene.select_pipe}, last ran " in longest
    assert f"released by {scene.select_pipe}: pid {os.getpid()} " in longest

    deadlocks = "\n".join(_section(text, "Deadlocks"))
    for pid in (scene.stdout_parent, scene.stderr_child, scene.waiter, scene.blocked_child):
        assert f"pid {pid} " in deadlocks
    assert f"wait4 child {scene.blocked_child}" in deadlocks
    assert str(scene.fifo_opener) not in deadlocks and str(scene.selector) not in deadlocks

    hazards = _section(text, "Leaks and hazards")[1:]  # after the header: the two deadlocks lead
    assert [line.split()[:3] for line in hazards[:2]] == [["✖", "bad", "process"]] * 2
    assert all("deadlock: " in line for line in hazards[:2])
    assert any(f"fifo:{scene.fifo} (no writer)" in line and "blocked" in line for line in hazards)

    data = json.loads(_ipcmon("snapshot", "--json", "--kind", "pipe", "--pid", pids))
    by_pid = {entry["pid"]: entry for entry in data["stuck"]}
    opener = by_pid[scene.fifo_opener]["waiting"]
    assert (opener["kind"], opener["path"], opener["missing"]) == ("open", str(scene.fifo), "writer")
    polled = by_pid[scene.selector]["waiting"]
    assert polled["kind"] == "poll" and [w["object"] for w in polled["watched"]] == [scene.select_pipe]
    assert by_pid[scene.waiter]["waiting"]["children"] == [scene.blocked_child]
    assert sorted(sorted(deadlock["pids"]) for deadlock in data["deadlocks"]) == sorted(
        [sorted((scene.stdout_parent, scene.stderr_child)), sorted((scene.waiter, scene.blocked_child))])

    # watch started after the fact opens with why: the deadlocks and the blocked open, as state lines.
    process = _watch("--kind", "pipe", "--interval", "0.5", "--pid", pids)
    try:
        opening: list[str] = []

        def until_daemon(line: str) -> bool:
            opening.append(line)
            return f"pid {scene.fifo_opener} sc-daemon" in line

        _read_until(process, until_daemon)
        assert all(line.split()[2] == "state" for line in opening)
        shown = "".join(opening)
        assert f"deadlock:{min(scene.waiter, scene.blocked_child)}" not in shown  # keys are not printed in text
        for pid in (scene.stdout_parent, scene.stderr_child, scene.waiter, scene.blocked_child):
            assert f"pid {pid} " in shown
        assert f"fifo:{scene.fifo} (no writer)" in opening[-1]
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0


async def test_the_overview_puts_the_deadlocks_first_then_the_blocked_open(scene: Scene) -> None:
    app = live_app(interval=0.5, kinds=("pipe",), pids=frozenset(scene.pids))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        overview = app.query_one(Overview)
        alerts = overview.query_one("#alerts", ObjectTable)

        def shown() -> list[str]:
            return [overview.alerts[key].problem for key in alerts.shown_keys if key in overview.alerts]

        def complete() -> bool:
            problems = shown()
            return sum(p.startswith("deadlock") for p in problems) == 2 and any(
                p.startswith("blocked") and f"fifo:{scene.fifo}" in p for p in problems)

        await wait_for(pilot, complete, "both deadlocks and the blocked open")
        problems = shown()
        assert [p.split(":")[0] for p in problems[:3]] == ["deadlock", "deadlock", "blocked"]
        assert f"fifo:{scene.fifo} (no writer)" in problems[2]
        assert not any(scene.select_pipe in p and p.startswith("blocked") for p in problems)  # idle: no hazard



def test_wait_events_are_filed_under_what_they_wait_on(scene: Scene) -> None:
    # An open() of a FIFO with no descriptor yet is the FIFO's, by its path; a poll is its pipe's; a wait for a
    # child is none. Every wait appears as new against a snapshot without processes.
    snapshot = scan_kinds("pipe")
    events = [event for event in diff(replace(snapshot, processes=()), snapshot) if event.event == "waiting"]
    filed = {event.pid: (event.mechanism, event.object) for event in events}
    assert scene.waiter not in filed  # a wait for a child is no event (every shell's between commands)
    assert filed[scene.fifo_opener] == ("fifo", f"fifo:{scene.fifo}")
    assert filed[scene.selector] == ("pipe", scene.select_pipe)
