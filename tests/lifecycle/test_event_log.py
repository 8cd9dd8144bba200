"""EventLog numbering (issue 12): a reader learns what is new and what fell off without copying the log."""

from __future__ import annotations

import pytest

from ipcmon.live.events import EventLog
from ipcmon.model import Event


def events(start: int, count: int) -> list[Event]:
    return [Event(float(i), "shm", "created", f"/x{i}", f"k{i}") for i in range(start, start + count)]


def test_numbers_new_events_and_those_that_fell_off() -> None:
    log = EventLog(maxlen=100)
    assert (log.appended, log.oldest, log.newer_than(0)) == (0, 0, [])
    log.extend(events(0, 30))
    seen = log.appended
    assert (seen, log.oldest) == (30, 0)
    log.extend(events(30, 90))
    log.append(events(120, 1)[0])
    # 121 appended, the newest 100 kept: numbers 21..120.
    assert (log.appended, log.oldest, len(log)) == (121, 21, 100)
    assert [e.time for e in log.newer_than(seen)] == [float(i) for i in range(30, 121)]
    assert [e.time for e in log.newer_than(seen, 5)] == [30.0, 31.0, 32.0, 33.0, 34.0]  # the oldest five of them
    assert [e.time for e in log.newer_than(0)] == [float(i) for i in range(21, 121)]  # what is still kept
    assert log.newer_than(log.appended) == []


def test_reads_newest_first_without_a_copy() -> None:
    log = EventLog(maxlen=10)
    log.extend(events(0, 15))
    assert [e.time for e in log] == [float(i) for i in range(14, 4, -1)]
    assert [e.time for e in reversed(log)] == [float(i) for i in range(5, 15)]
    assert log[0].time == 14.0 and log[-1].time == 5.0 and log[9].time == 5.0
    assert [e.time for e in log[:3]] == [14.0, 13.0, 12.0]
    assert [e.time for e in log[2:8:3]] == [12.0, 9.0]
    assert [e.time for e in log[::-4]] == [5.0, 9.0, 13.0]
    for index in (10, -11):
        with pytest.raises(IndexError):
            log[index]
