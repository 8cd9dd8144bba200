"""Scan cost against lsof and lsfd on the same workload, at three scales; the dashboard at 1 Hz.

Run as root (so every tool sees every process):

    python3 benchmarks/scan_bench.py                  # small, medium and large workloads
    python3 benchmarks/scan_bench.py --scales large --rounds 7 --dashboard 30

For each scale it starts `ipcmon demo stress` (processes holding pipes, shm segments and queues), then
measures, alternating the tools round by round so that load changes hit them all alike:

- `ipcmon snapshot --json` as a whole process (wall time and peak RSS),
- the in-process scan alone (`ipcmon.collect.scan`), also with the forked second reader the snapshot
  command uses, and a repeated scan of a `Scanner` (what each dashboard refresh costs),
- `lsof -n +E` and `lsfd` (wall time and peak RSS),

- the import time of `ipcmon snapshot --json` (`python -X importtime`: all of it, and ipcmon's own part),

and prints medians and the ratios ipcmon ÷ peer, against the targets of issue 11 for lsof. With --dashboard S
it also runs the dashboard headless at 1 Hz on the largest workload for S seconds and prints CPU seconds per
wall second, the longest stall of the event loop (the longest UI handler), the time to the first filled frame,
and create→screen latency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCALES = {
    "small": {"processes": 50, "pipes": 500, "segments": 200, "queues": 20},
    "medium": {"processes": 200, "pipes": 2000, "segments": 800, "queues": 80},
    # 100 queues, not 200: fs.mqueue.queues_max is 256 for the whole machine, shared with everything else.
    "large": {"processes": 500, "pipes": 5000, "segments": 2000, "queues": 100},
}
TARGETS = {"small": 0.8, "medium": 0.5, "large": 0.5}
"""Issue 11: the one-shot `ipcmon snapshot --json` ÷ `lsof -n +E` at most this, in time."""
SNAPSHOT = [sys.executable, "-m", "ipcmon", "snapshot", "--json"]


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)

    def median_ms(self) -> float:
        return statistics.median(self.wall) * 1000

    def peak_mib(self) -> float:
        return max(self.rss_kib) / 1024 if self.rss_kib else float("nan")


def run_timed(command: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (KiB) of a command, its output thrown away.

    The kernel counts the memory a child had right after fork (a copy of this process) in its peak RSS,
    so nothing big may live in this process while it measures (IN_PROCESS)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {process.returncode}")
    return elapsed, usage.ru_maxrss


def import_times(command: list[str]) -> tuple[float, float]:
    """Seconds a command spends importing (the `python -X importtime` self times summed) and the part of it that
    is ipcmon's own package (the cumulative time of each top-level `ipcmon…` import)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, check=True, cwd=REPO)
    total = own = 0
    for line in result.stderr.splitlines():
        # "import time: self [us] | cumulative | imported package", the package indented by its depth.
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cumulative_us, package = line.removeprefix("import time:").split("|")
        total += int(self_us)
        if package.startswith(" ipcmon"):  # one space: imported at the top level, not from inside another module
            own += int(cumulative_us)
    return total / 1e6, own / 1e6


def count_fds() -> int:
    total = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                total += len(os.listdir(f"/proc/{name}/fd"))
            except OSError:
                pass
    return total


