"""A Scanner's signal records follow SigQ (signals queued for the whole user) in processes that did not run, and
what others change while a process sleeps: a blocked signal sent to it, its RLIMIT_SIGPENDING."""

from __future__ import annotations

import os
import resource
import signal
import textwrap

import pytest

from ipcmon.collect import ScanConfig, Scanner, procfs
from ipcmon.model import ProcessSignals, Snapshot
from tests.helpers import Child, Spawn, settle, wait_until

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


SLEEPS = """
    say("ready")
    hold()
"""


def as_user(uid: int, code: str) -> str:
    """Child code run as uid (real, effective and saved), so that SigQ counts only the test's own signals."""
    return f"os.setresgid({uid}, {uid}, {uid})\nos.setresuid({uid}, {uid}, {uid})\n" + textwrap.dedent(code)


def status_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every /proc/…/status procfs reads from now on, in order: by path, or through a file a Scanner keeps open."""
    paths: list[str] = []
    read = procfs.read_bytes
    read_kept = procfs.OpenProcFiles.read

    def counting(path: str, **options: bool) -> bytes:
        if path.endswith("/status"):
            paths.append(path)
        return read(path, **options)

    def counting_kept(files: procfs.OpenProcFiles, pid: int, name: str) -> bytes:
        if name == "status":
            paths.append(f"{files.proc}/{pid}/status")
        return read_kept(files, pid, name)

    monkeypatch.setattr(procfs, "read_bytes", counting)
    monkeypatch.setattr(procfs.OpenProcFiles, "read", counting_kept)
    return paths


CATCHES_USR1 = """
    signal.signal(signal.SIGUSR1, lambda *_: None)
    say("ready")
    hold()
"""


def account(spawn: Spawn, *codes: str) -> list[Child]:
    """Children of a user of the test's own (so SigQ counts only what the test queues), one per code, ascending
    pids behind a first sleeper: a scan reads the first one's status for the account, and may skip the others'."""
    uid = 3_000_000 + os.getpid() % 1_000_000
    children = [spawn(as_user(uid, SLEEPS), comm="ipcm-first")]
    for code in codes:
        child = spawn(as_user(uid, code), comm="ipcm-member")
        while child.pid < children[0].pid:  # pids wrapped: the first must stay the lowest
            child = spawn(as_user(uid, code), comm="ipcm-member")
        children.append(child)
    for child in children:
        child.expect()
    return children


def test_a_sleeper_skipped_follows_sigq_and_a_blocked_signal_shows_at_once(
    spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sleeper blocking nothing is not read again while it sleeps (its status read is skipped), yet its SigQ
    count is its user's, read from another process's status in the same scan; a process blocking a signal is
    read every scan, and a signal sent to it shows in the very next scan."""
    _, sleeper, blocker = account(spawn, SLEEPS, BLOCKS_USR1)
    scanner = Scanner(ScanConfig(kinds=("signal",)), refresh_every=1_000_000)  # no full-read turn in this test
    settle(scanner, sleeper.pid)
    settle(scanner, blocker.pid)
    reads = status_reads(monkeypatch)
    seen: dict[str, ProcessSignals] = {}

    def skipped_scan() -> bool:
        reads.clear()
        snapshot = scanner.scan()
        seen["sleeper"] = signals_of(snapshot, sleeper.pid)
        seen["blocker"] = signals_of(snapshot, blocker.pid)
        return sleeper.pid in scanner.reused and f"/proc/{sleeper.pid}/status" not in reads

    wait_until(skipped_scan, "a scan that skips the sleeper's status")
    first = seen["sleeper"]
    assert (first.pending, first.blocked, first.queued) == ((), (), 0)
    assert blocker.pid in scanner.reused and f"/proc/{blocker.pid}/status" in reads  # it blocks a signal
    assert (seen["blocker"].pending, seen["blocker"].queued) == ((), 0)

    os.kill(blocker.pid, signal.SIGUSR1)  # blocked: it stays queued, counted in SigQ of all three
    assert sig_q(sleeper.pid)[0] == 1
    reads.clear()
    snapshot = scanner.scan()  # the very next scan
    assert sleeper.pid in scanner.reused and f"/proc/{sleeper.pid}/status" not in reads  # still skipped
    assert (signals_of(snapshot, blocker.pid).pending, signals_of(snapshot, blocker.pid).queued) == (("SIGUSR1",), 1)
    again = signals_of(snapshot, sleeper.pid)
    assert again.queued == 1  # its user's count, as another status showed it in this scan
    assert (again.pending, again.blocked, again.ignored, again.caught, again.queue_limit) == (
        first.pending, first.blocked, first.ignored, first.caught, first.queue_limit)


