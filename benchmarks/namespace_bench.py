"""Scan cost as IPC namespaces are added (issue 15): none, half, then all of --count container-like namespaces.

Run as root:

    python3 benchmarks/namespace_bench.py              # 0, 25 and 50 namespaces
    python3 benchmarks/namespace_bench.py --count 20 --rounds 7

Each namespace is made as a container runtime makes one: ``unshare --ipc --mount --pid --fork`` with a private
64 MiB tmpfs on /dev/shm and a private mqueue filesystem, holding --segments POSIX segments, one queue and one
SysV segment. For each step it times, in a fresh interpreter, a whole scan and a Scanner's repeated scan, and
``lsfd`` on the same machine as the peer, alternating them round by round; then it prints the medians, the cost
each namespace adds (the slope from none to all) and whether the cost grew linearly (the second half of the
namespaces against the first).

Everything lives inside the namespaces: when their holders exit, the kernel takes the tmpfs, the queues and the
SysV segments with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HOLDER = r"""
import ctypes, mmap, os, subprocess, sys
import posix_ipc, sysv_ipc
ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG: SIGKILL when unshare goes
segments = int(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "ipcmon-bench", "/dev/shm"], check=True)
os.makedirs("/dev/mqueue", exist_ok=True)
subprocess.run(["mount", "-t", "mqueue", "ipcmon-bench", "/dev/mqueue"], check=True)
held = []
for number in range(segments):
    segment = posix_ipc.SharedMemory(f"/bench-{number}", posix_ipc.O_CREX, size=65536)
    held.append(mmap.mmap(segment.fd, segment.size))
queue = posix_ipc.MessageQueue("/bench-queue", posix_ipc.O_CREX, max_messages=4, max_message_size=64)
queue.send(b"x")
sysv = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=4096)
print("ready", flush=True)
sys.stdin.read()
"""

IN_PROCESS = """
import sys, time
from ipcmon.collect import Scanner, scan
if sys.argv[1] == "scanner":
    scanner = Scanner()
    scanner.scan()
    run = scanner.scan
else:
    run = scan
started = time.perf_counter()
snapshot = run()
print(time.perf_counter() - started, len(snapshot.namespaces))
"""


def start(count: int, segments: int) -> list[subprocess.Popen[str]]:
    holders = []
    for _ in range(count):
        holder = subprocess.Popen(
            ["unshare", "--ipc", "--mount", "--pid", "--fork", "--kill-child",
             sys.executable, "-c", textwrap.dedent(HOLDER), str(segments)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            raise RuntimeError("a namespace holder did not start")
        holders.append(holder)
    return holders


def stop(holders: list[subprocess.Popen[str]]) -> None:
    for holder in holders:
        if holder.stdin is not None:
            holder.stdin.close()
    for holder in holders:
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.send_signal(signal.SIGKILL)  # --kill-child takes the holder with it
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def time_scan(how: str) -> tuple[float, int]:
    output = subprocess.run([sys.executable, "-c", IN_PROCESS, how], capture_output=True, text=True, check=True,
                            cwd=REPO)
    seconds, namespaces = output.stdout.split()
    return float(seconds), int(namespaces)


def time_command(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def measure(rounds: int) -> dict[str, float]:
    labels = ["scan", "scanner", *(["lsfd"] if shutil.which("lsfd") else [])]
    samples: dict[str, list[float]] = {label: [] for label in labels}
    seen = 0
    for round_number in range(rounds):
        shift = round_number % len(labels)
        for label in labels[shift:] + labels[:shift]:
            if label == "lsfd":
                samples[label].append(time_command(["lsfd"]))
            else:
                seconds, seen = time_scan(label)
                samples[label].append(seconds)
    medians = {label: statistics.median(values) * 1000 for label, values in samples.items()}
    medians["namespaces seen"] = seen
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50, help="namespaces at the last step (default 50)")
    parser.add_argument("--segments", type=int, default=4, help="POSIX segments each namespace holds (default 4)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: namespaces are made with unshare and mount")
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    steps = [0, args.count // 2, args.count]
    results: dict[int, dict[str, float]] = {}
    holders: list[subprocess.Popen[str]] = []
    try:
        for step in steps:
            holders += start(step - len(holders), args.segments)
            time.sleep(0.5)
            results[step] = measure(args.rounds)
            figures = "  ".join(f"{label} {value:7.1f} ms" for label, value in results[step].items()
                                if label != "namespaces seen")
            print(f"{step:3d} namespaces (the scan saw {results[step]['namespaces seen']:.0f}):  {figures}")
    finally:
        stop(holders)
    none, half, full = (results[step] for step in steps)
    for label in ("scan", "scanner", "lsfd"):
        if label not in full or not args.count:
            continue
        slope = (full[label] - none[label]) / args.count
        first, second = half[label] - none[label], full[label] - half[label]
        print(f"{label:<8} {slope:+6.2f} ms per namespace; first half {first:+7.1f} ms, second half "
              f"{second:+7.1f} ms (linear if about equal)")
    if "lsfd" in full:
        print(f"scan ÷ lsfd at {args.count} namespaces: {full['scan'] / full['lsfd']:.2f} × time")


if __name__ == "__main__":
    main()
