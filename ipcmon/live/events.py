"""Lifecycle events from two snapshots (a pure diff, no I/O), and a bounded event history.

Event names by mechanism:

- shm, sem, sysv-shm: created, resized, attached, detached, unlinked-while-held, destroyed, orphaned
- mqueue: created, opened, closed, depth, notify-registered, notify-cleared, unlinked-while-held, destroyed
- pipe, fifo: opened, writer-closed, reader-closed, closed, full, drained
- signal: pending, delivered (left pending), handler-installed, blocked, unblocked (the mask)
- sysv-msg: created, depth, destroyed; sysv-sem: created, destroyed
- any mechanism a process waits on: blocked, unblocked (detail names the system call), deadlock
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ipcmon.model import (
    Event,
    Holder,
    MessageQueue,
    Pipe,
    PipeEnd,
    ProcessSignals,
    ShmSegment,
    Snapshot,
    SysvShm,
    Waiting,
)
from ipcmon.safe import human_bytes


def diff(prev: Snapshot | None, cur: Snapshot) -> list[Event]:
    """Everything that happened between two snapshots, in a stable order. The first snapshot has no events."""
    if prev is None:
        return []
    events: list[Event] = []
    emit = _Emitter(cur.taken_at, events)
    if "shm" in cur.kinds and "shm" in prev.kinds:
        _diff_shm(emit, prev.shm, cur.shm)
    if "mqueue" in cur.kinds and "mqueue" in prev.kinds:
        _diff_mqueues(emit, prev.mqueues, cur.mqueues)
    if "pipe" in cur.kinds and "pipe" in prev.kinds:
        _diff_pipes(emit, prev.pipes, cur.pipes)
    if "signal" in cur.kinds and "signal" in prev.kinds:
        _diff_signals(emit, prev, cur)
    if "sysv" in cur.kinds and "sysv" in prev.kinds:
        _diff_sysv(emit, prev, cur)
    _diff_waiting(emit, prev, cur)
    return events


class _Emitter:
    def __init__(self, when: float, events: list[Event]) -> None:
        self.when = when
        self.events = events

    def __call__(
        self, mechanism: str, event: str, obj: str, key: str, pid: int | None = None, comm: str | None = None,
        detail: str = "",
    ) -> None:
        self.events.append(Event(self.when, mechanism, event, obj, key, pid, comm, "poll", detail))


def _by_key(records: Iterable[Any]) -> dict[str, Any]:
    return {record.object_key: record for record in records}


def holder_detail(holder: Holder) -> str:
    if holder.fd is not None:
        return f"fd {holder.fd} {holder.access}"
    size = f" {human_bytes(holder.mapped_bytes)}" if holder.mapped_bytes is not None else ""
    return f"mapped {holder.prot or holder.access}{size}"


def _holder_id(holder: Holder) -> tuple[int, object]:
    return (holder.pid, holder.fd if holder.fd is not None else ("map", holder.prot))


def _diff_holders(
    emit: _Emitter, mechanism: str, name: str, key: str, before: Sequence[Holder], after: Sequence[Holder],
    *, attach: str = "attached", detach: str = "detached",
) -> None:
    old = {_holder_id(holder): holder for holder in before}
    new = {_holder_id(holder): holder for holder in after}
    for ident in sorted(old.keys() - new.keys(), key=repr):
        holder = old[ident]
        emit(mechanism, detach, name, key, holder.pid, holder.comm, holder_detail(holder))
    for ident in sorted(new.keys() - old.keys(), key=repr):
        holder = new[ident]
        emit(mechanism, attach, name, key, holder.pid, holder.comm, holder_detail(holder))


def _diff_shm(emit: _Emitter, before: Sequence[ShmSegment], after: Sequence[ShmSegment]) -> None:
    old = _by_key(before)
    new = _by_key(after)
    for key, segment in old.items():
        if key in new:
            continue
        _diff_holders(emit, segment.kind, segment.name, key, segment.holders, ())
        emit(segment.kind, "destroyed", segment.name, key, detail=human_bytes(segment.size))
    for key, segment in new.items():
        previous = old.get(key)
        if previous is segment:
            continue  # the same record: a Scanner found nothing changed (collect.recall)
        if previous is None:
            emit(segment.kind, "created", segment.name, key, detail=human_bytes(segment.size))
            _diff_holders(emit, segment.kind, segment.name, key, (), segment.holders)
            if segment.state == "deleted":
                emit(segment.kind, "unlinked-while-held", segment.name, key,
                     detail=f"pins {human_bytes(segment.pinned_bytes)}")
            continue
        if previous.size != segment.size:
            emit(segment.kind, "resized", segment.name, key,
                 detail=f"{human_bytes(previous.size)} → {human_bytes(segment.size)}")
        _diff_holders(emit, segment.kind, segment.name, key, previous.holders, segment.holders)
        if segment.state != previous.state:
            if segment.state == "deleted":
                emit(segment.kind, "unlinked-while-held", segment.name, key,
                     detail=f"pins {human_bytes(segment.pinned_bytes)}")
            elif segment.state == "orphaned":
                emit(segment.kind, "orphaned", segment.name, key, detail=last_holder_detail(previous.holders))


def last_holder_detail(holders: Sequence[Holder]) -> str:
    if not holders:
        return ""
    pids = sorted({(holder.pid, holder.comm) for holder in holders})
    return "last holder " + ", ".join(f"{pid} {comm}" for pid, comm in pids)


def _diff_mqueues(emit: _Emitter, before: Sequence[MessageQueue], after: Sequence[MessageQueue]) -> None:
    old = _by_key(before)
    new = _by_key(after)
    for key, queue in old.items():
        if key not in new:
            _diff_holders(emit, "mqueue", queue.name, key, queue.holders, (), attach="opened", detach="closed")
            emit("mqueue", "destroyed", queue.name, key)
    for key, queue in new.items():
        previous = old.get(key)
        if previous is None:
            emit("mqueue", "created", queue.name, key, detail=_queue_limits(queue))
            _diff_holders(emit, "mqueue", queue.name, key, (), queue.holders, attach="opened", detach="closed")
            continue
        _diff_holders(emit, "mqueue", queue.name, key, previous.holders, queue.holders,
                      attach="opened", detach="closed")
        if previous.messages != queue.messages and queue.messages is not None:
            emit("mqueue", "depth", queue.name, key,
                 detail=f"{previous.messages} → {queue.messages} of {queue.max_messages} messages")
        if queue.notify_pid != previous.notify_pid:
            if queue.notify_pid:
                emit("mqueue", "notify-registered", queue.name, key, queue.notify_pid,
                     detail=f"signal {queue.signo}" if queue.signo else "")
            else:
                emit("mqueue", "notify-cleared", queue.name, key, previous.notify_pid)
        if queue.deleted and not previous.deleted:
            emit("mqueue", "unlinked-while-held", queue.name, key)
        if not queue.holders and previous.holders and not queue.deleted:
            emit("mqueue", "orphaned", queue.name, key, detail=last_holder_detail(previous.holders))


def _queue_limits(queue: MessageQueue) -> str:
    if queue.max_messages is None:
        return ""
    return f"max {queue.max_messages} × {queue.message_size} bytes"


def pipe_label(pipe: Pipe) -> str:
    return f"fifo:{pipe.path}" if pipe.kind == "fifo" else f"pipe:[{pipe.inode}]"


def _end_ids(ends: Sequence[PipeEnd]) -> dict[tuple[int, int], PipeEnd]:
    return {(end.pid, end.fd): end for end in ends}


def _diff_pipes(emit: _Emitter, before: Sequence[Pipe], after: Sequence[Pipe]) -> None:
    old = _by_key(before)
    new = _by_key(after)
    for key, pipe in old.items():
        if key not in new:
            emit(pipe.kind, "closed", pipe_label(pipe), key)
    for key, pipe in new.items():
        previous = old.get(key)
        if previous is pipe:
            continue
        label = pipe_label(pipe)
        if previous is None:
            ends = ", ".join(
                [f"writer {end.pid} fd {end.fd}" for end in pipe.writers]
                + [f"reader {end.pid} fd {end.fd}" for end in pipe.readers]
            )
            emit(pipe.kind, "opened", label, key, detail=ends)
            continue
        for role, old_ends, new_ends in (
            ("writer", previous.writers, pipe.writers),
            ("reader", previous.readers, pipe.readers),
        ):
            gone = _end_ids(old_ends).keys() - _end_ids(new_ends).keys()
            for pid, fd in sorted(gone):
                end = _end_ids(old_ends)[(pid, fd)]
                emit(pipe.kind, f"{role}-closed", label, key, pid, end.comm, f"fd {fd}")
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
        _set_change(emit, entry, key, previous.pending, entry.pending, "pending", "delivered")
        old_threads = {thread.tid: thread for thread in previous.threads}
        for thread in entry.threads:
            before = old_threads.get(thread.tid)
            suffix = f" (thread {thread.tid})"
            _set_change(emit, entry, key, before.pending if before else (), thread.pending, "pending", "delivered",
                        suffix)
        _set_change(emit, entry, key, previous.blocked, entry.blocked, "blocked", "unblocked")
        for name in sorted(set(entry.caught) - set(previous.caught)):
            emit("signal", "handler-installed", obj, key, entry.pid, entry.comm, name)


def _set_change(
    emit: _Emitter, entry: ProcessSignals, key: str, before: Sequence[str], after: Sequence[str],
    added: str, removed: str, suffix: str = "",
) -> None:
    for name in [name for name in after if name not in before]:
        emit("signal", added, str(entry.pid), key, entry.pid, entry.comm, name + suffix)
    for name in [name for name in before if name not in after]:
        emit("signal", removed, str(entry.pid), key, entry.pid, entry.comm, name + suffix)


def sysv_label(segment: SysvShm) -> str:
    return f"key 0x{segment.key & 0xFFFFFFFF:08x} id {segment.id}"


def _diff_sysv(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    old_shm = _by_key(prev.sysv.shm)
    new_shm = _by_key(cur.sysv.shm)
    for key, segment in old_shm.items():
        if key not in new_shm:
            _diff_holders(emit, "sysv-shm", sysv_label(segment), key, segment.holders, ())
            emit("sysv-shm", "destroyed", sysv_label(segment), key, detail=human_bytes(segment.size))
    for key, segment in new_shm.items():
        label = sysv_label(segment)
        previous = old_shm.get(key)
        if previous is None:
            emit("sysv-shm", "created", label, key, segment.cpid, detail=human_bytes(segment.size))
            _diff_holders(emit, "sysv-shm", label, key, (), segment.holders)
            continue
        label = sysv_label(previous) if segment.removed else label  # keep the key it was known by
        _diff_holders(emit, "sysv-shm", label, key, previous.holders, segment.holders)
        if segment.nattch != previous.nattch and not (segment.holders or previous.holders):
            # Attachments we cannot see (hidden processes): report the count at least.
            kind = "attached" if segment.nattch > previous.nattch else "detached"
            emit("sysv-shm", kind, label, key, segment.lpid, detail=f"nattch {previous.nattch} → {segment.nattch}")
        if segment.removed and not previous.removed:
            emit("sysv-shm", "unlinked-while-held", label, key, detail=f"nattch {segment.nattch}")
        if segment.nattch == 0 and previous.nattch > 0 and not segment.removed:
            emit("sysv-shm", "orphaned", label, key, detail=last_holder_detail(previous.holders))
    old_msg = _by_key(prev.sysv.msg)
    new_msg = _by_key(cur.sysv.msg)
    for key, queue in old_msg.items():
        if key not in new_msg:
            emit("sysv-msg", "destroyed", f"key 0x{queue.key & 0xFFFFFFFF:08x} id {queue.id}", key)
    for key, queue in new_msg.items():
        label = f"key 0x{queue.key & 0xFFFFFFFF:08x} id {queue.id}"
        previous_msg = old_msg.get(key)
        if previous_msg is None:
            emit("sysv-msg", "created", label, key)
        elif previous_msg.qnum != queue.qnum:
            pid = queue.lspid if queue.qnum > previous_msg.qnum else queue.lrpid
            emit("sysv-msg", "depth", label, key, pid, detail=f"{previous_msg.qnum} → {queue.qnum} messages")
    old_sem = _by_key(prev.sysv.sem)
    new_sem = _by_key(cur.sysv.sem)
    for key in old_sem.keys() - new_sem.keys():
        emit("sysv-sem", "destroyed", f"id {old_sem[key].id}", key)
    for key in new_sem.keys() - old_sem.keys():
        emit("sysv-sem", "created", f"id {new_sem[key].id}", key, detail=f"{new_sem[key].nsems} semaphores")


def _diff_waiting(emit: _Emitter, prev: Snapshot, cur: Snapshot) -> None:
    old = {process.key: process for process in prev.processes}
    new = {process.key: process for process in cur.processes}
    # A process keyed by pid and start time: a reused pid is a different process.
    for verb, these, others in (("unblocked", old, new), ("blocked", new, old)):
        for ident, process in these.items():
            wait = process.waiting
            other = others.get(ident)
            if wait is None or (other is not None and other.waiting == wait):
                continue
            emit(_wait_mechanism(wait.key), verb, wait.object or "?", wait.key or f"pid:{process.pid}",
                 process.pid, process.comm, _wait_detail(wait))
    old_groups = set(prev.deadlocks)
    for group in cur.deadlocks:
        if group not in old_groups:
            emit("process", "deadlock", ", ".join(map(str, group)), "deadlock:" + ",".join(map(str, group)),
                 detail="each waits on a pipe or queue only the others could release")


def _wait_mechanism(key: str | None) -> str:
    if key is None:
        return "signal"
    return key.split(":", 1)[0]


def _wait_detail(wait: Waiting) -> str:
    call = f"{wait.syscall}({wait.fd})" if wait.fd is not None else wait.syscall
    return f"{call} in {wait.wchan}" if wait.wchan else call


class EventLog:
    """The newest maxlen events; older ones fall off so a week-long run stays the same size."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=maxlen)

    @property
    def maxlen(self) -> int:
        return self._events.maxlen or 0

    def extend(self, events: Iterable[Event]) -> None:
        self._events.extend(events)

    def append(self, event: Event) -> None:
        self._events.append(event)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        """Newest first."""
        return reversed(self._events)

    def for_key(self, key: str) -> list[Event]:
        """One object's history, oldest first."""
        return [event for event in self._events if event.key == key]

    def for_pid(self, pid: int) -> list[Event]:
        return [event for event in self._events if event.pid == pid]
