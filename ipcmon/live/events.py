"""Lifecycle events from two snapshots (a pure diff, no I/O), and a bounded event history.

Event names by mechanism:

- shm, sem, sysv-shm: created, resized, attached, detached, unlinked-while-held, destroyed, orphaned
- mqueue: created, opened, closed, depth, notify-registered, notify-cleared, unlinked-while-held, destroyed
- pipe, fifo: opened, writer-closed, reader-closed, closed, full, drained
- signal: pending, delivered (left pending), handler-installed, mask-blocked, mask-unblocked (the mask)
- memfd, anon: created (first seen), attached, detached, destroyed (never orphaned: no name keeps them)
- sysv-msg: created, depth, destroyed; sysv-sem: created, destroyed
- any mechanism a process waits on: waiting, wait-ended (detail names the system call), deadlock
- any budget (an shm mount's fill, a queue, pipe, signal or SysV limit; mechanism: the budget's area): budget, when
  it crosses its threshold (health.budget_level) either way

and, not a change, the ``state`` lines ``ipcmon watch`` opens with (:func:`state_events`).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar, overload

from ipcmon import health
from ipcmon.model import (
    Budget,
    Deadlock,
    Event,
    EventName,
    Holder,
    Keyed,
    Mechanism,
    MessageQueue,
    PipeEnd,
    Place,
    Process,
    ProcessKey,
    ProcessSignals,
    ScanKind,
    ShmMount,
    ShmSegment,
    Snapshot,
    Stuck,
    Waiting,
    key_mechanism,
)
from ipcmon.safe import counted
from ipcmon.text import (
    deadlock_member_text,
    deadlock_summary,
    holder_detail,
    human_bytes,
    last_holders,
    notify_how,
    signal_names,
    stuck_problem,
    wait_call,
    wait_object,
)


def diff(prev: Snapshot | None, cur: Snapshot) -> list[Event]:
    """Everything that happened between two snapshots, in a stable order. The first snapshot has no events."""
    if prev is None:
        return []
    global _keyed
    events: list[Event] = []
    emit = _Emitter(cur.taken_at, events, _keyed)
    for kind, differ in DIFFERS:
        if kind in cur.kinds and kind in prev.kinds:
            differ(emit, prev, cur)
    _diff_waiting(emit, prev, cur)
    _diff_capacity(emit, prev, cur)
    later = {id(records) for records in (cur.shm, cur.regions, cur.mqueues, cur.pipes, cur.sysv.shm, cur.sysv.msg,
                                         cur.sysv.sem)}
    _keyed = {ident: kept for ident, kept in emit.keyed_now.items() if ident in later}
    return placed(named(events, prev, cur), prev, cur)


def named(events: list[Event], *snapshots: Snapshot) -> list[Event]:
    """The events, each with a pid given its process's name (COMM) when the record it came from had none (a SysV
    segment's creator, a queue's notify registrant: only pids in the kernel's record); the later snapshot's name
    first. Unchanged, and at no cost, when every event with a pid has its name."""
    if not any(event.pid is not None and event.comm is None for event in events):
        return events
    comms: dict[int, str] = {}
    for snapshot in snapshots:
        comms.update((process.pid, process.comm) for process in snapshot.processes)
    return [replace(event, comm=comms[event.pid]) if event.pid is not None and event.comm is None
            and event.pid in comms else event for event in events]


_keyed: dict[int, tuple[Sequence[Any], dict[str, Any]]] = {}
"""The records of the last diff's later snapshot by key, per records tuple (by identity, the tuple held so that its
id names no other): the next diff's earlier snapshot is that one, so its tables are not built again (a large
machine's 5000 pipes and 2000 segments, every second). Replaced whole by each diff: two diffs at once only miss
each other's."""


def placed(events: list[Event], *snapshots: Snapshot) -> list[Event]:
    """The events, each with its object's place (Event.place, issue 15): a segment's, queue's or SysV object's, an
    shm mount's (its ``budget`` events), a process's for its signals and its waits on no object (``pid:N``); the
    later snapshot's place first. Unchanged when no record of these snapshots has a place (a scan that did not read
    namespaces: Snapshot.namespaces empty), so that costs nothing."""
    if not events or not any(snapshot.namespaces for snapshot in snapshots):
        return events
    places: dict[str, Place] = {}
    for snapshot in snapshots:
        places.update(_object_places(snapshot))
        for process in snapshot.processes:
            if process.place is not None:
                places[f"signal:{process.pid}"] = places[f"pid:{process.pid}"] = process.place
    if not places:
        return events
    return [replace(event, place=places[event.key]) if event.key in places else event for event in events]


