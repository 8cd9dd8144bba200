"""Storms of acts made into counted records (issue 16, bad input): memory stays bounded whatever the rate.

A process that creates and unlinks 10,000 segments a second would otherwise make 20,000 records a second. Acts are
grouped by who did what to which mechanism (for a signal, also which signal to whom; a signal the kernel sent is
grouped without its sender, since SIGCHLD comes from every exiting child): the first BURST acts of a group in a
WINDOW pass one by one, unchanged; the rest of that window become one record whose ``count`` says how many it
stands for, whose object is the common start of their names followed by ``*`` (``/job-*``) and whose key is None
when they were different objects. It is emitted when the window ends. At most GROUPS_MAX groups are open at once:
beyond, every open group is closed (its record emitted) early.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from ipcmon.model import Attribution

WINDOW = 1.0
"""Seconds a group stays open."""
BURST = 16
"""Acts of one group per window passed one by one before the rest are counted."""
GROUPS_MAX = 4096


def group_of(record: Attribution) -> tuple[object, ...]:
    """What makes two acts the same act, for coalescing."""
    actor = record.actor
    if record.action == "sent":
        sender = ("kernel",) if actor.kernel else (actor.pid, actor.start_ticks)
        return (*sender, "sent", record.signal, record.target, record.result)
    return (actor.pid, actor.start_ticks, record.action, record.mechanism)


@dataclass(slots=True)
class _Group:
    opened: float
    passed: int = 0
    merged: Attribution | None = None
    prefix: str = ""
    same_key: bool = True


def _common_start(first: str, second: str) -> str:
    """The longest start the two strings share (characters, not path parts: names here are flat)."""
    length = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        length += 1
    return first[:length]


class Coalescer:
    """Passes records to emit, counting storms into one record per group and window (module docstring)."""

    def __init__(self, emit: Callable[[Attribution], None], *, window: float = WINDOW, burst: int = BURST) -> None:
        self._emit = emit
        self._window = window
        self._burst = burst
        self._groups: dict[tuple[object, ...], _Group] = {}

    def add(self, record: Attribution, now: float) -> None:
        """Take one record seen at now (monotonic seconds)."""
        group_key = group_of(record)
        group = self._groups.get(group_key)
        if group is not None and now - group.opened >= self._window:
            self._close(group)
            group = None
        if group is None:
            if len(self._groups) >= GROUPS_MAX:
                self.close_all()
            group = self._groups[group_key] = _Group(now)
        if group.passed < self._burst:
            group.passed += 1
            self._emit(record)
            return
        merged = group.merged
        if merged is None:
            group.merged = record
            group.prefix = record.object
            return
        group.prefix = _common_start(group.prefix, record.object)
        group.same_key = group.same_key and record.key == merged.key
        group.merged = dataclasses.replace(merged, count=merged.count + record.count)

    def expire(self, now: float) -> None:
        """Close the groups whose window has ended, emitting their counted records."""
        ended = [key for key, group in self._groups.items() if now - group.opened >= self._window]
        for key in ended:
            self._close(self._groups.pop(key))

    def close_all(self) -> None:
        for group in self._groups.values():
            self._close(group)
        self._groups.clear()

    @property
    def open_groups(self) -> int:
        return len(self._groups)

    def next_close(self) -> float | None:
        """When (monotonic seconds) the first window holding counted acts ends, so that its record is emitted then;
        None when no window holds any (a group that only passed acts emits nothing when it closes: expire may
        close it late, and add closes a group whose window has ended before it counts in it)."""
        ends = [group.opened + self._window for group in self._groups.values() if group.merged is not None]
        return min(ends) if ends else None

    def _close(self, group: _Group) -> None:
        merged, group.merged = group.merged, None
        if merged is None:
            return
        if merged.count > 1:
            name = merged.object if group.prefix == merged.object else group.prefix + "*"
            merged = dataclasses.replace(merged, object=name, key=merged.key if group.same_key else None)
        self._emit(merged)
