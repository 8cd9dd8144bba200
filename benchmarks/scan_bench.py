"""Scan cost against lsof and lsfd on the same workload, at three scales; the dashboard at 1 Hz.

Run as root (so every tool sees every process):

    python3 benchmarks/scan_bench.py                  # small, medium and large workloads
    python3 benchmarks/scan_bench.py --scales large --rounds 7 --dashboard 30
    python3 benchmarks/scan_bench.py --scales none --dashboard 20   # only the dashboard (about 3 minutes)

For each scale it starts `ipcmon demo stress` (processes holding pipes, shm segments and queues), then
measures, alternating the tools round by round so that load changes hit them all alike:

- `ipcmon snapshot --json` as a whole process (wall time and peak RSS),
- the in-process scan alone (`ipcmon.collect.scan`), also with the forked second reader the snapshot
  command uses, and a repeated scan of a `Scanner` (what each dashboard refresh costs),
- `lsof -n +E` and `lsfd` (wall time and peak RSS),

- the import time of `ipcmon snapshot --json` (`python -X importtime`: all of it, and ipcmon's own part),

and prints medians and the ratios ipcmon ÷ peer, against the targets of issue 11 for lsof. With --dashboard S
it also runs the dashboard headless at 1 Hz for S seconds in each of three phases (issue 12): idle (no
workload), demos (every lesson demo running, as `ipcmon --demo all`) and large (the stress workload of
--dashboard-scale), and prints for each the CPU as % of one core, the longest stall of the event loop (the
longest UI handler) and the time to the first filled frame; after the idle phase, the latency of view-switch
keys with a full 10,000-event history, and after the large phase, create→screen latency. With --exporter S it runs
`ipcmon exporter --interval 15` on the large workload for S seconds, scraped every 15 s, and prints its CPU.

    python3 benchmarks/scan_bench.py --scales none --exporter 120

With --terminal S it runs `ipcmon` (idle) and `ipcmon --demo all` in a real terminal, a tmux session of its own, for S
seconds each and prints their CPU: what a person's dashboard costs, the frames encoded and written, which the headless
runs skip.

    python3 benchmarks/scan_bench.py --scales none --terminal 30 --phases idle,demos
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ipcmon.model import Event, EventName

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # measure this checkout's ipcmon, not an installed copy
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


PHASES = ("idle", "demos", "large")
"""The dashboard's three CPU figures: no workload, every lesson demo running (``ipcmon --demo all``), and the
stress workload at the dashboard scale (issue 12: at most 2, 5 and 10 % of a core at 1 Hz)."""
CPU_TARGETS = {"idle": 2.0, "demos": 5.0, "large": 10.0}
HISTORY = 10_000
"""Events in the history when the view-switch keys are timed (the dashboard keeps at most this many)."""
SWITCH_KEYS = ("6", "1", "2", "6", "4", "6", "5", "1")
"""View switches timed with a full history: Events (6) several times, since it shows the whole history."""


def bench_dashboard(seconds: float, scale: str, phases: tuple[str, ...] = PHASES) -> None:
    """The dashboard, headless, refreshing every second: each phase's CPU and longest event-loop stall; after
    the idle phase the key latency with a full history; after the large phase create→screen latency."""
    import asyncio

    from ipcmon.ui.app import make_app

    print(f"\ndashboard at 1 Hz, headless 160×50, {seconds:.0f} s per phase (CPU of this process, every thread; "
          "demos and workloads are other processes)")
    for phase in phases:
        workload = start_workload(SCALES[scale]) if phase == "large" else None
        try:
            demos = ("all",) if phase == "demos" else ()
            app = make_app(interval=1.0, demos=demos, show_self=False, freeze_gc=True)  # as the CLI runs it
            asyncio.run(_drive_dashboard(app, seconds, phase, scale))
        finally:
            if workload is not None:
                stop_workload(workload)


async def _drive_dashboard(app: object, seconds: float, phase: str, scale: str) -> None:
    import asyncio
    import resource

    from ipcmon.ui.app import IpcmonApp

    assert isinstance(app, IpcmonApp)
    started = time.perf_counter()
    async with app.run_test(size=(160, 50)) as pilot:
        first_frame = None
        while first_frame is None:
            await asyncio.sleep(0.01)
            if app.snapshot is not None:
                first_frame = time.perf_counter() - started
        if phase == "demos":
            await asyncio.sleep(5)  # every demo started and past its first steps
        else:
            await asyncio.sleep(2)
        cpu_start = resource.getrusage(resource.RUSAGE_SELF)
        main_start = time.thread_time()  # this coroutine runs on the event loop's thread: drawing and handlers
        wall_start = time.perf_counter()
        lateness = await _busy_stretches(seconds)
        main = time.thread_time() - main_start
        cpu_end = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - wall_start
        cpu = (cpu_end.ru_utime + cpu_end.ru_stime) - (cpu_start.ru_utime + cpu_start.ru_stime)
        share = cpu / wall * 100
        verdict = "met" if share <= CPU_TARGETS[phase] else "NOT met"
        label = f"{phase} ({scale})" if phase == "large" else phase
        print(f"  {label:<14} {share:5.1f} % of one core over {wall:.0f} s (target ≤ {CPU_TARGETS[phase]:g} %: "
              f"{verdict}; {main / wall * 100:.1f} % on the event loop's thread, the rest the scan worker and "
              f"other threads), longest event-loop stall {max(lateness) * 1000:.0f} ms, "
              f"first filled frame {first_frame * 1000:.0f} ms")
        if phase == "idle":
            await _key_latency(app, pilot)
        if phase == "large":
            await _create_latency(app)
        await pilot.press("q")


async def _busy_stretches(seconds: float) -> list[float]:
    """Sleep this long; meanwhile, how long the event loop ran each time between two waits for I/O or a timer (the
    longest is the longest stall: the handlers run back to back in one turn of the loop).

    Timed at the loop's selector, whose select() the loop calls once a turn, so measuring wakes nothing: the 50 ms
    ticks this replaced woke the loop 20 times a second, 0.3 to 0.5 % of a core on the event loop's thread in the idle
    phase (measured: about as much as the idle dashboard's own work there), counted in the figure they measured.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    selector = loop._selector  # type: ignore[attr-defined]  # BaseSelectorEventLoop's; the only one a run_test uses
    select = selector.select
    stretches: list[float] = []
    woke = [time.perf_counter()]

    def timed_select(timeout: float | None = None) -> list[object]:
        stretches.append(time.perf_counter() - woke[0])
        try:
            return select(timeout)
        finally:
            woke[0] = time.perf_counter()

    selector.select = timed_select
    try:
        await asyncio.sleep(seconds)
    finally:
        del selector.select  # the class's own again
    return stretches or [0.0]


def history_events(count: int) -> list[Event]:
    """count lifecycle events of count/4 distinct segments (created, attached, detached, destroyed each)."""
    from ipcmon.model import Event

    steps: tuple[EventName, ...] = ("created", "attached", "detached", "destroyed")
    now = time.time() - count / 100
    events = []
    for index in range(count):
        step = steps[index % 4]
        pid = 10_000 + index % 97 if step in ("attached", "detached") else None
        events.append(Event(time=now + index / 100, mechanism="shm", event=step,
                            object=f"/ipcmon-bench-history-{index // 4}", key=f"shm:0:{index // 4}", pid=pid,
                            comm="bench" if pid else None, detail="fd 3 rw" if pid else ""))
    return events


async def _key_latency(app: object, pilot: object) -> None:
    """Fill the history to HISTORY events, then time each key of SWITCH_KEYS two ways: from the press until the App's
    active view is the key's and Textual has processed everything the switch posted (a screen refresh included), and
    from the press until the last frame the switch drew.

    The first goes through public behaviour only (Pilot and ``active_view``), so it times whatever the views do, but
    it includes Pilot's own waits: each press and pause waits for the whole process to be idle in steps of 20 ms
    (textual._wait.wait_for_idle, three times), whether or not anything is left to draw. The second is what a person
    sees: the times the switch's first and last frames were composed (App._display, where Textual writes a frame to
    the terminal; headless, nothing is written)."""
    import asyncio

    from textual.pilot import Pilot

    from ipcmon.ui.app import IpcmonApp

    assert isinstance(app, IpcmonApp) and isinstance(pilot, Pilot)
    app.event_log.extend(history_events(HISTORY))
    for _ in range(2):  # the views take the history with the next scan; one more, as a person would look at it
        shown = app.snapshot
        deadline = time.perf_counter() + 30
        while app.snapshot is shown and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        await pilot.pause()
    views = dict(app.VIEWS)
    view_of_key = {str(number): view for number, (view, _) in enumerate(app.VIEWS, start=1)}
    # Two passes: as shipped (no animations, unless TEXTUAL_ANIMATIONS asks for them: Pilot then also waits for the tab
    # underline's slide), then with animations off (the switch's own work: handlers, layout, its frames). The first
    # pass also pays for the first showing of each view with the full history; the second finds every view shown once.
    frames: list[float] = []
    display = app._display

    def timed_display(screen: object, renderable: object) -> None:
        display(screen, renderable)  # type: ignore[arg-type]
        if renderable is not None:
            frames.append(time.perf_counter())

    app._display = timed_display  # type: ignore[method-assign]
    for number, animations in enumerate((app.animation_level, "none"), start=1):
        app.animation_level = animations
        timings = []
        drawn = []
        first = []
        for key in SWITCH_KEYS:
            wanted = view_of_key[key]
            frames.clear()
            pressed = time.perf_counter()
            await pilot.press(key)
            while app.active_view != wanted:
                await asyncio.sleep(0.001)
            await pilot.pause()
            timings.append((key, time.perf_counter() - pressed))
            drawn.append((key, max(frames, default=pressed) - pressed))
            first.append((key, min(frames, default=pressed) - pressed))
            await asyncio.sleep(0.3)
        for what, figures in (("press to idle (Pilot)", timings), ("press to first frame", first),
                              ("press to last frame", drawn)):
            worst_key, worst = max(figures, key=lambda pair: pair[1])
            median = statistics.median(t for _, t in figures)
            print(f"  key latency with {len(app.event_log):,} events in the history, pass {number}, animations "
                  f"{animations}, {what}: median {median * 1000:.0f} ms, worst {worst * 1000:.0f} ms "
                  f"({worst_key}: {views[view_of_key[worst_key]]}) over {len(figures)} view switches (target < 100 ms)")
    app._display = display  # type: ignore[method-assign]


async def _create_latency(app: object) -> None:
    """create→screen: a new shm segment until it is in the snapshot the views are bound to, 20 times."""
    import asyncio
    import uuid

    import posix_ipc

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
    print(f"  create→screen median {statistics.median(latencies) * 1000:.0f} ms "
          f"(max {max(latencies) * 1000:.0f} ms) over {len(latencies)} new segments")


def _shown(app: object, name: str) -> bool:
    """The segment is in the snapshot the views are bound to (they update in the same handler)."""
    snapshot = getattr(app, "snapshot", None)
    return snapshot is not None and any(segment.name == name for segment in snapshot.shm)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, every thread, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as file:
        fields = file.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_terminal(seconds: float, phases: tuple[str, ...], size: str = "120x40") -> None:
    """The dashboard as a person runs it: `ipcmon` (and `ipcmon --demo all`) in a real terminal (a tmux session of
    our own), so the frames are also encoded and written, which the headless runs above skip. CPU of the ipcmon
    process (every thread) over `seconds`, after a warm-up; then q, and its exit status."""
    tmux = shutil.which("tmux")
    if tmux is None:
        print("\nin a terminal: tmux not found, skipped")
        return
    import psutil

    width, height = size.split("x")
    print(f"\nthe dashboard in a terminal (tmux {size}, `ipcmon` as the CLI runs it), {seconds:.0f} s per phase")
    for phase in phases:
        if phase == "large":
            continue  # the headless large phase stands for it (the stress workload's start is the costly part)
        session = f"ipcmon-bench-{os.getpid()}-{phase}"
        command = [sys.executable, "-m", "ipcmon", *(["--demo", "all"] if phase == "demos" else [])]
        subprocess.run([tmux, "new-session", "-d", "-s", session, "-x", width, "-y", height, "--",
                        *command], check=True, cwd=REPO)
        try:
            pane = int(subprocess.run([tmux, "display", "-p", "-t", session, "#{pane_pid}"], capture_output=True,
                                      text=True, check=True).stdout)
            dashboard = psutil.Process(pane)  # tmux runs the command itself as the pane's process
            time.sleep(8 if phase == "demos" else 4)  # started, demos past their first steps
            before, started = dashboard.cpu_times(), time.monotonic()
            time.sleep(seconds)
            after, wall = dashboard.cpu_times(), time.monotonic() - started
            share = ((after.user + after.system) - (before.user + before.system)) / wall * 100
            verdict = "met" if share <= CPU_TARGETS[phase] else "NOT met"
            print(f"  {phase:<14} {share:5.1f} % of one core over {wall:.0f} s (target ≤ {CPU_TARGETS[phase]:g} %: "
                  f"{verdict})")
        finally:
            subprocess.run([tmux, "send-keys", "-t", session, "q"], check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and subprocess.run(
                    [tmux, "has-session", "-t", session], capture_output=True).returncode == 0:
                time.sleep(0.2)
            subprocess.run([tmux, "kill-session", "-t", session], capture_output=True, check=False)


def bench_exporter(seconds: float, scale: str, interval: float = 15.0) -> None:
    """`ipcmon exporter --interval 15` on the stress workload (issue 17): its CPU as % of one core over SECONDS after
    its first scan (which reads every process in full; the next ones re-read only those that ran), scraped once
    per interval as a Prometheus at that interval would."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workload = start_workload(SCALES[scale])
    exporter = subprocess.Popen([sys.executable, "-m", "ipcmon", "exporter", "--listen", f"127.0.0.1:{port}",
                                 "--interval", f"{interval:g}"], cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if b"ipcmon_scan_duration_seconds " in urllib.request.urlopen(url, timeout=5).read():
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            sys.exit("the exporter served no scan within 120 s")
        cpu_start, wall_start = process_cpu_seconds(exporter.pid), time.monotonic()
        scrapes = 0
        while time.monotonic() - wall_start < seconds:
            urllib.request.urlopen(url, timeout=5).read()
            scrapes += 1
            time.sleep(min(interval, max(0.0, seconds - (time.monotonic() - wall_start))))
        cpu, wall = process_cpu_seconds(exporter.pid) - cpu_start, time.monotonic() - wall_start
    finally:
        exporter.send_signal(signal.SIGTERM)
        exporter.wait(timeout=30)
        stop_workload(workload)
    print(f"\nexporter at a {interval:g} s interval on the {scale} workload ({SCALES[scale]}), {scrapes} scrapes: "
          f"{cpu / wall * 100:.2f} % of one core over {wall:.0f} s ({cpu:.2f} s of CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="small,medium,large",
                        help="scales to time the scans and peers at, comma-separated, or 'none'")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dashboard", type=float, default=0.0, metavar="SECONDS",
                        help="also run the dashboard at 1 Hz for this long in each phase (--phases)")
    parser.add_argument("--phases", default=",".join(PHASES), metavar="PHASES",
                        help=f"the dashboard's phases, comma-separated (default {','.join(PHASES)})")
    parser.add_argument("--dashboard-scale", default="large", choices=sorted(SCALES),
                        help="the stress workload of the dashboard's 'large' phase (default large)")
    parser.add_argument("--terminal", type=float, default=0.0, metavar="SECONDS",
                        help="also run `ipcmon` in a real terminal (tmux) this long in the idle and demos phases and "
                        "print its CPU: the frames encoded and written, as a person sees them")
    parser.add_argument("--exporter", type=float, default=0.0, metavar="SECONDS",
                        help="also run `ipcmon exporter --interval 15` on the large workload this long (at least 60) "
                        "and print its CPU")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: lsof, lsfd and ipcmon must all see every process")
    scales = [] if args.scales.strip() == "none" else [scale.strip() for scale in args.scales.split(",")]
    phases = tuple(phase.strip() for phase in args.phases.split(",") if phase.strip())
    unknown = [name for name in (*scales, *phases) if name not in SCALES and name not in PHASES]
    if unknown:
        sys.exit(f"unknown scale or phase: {', '.join(unknown)}")
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    byte_compile()
    for scale in scales:
        bench_scale(scale, args.rounds)
    if args.dashboard:
        bench_dashboard(args.dashboard, args.dashboard_scale, phases)
    if args.terminal:
        bench_terminal(args.terminal, phases)
    if args.exporter:
        bench_exporter(args.exporter, "large")


if __name__ == "__main__":
    main()
