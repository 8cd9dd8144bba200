"""Scanner: the signal masks of a process with several threads are not read again while every thread sleeps in S
with nothing pending or blocked (process._settled_signals), and are read whenever a signal can have been queued
without waking a thread: one stopped by a tracer, one that blocks the signal.

Each child has two threads that sleep (the main one in read(2) on its stdin, the other on a futex); the test sends
the signal to the second thread alone with tgkill(2), as a debugger or a timer's SIGEV_THREAD_ID would.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipcmon.collect import ScanConfig, Scanner, procfs
from ipcmon.model import ProcessSignals, Snapshot
from tests.helpers import Child, Spawn, settle, wait_until

TWO_THREADS = """
import threading
signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # ignored: discarded when sent, unless the thread is traced
BLOCK = {block}
started, ended = threading.Event(), threading.Event()
tid = []
def worker():
    if BLOCK:
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
    tid.append(threading.get_native_id())
    started.set()
    ended.wait()
thread = threading.Thread(target=worker, daemon=True)
thread.start()
started.wait()
say("ready", tid[0])
for command in commands():
    if command == "end":
        ended.set()
        thread.join()
        say("done")
"""

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_LIBC.ptrace.restype = ctypes.c_long
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207  # <linux/ptrace.h>
SYS_TGKILL = 234  # x86_64


@pytest.fixture
def kept_files() -> Iterator[None]:
    """The soft RLIMIT_NOFILE raised as the front ends raise it (procfs.raise_open_files_limit), so that a Scanner
    keeps the child's files even on a machine running hundreds of other processes; put back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    procfs.raise_open_files_limit()
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2048:
        pytest.fail(f"the hard RLIMIT_NOFILE ({hard}) leaves no room for kept /proc files above 1024")
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def two_threads(spawn: Spawn, *, block: bool = False) -> tuple[Child, int]:
    child = spawn(TWO_THREADS.format(block=block))
    return child, int(child.expect()[0])


def tgkill(pid: int, tid: int, signo: int) -> None:
    if _LIBC.syscall(SYS_TGKILL, pid, tid, signo) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


def ptrace(request: int, tid: int) -> None:
    if _LIBC.ptrace(request, tid, None, None) != 0:
        raise OSError(ctypes.get_errno(), f"ptrace({request:#x}, {tid})")


def thread_state(pid: int, tid: int) -> str:
    text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    return text[text.rindex(")") + 2]


def pending_in_proc(pid: int, tid: int) -> int:
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("SigPnd:"):
            return int(line.split()[1], 16)
    return 0


def signals_of(snapshot: Snapshot, pid: int) -> ProcessSignals:
    [found] = [record for record in snapshot.signals if record.pid == pid]
    return found


def thread_pending(snapshot: Snapshot, pid: int, tid: int) -> tuple[str, ...]:
    [thread] = [thread for thread in signals_of(snapshot, pid).threads if thread.tid == tid]
    return thread.pending


@pytest.mark.usefixtures("kept_files")
def test_a_process_whose_threads_all_sleep_is_the_previous_read_itself(spawn: Spawn) -> None:
    """Neither thread runs: the process's read is kept whole, its signal record included (no status read)."""
    child, tid = two_threads(spawn)
    scanner = Scanner(ScanConfig(kinds=("signal",)))
    memory = scanner._memory
    try:
        first = signals_of(settle(scanner, child.pid), child.pid)
        assert {thread.tid for thread in first.threads} == {child.pid, tid}
        assert not first.blocked and not any(thread.blocked for thread in first.threads)
        for _ in range(3):  # a full-read turn of the child in between starts it over
            entry = memory.processes[child.pid]
            snapshot = scanner.scan()
            if memory.processes[child.pid] is entry:
                break
        else:
            pytest.fail(f"process {child.pid}, both threads asleep, was read anew at three scans in a row")
        assert signals_of(snapshot, child.pid) is entry.read.signals
    finally:
        scanner.close()


@pytest.mark.usefixtures("kept_files")
def test_a_signal_to_a_thread_a_tracer_stopped_shows_while_the_others_sleep(spawn: Spawn) -> None:
    """A traced thread in its stop (t) does not wake for a signal (wants_signal): the signal waits on that thread's
    own pending set while no thread runs and the leader, whose state /proc/PID/stat shows, still reads S. The next
    scan takes the process over and must still show the signal pending on that thread."""
    child, tid = two_threads(spawn)
    scanner = Scanner(ScanConfig(kinds=("signal",)))
    attached = False
    try:
        settle(scanner, child.pid)
        ptrace(PTRACE_SEIZE, tid)
        attached = True
        ptrace(PTRACE_INTERRUPT, tid)
        wait_until(lambda: thread_state(child.pid, tid) == "t", f"thread {tid} to stop for its tracer")
        before = settle(scanner, child.pid)  # stopped, it has run: taken over again from here
        assert not thread_pending(before, child.pid, tid)
        tgkill(child.pid, tid, signal.SIGUSR1)
        wait_until(lambda: pending_in_proc(child.pid, tid) & 1 << (signal.SIGUSR1 - 1),
                   f"SIGUSR1 pending on thread {tid}")
        after = scanner.scan()
        assert child.pid in scanner.reused, "the process ran: this test no longer tests a skipped status read"
        assert thread_state(child.pid, tid) == "t" and thread_state(child.pid, child.pid) == "S"
        assert "SIGUSR1" in thread_pending(after, child.pid, tid)
    finally:
        scanner.close()
        if attached:
            ptrace(PTRACE_DETACH, tid)  # from its stop; the ignored SIGUSR1 is then discarded


@pytest.mark.usefixtures("kept_files")
def test_a_signal_a_sleeping_thread_blocks_shows_though_no_thread_ran(spawn: Spawn) -> None:
    """A signal the target thread blocks is queued without waking it: its status is read at every scan."""
    child, tid = two_threads(spawn, block=True)
    scanner = Scanner(ScanConfig(kinds=("signal",)))
    try:
        settle(scanner, child.pid)
        settle(scanner, child.pid)
        tgkill(child.pid, tid, signal.SIGUSR1)
        wait_until(lambda: pending_in_proc(child.pid, tid) & 1 << (signal.SIGUSR1 - 1),
                   f"SIGUSR1 pending on thread {tid}")
        after = scanner.scan()
        assert child.pid in scanner.reused, "the process ran: this test no longer tests a skipped status read"
        assert "SIGUSR1" in thread_pending(after, child.pid, tid)
    finally:
        scanner.close()


@pytest.mark.usefixtures("kept_files")
def test_the_kept_files_of_a_thread_that_ended_are_closed(spawn: Spawn) -> None:
    """A thread's task/TID files are kept open while it lives, and closed by the first scan after it ended (a
    process making and ending threads must not pile up descriptors)."""
    child, tid = two_threads(spawn)
    scanner = Scanner(ScanConfig(kinds=("signal",)))
    files = scanner._memory.files
    names = {f"task/{tid}/stat", f"task/{tid}/schedstat"}
    try:
        settle(scanner, child.pid)
        settle(scanner, child.pid)
        kept = {name for pid, name in files._fds if pid == child.pid}
        assert names <= kept
        child.tell("end")
        child.expect("done")
        snapshot = scanner.scan()
        assert {thread.tid for thread in signals_of(snapshot, child.pid).threads} == {child.pid}
        scanner.scan()
        assert not names & {name for pid, name in files._fds if pid == child.pid}
        assert os.path.exists(f"/proc/{child.pid}")
    finally:
        scanner.close()
