"""Lineage: the kernel's fork records name every descendant of a process, even one that exited or was reparented to
init, and no other process (issue 16, for the pytest plugin's blame)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

import pytest

from ipcmon.live import tracefs
from ipcmon.live.lineage import Lineage


def test_fork_and_exit_records_parse_their_fields() -> None:
    fork = tracefs.parse_line("  python3-2177  (  2177) [001] ..... 28853.061733: sched_process_fork: "
                              "comm=python3 pid=2177 child_comm=a b child_pid=9 child_pid=2234")
    assert fork is not None and fork.event == "sched_process_fork" and fork.fields["child_pid"] == "2234"
    exit_ = tracefs.parse_line("  sh-2235  (  2235) [001] ..... 28853.063246: sched_process_exit: "
                               "comm=sh pid=2235 prio=120 group_dead=true")
    assert exit_ is not None and exit_.fields["group_dead"] == "true" and exit_.pid == 2235


def _exited_child() -> int:
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    return child


def _orphan() -> int:
    """A grandchild whose parent exited before it (reparented to init); it reports its pid, then exits."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.close(read)
        grandchild = os.fork()
        if grandchild == 0:
            parent, deadline = os.getppid(), time.monotonic() + 10
            while os.getppid() == parent and time.monotonic() < deadline:  # until reparented
                time.sleep(0.01)
            os._exit(0)
        os.write(write, str(grandchild).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(middle, 0)
    with os.fdopen(read) as pipe:
        return int(pipe.read())


def test_lineage_knows_exited_children_and_orphans_and_no_other_process() -> None:
    if os.geteuid() != 0:
        pytest.fail("the fork records need root, as CI is")
    if tracefs.tracing_dir() is None:
        pytest.fail(f"tracefs is not mounted; .ci/run mounts it ({tracefs.MOUNT_HINT})")
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # forked before: not traced
    lineage = Lineage()
    try:
        assert lineage.exact, lineage.reason
        child = _exited_child()
        orphan = _orphan()
        spawned = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                 check=True)
        assert lineage.descends(os.getpid()) is True
        assert lineage.descends(child) is True
        assert lineage.descends(orphan) is True
        assert lineage.descends(int(spawned.stdout)) is True
        assert lineage.descends(unrelated.pid) is False
        assert lineage.descends(1) is False
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{orphan}") and time.monotonic() < deadline:
            time.sleep(0.01)  # the orphan's exit
        lineage.forget_exited()  # a new test: the exited children's pids may be anyone's from now on
        assert lineage.descends(child) is False
        assert lineage.descends(os.getpid()) is True
    finally:
        lineage.close()
        unrelated.kill()
        unrelated.wait()
    instances = os.listdir(os.path.join(tracefs.tracing_dir() or "", "instances"))
    assert not [name for name in instances if name.startswith(tracefs.instance_name())]  # removed on close


def test_lineage_without_fork_records_knows_only_living_descendants(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_options: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tracefs, "TraceInstance", refuse)
    lineage = Lineage()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not lineage.exact and lineage.reason.startswith("not root")
        assert lineage.descends(sleeper.pid) is True  # its parent chain in /proc leads here
        assert lineage.descends(_exited_child()) is None  # gone: cannot be told
        assert lineage.descends(1) is None  # alive, not below: may be a reparented child, cannot be told
    finally:
        sleeper.kill()
        sleeper.wait()
        lineage.close()


def test_a_child_forked_by_a_parent_named_with_a_newline_is_a_descendant() -> None:
    """The fork record prints the parent's comm as it is: a newline in it cut the line, and a child forked then
    exited was no descendant (the lineage still said it was exact)."""
    if os.geteuid() != 0:
        pytest.fail("the fork records need root, as CI is")
    if tracefs.tracing_dir() is None:
        pytest.fail(f"tracefs is not mounted; .ci/run mounts it ({tracefs.MOUNT_HINT})")
    lineage = Lineage()
    try:
        read, write = os.pipe()
        parent = os.fork()
        if parent == 0:  # pragma: no cover (the child)
            os.close(read)
            ctypes.CDLL(None).prctl(15, b"ipcmon-l\nx", 0, 0, 0)  # PR_SET_NAME
            os.write(write, str(_exited_child()).encode())
            os._exit(0)
        os.close(write)
        os.waitpid(parent, 0)
        with os.fdopen(read) as pipe:
            child = int(pipe.read())
        assert lineage.descends(child) is True
        assert lineage.exact, lineage.reason
    finally:
        lineage.close()