_places: list[tuple[Snapshot, dict[str, Place]]] = []
"""health.object_places of the last two snapshots placed (by identity): a poll's earlier snapshot is the last
poll's later one."""


def _object_places(snapshot: Snapshot) -> dict[str, Place]:
    for kept, places in _places:
        if kept is snapshot:
            return places
    places = health.object_places(snapshot)
    _places[:] = [*_places[-1:], (snapshot, places)]
    return places


Record = TypeVar("Record", bound=Keyed)


class _Emitter:
    def __init__(self, when: float, events: list[Event],
                 keyed: dict[int, tuple[Sequence[Any], dict[str, Any]]] | None = None) -> None:
        self.when = when
        self.events = events
        self.keyed_before = keyed or {}
        self.keyed_now: dict[int, tuple[Sequence[Any], dict[str, Any]]] = {}

    def by_key(self, records: Sequence[Any]) -> dict[str, Any]:
        """The records by object key (not to be changed: the next diff may be handed the same table)."""
        kept = self.keyed_before.get(id(records))
        keyed = kept[1] if kept is not None and kept[0] is records else _by_key(records)
        self.keyed_now[id(records)] = (records, keyed)
        return keyed

    def changes(self, before: Sequence[Record], after: Sequence[Record]) -> tuple[
        list[tuple[str, Record]], list[tuple[str, Record | None, Record]]
    ]:
        """What differs between two scans' records of one kind: (key, record) for each record gone, in the earlier
        order; (key, earlier record or None, record) for each new or changed one, in the later order. A record that
        is the same object in both (a Scanner reuses what did not change) is in neither.

        When both hold the same keys at the same places (a Scanner's tables, most scans) the tables are walked side
        by side comparing identities, and no keyed table is built: 5,000 pipes and 2,000 segments every second."""
        if before is after:
            return [], []
        if len(before) == len(after):
            moved = [(old, new) for old, new in zip(before, after, strict=True) if old is not new]
            if all(old.object_key == new.object_key for old, new in moved):
                return [], [(new.object_key, old, new) for old, new in moved]
        old_keyed: dict[str, Record] = self.by_key(before)
        new_keyed: dict[str, Record] = self.by_key(after)
        gone = [(key, record) for key, record in old_keyed.items() if key not in new_keyed]
        came = [(key, old_keyed.get(key), record) for key, record in new_keyed.items()
                if old_keyed.get(key) is not record]
        return gone, came

    def __call__(
        self, mechanism: Mechanism, event: EventName, obj: str, key: str, pid: int | None = None,
        comm: str | None = None, detail: str = "",
    ) -> None:
        self.events.append(Event(self.when, mechanism, event, obj, key, pid, comm, "poll", detail))


def _by_key(records: Iterable[Any]) -> dict[str, Any]:
    return {record.object_key: record for record in records}


def _holder_id(holder: Holder) -> tuple[int, object]:
    return (holder.pid, holder.fd if holder.fd is not None else ("map", holder.prot))


_Holds = dict[int, dict[tuple[int, object], Holder]]
"""Each process's holds of one object (by pid), each hold by its _holder_id."""


def _hold_order(ident: tuple[int, object]) -> tuple[int, int, str]:
    """Descriptors by number, then mappings by protection."""
    how = ident[1]
    return (0, how, "") if isinstance(how, int) else (1, 0, repr(how))


def _holds_by_pid(holders: Sequence[Holder]) -> _Holds:
    holds: _Holds = {}
    for holder in holders:
        holds.setdefault(holder.pid, {})[_holder_id(holder)] = holder
    return holds


