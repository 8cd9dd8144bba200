"""Budgets (issue 14) against the kernel: a user's queues until mq_open fails, a resized pipe, the sysctls as ipcs
shows them, and (test_capacity_namespace.py) a small tmpfs filled past 90 %."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest

from ipcmon import health
from ipcmon.collect import ScanConfig, Scanner, scan
from ipcmon.collect.capacity import SHM_NO_LIMIT, mq_reservation, read_msgqueue_limit, shmem_usage
from ipcmon.model import Budget, Snapshot
from tests.helpers import DEADLINE, REPO, new_name

MQUEUE_DIR = "/dev/mqueue"
DEFAULT_QUEUE = 82_880
"""What the issue says a default queue (10 × 8,192) reserves: 81,920 + 10 × (48 + 48)."""

# A child as an unused uid (no other test or process counts against its budgets), with a lowered limit.
CHILD = """
import ctypes, errno, fcntl, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.restype = ctypes.c_int
libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
"""

QUEUES = CHILD + """
made = 0
while True:
    fd = libc.mq_open(f"{PREFIX}-{made}".encode(), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600, None)
    if fd < 0:
        break
    made += 1
print("made", made, ctypes.get_errno(), flush=True)
import resource
for line in sys.stdin:  # "limit N": lower its own RLIMIT_MSGQUEUE (prlimit(1) on it would need CAP_SYS_RESOURCE)
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (int(line.split()[1]),) * 2)
    print("ok", flush=True)
"""

PIPES = CHILD + """
big = os.pipe()
fcntl.fcntl(big[1], fcntl.F_SETPIPE_SZ, 256 * 1024)
small = os.pipe()
print("made", fcntl.fcntl(big[1], fcntl.F_GETPIPE_SZ), fcntl.fcntl(small[1], fcntl.F_GETPIPE_SZ), flush=True)
sys.stdin.read()
"""


def free_uid() -> int:
    """A uid no process runs as now (so its budgets count only what the test makes)."""
    taken = {os.stat(f"/proc/{name}").st_uid for name in os.listdir("/proc") if name.isdigit()
             and os.path.exists(f"/proc/{name}")}
    while True:
        uid = random.randint(61000, 64999)
        if uid not in taken:
            return uid


@contextlib.contextmanager
def as_user(uid: int, code: str, *, msgqueue: int | None = None) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Run code as uid (setpriv), with RLIMIT_MSGQUEUE lowered (prlimit) when given; yields it and the words of
    its first line; kills it by pid afterwards, whatever happened."""
    for tool in ("setpriv", "prlimit"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} (util-linux) is needed")
    if os.geteuid() != 0:
        pytest.fail("these tests need root (to run a child as another user)")
    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "/usr/bin/python3", "-c", code]
    if msgqueue is not None:
        command = ["prlimit", f"--msgqueue={msgqueue}:{msgqueue}", *command]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd="/")
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], DEADLINE)
        line = child.stdout.readline() if ready else ""
        if not line.startswith("made"):
            child.kill()
            pytest.fail(f"child said {line!r}; stderr: {child.communicate()[1]}")
        yield child, line.split()[1:]
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def budgets(snapshot: Snapshot, name: str, uid: int | None = None) -> Budget:
    assert snapshot.capacity is not None
    found = [b for b in snapshot.capacity.budgets if b.name == name and b.uid == uid]
    assert len(found) == 1, f"{name} for uid {uid}: {found}"
    return found[0]


def test_default_queue_reservation_is_the_issues_number() -> None:
    assert mq_reservation(10, 8192) == DEFAULT_QUEUE
    assert 9 * DEFAULT_QUEUE == 745_920 and 10 * DEFAULT_QUEUE > 819_200


