"""Churn stress: processes and IPC objects born and destroyed as fast as possible while ipcmon keeps scanning.

Run by hand at full size (as root; it re-executes itself in a private pid namespace):

    python3 -m tests.reliability.churn --processes 1000 --objects 10000 --scans 500

tests/reliability/test_churn.py runs it smaller. It prints one JSON object (scans, lifetimes, phantom
holders, exceptions) and exits 0 only when every check passed.

Why a pid namespace: inside it the scans see only the churn's own processes (fast, whatever else runs on
the machine), and pids can be reused on purpose. After a child dies, the next one is forked with the same
pid (``/proc/sys/kernel/ns_last_pid``) and holds *other* objects, so a collector that read one process's
stat and its successor's descriptors would report a phantom holder: the old process (pid + start time)
holding objects it never opened. Each child logs its pid, start time (field 22 of /proc/self/stat) and the
objects it holds; every holder of a churn object in every scan is checked against that log.

Killing the namespace's first process (this script) kills every process in it, so nothing outlives a
failed run; objects are removed by their unique prefix in a ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import mmap
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHM_DIR = "/dev/shm"
MQUEUE_DIR = "/dev/mqueue"
POOL_GROUPS = 2
POOL_SEGMENTS = 3
CONCURRENT_CHILDREN = 8
MAX_QUEUES = 4
"""Live churn queues at once: the system allows 256 (queues_max) for everyone on the machine."""
RING = 8
"""Objects each object churner keeps alive at once, so scans see some of them."""
OBJECT_KINDS = ("shm", "mqueue", "pipe", "fifo")


# --- the workers (separate processes inside the namespace) ---------------------------------------------


class _Stop:
    """Set by SIGUSR1 from the main process: the worker may stop once it has made its share."""

    requested = False

    @classmethod
    def install(cls) -> None:
        def on_signal(signum: int, frame: object) -> None:
            cls.requested = True

        signal.signal(signal.SIGUSR1, on_signal)


def _start_ticks() -> int:
    with open("/proc/self/stat", "rb") as stat_file:
        return int(stat_file.read().rsplit(b")", 1)[1].split()[19])


def _child(group: int, prefix: str, fifo_dir: str, log_fd: int, lifetime: float) -> None:
    """A short-lived process that opens its group's pool objects and a pipe of its own, logs them, and exits."""
    born = time.monotonic()
    objects = []
    keep = []
    for index in range(POOL_SEGMENTS):
        name = f"/{prefix}-pool{group}-{index}"
        keep.append(os.open(SHM_DIR + name, os.O_RDWR))
        objects.append(f"shm:{name}")
    keep.append(mmap.mmap(keep[0], mmap.PAGESIZE))  # a holder by mapping too
    fifo = f"{fifo_dir}/{prefix}-pool{group}.fifo"
    keep.append(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
    objects.append(f"fifo:{fifo}")
    read_end, _write_end = os.pipe()  # both ends stay open until the child exits
    objects.append(f"pipe:{os.fstat(read_end).st_ino}")
    line = f"life {os.getpid()} {_start_ticks()} {born:.6f} {' '.join(objects)}\n"
    os.write(log_fd, line.encode())
    time.sleep(lifetime)


def _set_next_pid(pid: int) -> bool:
    """Make the next fork in this pid namespace get pid (root only); False when the kernel refuses."""
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as last:
            last.write(str(pid - 1))
        return True
    except OSError:
        return False


def worker_processes(count: int, prefix: str, fifo_dir: str, log_path: str,
                     concurrency: int = CONCURRENT_CHILDREN) -> None:
    """Fork children (concurrency at a time), reusing each dead child's pid for the next one."""
    _Stop.install()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    alive: set[int] = set()
    free_pids: list[int] = []
    made = 0
    reused = 0
    while made < count or not _Stop.requested or alive:
        while len(alive) < concurrency and (made < count or not _Stop.requested):
            wanted = free_pids.pop() if free_pids else None
            if wanted is not None and _set_next_pid(wanted):
                reused += 1
            lifetime = random.uniform(0.001, 0.02)
            pid = os.fork()
            if pid == 0:
                try:
                    _child(made % POOL_GROUPS, prefix, fifo_dir, log_fd, lifetime)
                finally:
                    os._exit(0)
            alive.add(pid)
            made += 1
        pid, status = os.wait()
        os.write(log_fd, f"reap {pid} {time.monotonic():.6f} {status}\n".encode())
        alive.discard(pid)
        free_pids.append(pid)
    os.write(log_fd, f"count processes {made} reused {reused}\n".encode())


def worker_objects(kind: str, count: int, prefix: str, fifo_dir: str, log_path: str) -> None:
    """Create and destroy objects of one kind as fast as possible, RING alive at a time."""
    import posix_ipc

    _Stop.install()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    ring: list[Any] = []
    ring_size = MAX_QUEUES if kind == "mqueue" else RING
    made = 0

    def destroy(item: Any) -> None:
        if kind == "shm":
            fd, path, mapping = item
            if mapping is not None:
                mapping.close()
            os.close(fd)
            os.unlink(path)
        elif kind == "mqueue":
            queue = item
            queue.close()
            posix_ipc.unlink_message_queue(queue.name)
        elif kind == "pipe":
            for fd in item:
                os.close(fd)
        else:
            fd, path = item
            os.close(fd)
            os.unlink(path)

    try:
        while made < count or not _Stop.requested:
            if made >= count:
                time.sleep(0.001)  # made our share: keep churning, gently, until the scans are done
            name = f"{prefix}-{kind}-{made}"
            if kind == "shm":
                path = f"{SHM_DIR}/{name}"
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
                os.ftruncate(fd, mmap.PAGESIZE * random.randint(1, 4))
                mapping = mmap.mmap(fd, mmap.PAGESIZE) if made % 2 else None
                ring.append((fd, path, mapping))
            elif kind == "mqueue":
                queue = posix_ipc.MessageQueue("/" + name, posix_ipc.O_CREX, max_messages=4, max_message_size=64)
                queue.send(b"churn")
                ring.append(queue)
            elif kind == "pipe":
                read_end, write_end = os.pipe()
                os.write(write_end, b"churn")
                ring.append((read_end, write_end))
            else:
                path = f"{fifo_dir}/{name}"
                os.mkfifo(path, 0o600)
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
                os.write(fd, b"churn")
                ring.append((fd, path))
            made += 1
            if len(ring) > ring_size:
                destroy(ring.pop(0))
    finally:
        for item in ring:
            with contextlib.suppress(OSError, posix_ipc.Error):
                destroy(item)
    os.write(log_fd, f"count {kind} {made}\n".encode())


# --- the main process: scanning and checking ----------------------------------------------------------


@dataclass
class Lifetime:
    pid: int
    start_ticks: int
    born: float
    objects: set[str]
    reaped: float | None = None


@dataclass
class Observation:
    """One holder of a churn object, as one scan reported it."""

    scan: int
    pid: int
    start_ticks: int | None
    """The start time the same scan gave for that pid (None: the pid is not among its processes)."""
    obj: str
    began: float
    ended: float


@dataclass
class Report:
    scans: int = 0
    events: int = 0
    exceptions: list[str] = field(default_factory=list)
    worker_failures: list[str] = field(default_factory=list)
    process_lifetimes: int = 0
    reused_pid_lifetimes: int = 0
    object_lifetimes: dict[str, int] = field(default_factory=dict)
    holders_checked: int = 0
    child_holders_checked: int = 0
    ambiguous_keys: int = 0
    phantoms: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def ok(self, args: argparse.Namespace) -> bool:
        return (
            not self.exceptions
            and not self.worker_failures
            and not self.phantoms
            and self.scans >= args.scans
            and self.process_lifetimes >= args.processes
            and sum(self.object_lifetimes.values()) >= args.objects
        )


def _observe(snapshot: Any, index: int, began: float, ended: float, prefix: str) -> list[Observation]:
    """Every holder of a churn object in one snapshot, with the start time the snapshot gave its pid."""
    starts = {process.pid: process.start_ticks for process in snapshot.processes}
    seen: list[Observation] = []

    def add(pid: int, obj: str) -> None:
        seen.append(Observation(index, pid, starts.get(pid), obj, began, ended))

    for segment in snapshot.shm:
        if prefix in segment.name:
            for holder in segment.holders:
                add(holder.pid, f"shm:{segment.name}")
    for queue in snapshot.mqueues:
        if prefix in queue.name:
            for holder in queue.holders:
                add(holder.pid, f"mqueue:{queue.name}")
    for pipe in snapshot.pipes:
        obj = f"fifo:{pipe.path}" if pipe.kind == "fifo" else f"pipe:{pipe.inode}"
        for end in (*pipe.readers, *pipe.writers):
            add(end.pid, obj)
    return seen


def _read_log(log_path: str, report: Report) -> dict[tuple[int, int], list[Lifetime]]:
    lifetimes: dict[tuple[int, int], list[Lifetime]] = defaultdict(list)
    latest: dict[int, Lifetime] = {}
    with open(log_path) as log:
        for line in log:
            words = line.split()
            if words[0] == "life":
                pid, start = int(words[1]), int(words[2])
                life = Lifetime(pid, start, float(words[3]), set(words[4:]))
                lifetimes[(pid, start)].append(life)
                latest[pid] = life
            elif words[0] == "reap":
                life_reaped = latest.get(int(words[1]))
                if life_reaped is not None:
                    life_reaped.reaped = float(words[2])
            elif words[0] == "count":
                if words[1] == "processes":
                    report.process_lifetimes = int(words[2])
                    report.reused_pid_lifetimes = int(words[4])
                else:
                    report.object_lifetimes[words[1]] = int(words[2])
    return lifetimes


def _check(
    observations: list[Observation],
    lifetimes: dict[tuple[int, int], list[Lifetime]],
    workers: dict[int, str],
    prefix: str,
    report: Report,
) -> None:
    """Every observed holder was a process that existed during that scan and really held that object."""
    report.ambiguous_keys = sum(len(lives) > 1 for lives in lifetimes.values())
    for seen in observations:
        kind, _, name = seen.obj.partition(":")
        if seen.pid in workers:
            report.holders_checked += 1
            owner_kind = workers[seen.pid]
            if kind == "pipe" and owner_kind != "pipe":
                continue  # a worker's own stdio pipes are not churn objects
            if owner_kind != kind or "pool" in name:
                report.phantoms.append(f"scan {seen.scan}: worker {seen.pid} ({owner_kind}) shown holding {seen.obj}")
            continue
        if kind == "pipe":
            known_pipe = any(seen.obj in life.objects for lives in lifetimes.values() for life in lives)
            if not known_pipe and seen.start_ticks is None:
                continue
        if seen.start_ticks is None:
            report.phantoms.append(f"scan {seen.scan}: holder {seen.pid} of {seen.obj} is not among its processes")
            continue
        lives = lifetimes.get((seen.pid, seen.start_ticks))
        if not lives:
            if kind == "pipe" and prefix not in name:
                continue  # a pipe of some process outside the churn (none should exist in the namespace)
            report.phantoms.append(
                f"scan {seen.scan}: holder {seen.pid} (start {seen.start_ticks}) of {seen.obj} never existed"
            )
            continue
        report.holders_checked += 1
        report.child_holders_checked += 1
        if not any(seen.obj in life.objects for life in lives):
            report.phantoms.append(
                f"scan {seen.scan}: process {seen.pid} (start {seen.start_ticks}) shown holding {seen.obj}, "
                f"which it never opened (pid reuse?)"
            )
            continue
        if not any(life.born <= seen.ended and (life.reaped is None or life.reaped >= seen.began) for life in lives):
            report.phantoms.append(
                f"scan {seen.scan}: process {seen.pid} (start {seen.start_ticks}) shown holding {seen.obj} "
                "outside its lifetime"
            )


PREFIX_VARIABLE = "IPCMON_CHURN_PREFIX"
"""Set by a test, the prefix of every object a run makes, so the test can remove them if the run is killed."""


def unique_prefix(name: str) -> str:
    return f"{os.environ.get(PREFIX_VARIABLE) or 'ipcmon-' + name}-{uuid.uuid4().hex[:10]}"


def make_pool(prefix: str, fifo_dir: str) -> None:
    """The segments and FIFOs the short-lived children open (POOL_GROUPS groups)."""
    for group in range(POOL_GROUPS):
        for index in range(POOL_SEGMENTS):
            fd = os.open(f"{SHM_DIR}/{prefix}-pool{group}-{index}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            os.ftruncate(fd, mmap.PAGESIZE)
            os.close(fd)
        os.mkfifo(f"{fifo_dir}/{prefix}-pool{group}.fifo", 0o600)


def remove_churn_objects(prefix: str, fifo_dir: str) -> None:
    """Everything a churn run made, by its unique prefix, and the FIFO directory."""
    for path in glob.glob(f"{SHM_DIR}/{prefix}-*") + glob.glob(f"{MQUEUE_DIR}/{prefix}-*"):
        with contextlib.suppress(OSError):
            os.unlink(path)
    for path in glob.glob(f"{fifo_dir}/*"):
        with contextlib.suppress(OSError):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.rmdir(fifo_dir)


def run_main(args: argparse.Namespace) -> Report:
    from ipcmon.collect import ScanConfig
    from ipcmon.export import dumps
    from ipcmon.live.monitor import Monitor
    from ipcmon.report import render

    report = Report()
    prefix = unique_prefix("churn")
    fifo_dir = tempfile.mkdtemp(prefix="ipcmon-churn-")
    log_path = f"{fifo_dir}/log"
    Path(log_path).touch()
    workers: dict[int, str] = {}
    popens: list[subprocess.Popen[bytes]] = []
    stderr_files: dict[str, Any] = {}
    started = time.monotonic()
    try:
        make_pool(prefix, fifo_dir)
        per_kind = -(-args.objects // len(OBJECT_KINDS))
        for kind in ("processes", *OBJECT_KINDS):
            count = args.processes if kind == "processes" else per_kind
            # stderr to a file, not a pipe: children inherit it, and a pipe would be one more object they hold.
            stderr_file = open(f"{fifo_dir}/{kind}.stderr", "w+b")  # noqa: SIM115 (closed after the worker)
            stderr_files[kind] = stderr_file
            popen = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.churn", "--worker", kind, "--count", str(count),
                 "--prefix", prefix, "--fifo-dir", fifo_dir, "--log", log_path],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_file,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            popens.append(popen)
            workers[popen.pid] = "process" if kind == "processes" else kind
        observations: list[Observation] = []
        monitor = Monitor(ScanConfig(), history=1000)
        monitor.start()
        stopping = False
        try:
            while True:
                began = time.monotonic()
                try:
                    snapshot, events = monitor.poll()
                    report.events += len(events)
                    if report.scans % 25 == 0:
                        render(snapshot)
                        dumps(snapshot)
                except Exception:
                    report.exceptions.append(traceback.format_exc())
                    if len(report.exceptions) > 20:
                        break
                else:
                    observations.extend(_observe(snapshot, report.scans, began, time.monotonic(), prefix))
                report.scans += 1
                if report.scans >= args.scans and not stopping:
                    stopping = True
                    for popen in popens:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(popen.pid, signal.SIGUSR1)
                if stopping and all(popen.poll() is not None for popen in popens):
                    break
                if time.monotonic() - started > args.timeout:
                    report.exceptions.append(f"timed out after {args.timeout:.0f}s")
                    break
        finally:
            monitor.stop()
            report.exceptions.extend(monitor.errors)
        for popen, (kind, stderr_file) in zip(popens, stderr_files.items(), strict=True):
            try:
                popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
            if popen.returncode != 0:
                stderr_file.seek(0)
                report.worker_failures.append(f"{kind} exited {popen.returncode}: "
                                              f"{stderr_file.read().decode(errors='replace')[-2000:]}")
        _check(observations, _read_log(log_path, report), workers, prefix, report)
    finally:
        for popen in popens:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
        for stderr_file in stderr_files.values():
            stderr_file.close()
        remove_churn_objects(prefix, fifo_dir)
    report.seconds = time.monotonic() - started
    return report


def rerun_in_pid_namespace(module: str, argv: list[str] | None) -> int:
    """Run python -m module argv… as the first process of a new pid namespace with its own /proc."""
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
               sys.executable, "-m", module, *(argv if argv is not None else sys.argv[1:])]
    return subprocess.run(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}).returncode


