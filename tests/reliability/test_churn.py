"""Churn: scans while processes and objects come and go never fail and never report a phantom holder.

A phantom holder is a process shown holding an object it never opened, or a process that did not exist
during the scan; the classic cause is pid reuse (one process's stat, its successor's descriptors).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ipcmon.collect import ScanConfig, pipes, scan
from tests.helpers import Spawn, proc_view
from tests.reliability.namespace import run_code, run_module

CI_PROCESSES = 300
CI_OBJECTS = 3000
CI_SCANS = 150


def test_scans_during_churn_raise_nothing_and_report_no_phantom_holder() -> None:
    """tests/reliability/churn.py at a CI size (the full size is its default, run by hand)."""
    result = run_module(
        "tests.reliability.churn",
        "--processes", str(CI_PROCESSES), "--objects", str(CI_OBJECTS), "--scans", str(CI_SCANS), "--timeout", "80",
        timeout=110,
    )
    assert result.stdout.strip(), f"no report (exit {result.returncode}); stderr:\n{result.stderr}"
    report = json.loads(result.stdout)
    assert report["exceptions"] == []
    assert report["worker_failures"] == []
    assert report["phantoms"] == [], f"{report['phantom_count']} phantom holders"
    assert report["scans"] >= CI_SCANS
    assert report["process_lifetimes"] >= CI_PROCESSES
    assert sum(report["object_lifetimes"].values()) >= CI_OBJECTS
    assert set(report["object_lifetimes"]) == {"shm", "mqueue", "pipe", "fifo"}
    # The check had something to check: children seen holding objects, and pids really reused.
    assert report["child_holders_checked"] >= 100
    assert report["reused_pid_lifetimes"] >= CI_PROCESSES // 2
    assert report["ok"] and result.returncode == 0


# A victim holds segment A. The scan is interrupted right after it read the victim's stat: the victim is
# killed and reaped, and a successor is forked on the same pid holding segment B. Without the pin, the scan
# reports the victim (its start time) holding B.
_PID_REUSE = r'''
import importlib, json, os, signal, time, uuid
from ipcmon.collect import ScanConfig, scan, procfs
scan_module = importlib.import_module("ipcmon.collect.process")  # where a process is read (read_fds)

prefix = f"/dev/shm/ipcmon-test-reuse-{uuid.uuid4().hex[:8]}"
paths = {group: f"{prefix}-{group}" for group in "AB"}
for path in paths.values():
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))

def holder(group):
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.open(paths[group], os.O_RDWR)
        os.write(ready_w, b"x")
        time.sleep(60)
        os._exit(0)
    os.read(ready_r, 1)
    os.close(ready_r)
    os.close(ready_w)
    return pid

def start_ticks(pid):
    return procfs.parse_stat(procfs.read_bytes(f"/proc/{pid}/stat")).start_ticks

result = {}
try:
    victim = holder("A")
    result["victim"] = victim
    result["victim_start"] = start_ticks(victim)
    time.sleep(0.05)  # the successor must not share the victim's clock tick
    original = scan_module.read_fds

    def swap_then_read(pid, devices, proc=procfs.PROC):
        if pid == victim and "successor" not in result:
            os.kill(victim, signal.SIGKILL)
            os.waitpid(victim, 0)
            with open("/proc/sys/kernel/ns_last_pid", "w") as last:
                last.write(str(victim - 1))
            result["successor"] = holder("B")
            result["successor_start"] = start_ticks(result["successor"])
        return original(pid, devices, proc)

    scan_module.read_fds = swap_then_read
    snapshot = scan(ScanConfig(kinds=("shm",)))
    scan_module.read_fds = original
    starts = {process.pid: process.start_ticks for process in snapshot.processes}
    shown = {}
    for segment in snapshot.shm:
        for group, path in paths.items():
            if segment.path == path:
                shown[group] = [[h.pid, starts.get(h.pid)] for h in segment.holders]
    result["shown"] = shown
    result["after"] = {group: [[h.pid, None] for s in scan(ScanConfig(kinds=("shm",))).shm if s.path == path
                               for h in s.holders] for group, path in paths.items()}
finally:
    for path in paths.values():
        os.unlink(path)
print(json.dumps(result))
'''


def test_a_pid_reused_while_the_scan_reads_it_is_not_attributed_to_the_old_process() -> None:
    """A real pid reuse, timed by a hook between reading a process's stat and its descriptors."""
    result = run_code(_PID_REUSE, timeout=60)
    victim, victim_start = result["victim"], result["victim_start"]
    assert result["successor"] == victim, "the namespace did not reuse the pid (ns_last_pid refused?)"
    assert result["successor_start"] != victim_start
    # The scan that straddled the reuse shows no holder of B under the victim's identity…
    assert [victim, victim_start] not in result["shown"]["B"]
    assert [victim, victim_start] not in result["shown"]["A"]
    for pid, start in result["shown"]["B"]:
        assert (pid, start) == (victim, result["successor_start"])
    # …and the next scan sees the successor holding B, and nobody holding A.
    assert result["after"] == {"A": [], "B": [[victim, None]]}


SWAPPER = """
    for line in commands():
        if line == "swap":
            os.dup2({y}, {x})  # fd {x} is now the other pipe
            say("swapped")
"""


def test_a_descriptor_number_reused_before_the_fill_is_read_is_not_read_as_the_old_pipe(
    spawn: Spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fill is read through a borrowed copy of a holder's descriptor, after every process was read: by
    then the number may name another file. The borrowed copy is checked to be the same pipe (issue 7)."""
    x_read, x_write = os.pipe()
    os.write(x_write, b"x" * 10)
    os.close(x_write)
    y_read, y_write = os.pipe()
    os.write(y_write, b"y" * 500)
    x_inode, y_inode = os.fstat(x_read).st_ino, os.fstat(y_read).st_ino
    child = spawn(SWAPPER.format(x=x_read, y=y_read), pass_fds=(x_read, y_read))
    os.close(x_read)  # only the child holds pipe x now
    original = pipes.collect

    def swap_then_collect(*args: Any, **kwargs: Any) -> Any:
        child.tell("swap")
        child.expect("swapped")
        return original(*args, **kwargs)

    monkeypatch.setattr(pipes, "collect", swap_then_collect)
    snapshot = scan(ScanConfig(kinds=("pipe",), proc=proc_view(tmp_path / "proc", [child.pid])))
    shown = {pipe.inode: pipe.buffered for pipe in snapshot.pipes}
    assert shown[x_inode] is None, "pipe x was shown with the fill of the pipe now on its descriptor"
    assert shown[y_inode] == 500
    os.close(y_read)
    os.close(y_write)