@pytest.mark.parametrize("slack", [0, -1])
def test_reserved_bytes_are_what_the_kernel_accepted(slack: int) -> None:
    """Default queues until mq_open fails with EMFILE, under a limit of exactly 3 reservations (and one byte
    less): the kernel accepts 3 (then 2), which pins a queue's charge to DEFAULT_QUEUE, and ipcmon's sum and
    next_needs say the next one cannot fit."""
    uid = free_uid()
    limit = 3 * DEFAULT_QUEUE + slack
    prefix = new_name("cap")
    try:
        with as_user(uid, f"PREFIX = {prefix!r}\n" + QUEUES, msgqueue=limit) as (child, (made, error)):
            assert int(error) == errno.EMFILE
            assert int(made) == (3 if slack == 0 else 2)
            snapshot = scan(ScanConfig(kinds=("mqueue",), mqueue_dir=MQUEUE_DIR))
            mine = [q for q in snapshot.mqueues if q.name.startswith(prefix)]
            assert len(mine) == int(made) and {q.uid for q in mine} == {uid}
            budget = budgets(snapshot, "RLIMIT_MSGQUEUE", uid)
            assert budget.used == int(made) * DEFAULT_QUEUE
            assert budget.limit == limit == read_msgqueue_limit(child.pid).value
            assert budget.next_needs == DEFAULT_QUEUE
            assert budget.used <= budget.limit < budget.used + budget.next_needs  # the kernel refused the next
            assert budget.fill == pytest.approx(budget.used / limit)
            # The hazard said so before the kernel refused: bad, naming the error, even at 66 % (one byte short).
            (hazard,) = [h for h in health.capacity_hazards(snapshot) if h.key == health.budget_key(budget)]
            assert hazard.level == "bad" and hazard.problem.endswith("so mq_open will fail with EMFILE")
            assert f"a default queue needs {DEFAULT_QUEUE:,}" in hazard.problem
            queues_max = budgets(snapshot, "fs.mqueue.queues_max")
            assert queues_max.used is not None and queues_max.used >= int(made)
    finally:
        for index in range(4):
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_message_queue(f"{prefix}-{index}")


