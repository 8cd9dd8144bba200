"""The dashboard and Python's cyclic garbage collector: what lives as long as the dashboard is frozen out of its
sight, and its full collections wait for a moment nobody is waiting on a frame.

Only the CLI's dashboard does either (``freeze_gc``): it runs alone in its process. Tests and other embedders keep
CPython's collector as it is.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

FULL_GROWTH = 1.25
"""A full collection is due once the oldest generation holds a quarter more objects than the last one left:
CPython's own rule (Modules/gcmodule.c, ``long_lived_pending < long_lived_total / 4`` holds one off)."""
QUIET_SECONDS = 1.0
"""No full collection within this long of a key press or a mouse event: the user may be waiting for a frame."""
OVERDUE_SECONDS = 30.0
"""A collection due this long runs at the next scan however busy the keyboard is, so memory stays bounded."""
CHECK_SECONDS = 5.0
"""The oldest generation is counted (gc.get_objects: about 2 ms for 150,000 objects) at most this often."""
OUT_OF_REACH = 1 << 30
"""Generation 2's threshold while the dashboard times its full collections: CPython never gets there (its count
grows by one per generation-1 collection)."""


def freeze_startup_objects() -> None:
    """Collect once, then freeze what is left (gc.freeze): the modules, classes, stylesheet and widgets that live as
    long as the dashboard are never traversed by a garbage collection again.

    Every full collection traversed all of them: ~100,000 objects on a small machine, and with a full history
    ~185,000, a stall of 78–105 ms each, every few view switches (issue 12: key latency, the longest stall; 4 in 16
    switches with the benchmark's 10,000-event history). Frozen, a full collection looks only at what came later:
    24–53 ms each in the same run. The one cost: a reference cycle among the objects frozen here that
    becomes garbage later is never collected, so only what exists now and is meant to stay is frozen, once, after the
    first scan is drawn (the collection before it frees the start's own garbage). Reference counting, which frees
    almost everything, is unaffected.
    """
    gc.collect()
    gc.freeze()


class CalmCollections:
    """CPython's full garbage collections, by CPython's rule, at a calm moment: right after a scan is drawn, and not
    within :data:`QUIET_SECONDS` of a key or mouse event.

    Left to CPython, a full collection runs in whatever allocates when the oldest generation has grown by a quarter,
    and a view switch grows it (each line drawn is cached: thousands of Strips, seven small caches each). With the
    benchmark's 10,000-event history one switch in three paid a 40–60 ms collection inside its first frame, the
    worst key latencies (issue 12). While :meth:`start`-ed, generation 2's automatic collections are off (its
    threshold :data:`OUT_OF_REACH`; generations 0 and 1 run as before) and :meth:`after_scan` applies the same rule
    where no one waits. A user who never stops typing gets the collection anyway once it is :data:`OVERDUE_SECONDS`
    late.

    ``clock`` is time.monotonic (seconds); :attr:`last_input` is on that clock.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._saved: tuple[int, int, int] | None = None
        """CPython's thresholds while started, restored by :meth:`stop`."""
        self._left = 0
        """Objects in generation 2 after the last full collection (CPython's long_lived_total)."""
        self._checked = float("-inf")
        self._due_since: float | None = None
        self.last_input = float("-inf")
        """When the user last pressed a key or used the mouse (the App sets it)."""
        self.collections = 0
        """Full collections run by :meth:`after_scan`."""

    @property
    def started(self) -> bool:
        return self._saved is not None

    def start(self) -> None:
        """Take over generation 2's collections (after :func:`freeze_startup_objects`, which leaves it empty)."""
        if self._saved is not None:
            return
        self._saved = gc.get_threshold()
        gc.set_threshold(self._saved[0], self._saved[1], OUT_OF_REACH)
        self._left = len(gc.get_objects(2))

    def stop(self) -> None:
        """Give CPython its thresholds back (the App's unmount)."""
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def after_scan(self) -> bool:
        """Run a full collection if one is due and the moment is calm; True when it ran.

        Due as CPython has it: at least generation 2's own threshold of generation-1 collections since the last
        one (gc.get_count), and a quarter more objects in generation 2 than that one left.
        """
        if self._saved is None:
            return False
        now = self._clock()
        if self._due_since is None:
            if gc.get_count()[2] < self._saved[2] or now - self._checked < CHECK_SECONDS:
                return False
            self._checked = now
            if len(gc.get_objects(2)) <= self._left * FULL_GROWTH:
                return False
            self._due_since = now
        if now - self.last_input < QUIET_SECONDS and now - self._due_since < OVERDUE_SECONDS:
            return False
        gc.collect()
        self._left = len(gc.get_objects(2))
        self._due_since = None
        self.collections += 1
        return True
