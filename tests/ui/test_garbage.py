"""The dashboard's full garbage collections wait for a calm moment (issue 12: key latency with a full history).

Python's real collector throughout: garbage made of reference cycles is put in the oldest generation, and a weak
reference to one of its objects says whether a full collection has run.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ipcmon.ui import garbage
from ipcmon.ui.garbage import OUT_OF_REACH, CalmCollections
from tests.ui.conftest import canned_app, started, wait_for


class Knot:
    """One object of a reference cycle (only a garbage collection frees it)."""

    def __init__(self) -> None:
        self.me = self


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


YOUNGER = 10
"""CPython's default threshold of generation 2: younger collections before a full one may run."""


def old_garbage(count: int) -> weakref.ref[Knot]:
    """count cycles moved to the oldest generation (younger collections only), then dropped; a weak reference to one."""
    knots = [Knot() for _ in range(count)]
    for _ in range(YOUNGER):
        gc.collect(1)
    watched = weakref.ref(knots[0])
    del knots
    return watched


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(saved[0], saved[1], YOUNGER)
    yield gc.get_threshold()
    gc.set_threshold(*saved)


def enough() -> int:
    """More cycles than a quarter of what the oldest generation holds now: enough to make a full collection due."""
    return len(gc.get_objects(2)) // 3 + 10_000


def test_started_the_oldest_generation_is_never_collected_by_cpython_and_stop_gives_its_threshold_back(
        thresholds: tuple[int, int, int]) -> None:
    collections = CalmCollections()
    collections.start()
    assert gc.get_threshold() == (thresholds[0], thresholds[1], OUT_OF_REACH)
    watched = old_garbage(enough())
    for _ in range(30):
        [Knot() for _ in range(1000)]  # allocations: CPython's own collections run, the younger ones only
    assert watched() is not None
    collections.stop()
    assert gc.get_threshold() == thresholds
    gc.collect()
    assert watched() is None


@pytest.fixture
def calm(thresholds: tuple[int, int, int]) -> Iterator[tuple[Clock, CalmCollections]]:
    """Started collections on a clock the test moves; stopped, and any garbage left collected, afterwards."""
    clock = Clock()
    collections = CalmCollections(clock)
    collections.start()
    yield clock, collections
    collections.stop()
    gc.collect()


def test_a_due_collection_waits_for_a_quiet_second_after_the_last_key(calm: tuple[Clock, CalmCollections]) -> None:
    clock, collections = calm
    watched = old_garbage(enough())
    collections.last_input = clock.now - 0.2
    assert collections.after_scan() is False
    assert watched() is not None
    clock.now += garbage.QUIET_SECONDS
    assert collections.after_scan() is True
    assert watched() is None
    assert collections.collections == 1


def test_a_collection_is_not_run_before_the_oldest_generation_grew_by_a_quarter(
        calm: tuple[Clock, CalmCollections]) -> None:
    _, collections = calm
    watched = old_garbage(100)
    assert collections.after_scan() is False
    assert watched() is not None
    assert collections.collections == 0


def test_a_user_who_never_stops_typing_gets_the_collection_once_it_is_overdue(
        calm: tuple[Clock, CalmCollections]) -> None:
    clock, collections = calm
    watched = old_garbage(enough())
    for _ in range(int(garbage.OVERDUE_SECONDS)):
        collections.last_input = clock.now
        assert collections.after_scan() is False
        clock.now += 1
    collections.last_input = clock.now
    assert collections.after_scan() is True
    assert watched() is None


async def test_the_dashboard_collects_after_a_scan_not_right_after_a_key(thresholds: tuple[int, int, int]) -> None:
    app = canned_app(freeze_gc=True)
    try:
        async with app.run_test() as pilot:
            await started(pilot, app)
            await wait_for(pilot, lambda: app.collections.started, "the startup freeze")
            assert gc.get_threshold()[2] == OUT_OF_REACH
            outcomes: list[bool] = []
            after_scan = app.collections.after_scan

            def recorded() -> bool:
                outcomes.append(after_scan())
                return outcomes[-1]

            app.collections.after_scan = recorded  # type: ignore[method-assign]
            watched = old_garbage(enough())
            await pilot.press("2")  # a key: the next scan's collection waits
            app.request_scan()
            await wait_for(pilot, lambda: outcomes, "a scan drawn")
            assert outcomes == [False]
            assert watched() is not None
            await pilot.pause(garbage.QUIET_SECONDS)
            app.request_scan()
            await wait_for(pilot, lambda: len(outcomes) == 2, "a scan drawn a quiet second later")
            assert outcomes == [False, True]
            assert watched() is None
            assert app.collections.collections == 1
        assert gc.get_threshold() == thresholds
    finally:
        gc.unfreeze()
