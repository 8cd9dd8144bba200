"""Budgets in the rule book, the text snapshot and the JSON (issue 14, section 7): hand-built Capacity records for
the wording and the levels (the collector that fills them from the kernel is another module's), real queues for
the count a queue budget's hazard names, and a real scan that says when it did not read the budgets."""

from __future__ import annotations

import os
from dataclasses import replace

import posix_ipc
import pytest

from ipcmon import health
from ipcmon.export import dumps_capacity, snapshot_to_dict
from ipcmon.model import KINDS, Budget, Capacity, HolderUsage, ShmMount, Snapshot
from ipcmon.report import capacity_lines, render
from tests.helpers import Cleanup, new_name, scan_kinds

MIB = 1 << 20


def _mount(used: int, *, size: int = 64 * MIB, available: int | None = None) -> ShmMount:
    return ShmMount("/dev/shm", 23, size, used, size - used if available is None else available, 12, 1000,
                    named=2 * MIB, deleted=MIB, semaphores=4096, other=used - 3 * MIB - 4096,
                    top_holders=(HolderUsage(4242, "loader\x1b]2;x\x07", 3 * MIB),))


def _queue_budget(used: int | None, limit: int | None = 819200, **fields: object) -> Budget:
    budget = Budget("mqueue", "RLIMIT_MSGQUEUE", "bytes", used, limit, uid=4242, user="alice", next_needs=82880)
    return replace(budget, **fields)


def _snapshot(*budgets: Budget, mounts: tuple[ShmMount, ...] = ()) -> Snapshot:
    capacity = Capacity(mounts, budgets, 8 << 30, 300 * MIB, 5 << 30)
    return Snapshot(taken_at=1_790_000_000.0, kinds=KINDS, capacity=capacity)


def test_the_queue_budget_names_the_failure_before_it_happens() -> None:
    # The case: nine default queues reserve 745,920 of 819,200 bytes; the tenth needs 82,880.
    budget = _queue_budget(9 * 82880)
    assert health.budget_level(budget) == "bad"  # 91 %, and the next default queue does not fit
    problem = health.budget_problem(budget)
    assert problem.startswith("budget: uid 4242 (alice): 745,920 of 819,200 bytes in use (91%)")
    assert "a default queue needs 82,880, so mq_open will fail with EMFILE" in problem


def test_levels_warn_from_the_threshold_bad_when_used_up_or_the_next_does_not_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(health.ENV_BUDGET_THRESHOLD, raising=False)
    plain = Budget("sysv", "kernel.shmmni", "ids", 0, 100)
    assert health.budget_level(replace(plain, used=89)) is None
    assert health.budget_level(replace(plain, used=90)) == "warn"
    assert health.budget_level(replace(plain, used=100)) == "bad"
    assert health.budget_level(_queue_budget(6 * 82880)) is None  # 61 %: the next one fits
    assert health.budget_level(_queue_budget(400000, limit=450000)) == "bad"  # 89 %, but 82,880 > 50,000 left
    # Unknown and unlimited are never a hazard: no made-up number.
    assert health.budget_level(_queue_budget(None)) is None
    assert health.budget_level(_queue_budget(10**9, limit=None, unlimited=True)) is None
    # The threshold is configurable; nonsense falls back to 90 %.
    monkeypatch.setenv(health.ENV_BUDGET_THRESHOLD, "50")
    assert health.budget_level(replace(plain, used=50)) == "warn"
    assert health.mount_level(_mount(33 * MIB)) == "warn"
    monkeypatch.setenv(health.ENV_BUDGET_THRESHOLD, "lots")
    assert health.budget_threshold() == 0.9


