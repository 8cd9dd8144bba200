"""Long run: memory across many refresh cycles (Monitor.poll, inotify on) while processes and objects churn.

Run by hand at full size (as root; it re-executes itself in a private pid namespace, see churn.py):

    python3 -m tests.reliability.long_run --cycles 10000

It prints one JSON object: Python heap (tracemalloc) and RSS after the warm-up and at the end, the
growth between them, and the size of every cache and history ipcmon keeps. tests/reliability/
test_long_run.py runs it shorter and bounds the growth.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from tests.reliability.churn import churning, rerun_in_pid_namespace


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cache_sizes(monitor: Any) -> dict[str, int]:
    """Every container ipcmon keeps between scans, and each functools cache."""
    from ipcmon.collect import procfs, signals
    from ipcmon.safe import printable

    sizes = {
        "event_log": len(monitor.log),
        "event_log_max": monitor.log.maxlen,
        "errors": len(monitor.errors),
        "last_holders": len(monitor.last_holders),
        "names": len(monitor._names),
        "announced": len(monitor._announced),
        "ended": len(monitor._ended),
        "created_sizes": len(monitor._created_sizes),
        "recent_attributions": len(monitor._recent),
        "objects_now": len(monitor.snapshot.shm) + len(monitor.snapshot.mqueues) if monitor.snapshot else 0,
        "processes_now": len(monitor.snapshot.processes) if monitor.snapshot else 0,
        "pipes_now": len(monitor.snapshot.pipes) if monitor.snapshot else 0,
        **{f"scanner_{key}": value for key, value in monitor.scanner.remembered().items()},
        "printable_cache": printable.cache_info().currsize,
        "user_name_cache": procfs.user_name.cache_info().currsize,
        "group_name_cache": procfs.group_name.cache_info().currsize,
    }
    for name in dir(signals):
        cached = getattr(signals, name)
        if hasattr(cached, "cache_info"):
            sizes[f"signals.{name}_cache"] = cached.cache_info().currsize
    return sizes


def measure(monitor: Any) -> dict[str, Any]:
    """Memory now: RSS, pymalloc's live blocks, GC-tracked objects, traced heap (with --tracemalloc)."""
    gc.collect()
    return {
        "rss": rss_bytes(),
        "blocks": sys.getallocatedblocks(),
        "objects": len(gc.get_objects()),
        "heap": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None,
        "caches": cache_sizes(monitor),
    }


def run(cycles: int, warmup: int, history: int, *, trace: bool = False) -> dict[str, Any]:
    from ipcmon.collect import ScanConfig
    from ipcmon.live.monitor import Monitor

    result: dict[str, Any] = {"cycles": cycles, "warmup": warmup, "history": history, "errors": [], "samples": []}
    events = 0
    started = time.monotonic()
    with churning("long") as tally:
        monitor = Monitor(ScanConfig(), history=history)
        monitor.start()
        try:
            for cycle in range(cycles):
                try:
                    _, new = monitor.poll()
                    events += len(new)
                except Exception as error:  # counted and reported: the run must show zero
                    result["errors"].append(f"cycle {cycle}: {type(error).__name__}: {error}")
                if cycle + 1 == warmup:
                    if trace:
                        tracemalloc.start()  # from here on: what is still allocated at the end is growth
                    result["after_warmup"] = measure(monitor)
                if (cycle + 1) % max(cycles // 20, 1) == 0:  # the trajectory, not just two points
                    result["samples"].append((cycle + 1, rss_bytes(), sys.getallocatedblocks()))
            result["at_end"] = measure(monitor)
        finally:
            monitor.stop()
    result.update(tally)
    before, after = result["after_warmup"], result["at_end"]
    result["growth"] = {key: after[key] - before[key] for key in ("rss", "blocks", "objects")}
    if trace:
        result["growth"]["heap"] = after["heap"]
    result["events"] = events
    result["errors"] += list(monitor.errors)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=10_000, help="refresh cycles (Monitor.poll)")
    parser.add_argument("--warmup", type=int, default=0, help="cycles before the first measurement (default 10%%)")
    parser.add_argument("--history", type=int, default=10_000, help="events the Monitor keeps (ipcmon's default)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace the Python heap from the end of the warm-up (slows scans ~10x)")
    parser.add_argument("--windows", type=float, default=None,
                        help="seconds every time-bounded memory of the Monitor keeps (default: ipcmon's 60 s); "
                             "shorter than the warm-up, the growth after it is a leak, not a window filling up")
    parser.add_argument("--no-namespace", action="store_true", help="run in the current pid namespace")
    args = parser.parse_args(argv)
    if os.getpid() != 1 and not args.no_namespace:
        return rerun_in_pid_namespace("tests.reliability.long_run", argv)
    warmup = args.warmup or max(args.cycles // 10, 1)
    if args.windows is not None:
        from ipcmon.live import monitor

        monitor.ANNOUNCED_SECONDS = monitor.ENDED_SECONDS = monitor.RECENT_SECONDS = args.windows
    result = run(args.cycles, warmup, args.history, trace=args.tracemalloc)
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