def test_scanner_reads_a_changed_limit_on_the_process_turn() -> None:
    """A Scanner reads /proc/PID/limits once and keeps it; the process lowers it (prlimit(1) from another process
    would change it without it running), and the change shows by the process's full-read turn."""
    uid = free_uid()
    prefix = new_name("cap")
    try:
        with as_user(uid, f"PREFIX = {prefix!r}\n" + QUEUES, msgqueue=2 * DEFAULT_QUEUE) as (child, (made, _)):
            assert made == "2"
            scanner = Scanner(ScanConfig(kinds=("mqueue",), mqueue_dir=MQUEUE_DIR), refresh_every=3)
            first = scanner.scan()
            assert budgets(first, "RLIMIT_MSGQUEUE", uid).limit == 2 * DEFAULT_QUEUE
            # Only the processes of users who own a queue have their limits read (here the child alone, unless
            # something else on the machine owns a queue too: other things live here).
            owners = {queue.uid for queue in first.mqueues}
            readers = sum(process.uid in owners for process in first.processes)
            assert uid in owners and scanner.remembered()["capacity.limits"] == readers
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(f"limit {DEFAULT_QUEUE}\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "ok"
            seen = [budgets(scanner.scan(), "RLIMIT_MSGQUEUE", uid).limit for _ in range(3)]
            assert seen[-1] == DEFAULT_QUEUE, seen
            assert seen[0] == 2 * DEFAULT_QUEUE or seen == [DEFAULT_QUEUE] * 3, seen
            assert read_msgqueue_limit(child.pid).value == DEFAULT_QUEUE
    finally:
        for index in range(3):
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_message_queue(f"{prefix}-{index}")


def test_lowest_limit_of_a_users_processes_is_shown() -> None:
    uid = free_uid()
    prefix = new_name("cap")
    try:
        with as_user(uid, f"PREFIX = {prefix!r}\n" + QUEUES, msgqueue=DEFAULT_QUEUE), \
                as_user(uid, f"PREFIX = {prefix + 'b'!r}\n" + QUEUES, msgqueue=2 * DEFAULT_QUEUE):
            budget = budgets(scan(ScanConfig(kinds=("mqueue",), mqueue_dir=MQUEUE_DIR)), "RLIMIT_MSGQUEUE", uid)
            # The charge is the user's, not the process's: the second, allowed two, made one beside the first's.
            assert budget.used == 2 * DEFAULT_QUEUE
            assert budget.limit == DEFAULT_QUEUE
            assert "lowest of 2 values in force (82,880, 165,760)" in budget.note
    finally:
        for name in (f"{prefix}-0", f"{prefix}b-0", f"{prefix}b-1", f"{prefix}-1", f"{prefix}b-2"):
            with contextlib.suppress(posix_ipc.ExistentialError):
                posix_ipc.unlink_message_queue(name)


def test_resized_pipe_and_its_users_pages() -> None:
    uid = free_uid()
    with as_user(uid, PIPES) as (child, (big, small)):
        assert (int(big), int(small)) == (256 * 1024, 16 * 4096)
        snapshot = scan(ScanConfig(kinds=("pipe",)))
        capacities = sorted(p.capacity or 0 for p in snapshot.pipes
                            if {e.pid for e in (*p.readers, *p.writers)} == {child.pid})
        assert capacities == [16 * 4096, 256 * 1024]
        page = os.sysconf("SC_PAGE_SIZE")
        soft = budgets(snapshot, "fs.pipe-user-pages-soft", uid)
        assert soft.used == (256 * 1024 + 16 * 4096) // page
        assert soft.limit == int(Path("/proc/sys/fs/pipe-user-pages-soft").read_text()) or soft.unlimited
        assert soft.next_needs == 16
        hard = budgets(snapshot, "fs.pipe-user-pages-hard", uid)
        hard_value = int(Path("/proc/sys/fs/pipe-user-pages-hard").read_text())
        assert (hard.unlimited, hard.limit) == ((True, None) if hard_value == 0 else (False, hard_value))
        assert budgets(snapshot, "fs.pipe-max-size").limit == int(Path("/proc/sys/fs/pipe-max-size").read_text())
        # A Scanner hands over the same pipe records scan after scan, and keeps their owners: the same pages.
        scanner = Scanner(ScanConfig(kinds=("pipe",)))
        assert [budgets(scanner.scan(), "fs.pipe-user-pages-soft", uid).used for _ in range(3)] == [soft.used] * 3


def test_signal_budget_is_sigq() -> None:
    snapshot = scan(ScanConfig(kinds=("signal",)))
    mine = next(s for s in snapshot.signals if s.pid == os.getpid())
    budget = budgets(snapshot, "RLIMIT_SIGPENDING", os.getuid())
    assert budget.used is not None and budget.used >= 0
    assert budget.limit is not None and budget.limit <= (mine.queue_limit or 0)


def _ipcs_limits() -> dict[str, int]:
    output = subprocess.run(["ipcs", "-l"], capture_output=True, text=True, check=True).stdout
    return {key.strip(): int(value) for key, value in re.findall(r"^(.+?) = (\d+)$", output, re.MULTILINE)}


def test_sysctl_budgets_agree_with_ipcs_and_proc() -> None:
    snapshot = scan(ScanConfig(kinds=("mqueue", "sysv"), mqueue_dir=MQUEUE_DIR))
    ipcs = _ipcs_limits()
    limit = {b.name: b.limit for b in snapshot.capacity.budgets if b.uid is None} if snapshot.capacity else {}
    assert limit["kernel.shmmni"] == ipcs["max number of segments"]
    # kernel.shmmax and shmall at the kernel's "no limit" default read unlimited (limit None): ipcs prints the number.
    shmmax, shmall = (int(Path(f"/proc/sys/kernel/{name}").read_text()) for name in ("shmmax", "shmall"))
    assert shmmax // 1024 == ipcs["max seg size (kbytes)"]
    assert limit["kernel.shmmax"] == (None if shmmax >= SHM_NO_LIMIT else shmmax)
    assert limit["kernel.shmall"] == (None if shmall >= SHM_NO_LIMIT else shmall)
    page = os.sysconf("SC_PAGE_SIZE")
    if shmall * page < 2**64:
        assert shmall * page // 1024 == ipcs["max total shared memory (kbytes)"]
    else:  # the "unlimited" default overflows 64 bits in bytes: ipcs then prints a number near 2**64
        assert ipcs["max total shared memory (kbytes)"] > 2**63
    assert limit["kernel.msgmni"] == ipcs["max queues system wide"]
    assert limit["kernel.msgmax"] == ipcs["max size of message (bytes)"]
    assert limit["kernel.msgmnb"] == ipcs["default max size of queue (bytes)"]
    assert limit["kernel.sem.semmni"] == ipcs["max number of arrays"]
    assert limit["kernel.sem.semmsl"] == ipcs["max semaphores per array"]
    assert limit["kernel.sem.semmns"] == ipcs["max semaphores system wide"]
    assert limit["kernel.sem.semopm"] == ipcs["max ops per semop call"]
    for name in ("queues_max", "msg_max", "msgsize_max", "msg_default", "msgsize_default"):
        assert limit[f"fs.mqueue.{name}"] == int(Path(f"/proc/sys/fs/mqueue/{name}").read_text()), name


def test_sysv_usage_counts_a_segment_and_a_set() -> None:
    import sysv_ipc

    page = os.sysconf("SC_PAGE_SIZE")
    segment = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=3 * page + 1)
    semaphores = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX)
    try:
        snapshot = scan(ScanConfig(kinds=("sysv",)))
        mine = next(s for s in snapshot.sysv.shm if s.id == segment.id)
        assert mine.size == 3 * page + 1
        shmall = budgets(snapshot, "kernel.shmall")
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
        assert shmall.used is not None and shmall.used >= 4  # 3 pages and a byte take 4 pages
        assert budgets(snapshot, "kernel.shmmni").used == len(snapshot.sysv.shm) <= len(rows) + 1
        assert budgets(snapshot, "kernel.sem.semmni").used == len(snapshot.sysv.sem) >= 1
        assert budgets(snapshot, "kernel.sem.semmns").used == sum(s.nsems for s in snapshot.sysv.sem)
        assert budgets(snapshot, "kernel.msgmax").used is None  # a per-message limit: nothing to count
    finally:
        segment.remove()
        semaphores.remove()


