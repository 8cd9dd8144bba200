"""When a sleeping process last ran: se.exec_start of /proc/PID/sched put on the wall clock.

The scheduler stamps a task with its CPU's task clock (rq_clock_task, milliseconds in /proc/PID/sched) each time
it runs, and that stamp stays put while the task sleeps. The task clock is not CLOCK_MONOTONIC: it leaves out
the time the CPU spent in interrupts and the time a hypervisor stole, and each CPU keeps its own. Measured on a
2-CPU virtual machine after 4.5 hours up, the two CPUs' task clocks were 58.5 s and 56.6 s behind
CLOCK_MONOTONIC, so mapping through CLOCK_MONOTONIC put a 3-second sleep 57 seconds in the past.

So each CPU's task clock is read where it is current: this thread moves onto the CPU the process last ran on
(field 39 of /proc/PID/stat) for a moment, and its own se.exec_start, stamped as it was put on that CPU, is that
CPU's task clock now. The sleep is then measured in that CPU's task time, which leaves out what the CPU spent
in interrupts or lost to the hypervisor meanwhile: a little late on a busy virtual machine, never early.
Checked against processes that slept a known time: within 2 ms. A CPU's offset is kept for
``OFFSET_SECONDS``, so that a scan every second moves at most once per CPU in that time.

Not every kernel has /proc/PID/sched (CONFIG_SCHED_DEBUG); then, and when this thread may not run on that CPU
(a cpuset), the time is unknown (None).
"""

from __future__ import annotations

import os
import time

from ipcmon.collect import procfs

OFFSET_SECONDS = 10.0
"""How long one measurement of a CPU's task clock against the wall clock is used (it drifts by the time stolen
or spent in interrupts meanwhile: well under a percent)."""

_offsets: dict[int, tuple[float, float]] = {}
"""CPU → (wall clock minus task clock in seconds, time.monotonic() when measured)."""

_KEY = b"se.exec_start"


def exec_start(path: str) -> float | None:
    """se.exec_start of a /proc/PID/sched file in milliseconds of its CPU's task clock; None when unreadable."""
    try:
        data = procfs.read_bytes(path, single=True)
    except (procfs.Gone, procfs.Denied, OSError):
        return None
    start = data.find(_KEY)
    if start < 0:
        return None
    end = data.find(b"\n", start)
    try:
        return float(data[data.index(b":", start) + 1 : end if end >= 0 else None])
    except ValueError:
        return None


def _offset(cpu: int) -> float | None:
    """Wall clock minus CPU cpu's task clock, in seconds; None when this thread cannot run there."""
    now = time.monotonic()
    known = _offsets.get(cpu)
    if known is not None and now - known[1] < OFFSET_SECONDS:
        return known[0]
    try:
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    try:
        # This thread's own stamp (thread-self: a scan may run in a worker thread, and self is the main one).
        stamp = exec_start("/proc/thread-self/sched")
        wall = time.time()
    finally:
        try:
            os.sched_setaffinity(0, allowed)
        except OSError:
            pass
    if stamp is None:
        return None
    offset = wall - stamp / 1000
    _offsets[cpu] = (offset, now)
    return offset


def last_ran(pid: int, cpu: int | None, proc: str = procfs.PROC) -> float | None:
    """When the process last ran, as a Unix epoch; None when the kernel does not say or the CPU is unknown."""
    if cpu is None or cpu < 0:
        return None
    stamp = exec_start(f"{proc}/{pid}/sched")
    if stamp is None:
        return None
    offset = _offset(cpu)
    return None if offset is None else offset + stamp / 1000
