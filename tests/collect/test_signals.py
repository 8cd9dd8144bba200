"""Signal masks: a real child with blocked, pending (process- and thread-directed), caught and ignored signals."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ipcmon.collect.signals import decode_mask, signal_number
from ipcmon.model import ProcessSignals
from ipcmon.report import signal_row
from ipcmon.text import signal_name
from tests.helpers import Child, Spawn, scan_kinds, tool, wait_until

RT3 = signal.SIGRTMIN + 3

SIGNALLED = f"""
    import threading
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1, {RT3}}})  # threads started below inherit it
    signal.signal(signal.SIGUSR2, lambda number, frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    named, stop = threading.Event(), threading.Event()
    def work():
        set_comm("ipcm\\\\w\\\\nork\\ner")  # /proc status escapes a backslash and a newline; comm does not
        named.set()
        stop.wait()
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    named.wait()
    signal.pthread_kill(worker.ident, signal.SIGUSR1)  # tgkill: pending on the worker thread only
    say("ready", worker.native_id)
    hold()
"""


@pytest.fixture
def signalled(spawn: Spawn) -> tuple[Child, int]:
    """A two-thread child: SIGUSR1 pending on its worker thread and, sent here, on the process."""
    child = spawn(SIGNALLED, comm="ipcm-signals")
    (worker_tid,) = child.expect()
    os.kill(child.pid, signal.SIGUSR1)  # process-directed: the shared pending set (ShdPnd)
    os.kill(child.pid, RT3)
    return child, int(worker_tid)


def signals_of(pid: int) -> ProcessSignals:
    found = [entry for entry in scan_kinds("signal").signals if entry.pid == pid]
    assert len(found) == 1
    return found[0]


def test_pending_blocked_caught_ignored_per_process_and_per_thread(signalled: tuple[Child, int]) -> None:
    child, worker_tid = signalled
    found = signals_of(child.pid)
    inherited = {signal_name(number) for number in signal.pthread_sigmask(signal.SIG_BLOCK, [])}

    assert found.comm == "ipcm-signals"
    assert found.pending == ("SIGUSR1", "SIGRTMIN+3")
    assert set(found.blocked) == {"SIGUSR1", "SIGRTMIN+3"} | inherited
    assert "SIGUSR2" in found.caught
    assert "SIGINT" in found.ignored
    assert "SIGINT" not in found.caught
    assert "SIGUSR1" not in found.caught + found.ignored

    threads = {thread.tid: thread for thread in found.threads}
    assert set(threads) == {child.pid, worker_tid}
    assert threads[child.pid].pending == ()
    assert threads[worker_tid].pending == ("SIGUSR1",)
    assert threads[worker_tid].comm == "ipcm\\w\\nork\ner"
    assert set(threads[worker_tid].blocked) == set(found.blocked)

    assert found.queued is not None and found.queued >= 3  # all of root's queued signals, ours among them
    assert found.queue_limit == resource.getrlimit(resource.RLIMIT_SIGPENDING)[0]

    row = signal_row(found)
    assert row[2] == "SIGUSR1,SIGRTMIN+3 (thread: SIGUSR1)"
    assert row[6] == "2"


def mask(names: tuple[str, ...]) -> int:
    return sum(1 << (signal_number(name) - 1) for name in names)


def test_masks_agree_with_ps(signalled: tuple[Child, int]) -> None:
    child, _ = signalled
    found = signals_of(child.pid)
    # procps prints the process-directed pending set (ShdPnd) and the main thread's masks, as hex.
    output = subprocess.run(
        [tool("ps"), "-o", "pending=,blocked=,ignored=,caught=", "-p", str(child.pid)],
        capture_output=True, text=True, check=True,
    ).stdout
    pending, blocked, ignored, caught = (int(word, 16) for word in output.split())
    assert pending == mask(found.pending) != 0
    assert blocked == mask(found.blocked) != 0
    assert ignored == mask(found.ignored) != 0
    assert caught == mask(found.caught) != 0


def test_a_pending_real_time_signal_is_named_from_sigrtmin(spawn: Spawn) -> None:
    child = spawn(f"""
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGRTMIN, {RT3}, signal.SIGRTMAX}})
        say("ready")
        hold()
    """)
    child.expect()
    for number in (signal.SIGRTMIN, RT3, signal.SIGRTMAX):
        os.kill(child.pid, number)
    assert signals_of(child.pid).pending == ("SIGRTMIN", "SIGRTMIN+3", "SIGRTMAX")


def test_signal_names_and_numbers() -> None:
    assert signal.SIGRTMIN == 34  # glibc keeps 32 and 33 for itself (NPTL)
    assert decode_mask(b"0000000000000000") == ()
    assert decode_mask(b"0000000000000200") == ("SIGUSR1",)
    assert decode_mask(b"0000001000000a02") == ("SIGINT", "SIGUSR1", "SIGUSR2", "SIGRTMIN+3")
    assert decode_mask(b"0000000300000000") == ("SIG33 (glibc)", "SIGRTMIN")
    assert decode_mask(b"8000000000000000") == ("SIGRTMAX",)
    assert decode_mask(b"ffffffffffffffff")[-3:] == ("SIGRTMIN+28", "SIGRTMIN+29", "SIGRTMAX")
    assert len(decode_mask(b"ffffffffffffffff")) == 64
    assert [signal_name(n) for n in (32, 33, 34, 35, 37, 63, 64)] == [
        "SIG32 (glibc)", "SIG33 (glibc)", "SIGRTMIN", "SIGRTMIN+1", "SIGRTMIN+3", "SIGRTMIN+29", "SIGRTMAX",
    ]
    for number in range(1, 65):
        assert signal_number(signal_name(number)) == number
    assert signal_number("usr1") == signal.SIGUSR1
    assert signal_number("SIGRTMAX-1") == 63
    for bad in ("SIGNOPE", "SIGRTMIN+40", "SIG0", "SIG65"):
        with pytest.raises(ValueError):
            signal_number(bad)


def test_a_zombie_has_no_signal_record() -> None:
    """A newcomer saw a stress child killed by SIGTERM and never reaped listed with PENDING SIGTERM, first in the
    Signals view and counted as a process with signals pending: a zombie can receive no signal, and its status still
    shows what it died with. It stays a process of the scan, without a signal record."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(child.pid, signal.SIGTERM)
        wait_until(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
                   "the child a zombie")
        snapshot = scan_kinds("signal")
        assert child.pid in {process.pid for process in snapshot.processes}
        assert child.pid not in {signals.pid for signals in snapshot.signals}
    finally:
        child.kill()
        child.wait()
