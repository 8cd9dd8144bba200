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
    PIECES_MAX,
    RESULTS,
    SIGNAL_GENERATE,
    TraceInstance,
    TraceRecord,
    TraceText,
    parse_line,
    tracing_dir,
)
from tests.helpers import REPO, Spawn, gather, new_name, wait_until


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


def test_a_newline_in_a_name_cuts_no_record_of_the_real_kernel(tracing: str, spawn: Spawn) -> None:
    """The kernel prints a comm as it is: a target named with a newline cut signal_generate's line in two and the
    signal was never seen (found in review); a sender named with one cut the head of the line."""
    sleep = "signal.signal(signal.SIGUSR1, lambda signum, frame: None)\nsay('ready')\nhold()\n"
    targets = {name: spawn(sleep, comm=name) for name in ("ipcmon-t\nnl", "ipcmon-t\x1b[1mx")}
    sender = spawn("""
        set_comm("ipcmon-s\\nx")
        say("ready")
        for pid in commands():  # waiting for each: the name is in saved_cmdlines before the signal is sent
            os.kill(int(pid), signal.SIGUSR1)
            say("ready")
        """)
    for child in (*targets.values(), sender):
        child.expect()
    with TraceInstance([SIGNAL_GENERATE], tracing) as instance:
        for target in targets.values():
            sender.tell(str(target.pid))
            sender.expect()

        def sent(records: list[TraceRecord]) -> bool:
            return {record.fields.get("pid") for record in records} >= {str(child.pid) for child in targets.values()}

        records = gather(instance.read, sent, "both signals' records")
        lost = instance.lost()
    for name, target in targets.items():
        (record,) = [record for record in records if record.fields.get("pid") == str(target.pid)]
        assert (record.pid, record.comm, record.fields["sig"]) == (sender.pid, "ipcmon-s\nx", str(signal.SIGUSR1.value))
        assert record.fields["comm"] == name
    assert lost == 0


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
    # A record cut short is no record; given up on (TraceText), it says only whose name is now unknown.
    text = "  python3-901 (  901) [000] ..... 5.5: task_rename: pid=901 oldcomm=python3 newcomm=a"
    assert parse_line(text) is None
    cut = parse_line(text, cut=True)
    assert cut is not None and (cut.event, cut.fields) == ("task_rename", {"pid": "901"})
    assert parse_line("python3-9 [000] ..... 1.5: signal_generate: sig=") is None


# What the kernel printed for the signals of test_a_newline_in_a_name_cuts_no_record_of_the_real_kernel (6.18):
# a sender named "snd\nx", targets named "rev\nnl" and three newlines, each printed as it is.
_CUT = (b"           snd\nx-17344   (  17344) [001] d..1. 58315.798155: signal_generate: sig=10 errno=0 code=0 "
        b"comm=rev\nnl pid=17411 grp=1 res=0\n"
        b"CPU:1 [LOST 3 EVENTS]\n"
        b"             \n\n\n-17413   (  17413) [000] dN.2. 58316.002046: signal_generate: sig=17 errno=0 code=2 "
        b"comm=snd\nx pid=17344 grp=1 res=1\n"
        b"           snd\nx-17344   (  17344) [001] d..1. 58315.798175: signal_generate: sig=10 errno=0 code=0 "
        b"comm=\n\n\n pid=17413 grp=1 res=0\n"
        b"      a\nb pid=1-2177  (  2177) [001] ..... 28853.061733: sched_process_fork: "
        b"comm=a\nb pid=1 pid=2177 child_comm=\xff\n pid=3 child_pid=2234\n"
        b"  sh-2235  (  2235) [001] ..... 28853.063246: sched_process_exit: comm=sh\n pid=2235 prio=120 "
        b"group_dead=true\n"
        b"  python3-901 (  901) [000] ..... 5.5: task_rename: pid=901 oldcomm=python3 newcomm=a\nb=c\n "
        b"oom_score_adj=0\n")


