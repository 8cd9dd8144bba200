"""The private tracefs instance (issue 16): a real signal and real mq_open/mq_unlink calls come back with the acting
process, the instance is removed on close, and one left by an ipcmon killed with SIGKILL is removed at the next
start. Needs root and tracefs mounted (.ci/run mounts it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ipcmon.live.tracefs import (
    MQ_OPEN,
    MQ_UNLINK,
    RESULTS,
    SIGNAL_GENERATE,
    TraceInstance,
    TraceRecord,
    parse_line,
    tracing_dir,
)
from tests.helpers import REPO, gather, new_name, wait_until


@pytest.fixture
def tracing() -> str:
    if os.geteuid() != 0:
        pytest.fail("a tracefs instance needs root, as CI is")
    found = tracing_dir()
    if found is None:
        pytest.fail("tracefs is not mounted; .ci/run mounts it (mount -t tracefs nodev /sys/kernel/tracing)")
    return found


def test_a_signal_names_its_sender_target_and_result(tracing: str) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # vfork lets Popen return before execve renames the child: wait for the name the assertion expects.
        wait_until(lambda: Path(f"/proc/{sleeper.pid}/comm").read_text().strip() == "sleep", "sleep's exec")
        with TraceInstance([SIGNAL_GENERATE], tracing) as instance:
            os.kill(sleeper.pid, signal.SIGUSR1)

            def sent(records: list[TraceRecord]) -> bool:
                return any(record.fields.get("pid") == str(sleeper.pid) for record in records)

            records = gather(instance.read, sent, "the signal's record")
    finally:
        sleeper.kill()
        sleeper.wait()
    (record,) = [record for record in records if record.fields.get("pid") == str(sleeper.pid)
                 and record.fields["sig"] == str(signal.SIGUSR1.value)]
    assert record.pid == os.getpid()
    assert record.fields["comm"] == "sleep"
    assert RESULTS[int(record.fields["res"])] == "delivered"


def test_mq_open_and_unlink_name_the_calling_process(tracing: str) -> None:
    name = new_name("trace")
    code = ("import os, posix_ipc, sys\n"
            "queue = posix_ipc.MessageQueue(sys.argv[1], posix_ipc.O_CREX)\nqueue.unlink()\nprint(os.getpid())\n")
    with TraceInstance([MQ_OPEN, MQ_UNLINK], tracing) as instance:
        child = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, check=True)
        pid = int(child.stdout)

        def both(records: list[TraceRecord]) -> bool:
            return {record.event for record in records if record.pid == pid} >= {"sys_mq_open", "sys_mq_unlink"}

        records = gather(instance.read, both, "the mq_open and mq_unlink records")
    opened = [record for record in records if record.pid == pid and record.event == "sys_mq_open"]
    assert opened and int(opened[0].fields["oflag"], 16) & os.O_CREAT


def test_the_instance_is_removed_on_close_and_after_sigkill_at_the_next_start(tracing: str) -> None:
    with TraceInstance([SIGNAL_GENERATE], tracing) as instance:
        path = instance.path
        assert os.path.isdir(path)
    assert not os.path.exists(path)
    code = ("import sys, time\nfrom ipcmon.live.tracefs import TraceInstance, SIGNAL_GENERATE\n"
            "instance = TraceInstance([SIGNAL_GENERATE], sys.argv[1])\nprint(instance.path, flush=True)\n"
            "time.sleep(60)\n")
    doomed = subprocess.Popen([sys.executable, "-c", code, tracing], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert doomed.stdout is not None
        left = doomed.stdout.readline().strip()
        assert os.path.isdir(left)
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        if doomed.stdout is not None:
            doomed.stdout.close()
    try:
        assert os.path.isdir(left), "SIGKILL leaves the instance behind: the case the next start must clean"
        with TraceInstance([SIGNAL_GENERATE], tracing):
            assert not os.path.exists(left)
    finally:
        if os.path.isdir(left):
            os.rmdir(left)


def test_lines_of_odd_shape() -> None:
    # Canned lines: a comm with a dash and a space, and the buffer's own notices, cannot be made to order.
    line = ("   my-app x-4321    (   4300) [001] d..1.  26344.348229: signal_generate: sig=15 errno=0 code=0 "
            "comm=a pid=1 b pid=77 grp=1 res=1")
    record = parse_line(line)
    assert record is not None
    assert (record.comm, record.tid, record.pid, record.cpu) == ("my-app x", 4321, 4300, 1)
    assert (record.fields["comm"], record.fields["pid"], RESULTS[int(record.fields["res"])]) == ("a pid=1 b", "77",
                                                                                             "ignored")
    returned = parse_line("  python3-11101   (  11101) [000] ..... 26605.158595: sys_mq_unlink -> 0xfffffffffffffffe")
    assert returned is not None and (returned.event, returned.returned) == ("sys_mq_unlink", -2)
    assert parse_line("CPU:1 [LOST 38 EVENTS]") is None
    # task_rename as Linux 6.14 prints it (no pid=: the task of the record), a name with spaces and '='.
    renamed = parse_line("  python3-901 (  901) [000] ..... 5.5: task_rename: oldcomm=python3 newcomm=a b=c "
                         "oom_score_adj=0")
    assert renamed is not None and renamed.fields == {"oldcomm": "python3", "newcomm": "a b=c", "adj": "0"}
    born = parse_line("  bash-20975 [000] ..... 7.1: task_newtask: pid=21020 comm=my sh clone_flags=1200000 "
                      "oom_score_adj=0")
    assert born is not None and (born.fields["pid"], born.fields["comm"]) == ("21020", "my sh")
    # A name with a newline cuts the line: the record says only whose name is now unknown.
    cut = parse_line("  python3-901 (  901) [000] ..... 5.5: task_rename: pid=901 oldcomm=python3 newcomm=a")
    assert cut is not None and (cut.event, cut.fields) == ("task_rename", {"pid": "901"})
    assert parse_line("python3-9 [000] ..... 1.5: signal_generate: sig=") is None


def test_two_instances_of_one_process_coexist_and_both_go(tracing: str) -> None:
    with TraceInstance([SIGNAL_GENERATE], tracing) as first, TraceInstance([SIGNAL_GENERATE], tracing) as second:
        assert second.path == first.path + "-1"
        assert os.path.isdir(first.path) and os.path.isdir(second.path)
    assert not os.path.exists(first.path) and not os.path.exists(second.path)