def _diff_holders(
    emit: _Emitter, mechanism: Mechanism, name: str, key: str, before: Sequence[Holder], after: Sequence[Holder],
    *, attach: EventName = "attached", detach: EventName = "detached",
) -> None:
    """At most one detach and one attach event per process: a process that gained holds since the last scan
    (one shmat; shm_open and mmap; two opens of a queue) is one ``attached`` naming them all (``fd 3 rw,
    mapped rw-s 8.0K``), and one that lost holds one ``detached``. A process's descriptors and mappings of
    one object are one holding to the person watching: each used to be an event of its own (issue 12)."""
    old = _holds_by_pid(before)
    new = _holds_by_pid(after)
    changes: tuple[tuple[EventName, _Holds, _Holds], ...] = ((detach, old, new), (attach, new, old))
    for event, these, others in changes:
        for pid in sorted(these):
            other = others.get(pid, {})
            holds = [these[pid][ident] for ident in sorted(these[pid].keys() - other.keys(), key=_hold_order)]
            if holds:
                emit(mechanism, event, name, key, pid, holds[0].comm, ", ".join(holder_detail(h) for h in holds))


def _diff_shm(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    gone, came = emit.changes(prev.shm, cur.shm)
    for key, segment in gone:
        _diff_holders(emit, segment.kind, segment.name, key, segment.holders, ())
        emit(segment.kind, "destroyed", segment.name, key, detail=human_bytes(segment.size))
    for key, previous, segment in came:  # not the records a Scanner found unchanged (the same objects)
        if previous is None:
            emit(segment.kind, "created", segment.name, key, detail=human_bytes(segment.size))
            _diff_holders(emit, segment.kind, segment.name, key, (), segment.holders)
            if segment.state == "deleted":
                emit(segment.kind, "unlinked-while-held", segment.name, key, detail=_pins_held(segment))
            continue
        if previous.size != segment.size:
            emit(segment.kind, "resized", segment.name, key,
                 detail=f"{human_bytes(previous.size)} → {human_bytes(segment.size)}")
        # Which came first, an unlink or a detach between two scans, the scans cannot tell: the unlink is put first,
        # since every holder that let go after it is then in order, and the one that let go before it while another
        # kept the object is the only case left wrong (the Monitor's inotify path orders that one: monitor.py).
        unlinked = segment.state != previous.state and segment.state == "deleted"
        if unlinked:
            emit(segment.kind, "unlinked-while-held", segment.name, key, detail=_pins_held(segment))
        _diff_holders(emit, segment.kind, segment.name, key, previous.holders, segment.holders)
        if segment.state != previous.state and segment.state == "orphaned":
            emit(segment.kind, "orphaned", segment.name, key, detail=last_holders(previous.holders))


def held_by(holders: Iterable[Holder]) -> str:
    """``held by 4242 python3, 4243 cat``: the processes that still hold an unlinked object, one each; raw."""
    seen: dict[int, str] = {}
    for holder in holders:
        seen.setdefault(holder.pid, f"{holder.pid} {holder.comm or '?'}")
    return "held by " + ", ".join(seen.values()) if seen else ""


def _pins_held(segment: ShmSegment) -> str:
    """``pins 4.0K; held by 4242 python3``."""
    held = held_by(segment.holders)
    return f"pins {human_bytes(segment.pinned_bytes)}" + (f"; {held}" if held else "")


def _diff_regions(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    """memfd and anonymous regions: created when first seen, attached and detached by holder, destroyed with
    their last holder (no name keeps them alive, so never orphaned)."""
    gone, came = emit.changes(prev.regions, cur.regions)
    for key, region in gone:
        _diff_holders(emit, region.kind, region.label, key, region.holders, ())
        emit(region.kind, "destroyed", region.label, key, detail=human_bytes(region.size))
    for key, previous, region in came:
        if previous is None:
            emit(region.kind, "created", region.label, key, detail=human_bytes(region.size))
            _diff_holders(emit, region.kind, region.label, key, (), region.holders)
            continue
        _diff_holders(emit, region.kind, region.label, key, previous.holders, region.holders)


def _diff_mqueues(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    gone, came = emit.changes(prev.mqueues, cur.mqueues)
    for key, queue in gone:
        _diff_holders(emit, "mqueue", queue.name, key, queue.holders, (), attach="opened", detach="closed")
        emit("mqueue", "destroyed", queue.name, key)
    for key, previous, queue in came:
        if previous is None:
            emit("mqueue", "created", queue.name, key, detail=_queue_limits(queue))
            _diff_holders(emit, "mqueue", queue.name, key, (), queue.holders, attach="opened", detach="closed")
            continue
        if queue.deleted and not previous.deleted:  # before the closes of the same scan, as for segments
            emit("mqueue", "unlinked-while-held", queue.name, key, detail=held_by(queue.holders))
        _diff_holders(emit, "mqueue", queue.name, key, previous.holders, queue.holders,
                      attach="opened", detach="closed")
        if previous.messages != queue.messages and queue.messages is not None:
            emit("mqueue", "depth", queue.name, key,
                 detail=f"{previous.messages} → {queue.messages} of {queue.max_messages} messages")
        if queue.notify_pid != previous.notify_pid:
            if queue.notify_pid:
                emit("mqueue", "notify-registered", queue.name, key, queue.notify_pid,
                     detail=notify_how(queue))
            else:
                emit("mqueue", "notify-cleared", queue.name, key, previous.notify_pid)
        if health.queue_orphaned(queue) and previous.holders:
            emit("mqueue", "orphaned", queue.name, key, detail=last_holders(previous.holders))


def _queue_limits(queue: MessageQueue) -> str:
    if queue.max_messages is None:
        return ""
    return f"max {queue.max_messages} × {queue.message_size} bytes"


def _end_ids(ends: Sequence[PipeEnd]) -> dict[tuple[int, int], PipeEnd]:
    return {(end.pid, end.fd): end for end in ends}


def _diff_pipes(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    gone, came = emit.changes(prev.pipes, cur.pipes)
    for key, pipe in gone:
        emit(pipe.kind, "closed", pipe.ref, key)
    for key, previous, pipe in came:
        label = pipe.ref
        if previous is None:
            ends = ", ".join(
                [f"writer {end.pid} fd {end.fd}" for end in pipe.writers]
                + [f"reader {end.pid} fd {end.fd}" for end in pipe.readers]
            )
            emit(pipe.kind, "opened", label, key, detail=ends)
            continue
        ends_closed: tuple[tuple[EventName, Sequence[PipeEnd], Sequence[PipeEnd]], ...] = (
            ("writer-closed", previous.writers, pipe.writers),
            ("reader-closed", previous.readers, pipe.readers),
        )
        for closed, old_ends, new_ends in ends_closed:
            # One event per process, as for holders: its stdout and stderr on one pipe close as one exit.
            gone_ends = _end_ids(old_ends)
            by_pid: dict[int, list[PipeEnd]] = {}
            for ident in sorted(gone_ends.keys() - _end_ids(new_ends).keys()):
                by_pid.setdefault(ident[0], []).append(gone_ends[ident])
            for pid, mine in by_pid.items():
                emit(pipe.kind, closed, label, key, pid, mine[0].comm, ", ".join(f"fd {end.fd}" for end in mine))
        was_full = "full" in previous.flags
        is_full = "full" in pipe.flags
        if is_full and not was_full:
            emit(pipe.kind, "full", label, key, detail=human_bytes(pipe.buffered))
        elif was_full and not is_full:
            emit(pipe.kind, "drained", label, key, detail=human_bytes(pipe.buffered))


def _diff_signals(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    old: dict[int, ProcessSignals] = {entry.pid: entry for entry in prev.signals}
    old_starts = {process.pid: process.start_ticks for process in prev.processes}
    new_starts = {process.pid: process.start_ticks for process in cur.processes}
    for entry in cur.signals:
        previous = old.get(entry.pid)
        same_process = previous is not None and old_starts.get(entry.pid) == new_starts.get(entry.pid)
        obj = str(entry.pid)
        key = entry.object_key
        if not same_process or previous is None:
            for name in entry.pending:
                emit("signal", "pending", obj, key, entry.pid, entry.comm, name)
            for thread in entry.threads:
                for name in thread.pending:
                    emit("signal", "pending", obj, key, entry.pid, entry.comm, f"{name} (thread {thread.tid})")
            continue
        if previous is entry or (previous.pending, previous.blocked, previous.caught, previous.threads) == (
                entry.pending, entry.blocked, entry.caught, entry.threads):
            continue  # nothing below can differ (a Scanner keeps the record itself for a process that did not run)
        _set_change(emit, entry, key, previous.pending, entry.pending, "pending", "delivered")
        old_threads = {thread.tid: thread for thread in previous.threads}
        for thread in entry.threads:
            before = old_threads.get(thread.tid)
            suffix = f" (thread {thread.tid})"
            _set_change(emit, entry, key, before.pending if before else (), thread.pending, "pending", "delivered",
                        suffix)
        _mask_change(emit, entry, key, previous.blocked, entry.blocked)
        for name in sorted(set(entry.caught) - set(previous.caught)):
            emit("signal", "handler-installed", obj, key, entry.pid, entry.comm, name)


def _set_change(
    emit: _Emitter, entry: ProcessSignals, key: str, before: Sequence[str], after: Sequence[str],
    added: EventName, removed: EventName, suffix: str = "",
) -> None:
    for name in [name for name in after if name not in before]:
        emit("signal", added, str(entry.pid), key, entry.pid, entry.comm, name + suffix)
    for name in [name for name in before if name not in after]:
        emit("signal", removed, str(entry.pid), key, entry.pid, entry.comm, name + suffix)


def _mask_change(emit: _Emitter, entry: ProcessSignals, key: str, before: Sequence[str], after: Sequence[str]) -> None:
    """At most one ``mask-blocked`` and one ``mask-unblocked`` per process a poll, naming every signal: one
    sigprocmask(2) changes the whole mask (a full set blocked around a fork was 60 events), and between two
    scans the calls cannot be told apart."""
    changes: tuple[tuple[EventName, list[str]], ...] = (
        ("mask-blocked", [name for name in after if name not in before]),
        ("mask-unblocked", [name for name in before if name not in after]))
    for event, names in changes:
        if names:
            emit("signal", event, str(entry.pid), key, entry.pid, entry.comm, signal_names(names, ", "))


def _diff_sysv(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    old_shm = emit.by_key(prev.sysv.shm)
    new_shm = emit.by_key(cur.sysv.shm)
    for key, segment in old_shm.items():
        if key not in new_shm:
            _diff_holders(emit, "sysv-shm", segment.label, key, segment.holders, ())
            emit("sysv-shm", "destroyed", segment.label, key, detail=human_bytes(segment.size))
    for key, segment in new_shm.items():
        label = segment.label
        previous = old_shm.get(key)
        if previous is None:
            emit("sysv-shm", "created", label, key, segment.cpid, detail=human_bytes(segment.size))
            _diff_holders(emit, "sysv-shm", label, key, (), segment.holders)
            continue
        label = previous.label if segment.removed else label  # keep the key it was known by
        _diff_holders(emit, "sysv-shm", label, key, previous.holders, segment.holders)
        if segment.nattch != previous.nattch and not (segment.holders or previous.holders):
            # Attachments we cannot see (hidden processes): report the count at least.
            kind: EventName = "attached" if segment.nattch > previous.nattch else "detached"
            emit("sysv-shm", kind, label, key, segment.lpid, detail=f"nattch {previous.nattch} → {segment.nattch}")
        if segment.removed and not previous.removed:
            emit("sysv-shm", "unlinked-while-held", label, key, detail=f"nattch {segment.nattch}")
        if health.sysv_shm_orphaned(segment) and previous.nattch > 0:
            emit("sysv-shm", "orphaned", label, key, detail=last_holders(previous.holders))
    old_msg = emit.by_key(prev.sysv.msg)
    new_msg = emit.by_key(cur.sysv.msg)
    for key, queue in old_msg.items():
        if key not in new_msg:
            emit("sysv-msg", "destroyed", queue.label, key)
    for key, queue in new_msg.items():
        label = queue.label
        previous_msg = old_msg.get(key)
        if previous_msg is None:
            emit("sysv-msg", "created", label, key)
        elif previous_msg.qnum != queue.qnum:
            pid = queue.lspid if queue.qnum > previous_msg.qnum else queue.lrpid
            emit("sysv-msg", "depth", label, key, pid, detail=f"{previous_msg.qnum} → {queue.qnum} messages")
    old_sem = emit.by_key(prev.sysv.sem)
    new_sem = emit.by_key(cur.sysv.sem)
    # A semaphore set's events name it by id alone (not its label), as they always have.
    for key in old_sem.keys() - new_sem.keys():
        emit("sysv-sem", "destroyed", f"id {old_sem[key].id}", key)
    for key in new_sem.keys() - old_sem.keys():
        emit("sysv-sem", "created", f"id {new_sem[key].id}", key, detail=f"{new_sem[key].nsems} semaphores")


def _diff_waiting(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    # Only waiting processes (a process without a wait has nothing to compare), keyed by pid and start time: a reused
    # pid is a different process.
    old, new = _waiting_pairs(prev.processes, cur.processes)
    changes: tuple[tuple[EventName, dict[ProcessKey, Process], dict[ProcessKey, Process]], ...] = (
        ("wait-ended", old, new), ("waiting", new, old))
    for verb, these, others in changes:
        for ident, process in these.items():
            wait = process.waiting
            other = others.get(ident)
            if wait is None or wait.kind == "child" or (other is not None and other.waiting == wait):
                continue  # a wait for a child is every shell's between commands: the Stuck list has it, not events
            emit(wait_mechanism(wait), verb, wait_target(wait), wait.key or f"pid:{process.pid}",
                 process.pid, process.comm, wait_call(wait))
    old_groups = {deadlock.key for deadlock in prev.deadlocks}
    new_groups = {deadlock.key for deadlock in cur.deadlocks}
    stuck = {entry.pid: entry for entry in cur.stuck}
    for deadlock in cur.deadlocks:
        if deadlock.key not in old_groups:
            emit("process", "deadlock", ", ".join(map(str, deadlock.pids)), deadlock.key,
                 detail=_deadlock_detail(deadlock, stuck))
    for deadlock in prev.deadlocks:
        if deadlock.key not in new_groups:
            emit("process", "deadlock-ended", ", ".join(map(str, deadlock.pids)), deadlock.key,
                 detail=_ended_detail(deadlock, cur))


def _waiting_pairs(before: Sequence[Process], after: Sequence[Process]) -> tuple[
    dict[ProcessKey, Process], dict[ProcessKey, Process]
]:
    """The waiting processes of two scans whose waits may differ, keyed by pid and start time (a reused pid is a
    different process), in scan order. A process record that is the same object in both (a Scanner's: nothing of
    it moved) is left out; when the two scans list the same processes in the same places (most scans), the lists
    are walked side by side and no other record is keyed (a large machine's thousand workers in pause(2))."""
    if len(before) == len(after):
        moved = [(old, new) for old, new in zip(before, after, strict=True) if old is not new]
        if all(old.pid == new.pid for old, new in moved):
            return ({old.key: old for old, _ in moved if old.waiting is not None},
                    {new.key: new for _, new in moved if new.waiting is not None})
    return ({process.key: process for process in before if process.waiting is not None},
            {process.key: process for process in after if process.waiting is not None})


def _budget_levels(snapshot: Snapshot) -> dict[str, tuple[health.Level | None, ShmMount | Budget]]:
    """Each shm mount and budget of the snapshot by key: its level (None below the threshold) and itself."""
    capacity = snapshot.capacity
    if capacity is None:
        return {}
    levels: dict[str, tuple[health.Level | None, ShmMount | Budget]] = {}
    for mount in capacity.shm_mounts:
        levels[health.mount_key(mount)] = (health.mount_level(mount), mount)
    for budget in capacity.budgets:
        levels[health.budget_key(budget)] = (health.budget_level(budget), budget)
    return levels


def _diff_capacity(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    """``budget`` when an shm mount or a budget crosses its threshold, either way (ok → warn → bad and back): the
    detail says which way and how full it is now. Nothing when either scan did not read the budgets, and nothing
    for one that appears or goes (a user's first or last process). Only levels are compared; the words are made
    for what crossed (they read the whole snapshot)."""
    old = _budget_levels(prev)
    for key, (level, item) in _budget_levels(cur).items():
        before = old.get(key)
        if before is None or before[0] == level:
            continue
        worse = _BUDGET_ORDER[level] < _BUDGET_ORDER[before[0]]
        direction = "crossed its threshold" if worse else "back under its threshold"
        if isinstance(item, Budget):
            mechanism, label, words = (health.budget_mechanism(item), health.budget_label(item),
                                       health.budget_problem(item, cur))
        else:
            mechanism, label, words = "shm", item.path, health.mount_problem(item)
        emit(mechanism, "budget", label, key, detail=f"{direction} ({before[0] or 'ok'} → {level or 'ok'}): {words}")


_BUDGET_ORDER: dict[health.Level | None, int] = {"bad": 0, "warn": 1, None: 2}
"""Most serious first; None is a budget below its threshold."""


_KEYLESS_MECHANISMS: dict[str, Mechanism] = {"signal": "signal", "open": "fifo"}
"""The mechanism of a wait on no listed object, by its kind: a signal wait, a FIFO's open() (no descriptor yet);
anything else (a wait for a child) is the ``process``'s."""


def wait_mechanism(wait: Waiting) -> Mechanism:
    """What a wait's events are about: the mechanism of the object it waits on (its key), else by its kind."""
    mechanism = key_mechanism(wait.key) if wait.key is not None else None
    return mechanism or _KEYLESS_MECHANISMS.get(wait.kind, "process")


def wait_target(wait: Waiting) -> str:
    """An event's object for a wait: what it waits on (text.wait_object), a FIFO open by its path alone (which end
    it waits for is the detail's, not the object's name)."""
    if wait.kind == "open" and wait.path:
        return f"fifo:{wait.path}"
    return wait_object(wait)


def _ended_detail(deadlock: Deadlock, cur: Snapshot) -> str:
    """How a deadlock ended: ``pid 5 a exited; pid 6 b no longer waits``, member by member."""
    alive = {process.pid for process in cur.processes}
    waiting = {entry.pid for entry in cur.stuck}
    parts = []
    for member in deadlock.members:
        how = "exited" if member.pid not in alive else "waits still" if member.pid in waiting else "no longer waits"
        parts.append(f"pid {member.pid} {member.comm} {how}")
    return "; ".join(parts)


def _deadlock_detail(deadlock: Deadlock, stuck: dict[int, Stuck]) -> str:
    """The sentence and every member: ``pid 5 a and pid 6 b each wait …. pid 5 a: write pipe:[7]; released only by
    pid 6 b (…) | pid 6 b: …``."""
    members = " | ".join(deadlock_member_text(member, deadlock, stuck) for member in deadlock.members)
    return f"{deadlock_summary(deadlock, stuck)}. {members}"


def state_events(snapshot: Snapshot, mechanisms: Collection[str] | None = None) -> list[Event]:
    """What is stuck now, as ``state`` events (not changes): one per deadlock (mechanism ``process``, its pids as
    the object, its key), then one per deadlocked or blocked process (the mechanism and object it waits on; the
    state, call and object, since when and who could release it in the detail), only those on the given
    mechanisms when given (``--kind``: monitor.mechanisms_for); when nothing is, one that says so and how many
    processes wait in the ordinary way (object ``-``, key ``state:none``).

    ``ipcmon watch`` prints them first, so that someone who starts it on a machine already hung sees why.
    """
    events: list[Event] = []
    emit = _Emitter(snapshot.taken_at, events)
    stuck = {entry.pid: entry for entry in snapshot.stuck}
    for deadlock in snapshot.deadlocks:
        emit("process", "state", ", ".join(map(str, deadlock.pids)), deadlock.key,
             detail=f"deadlock: {_deadlock_detail(deadlock, stuck)}")
    for entry in snapshot.stuck:
        if entry.state == "waiting":
            continue
        wait = entry.waiting
        mechanism = wait_mechanism(wait)
        if mechanisms is not None and mechanism not in mechanisms and mechanism != "process":
            continue
        emit(mechanism, "state", wait_target(wait), wait.key or f"pid:{entry.pid}", entry.pid,
             entry.comm, stuck_problem(entry, snapshot.taken_at))
    if not events:
        idle = len(snapshot.stuck)
        emit("process", "state", "-", "state:none",
             detail=f"nothing deadlocked or blocked; {counted(idle, 'process waits', 'processes wait')} on IPC in the "
                    "ordinary way")
    return placed(events, snapshot)


DIFFERS: tuple[tuple[ScanKind, Callable[[_Emitter, Snapshot, Snapshot], None]], ...] = (
    ("shm", _diff_shm),
    ("memfd", _diff_regions),
    ("mqueue", _diff_mqueues),
    ("pipe", _diff_pipes),
    ("signal", _diff_signals),
    ("sysv", _diff_sysv),
)
"""One entry per mechanism, in event order: the scan kind both snapshots must include, and its diff."""


class PidSelection:
    """Which events ``--pid`` keeps: those of the selected processes, and those of every object one of them holds
    or held (issue 13). An object stays selected after its holder let go, for as long as it exists: the
    ``orphaned`` or ``destroyed`` that follows is part of its story. What was held is remembered across scans,
    one key per object that still exists, so the memory is as large as the system's objects at most.
    """

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = frozenset(pids)
        self.held: set[str] = set()
        """Keys of objects a selected process holds or held, among those the last snapshot still had."""

    def keep(self, events: Iterable[Event], snapshot: Snapshot) -> list[Event]:
        """The events (a diff that ended in this full, unrestricted snapshot) that :meth:`wants`, after adding
        what the selected processes hold in the snapshot; then objects it no longer has are forgotten."""
        pids = self.pids
        alive: set[str] = set()
        holding: list[tuple[str, Iterable[Holder | PipeEnd]]] = [
            *((segment.object_key, segment.holders) for segment in snapshot.shm),
            *((region.object_key, region.holders) for region in snapshot.regions),
            *((queue.object_key, queue.holders) for queue in snapshot.mqueues),
            *((sysv.object_key, sysv.holders) for sysv in snapshot.sysv.shm),
            *((pipe.object_key, (*pipe.readers, *pipe.writers)) for pipe in snapshot.pipes),
        ]
        for key, holders in holding:
            alive.add(key)
            if key not in self.held and any(holder.pid in pids for holder in holders):
                self.held.add(key)
        kept = [event for event in events if self.wants(event)]
        alive.update(queue.object_key for queue in snapshot.sysv.msg)
        alive.update(semaphores.object_key for semaphores in snapshot.sysv.sem)
        self.held &= alive
        return kept

    def wants(self, event: Event) -> bool:
        """Whether the event is about a selected process or an object one of them holds or held."""
        if event.pid in self.pids or event.key in self.held:
            return True
        if event.key.startswith(("signal:", "deadlock:")):
            # A process's signals, or a deadlock's members: named by pid in the key.
            members = event.key.partition(":")[2].split(",")
            return any(member.isdigit() and int(member) in self.pids for member in members)
        return False


class EventLog(Sequence[Event]):
    """The newest maxlen events, newest first; older ones fall off so a week-long run stays the same size.

    Each event is numbered as it is appended (0, 1, 2…; never reused): a reader that remembers :attr:`appended`
    gets what came since from :meth:`newer_than` and knows that numbers below :attr:`oldest` fell off, without
    copying the log (issue 12: the dashboard copied all 10,000 events on every scan).
    """

    def __init__(self, maxlen: int = 10_000) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=maxlen)
        self.appended = 0
        """Events appended since the log was made: the number the next one gets."""

    @property
    def maxlen(self) -> int:
        return self._events.maxlen or 0

    @property
    def oldest(self) -> int:
        """The number of the oldest event still kept (== appended when the log is empty)."""
        return self.appended - len(self._events)

    def extend(self, events: Iterable[Event]) -> None:
        added = list(events)
        self._events.extend(added)
        self.appended += len(added)

    def append(self, event: Event) -> None:
        self._events.append(event)
        self.appended += 1

    def newer_than(self, number: int, limit: int | None = None) -> list[Event]:
        """The events numbered ``number`` and above that are still kept, oldest first (the oldest ``limit`` of
        them): O(events newer than ``number``), not O(log)."""
        count = min(self.appended - number, len(self._events))
        if count <= 0:
            return []
        skip = count - limit if limit is not None and limit < count else 0
        newest = list(itertools.islice(reversed(self._events), skip, count))
        newest.reverse()
        return newest

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        """Newest first."""
        return reversed(self._events)

    def __reversed__(self) -> Iterator[Event]:
        """Oldest first."""
        return iter(self._events)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        """Newest first: ``log[0]`` is the newest event, ``log[:50]`` the newest fifty (a list)."""
        if isinstance(index, int):
            return self._events[-1 - index]
        start, stop, step = index.indices(len(self._events))
        if step > 0:
            return list(itertools.islice(reversed(self._events), start, stop, step))
        return list(self)[index]

    def for_key(self, key: str) -> list[Event]:
        """One object's history, oldest first."""
        return [event for event in self._events if event.key == key]

    def for_pid(self, pid: int) -> list[Event]:
        return [event for event in self._events if event.pid == pid]