@pytest.mark.parametrize(("name", "words"), [
    ("fs.mqueue.queues_max", "ENOSPC for everyone but root"),
    ("fs.pipe-user-pages-soft", "new pipes get the minimum of 2 pages (1 on older kernels)"),
    ("fs.pipe-user-pages-hard", "ENFILE"),
    ("RLIMIT_SIGPENDING", "EAGAIN"),
    ("kernel.shmmni", "shmget will fail with ENOSPC"),
    ("kernel.msgmni", "msgget will fail with ENOSPC"),
    ("kernel.sem semmni", "semget will fail with ENOSPC"),
])
def test_each_limit_says_what_fails(name: str, words: str) -> None:
    budget = Budget("pipe", name, "pages", 95, 100)
    assert words in health.budget_problem(budget)
    assert "at the limit" in health.budget_problem(budget)  # warn: not used up yet
    assert ", so " in health.budget_problem(replace(budget, used=100))  # bad: it fails now


def test_a_nearly_full_mount_says_how_large_a_segment_still_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(health.ENV_BUDGET_THRESHOLD, raising=False)
    assert health.mount_level(_mount(57 * MIB)) is None  # 89 %
    nearly = _mount(60 * MIB)
    assert health.mount_level(nearly) == "warn"
    assert health.mount_problem(nearly).startswith("nearly full: /dev/shm is 94% full (60M of 64M); a segment of up "
                                                   "to 4.0M still fits")
    assert health.mount_level(_mount(60 * MIB, available=0)) == "bad"  # reserved blocks: nothing left for a writer


def test_budget_hazards_are_among_the_snapshots_hazards() -> None:
    snapshot = _snapshot(_queue_budget(9 * 82880), Budget("signal", "RLIMIT_SIGPENDING", "signals", 1, 31000, uid=0),
                         mounts=(_mount(60 * MIB),))
    found = {hazard.key: hazard for hazard in health.hazards(snapshot)}
    assert set(found) == {"budget:mqueue:RLIMIT_MSGQUEUE:4242", "shm-mount:23"}
    assert found["budget:mqueue:RLIMIT_MSGQUEUE:4242"].level == "bad"
    assert found["budget:mqueue:RLIMIT_MSGQUEUE:4242"].object == "RLIMIT_MSGQUEUE uid 4242"
    assert found["shm-mount:23"].level == "warn"
    assert health.budget_mechanism(Budget("sysv", "kernel.msgmni", "ids", 0, 1)) == "sysv-msg"
    assert not list(health.capacity_hazards(Snapshot(taken_at=0.0, kinds=KINDS)))  # budgets not read: no hazard


def test_the_queue_count_is_the_users_queues_in_the_scan(cleanup: Cleanup) -> None:
    names = [cleanup.mqueue(new_name(f"q{index}")) for index in range(2)]
    for name in names:
        posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=10, max_message_size=8192).close()
    snapshot = scan_kinds("mqueue")
    uid = os.getuid()
    mine = [queue for queue in snapshot.mqueues if queue.uid == uid]
    assert {queue.name for queue in mine} >= set(names)
    budget = Budget("mqueue", "RLIMIT_MSGQUEUE", "bytes", 760000, 819200, uid=uid, next_needs=82880)
    problem = health.budget_problem(budget, snapshot)
    assert f"uid {uid}: {len(mine)} queues reserve 760,000 of 819,200 bytes (93%)" in problem


