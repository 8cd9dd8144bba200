"""Create→event latency: how long after shm_open(O_CREAT) / mq_open the Monitor reports the object.

Run: python3 benchmarks/event_latency.py [--count 200]
Prints the median, 95th percentile and maximum, for inotify (between polls) and for one scan of /dev/shm.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid

import posix_ipc

from ipcmon.collect import ScanConfig
from ipcmon.live.monitor import Monitor
from ipcmon.model import Event


def measure_inotify(count: int, prefix: str) -> list[float]:
    arrived: dict[str, float] = {}
    condition = threading.Condition()

    def on_event(event: Event) -> None:
        if event.event == "created" and event.object.startswith(prefix):
            with condition:
                arrived[event.object] = time.perf_counter()
                condition.notify_all()

    latencies = []
    monitor = Monitor(ScanConfig(kinds=("shm", "mqueue")), on_event=on_event)
    monitor.poll()
    with monitor:
        for index in range(count):
            name = f"{prefix}-{index}"
            started = time.perf_counter()
            if index % 2:
                posix_ipc.MessageQueue(name, posix_ipc.O_CREX).close()
            else:
                posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
            with condition:
                condition.wait_for(lambda name=name: name in arrived, timeout=5)
            if name in arrived:
                latencies.append(arrived[name] - started)
            (posix_ipc.unlink_message_queue if index % 2 else posix_ipc.unlink_shared_memory)(name)
    return latencies


def measure_scan(count: int, prefix: str) -> list[float]:
    """Without inotify an object shows up at the next scan: half an interval on average plus this."""
    latencies = []
    monitor = Monitor(ScanConfig(kinds=("shm",)))
    monitor.poll()
    for index in range(count):
        name = f"{prefix}-p{index}"
        started = time.perf_counter()
        posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
        while True:
            _, events = monitor.poll()
            if any(e.object == name and e.event == "created" for e in events):
                latencies.append(time.perf_counter() - started)
                break
        posix_ipc.unlink_shared_memory(name)
        monitor.poll()
    return latencies


def report(label: str, values: list[float], expected: int) -> None:
    values = sorted(values)
    p95 = values[int(len(values) * 0.95) - 1]
    print(f"{label:<28} n={len(values)}/{expected}  median {statistics.median(values) * 1000:7.2f} ms  "
          f"p95 {p95 * 1000:7.2f} ms  max {values[-1] * 1000:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    prefix = f"/ipcmon-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    report("inotify create→event", measure_inotify(args.count, prefix), args.count)
    report("scan create→event (no wait)", measure_scan(min(args.count, 50), prefix), min(args.count, 50))


if __name__ == "__main__":
    main()
