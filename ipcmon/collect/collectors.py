"""The table of collectors, one entry per mechanism, in the order of model.KINDS: what a scan loops over."""

from __future__ import annotations

from ipcmon.collect import memfd, mqueue, pipes, shm, signals, sysv
from ipcmon.collect.collector import Collector

COLLECTORS: tuple[Collector, ...] = (
    shm.COLLECTOR,
    memfd.COLLECTOR,
    mqueue.COLLECTOR,
    pipes.COLLECTOR,
    signals.COLLECTOR,
    sysv.COLLECTOR,
)
"""Adding a mechanism: its module ends in its entry, listed here (tests check the order matches KINDS)."""
