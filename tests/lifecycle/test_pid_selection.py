"""Issue 13: ``--pid`` selects everything. Events (inotify's too) are those of the selected processes and of the
objects they hold or held; the summary counts only them; a pid that names no process is an error (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import posix_ipc

from ipcmon.collect import ScanConfig
from ipcmon.live.monitor import Monitor
from ipcmon.model import Event
from tests.helpers import REPO, Child, Cleanup, Spawn, new_name, wait_until

HOLDER = """
    import os, posix_ipc
    shm = None
    pipe = None
    say("ready")
    for command in commands():
        word, _, name = command.partition(" ")
        if word == "create":
            shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096)
        elif word == "close":
            shm.close_fd()
        elif word == "pipe":
            pipe = os.pipe()
        say("done", word)
"""


def _do(child: Child, command: str) -> None:
    child.tell(command)
    assert child.expect("done") == [command.split()[0]]


def _absent_pid() -> int:
    """A pid no process can have: pids are below /proc/sys/kernel/pid_max."""
    with open("/proc/sys/kernel/pid_max") as file:
        return int(file.read())


def test_monitor_keeps_only_the_selection_and_what_it_held_inotify_included(spawn: Spawn, cleanup: Cleanup) -> None:
    selected = spawn(HOLDER, comm="ipcm-selected")
    bystander = spawn(HOLDER, comm="ipcm-bystander")
    selected.expect()
    bystander.expect()
    mine = cleanup.shm(new_name("mine"))
    theirs = cleanup.shm(new_name("theirs"))
    loose = cleanup.shm(new_name("loose"))
    events: list[Event] = []
    monitor = Monitor(ScanConfig(kinds=("shm", "pipe"), pids=frozenset({selected.pid})), on_event=events.append)
    monitor.poll()
    with monitor:
        _do(bystander, f"create {theirs}")
        _do(bystander, "pipe")
        posix_ipc.SharedMemory(loose, posix_ipc.O_CREX, size=4096).close_fd()  # created by no selected process
        _do(selected, f"create {mine}")
        _do(selected, "pipe")
        snapshot, _ = monitor.poll()
        _do(selected, "close")  # the selected process lets go; someone else unlinks it later
        monitor.poll()
        posix_ipc.unlink_shared_memory(mine)  # reported by inotify, between polls
        posix_ipc.unlink_shared_memory(theirs)
        posix_ipc.unlink_shared_memory(loose)
        wait_until(lambda: any(e.object == mine and e.event == "destroyed" for e in events), "mine destroyed")
        monitor.poll()

    # The restricted snapshot: the selected process and what it holds, nothing of the bystander's.
    assert [process.pid for process in snapshot.processes] == [selected.pid]
    assert [segment.name for segment in snapshot.shm] == [mine]
    assert snapshot.hidden_processes == 0
    assert not [note for note in snapshot.notes if "could not be fully read" in note]

    story = [(e.event, e.pid, e.source) for e in events if e.object == mine]
    assert story == [("created", None, "poll"), ("attached", selected.pid, "poll"),
                     ("detached", selected.pid, "poll"), ("orphaned", None, "poll"), ("destroyed", None, "inotify")]
    assert not [e for e in events if e.object in (theirs, loose)]
    assert not [e for e in events if e.pid == bystander.pid]
    pipes = [e for e in events if e.mechanism == "pipe"]
    assert pipes and all(f"{selected.pid} fd" in e.detail for e in pipes), pipes
    assert monitor.selection is not None and len(monitor.selection.held) <= 3  # its pipe and stdio, not "mine"


def test_watch_pid_prints_nothing_about_other_processes_objects(spawn: Spawn, cleanup: Cleanup) -> None:
    selected = spawn(HOLDER, comm="ipcm-selected")
    selected.expect()
    mine = cleanup.shm(new_name("mine"))
    theirs = cleanup.shm(new_name("theirs"))
    process = subprocess.Popen(
        [sys.executable, "-m", "ipcmon", "watch", "--json", "--kind", "shm", "--pid", str(selected.pid),
         "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        assert process.stderr.readline().startswith("watching")
        lines: list[str] = []

        def read_until(event: str) -> None:
            while not any(mine in line and f'"{event}"' in line for line in lines):
                line = process.stdout.readline()  # type: ignore[union-attr]
                assert line, "ipcmon watch ended early"
                lines.append(line)

        _do(selected, f"create {mine}")
        read_until("attached")  # polls are running, and inotify has been watching since before the first
        posix_ipc.SharedMemory(theirs, posix_ipc.O_CREX, size=4096).close_fd()
        posix_ipc.unlink_shared_memory(theirs)
        time.sleep(0.5)  # inotify reports both within milliseconds
        _do(selected, "close")
        read_until("detached")
    finally:
        process.terminate()
        rest, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    printed = [json.loads(line) for line in lines + rest.splitlines() if line.strip()]
    assert [(event["event"], event["pid"]) for event in printed if event["object"] == mine][:2] == [
        ("created", None), ("attached", selected.pid)]
    assert not [event for event in printed if event["object"] == theirs]


def test_a_pid_that_names_no_process_is_an_error_in_every_front_end() -> None:
    absent = _absent_pid()
    for command in (["snapshot"], ["snapshot", "--json"], ["watch"], []):
        result = subprocess.run([sys.executable, "-m", "ipcmon", *command, "--pid", f"{os.getpid()},{absent}"],
                                capture_output=True, text=True, cwd=REPO, timeout=60, stdin=subprocess.DEVNULL)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", f"ipcmon: no such process: {absent}\n"), \
            command


def test_snapshot_pid_counts_only_the_selection(spawn: Spawn) -> None:
    selected = spawn(HOLDER, comm="ipcm-selected")
    selected.expect()
    result = subprocess.run([sys.executable, "-m", "ipcmon", "snapshot", "--pid", str(selected.pid)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    summary, *rest = result.stdout.splitlines()
    assert ": 1 process, shm 0 (" in summary  # no "(N not fully readable)": the selected one is readable
    assert not [line for line in rest if line.startswith("note:") and "could not be fully read" in line]