def test_a_newline_in_a_sender_s_or_a_target_s_name_cuts_no_record_whatever_the_reads() -> None:
    expected = [
        ("snd\nx", 17344, "signal_generate", {"comm": "rev\nnl", "pid": "17411"}),
        ("\n\n\n", 17413, "signal_generate", {"comm": "snd\nx", "pid": "17344", "res": "1"}),
        ("snd\nx", 17344, "signal_generate", {"comm": "\n\n\n", "pid": "17413"}),
        ("a\nb pid=1", 2177, "sched_process_fork", {"comm": "a\nb pid=1", "child_comm": "\udcff\n pid=3",
                                                  "child_pid": "2234"}),
        ("sh", 2235, "sched_process_exit", {"comm": "sh\n", "group_dead": "true"}),
        ("python3", 901, "task_rename", {"oldcomm": "python3", "newcomm": "a\nb=c\n"}),
    ]
    for size in (len(_CUT), 1, 7, 64):  # read whole, a byte at a time, and in chunks that cut lines anywhere
        text = TraceText()
        records = [record for start in range(0, len(_CUT), size) for record in text.feed(_CUT[start:start + size])]
        got = [(record.comm, record.pid, record.event, {key: record.fields.get(key) for key in fields})
               for record, (_, _, _, fields) in zip(records, expected, strict=True)]
        assert got == expected, size
        assert text.unreadable == 0  # the notice of lost events is counted from the kernel's stats, not here


def test_lines_no_record_can_be_made_of_are_counted_and_a_cut_task_record_still_names_its_task() -> None:
    text = TraceText()
    garbage = b"no record\n" * (PIECES_MAX + 1)
    cut = b"  python3-901 (  901) [000] ..... 5.5: task_rename: pid=901 oldcomm=python3 newcomm=a\n"
    whole = b"  sleep-77 (  77) [000] d..1. 6.5: signal_generate: sig=15 errno=0 code=0 comm=x pid=9 grp=1 res=0\n"
    records = text.feed(garbage + cut + whole)
    assert [(record.event, record.pid) for record in records] == [("task_rename", 901), ("signal_generate", 77)]
    assert records[0].fields == {"pid": "901"}  # its new name is unknown (the reader falls back on /proc's)
    assert text.unreadable == PIECES_MAX + 2


def test_two_instances_of_one_process_coexist_and_both_go(tracing: str) -> None:
    with TraceInstance([SIGNAL_GENERATE], tracing) as first, TraceInstance([SIGNAL_GENERATE], tracing) as second:
        assert second.path == first.path + "-1"
        assert os.path.isdir(first.path) and os.path.isdir(second.path)
    assert not os.path.exists(first.path) and not os.path.exists(second.path)


def test_events_overwritten_in_a_full_buffer_are_counted_as_lost_as_the_stats_say(tracing: str) -> None:
    """A buffer too small for what comes, not read: the kernel overwrites the oldest events and counts them in each
    CPU's stats (``overrun``). lost() reads those files through descriptors kept open since the instance began: what
    it says is what the files say at that moment (read by path just before and just after), and it keeps up as more
    are overwritten."""

    def overruns(instance: TraceInstance) -> int:
        total = 0
        per_cpu = Path(instance.path, "per_cpu")
        for cpu in per_cpu.iterdir():
            for line in (cpu / "stats").read_text().splitlines():
                if line.startswith("overrun:"):
                    total += int(line.split()[1])
        return total

    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # signal_generate is traced for an ignored one too
    try:
        with TraceInstance([SIGNAL_GENERATE], tracing) as instance:
            Path(instance.path, "buffer_size_kb").write_text("4")
            for _ in range(5000):
                os.kill(os.getpid(), signal.SIGUSR2)
            # Other processes' signals keep coming (the trace is the machine's): between two reads of the files.
            before, first, after = overruns(instance), instance.lost(), overruns(instance)
            assert 0 < before <= first <= after
            for _ in range(5000):
                os.kill(os.getpid(), signal.SIGUSR2)
            before, second, after = overruns(instance), instance.lost(), overruns(instance)
            assert first < before <= second <= after
        assert instance.lost() == 0  # closed: nothing read, nothing counted
    finally:
        signal.signal(signal.SIGUSR2, previous)