def test_shmem_usage_of_a_process_mapping_a_segment() -> None:
    import mmap

    name = new_name("pss")
    fd = os.open(f"/dev/shm{name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, 1 << 20)
        with mmap.mmap(fd, 1 << 20) as mapped:
            mapped.write(b"x" * (1 << 20))
            usage = shmem_usage(os.getpid())
            assert usage is not None and usage.rss is not None and usage.pss is not None
            assert usage.rss >= 1 << 20 and usage.pss >= 1 << 20
    finally:
        os.close(fd)
        os.unlink(f"/dev/shm{name}")
    assert shmem_usage(2**22 + 12345) is None  # no such process


def test_no_capacity_for_a_scan_of_no_budgeted_kind() -> None:
    assert scan(ScanConfig(kinds=())).capacity is None
    snapshot = scan(ScanConfig(kinds=("signal",)))
    assert snapshot.capacity is not None and {b.area for b in snapshot.capacity.budgets} == {"signal"}


def test_missing_mqueue_mount_is_said() -> None:
    # A queue this test holds open is seen through its descriptor; unused ones are not: the count is a lower bound,
    # so the budget's use is unknown (no fill, no headroom) and the note gives the bound.
    name = new_name("cap")
    queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX)
    try:
        snapshot = scan(ScanConfig(kinds=("mqueue",), mqueue_dir=None, find_mqueue=False))
        budget = budgets(snapshot, "fs.mqueue.queues_max")
        assert budget.used is None and budget.fill is None
        # fs.mqueue.queues_max is per IPC namespace: another namespace's held queues (a container's) do not count.
        held = len([queue for queue in snapshot.mqueues if queue.place is None or queue.place.host])
        assert held >= 1 and budget.note.startswith(f"no mqueue filesystem is mounted: at least {held} (")
    finally:
        queue.close()
        queue.unlink()



def test_unlimited_and_unreadable_limits(tmp_path: Path) -> None:
    """RLIM_INFINITY, which a test cannot set here (raising a hard limit needs CAP_SYS_RESOURCE): canned limits."""
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max msgqueue size         unlimited            unlimited            bytes\n")
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "limits").write_text("Max open files  1024  4096  files\n")
    assert read_msgqueue_limit(7, str(tmp_path)) == (True, None)
    assert read_msgqueue_limit(8, str(tmp_path)) == (False, None)  # no such line: not a made-up number
    assert read_msgqueue_limit(9, str(tmp_path)) == (False, None)  # gone


