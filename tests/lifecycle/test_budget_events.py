"""`watch`'s ``budget`` events (issue 14): a budget or an shm mount that crosses its threshold, either way, between
two hand-built snapshots (live.events.diff: a pure diff; the budgets' collector is tested where it reads them)."""

from __future__ import annotations

from dataclasses import replace

from ipcmon.live.events import diff
from ipcmon.model import KINDS, Budget, Capacity, ShmMount, Snapshot

MIB = 1 << 20


def _snapshot(queue_bytes: int, shm_used: int, *, when: float = 0.0) -> Snapshot:
    budgets = (
        Budget("mqueue", "RLIMIT_MSGQUEUE", "bytes", queue_bytes, 819200, uid=4242, user="alice", next_needs=82880),
        Budget("sysv", "kernel.msgmni", "ids", 1, 32000),
    )
    mount = ShmMount("/dev/shm", 23, 64 * MIB, shm_used, 64 * MIB - shm_used, 3, 1000)
    return Snapshot(taken_at=1_790_000_000.0 + when, kinds=KINDS, capacity=Capacity((mount,), budgets))


def test_a_budget_crossing_its_threshold_either_way_is_one_event() -> None:
    calm = _snapshot(2 * 82880, 10 * MIB)
    tight = _snapshot(9 * 82880, 60 * MIB, when=1)
    up = diff(calm, tight)
    assert [(event.mechanism, event.event, event.object, event.key) for event in up] == [
        ("shm", "budget", "/dev/shm", "shm-mount:23"),
        ("mqueue", "budget", "RLIMIT_MSGQUEUE uid 4242", "budget:mqueue:RLIMIT_MSGQUEUE:4242"),
    ]
    assert up[0].detail.startswith("crossed its threshold (ok → warn): nearly full: /dev/shm is 94% full")
    assert up[1].detail.startswith("crossed its threshold (ok → bad): budget: uid 4242 (alice): 745,920 of 819,200")
    assert up[1].detail.endswith("so mq_open will fail with EMFILE")
    down = diff(tight, replace(calm, taken_at=tight.taken_at + 1))
    assert [(event.object, event.detail.split(":")[0]) for event in down] == [
        ("/dev/shm", "back under its threshold (warn → ok)"),
        ("RLIMIT_MSGQUEUE uid 4242", "back under its threshold (bad → ok)"),
    ]


def test_no_event_without_a_crossing_or_without_budgets() -> None:
    tight = _snapshot(9 * 82880, 60 * MIB)
    tighter = _snapshot(9 * 82880 + 100, 61 * MIB, when=1)
    assert diff(tight, tighter) == []  # still bad, still warn: no change of level
    assert diff(replace(tight, capacity=None), tighter) == []  # the earlier scan read no budgets
    assert diff(tight, replace(tighter, capacity=None)) == []
