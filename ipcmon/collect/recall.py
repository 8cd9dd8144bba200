"""Records of the previous scan, reused when a scan meets exactly the same inputs again (Scanner)."""

from __future__ import annotations

import operator
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

Record = TypeVar("Record")


class Recall(Generic[Record]):
    """The records one collector built in the previous scan, by identity, with the inputs each came from.

    On a large machine most objects are the same from one second to the next. Building thousands of equal
    frozen records again is a good part of a scan's time, and handing the views the very same objects lets
    their comparisons stop at identity. A record is reused only when every input it was built from is equal.
    """

    def __init__(self) -> None:
        self._before: dict[Hashable, tuple[Hashable, Record]] = {}
        self._now: dict[Hashable, tuple[Hashable, Record]] = {}
        self._result: tuple[Record, ...] | None = None

    def get(self, identity: Hashable, inputs: Hashable) -> Record | None:
        """The previous scan's record for identity if it was built from equal inputs, else None."""
        entry = self._before.get(identity)
        if entry is None or entry[0] != inputs:
            return None
        return entry[1]

    def previous(self, identity: Hashable) -> tuple[Any, Record] | None:
        """The previous scan's (inputs, record) for identity, for a collector that can tell without building its
        inputs that they are unchanged; None when there was none."""
        return self._before.get(identity)

    def keep(self, identity: Hashable, inputs: Hashable, record: Record) -> Record:
        """Remember a record of this scan for the next one; returns it."""
        self._now[identity] = (inputs, record)
        return record

    def carry(self, identity: Hashable, kept: tuple[Any, Record]) -> Record:
        """Remember for the next scan what ``previous(identity)`` gave, as it is (no new entry for the garbage
        collector to walk: thousands of unchanged records a scan); returns its record."""
        self._now[identity] = kept
        return kept[1]

    def result(self, records: list[Record]) -> tuple[Record, ...]:
        """This scan's records as the collector returns them: the last scan's tuple itself when it holds the very
        same records in the same order, so that later readers can tell nothing changed by identity (events.diff,
        the Monitor's names)."""
        last = self._result
        if last is None or len(last) != len(records) or not all(map(operator.is_, last, records)):
            last = self._result = tuple(records)
        return last

    def __len__(self) -> int:
        return len(self._before) + len(self._now)

    def turn(self) -> None:
        """Start a new scan: what the last scan kept becomes the previous scan's."""
        self._before, self._now = self._now, {}

    def done(self) -> None:
        """The scan is over: only what it kept is needed by the next one."""
        self._before = {}
