"""`ipcmon watch` started on a machine that is already stuck opens with `state` lines (issue 13, item 6): each
deadlock with its members and each blocked process with what it waits on, before any change; as text and as JSON."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

from tests.helpers import Child, Spawn, scan_kinds, wait_until
from tests.lifecycle.test_watch import _read_until, _watch
from tests.test_stuck_report import FILL_AND_BLOCK, READ_AND_WAIT, _deadlocked_pair


def _without_since(text: str) -> str:
    """The line without how long the process has been blocked (`` for 0s``: when it last ran, which varies)."""
    return re.sub(r" for \d[\dhmsd]*;", ";", text)


def _stop(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGTERM)  # its pid only
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "Traceback" not in stderr


def _opening(process: subprocess.Popen[str], *needles: str) -> list[str]:
    """Lines up to the one holding every needle; fails if a line before it is not a state line."""
    seen: list[str] = []

    def found(line: str) -> bool:
        seen.append(line)
        return all(needle in line for needle in needles)

    _read_until(process, found)
    return seen


def _scene(spawn: Spawn) -> tuple[Child, Child, Child, int, int]:
    """A two-process pipe deadlock and a writer blocked on a full pipe this test holds the read end of (returned)."""
    first, second, _, _ = _deadlocked_pair(spawn)
    read_end, write_end = os.pipe()
    writer = spawn(FILL_AND_BLOCK.format(fd=write_end), pass_fds=(write_end,), comm="ipcm-blocked")
    os.close(write_end)
    writer.expect()
    pids = tuple(sorted((first.pid, second.pid)))

    def seen() -> bool:
        snapshot = scan_kinds("pipe")
        states = {entry.pid: entry.state for entry in snapshot.stuck}
        return any(d.pids == pids for d in snapshot.deadlocks) and states.get(writer.pid) == "blocked"

    wait_until(seen, "the deadlock and the blocked writer")
    return first, second, writer, read_end, os.fstat(read_end).st_ino


def test_watch_opens_with_the_deadlock_and_the_blocked_writer(spawn: Spawn) -> None:
    first, second, writer, read_end, inode = _scene(spawn)
    low, high = sorted((first, second), key=lambda child: child.pid)
    try:
        process = _watch("--kind", "pipe", "--interval", "0.5")
        try:
            lines = _opening(process, f"{low.pid}, {high.pid}", "deadlock:")
            line = lines[-1]
            assert line.split()[1:4] == ["process", "state", f"{low.pid},"]
            names = f"pid {low.pid} {_read_comm(low.pid)} and pid {high.pid} {_read_comm(high.pid)}"
            assert f"deadlock: {names} each wait on what only another of them could release: none can go on." in line
            assert f"pid {first.pid} ipcm-dl-first: write pipe:[" in line
            assert f"released only by pid {first.pid} ipcm-dl-first (holds the read end, fd " in line
            blocked = _opening(process, f"pid {writer.pid} ipcm-blocked")
            line = blocked[-1]
            assert line.split()[1:4] == ["pipe", "state", f"pipe:[{inode}]"]
            assert _without_since(line.rstrip()).endswith(
                f"blocked: write pipe:[{inode}]; released by pid {os.getpid()} {_own_comm()} (holds the read end, "
                f"fd {read_end})")
            # Everything printed so far is state: the opening comes before any change.
            assert all(text.split()[2] == "state" for text in lines + blocked)
        finally:
            _stop(process)
    finally:
        os.close(read_end)


def test_watch_json_opens_with_state_records(spawn: Spawn) -> None:
    first, second, writer, read_end, inode = _scene(spawn)
    pids = sorted((first.pid, second.pid))
    try:
        process = _watch("--json", "--kind", "pipe", "--interval", "0.5")
        try:
            lines = _opening(process, f'"key": "deadlock:{pids[0]},{pids[1]}"')
            lines += _opening(process, f'"pid": {writer.pid},')
            records = [json.loads(line) for line in lines]
            assert {record["event"] for record in records} == {"state"}
            deadlock = next(r for r in records if r["key"] == f"deadlock:{pids[0]},{pids[1]}")
            assert (deadlock["mechanism"], deadlock["object"], deadlock["pid"]) == (
                "process", f"{pids[0]}, {pids[1]}", None)
            assert deadlock["detail"].startswith(f"deadlock: pid {pids[0]} ")
            assert f"pid {second.pid} ipcm-dl-second: write pipe:[" in deadlock["detail"]
            blocked = records[-1]
            assert (blocked["mechanism"], blocked["object"], blocked["comm"]) == ("pipe", f"pipe:[{inode}]",
                                                                                  "ipcm-blocked")
            assert _without_since(blocked["detail"]).startswith(
                f"blocked: write pipe:[{inode}]; released by pid {os.getpid()} ")
            assert {"time", "mechanism", "event", "object", "key", "pid", "comm", "source", "detail", "namespace",
                    "container", "place", "actor"} == blocked.keys()
        finally:
            _stop(process)
    finally:
        os.close(read_end)


def test_watch_says_when_nothing_is_stuck(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    try:
        reader = spawn(READ_AND_WAIT.format(fd=read_end), pass_fds=(read_end,), comm="ipcm-idle")
        reader.expect()
        wait_until(lambda: any(e.pid == reader.pid and e.state == "waiting" for e in scan_kinds("pipe").stuck),
                   "the reader waiting")
        process = _watch("--kind", "pipe", "--pid", str(reader.pid), "--interval", "0.5")
        try:
            [line] = _opening(process, "state")
            assert line.split()[1:4] == ["process", "state", "-"]
            assert line.rstrip().endswith("nothing deadlocked or blocked; 1 process waits on IPC in the ordinary way")
        finally:
            _stop(process)
    finally:
        os.close(read_end)
        os.close(write_end)


def _read_comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as comm:
        return comm.read().strip()


def _own_comm() -> str:
    return _read_comm(os.getpid())
