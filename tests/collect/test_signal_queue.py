"""A Scanner's signal records follow SigQ (signals queued for the whole user) in processes that did not run."""

from __future__ import annotations

import os
import signal

from ipcmon.collect import ScanConfig, Scanner
from ipcmon.model import ProcessSignals, Snapshot
from tests.helpers import Spawn, settle, wait_until

BLOCKS_USR1 = """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    say("ready")
    hold()
"""


def signals_of(snapshot: Snapshot, pid: int) -> ProcessSignals:
    [found] = [record for record in snapshot.signals if record.pid == pid]
    return found


def sig_q(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status", "rb") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith(b"SigQ:"):
            queued, limit = line.split()[1].split(b"/")
            return int(queued), int(limit)
    raise AssertionError(f"no SigQ line for {pid}")


def test_sigq_moves_in_a_process_that_did_not_run(spawn: Spawn) -> None:
    bystander = spawn(BLOCKS_USR1, comm="ipcm-bystander")
    receiver = spawn(BLOCKS_USR1, comm="ipcm-receiver")
    bystander.expect()
    receiver.expect()
    scanner = Scanner(ScanConfig(kinds=("signal",)))
    # Settled: blocked in read(2) and not run between two scans (on a loaded machine it may still be getting
    # there after saying "ready").
    settle(scanner, bystander.pid)
    first = signals_of(scanner.scan(), bystander.pid)

    os.kill(receiver.pid, signal.SIGUSR1)  # blocked: it stays queued, counted in SigQ of every root process
    wait_until(lambda: signals_of(scanner.scan(), receiver.pid).pending, "SIGUSR1 pending")
    seen: dict[str, object] = {}

    def reusing_scan() -> bool:
        # A Scanner reads every process in full now and then (one scan in ten), whether it ran or not: wait for
        # a scan that took the bystander's record over (it has not run), and look at that one.
        seen["before"] = sig_q(bystander.pid)
        seen["again"] = signals_of(scanner.scan(), bystander.pid)
        seen["after"] = sig_q(bystander.pid)
        return bystander.pid in scanner.reused

    wait_until(reusing_scan, "a scan that reuses the bystander's record")
    before, after = seen["before"], seen["after"]
    again = seen["again"]
    assert isinstance(again, ProcessSignals)
    assert (again.queued, again.queue_limit) in {before, after}
    assert again.queued != first.queued  # the receiver's SIGUSR1 is counted (other root processes' may be too)
    assert (again.pending, again.blocked, again.ignored, again.caught) == (
        first.pending, first.blocked, first.ignored, first.caught)
    assert again.blocked == first.blocked != ()