def test_the_text_snapshot_has_a_capacity_section() -> None:
    snapshot = _snapshot(_queue_budget(9 * 82880), _queue_budget(None, uid=1000, user=None, note="not readable: x"),
                         Budget("sysv", "kernel.shmall", "pages", 5, None, unlimited=True), mounts=(_mount(60 * MIB),))
    lines = capacity_lines(snapshot)
    text = "\n".join(lines)
    assert lines[1] == "== Capacity"
    assert "memory: 8.0G total, 5.0G available, 300M shared" in text
    mount = next(line for line in lines if line.startswith("/dev/shm"))
    for cell in ("64M", "60M", "4.0M", "94%", "12/1,000", "2.0M", "1.0M", "4.0K", "4242 loader\\x1b]2;x\\x07 3.0M"):
        assert cell in mount, (cell, mount)
    assert "\x1b" not in text  # a hostile comm is inert
    header = next(line for line in lines if line.startswith("AREA"))
    assert header.split() == ["AREA", "LIMIT", "NAME", "USER", "USED", "LIMIT", "FILL", "NEXT", "NEEDS", "NOTE"]
    rows = [line.split(None, 7) for line in lines if line.startswith(("mqueue", "sysv"))]
    assert rows[0][:7] == ["mqueue", "RLIMIT_MSGQUEUE", "alice", "(4242)", "745,920", "819,200", "bytes"]
    assert rows[1][:6] == ["mqueue", "RLIMIT_MSGQUEUE", "1000", "?", "819,200", "bytes"]
    assert rows[1][-1].endswith("not readable: x")
    assert rows[2][:5] == ["sysv", "kernel.shmall", "-", "5", "unlimited"]
    # The whole report carries it, and its hazards list the budget.
    whole = render(snapshot)
    assert "== Capacity" in whole and "mq_open will fail with EMFILE" in whole


def test_budgets_not_read_says_so_in_text_and_json() -> None:
    snapshot = Snapshot(taken_at=0.0, kinds=KINDS)
    assert capacity_lines(snapshot) == ["", "== Capacity", "budgets not read"]
    assert snapshot_to_dict(snapshot)["capacity"] is None
    assert dumps_capacity(None) == '{"capacity": null, "largest": [], "journal": null}'


def test_json_has_fill_percent_free_and_headroom() -> None:
    snapshot = _snapshot(_queue_budget(9 * 82880), _queue_budget(None), mounts=(_mount(60 * MIB),))
    capacity = snapshot_to_dict(snapshot)["capacity"]
    mount = capacity["shm_mounts"][0]
    assert (mount["fill_percent"], mount["free"], mount["size"], mount["inodes_used"]) == (93.8, 4 * MIB, 64 * MIB, 12)
    assert mount["top_holders"] == [{"pid": 4242, "comm": "loader\x1b]2;x\x07", "bytes": 3 * MIB}]
    known, unknown = capacity["budgets"]
    assert (known["fill_percent"], known["headroom"], known["next_needs"]) == (91.1, 73280, 82880)
    assert (unknown["used"], unknown["fill_percent"], unknown["headroom"]) == (None, None, None)
    assert capacity["memory_total"] == 8 << 30


def test_a_real_scan_says_whether_it_read_the_budgets() -> None:
    # Until the capacity collector lands the scan leaves capacity None; the report must then say so.
    snapshot = scan_kinds("shm")
    text = render(snapshot)
    if snapshot.capacity is None:
        assert "== Capacity\nbudgets not read" in text
    else:
        assert all(budget.name in text for budget in snapshot.capacity.budgets)


def test_roots_pipe_pages_are_a_warning_at_most() -> None:
    """fs/pipe.c holds only processes without CAP_SYS_RESOURCE and CAP_SYS_ADMIN to the pipe page limits: root's
    own have both, a container's root (charged to the same user) usually neither. Another user's are held."""
    for name in ("fs.pipe-user-pages-soft", "fs.pipe-user-pages-hard"):
        over = Budget("pipe", name, "pages", 18112, 16384, uid=0, user="root", next_needs=16)
        assert health.budget_level(over) == "warn"
        words = health.budget_problem(over)
        assert ", so " in words and "without CAP_SYS_RESOURCE or CAP_SYS_ADMIN" in words
        assert "a container's root usually has neither" in words
        assert health.budget_level(replace(over, uid=1000, user="alice")) == "bad"
        assert "container's root" not in health.budget_problem(replace(over, uid=1000, user="alice"))
    # Not every budget of root: queues_max holds root's processes too unless they have CAP_SYS_RESOURCE, and says so.
    assert health.budget_level(Budget("mqueue", "fs.mqueue.queues_max", "queues", 256, 256)) == "bad"