def test_unlimited_signal_queue_reads_unlimited() -> None:
    from ipcmon.collect.capacity import RLIM_INFINITY, signal_budgets
    from ipcmon.model import Process, ProcessSignals

    processes = tuple(Process(pid, 1, "p", (), 4242, None, 0, 0.0) for pid in (10, 11))
    signals = (ProcessSignals(10, "p", (), (), (), (), queued=3, queue_limit=RLIM_INFINITY),
               ProcessSignals(11, "p", (), (), (), (), queued=3, queue_limit=100))
    (budget,) = signal_budgets(Snapshot(taken_at=0.0, kinds=("signal",), processes=processes, signals=signals))
    assert (budget.used, budget.limit, budget.unlimited) == (3, 100, False)
    assert budget.note == "lowest of 2 values in force (100, unlimited)"
    (alone,) = signal_budgets(Snapshot(taken_at=0.0, kinds=("signal",), processes=processes[:1], signals=signals[:1]))
    assert (alone.limit, alone.unlimited, alone.fill) == (None, True, None)


def test_per_object_caps_are_no_budgets_that_fill() -> None:
    # A default queue is at fs.mqueue.msg_max and msgsize_max, a pipe resized to fs.pipe-max-size is at it: the next
    # queue or pipe is not stopped by either, so they have no fill and raise no hazard (they did, as "100 %").
    prefix = new_name("cap")
    queue = posix_ipc.MessageQueue(prefix, posix_ipc.O_CREX, max_messages=10, max_message_size=8192)
    read_end, write_end = os.pipe()
    try:
        with open("/proc/sys/fs/pipe-max-size") as sysctl:
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, int(sysctl.read()))
        snapshot = scan(ScanConfig(kinds=("mqueue", "pipe"), mqueue_dir=MQUEUE_DIR))
        for name in ("fs.mqueue.msg_max", "fs.mqueue.msgsize_max", "fs.pipe-max-size"):
            budget = budgets(snapshot, name)
            assert budget.per_object and budget.used == budget.limit and budget.fill is None, name
            assert health.budget_level(budget) is None, name
        assert not [h for h in health.capacity_hazards(snapshot) if "max" in h.object]
        assert not budgets(snapshot, "fs.mqueue.queues_max").per_object
    finally:
        queue.close()
        queue.unlink()
        os.close(read_end)
        os.close(write_end)


_SIGNALS = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})
for _ in range(12):
    os.kill(os.getpid(), signal.SIGRTMIN)   # each queues an entry, up to RLIMIT_SIGPENDING; the rest are dropped
print("made", flush=True)
import sys; sys.stdin.read()
"""


def test_leaks_names_a_used_up_signal_budget() -> None:
    uid = free_uid()
    command = ["prlimit", "--sigpending=10:10", "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
               "/usr/bin/python3", "-c", _SIGNALS]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "made"
        budget = budgets(scan(ScanConfig(kinds=("signal",))), "RLIMIT_SIGPENDING", uid)
        assert (budget.used, budget.limit) == (10, 10)
        shown = subprocess.run([sys.executable, "-m", "ipcmon", "leaks"], capture_output=True, text=True,
                               cwd=REPO, timeout=60).stdout
        (line,) = [line for line in shown.splitlines() if "RLIMIT_SIGPENDING" in line]
        assert line.startswith("✖ bad") and f"uid {uid}: 10 of 10 signals in use (100%)" in line
        assert line.endswith("so sigqueue() will fail with EAGAIN, and more real-time signals sent by kill() are "
                             "silently lost")
    finally:
        child.kill()
        child.communicate()


def test_an_unknown_use_is_said_as_such() -> None:
    budget = Budget(area="mqueue", name="RLIMIT_MSGQUEUE", unit="bytes", used=None, limit=819_200, uid=7)
    assert health.budget_problem(budget) == "budget: uid 7: ? of 819,200 bytes in use (?)"