def start_workers(kinds: tuple[str, ...], count: int, prefix: str, fifo_dir: str, log_path: str,
                  concurrency: int = CONCURRENT_CHILDREN) -> list[subprocess.Popen[bytes]]:
    """Churn workers (see worker_processes and worker_objects) that run until SIGUSR1 once count is made."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.churn", "--worker", kind, "--count", str(count),
             "--prefix", prefix, "--fifo-dir", fifo_dir, "--log", log_path, "--concurrency", str(concurrency)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for kind in kinds
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]], log_path: str) -> int:
    """Tell the workers to finish (SIGUSR1), wait for them (killing any that hang), and count the child
    lifetimes they logged."""
    for worker in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGUSR1)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    with open(log_path) as log:
        return sum(line.startswith("life") for line in log)


@contextlib.contextmanager
def churning(name: str, concurrency: int = CONCURRENT_CHILDREN) -> Iterator[dict[str, int]]:
    """Workers of every kind churning (past their count of 0, gently for objects) until the block ends, then
    stopped and everything they made removed; the yielded dict gets "process_lifetimes" at the end."""
    prefix = unique_prefix(name)
    fifo_dir = tempfile.mkdtemp(prefix=f"ipcmon-{name}-")
    log_path = f"{fifo_dir}/log"
    Path(log_path).touch()
    tally: dict[str, int] = {}
    try:
        make_pool(prefix, fifo_dir)
        workers = start_workers(("processes", *OBJECT_KINDS), 0, prefix, fifo_dir, log_path, concurrency)
        try:
            yield tally
        finally:
            tally["process_lifetimes"] = stop_workers(workers, log_path)
    finally:
        remove_churn_objects(prefix, fifo_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=1000, help="process lifetimes at least")
    parser.add_argument("--objects", type=int, default=10_000, help="object lifetimes at least (all kinds)")
    parser.add_argument("--scans", type=int, default=500, help="scans at least")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--no-namespace", action="store_true", help="run in the current pid namespace")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--fifo-dir", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENT_CHILDREN, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "processes":
        worker_processes(args.count, args.prefix, args.fifo_dir, args.log, args.concurrency)
        return 0
    if args.worker:
        worker_objects(args.worker, args.count, args.prefix, args.fifo_dir, args.log)
        return 0
    if os.getpid() != 1 and not args.no_namespace:
        return rerun_in_pid_namespace("tests.reliability.churn", argv)
    report = run_main(args)
    result = {**report.__dict__, "phantom_count": len(report.phantoms), "phantoms": report.phantoms[:20],
              "ok": report.ok(args)}
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