def test_a_signal_sent_to_a_stopped_process_shows_at_once(spawn: Spawn) -> None:
    """A stopped process (T) blocks nothing, yet a signal it catches stays pending without waking it: its status
    is read all the same, and the signal shows in the very next scan."""
    _, stopped = account(spawn, CATCHES_USR1)
    scanner = Scanner(ScanConfig(kinds=("signal",)), refresh_every=1_000_000)
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: sig_state(stopped.pid) == "T", "the child to stop")
        settle(scanner, stopped.pid)
        before = signals_of(settle(scanner, stopped.pid), stopped.pid)
        assert (before.pending, before.blocked) == ((), ()) and "SIGUSR1" in before.caught
        os.kill(stopped.pid, signal.SIGUSR1)
        after = signals_of(scanner.scan(), stopped.pid)  # the very next scan
        assert stopped.pid in scanner.reused  # it has not run: only what others did shows
        assert after.pending == ("SIGUSR1",)
    finally:
        os.kill(stopped.pid, signal.SIGCONT)


def sig_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rpartition(b")")[2].split()[0].decode()


def test_a_new_signal_limit_shows_on_a_skipped_process_within_its_full_read_turn(spawn: Spawn) -> None:
    """RLIMIT_SIGPENDING of a sleeper set from outside (prlimit(2)): it has not run, yet the limit shows within
    refresh_every scans."""
    sleeper = spawn(SLEEPS, comm="ipcm-prlimited")
    sleeper.expect()
    scanner = Scanner(ScanConfig(kinds=("signal",)), refresh_every=3)
    settle(scanner, sleeper.pid)
    soft, hard = resource.prlimit(sleeper.pid, resource.RLIMIT_SIGPENDING)
    lowered = min(soft, hard, 1 << 20) - 7
    resource.prlimit(sleeper.pid, resource.RLIMIT_SIGPENDING, (lowered, hard))
    limits = [signals_of(scanner.scan(), sleeper.pid).queue_limit for _ in range(3)]
    assert limits[-1] == lowered, limits
    assert sig_q(sleeper.pid)[1] == lowered


def test_an_idle_kernel_thread_ignoring_every_signal_keeps_its_record_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernel threads idle in state I (uninterruptible: a signal would not wake them) are skipped only because they
    ignore every signal (kthreadd's children do): their kept record is what a fresh read says."""
    idle = []
    for pid in procfs.pids():
        try:
            stat = procfs.parse_stat(procfs.read_bytes(f"/proc/{pid}/stat"))
        except (procfs.Gone, procfs.Denied):
            continue
        if stat.state == "I" and stat.flags & procfs.PF_KTHREAD:
            idle.append(pid)
    assert idle, "no idle kernel thread (state I) on this kernel (4.14 and later have them)"
    scanner = Scanner(ScanConfig(kinds=("signal",)), refresh_every=1_000_000)
    scanner.scan()
    reads = status_reads(monkeypatch)
    seen: dict[int, ProcessSignals] = {}

    def some_skipped() -> bool:
        reads.clear()
        snapshot = scanner.scan()
        seen.clear()
        seen.update((pid, signals_of(snapshot, pid)) for pid in idle if pid in scanner.reused
                    and f"/proc/{pid}/status" not in reads)
        return bool(seen)

    wait_until(some_skipped, "a scan that skips an idle kernel thread's status")
    monkeypatch.undo()
    fresh = Scanner(ScanConfig(kinds=("signal",))).scan()
    for pid, kept in seen.items():
        now = [record for record in fresh.signals if record.pid == pid]
        if not now:
            continue  # it exited since
        assert len(kept.ignored) == 64 and kept.blocked == () and kept.caught == ()
        # Masks only: a kworker renames itself as it takes work (it may have run since the kept scan).
        assert (now[0].pending, now[0].blocked, now[0].ignored, now[0].caught) == (
            kept.pending, kept.blocked, kept.ignored, kept.caught)
        assert [(t.tid, t.pending, t.blocked) for t in now[0].threads] == [
            (t.tid, t.pending, t.blocked) for t in kept.threads]