def start_workload(sizes: dict[str, int]) -> subprocess.Popen[str]:
    args = [f"--{key}={value}" for key, value in sizes.items()]
    process = subprocess.Popen(
        [sys.executable, "-m", "ipcmon", "demo", "stress", *args],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("ready"):
            return process
    raise RuntimeError("the stress demo ended before it was ready")


def stop_workload(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)  # the demo removes everything it made
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


IN_PROCESS = """
import sys, time
from ipcmon.collect import Scanner, scan
how = sys.argv[1]
if how == "Scanner, again":
    scanner = Scanner()
    scanner.scan()  # the first scan of a Scanner reads everything; the dashboard pays the next ones
    run = scanner.scan
elif how == "scan in-process, forked":
    run = lambda: scan(fork=True)
else:
    run = scan
started = time.perf_counter()
run()
print(time.perf_counter() - started)
"""
"""Times one in-process scan in a fresh interpreter: the peak RSS a child reports includes the memory of the
process that forked it, so this process stays small and scans nowhere itself."""


def time_in_process(label: str) -> float:
    output = subprocess.run([sys.executable, "-c", IN_PROCESS, label], capture_output=True, text=True, check=True,
                            cwd=REPO)
    return float(output.stdout)


def byte_compile() -> None:
    """Byte-compile the checkout's ipcmon, as pip does when it installs the wheel.

    Without it, an environment with PYTHONDONTWRITEBYTECODE=1 compiles every ipcmon module from source on
    each `python -m ipcmon` (~30 ms of a one-shot run), which no installed ipcmon pays. The .pyc files go
    to ipcmon/__pycache__ (ignored by git); a changed source is recompiled by Python as usual.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", "ipcmon"], check=True, cwd=REPO)


def bench_scale(name: str, rounds: int) -> dict[str, Samples]:
    workload = start_workload(SCALES[name])
    try:
        time.sleep(1)
        fds = count_fds()
        peers = {"lsof -n +E": ["lsof", "-n", "+E"], "lsfd": ["lsfd"]}
        peers = {label: command for label, command in peers.items() if shutil.which(command[0])}
        in_process = ["scan in-process", "scan in-process, forked", "Scanner, again"]
        order = ["ipcmon snapshot --json", *in_process, "imports", *peers]
        samples: dict[str, Samples] = {label: Samples() for label in order if label != "imports"}
        imported: list[tuple[float, float]] = []
        run_timed(SNAPSHOT)  # warm the page cache, as after round 1
        for round_number in range(rounds):
            shift = round_number % len(order)
            for label in order[shift:] + order[:shift]:
                if label == "imports":
                    imported.append(import_times(SNAPSHOT))
                    continue
                if label in in_process:
                    samples[label].wall.append(time_in_process(label))
                    continue
                wall, rss = run_timed(SNAPSHOT if label.startswith("ipcmon") else peers[label])
                samples[label].wall.append(wall)
                samples[label].rss_kib.append(rss)
        print(f"\n{name}: {SCALES[name]}  — {fds} fds system-wide, {rounds} rounds, "
              f"load average {os.getloadavg()[0]:.1f} at the end")
        for label, sample in samples.items():
            peak = f"  peak RSS {sample.peak_mib():6.1f} MiB" if sample.rss_kib else ""
            print(f"  {label:<24} median {sample.median_ms():8.1f} ms{peak}")
        total, own = (statistics.median(times) * 1000 for times in zip(*imported, strict=True))
        print(f"  imports (-X importtime)  median {total:8.1f} ms, {own:.1f} ms of it ipcmon's own package")
        whole = samples["ipcmon snapshot --json"]
        for label in peers:
            target = f" (target ≤ {TARGETS[name]}×)" if label.startswith("lsof") and name in TARGETS else ""
            print(f"  ipcmon snapshot ÷ {label:<12} {whole.median_ms() / samples[label].median_ms():5.2f} × time,"
                  f" {whole.peak_mib() / samples[label].peak_mib():5.2f} × RSS{target}")
        return samples
    finally:
        stop_workload(workload)


def bench_dashboard(seconds: float, scale: str) -> None:
    """The dashboard, headless, refreshing every second over the workload."""
    import asyncio

    from ipcmon.ui.app import make_app

    workload = start_workload(SCALES[scale])
    try:
        asyncio.run(_drive_dashboard(make_app(interval=1.0), seconds, scale))
    finally:
        stop_workload(workload)


async def _drive_dashboard(app: object, seconds: float, scale: str) -> None:
    import asyncio
    import resource
    import uuid

    import posix_ipc

    from ipcmon.ui.app import IpcmonApp

    assert isinstance(app, IpcmonApp)
    lateness: list[float] = []
    started = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        first_frame = None
        while first_frame is None:
            await asyncio.sleep(0.01)
            if app.snapshot is not None:
                first_frame = time.perf_counter() - started
        cpu_start = resource.getrusage(resource.RUSAGE_SELF)
        wall_start = time.perf_counter()
        tick = 0.05
        expected = time.perf_counter() + tick
        while time.perf_counter() - wall_start < seconds:
            await asyncio.sleep(tick)
            now = time.perf_counter()
            lateness.append(now - expected)
            expected = now + tick
        cpu_end = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - wall_start
        cpu = (cpu_end.ru_utime + cpu_end.ru_stime) - (cpu_start.ru_utime + cpu_start.ru_stime)

        latencies = []
        for index in range(20):
            name = f"/ipcmon-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}-{index}"
            created = time.perf_counter()
            posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
            try:
                while not _shown(app, name):
                    await asyncio.sleep(0.002)
                latencies.append(time.perf_counter() - created)
            finally:
                posix_ipc.unlink_shared_memory(name)
            await asyncio.sleep(0.5)  # one creation at a time, as a person would make them
        await pilot.press("q")
    print(f"\ndashboard at 1 Hz on {scale}, {wall:.0f} s: {cpu / wall * 100:.1f} % of one core, "
          f"longest event-loop stall {max(lateness) * 1000:.0f} ms, first filled frame {first_frame * 1000:.0f} ms, "
          f"create→screen median {statistics.median(latencies) * 1000:.0f} ms (max {max(latencies) * 1000:.0f} ms)")


def _shown(app: object, name: str) -> bool:
    """The segment is in the snapshot the views are bound to (they update in the same handler)."""
    snapshot = getattr(app, "snapshot", None)
    return snapshot is not None and any(segment.name == name for segment in snapshot.shm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="small,medium,large")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dashboard", type=float, default=0.0, metavar="SECONDS",
                        help="also run the dashboard at 1 Hz for this long on the largest scale")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: lsof, lsfd and ipcmon must all see every process")
    scales = [scale.strip() for scale in args.scales.split(",")]
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    byte_compile()
    for scale in scales:
        bench_scale(scale, args.rounds)
    if args.dashboard:
        bench_dashboard(args.dashboard, scales[-1])


if __name__ == "__main__":
    main()
