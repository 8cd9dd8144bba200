"""Prometheus metrics of a Snapshot: counts and sizes only, bounded labels (issue 17), and the refresher behind them.

``families`` turns one snapshot into metric families (the exposition format's records, prometheus_client's
``Metric``); ``Refresher`` scans in a background thread at an interval and keeps the families of the latest scan,
which ``SnapshotCollector`` serves, so a scrape never scans and two scrapes never scan twice; ``write_textfile``
writes them for node_exporter's textfile collector atomically.

No label carries a pid, a comm, a command line or an object's name: what a label may take is a fixed vocabulary
(kind, state, flag, signal), a uid (one per user with queues), or a shm tmpfs (its mount point, and the Place label
of the namespace it is /dev/shm of: one per tmpfs). A machine with 2,000 segments serves as many series as one with
two (tests/metrics/test_exporter.py).
"""

from __future__ import annotations

import os
import re
import signal as signals
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ipcmon import health
from ipcmon.model import Attribution, Snapshot
from ipcmon.text import signal_name

SHM_KINDS = ("posix", "sem", "sysv")
"""The ``kind`` label of the shm metrics: POSIX segments, POSIX named semaphores (sem.NAME files on the same
tmpfs), SysV segments."""

SHM_STATES = ("held", "orphaned", "orphaned?", "deleted")
"""The ``state`` label: health's words. ``orphaned?`` is a segment no readable process holds but an unreadable one
could (health.qualify); a SysV segment attached reads ``held``, with nattch 0 ``orphaned``, IPC_RMID but still
attached ``deleted``."""

PIPE_FLAGS = ("full", "no-reader", "both-ends")
"""The ``flag`` label of ipcmon_pipes_flagged: the pipe flags that are hazards (health.PIPE_HAZARDS), facts only."""

STUCK_STATES = ("deadlocked", "blocked", "waiting")
"""The ``state`` label of ipcmon_ipc_stuck_processes (model.vocabulary.StuckState)."""

SIGNALS = tuple(signal_name(number) for number in range(1, int(signals.SIGRTMAX) + 1))
"""Every signal's name (text.signal_name), the ``signal`` label's values: each always served, 0 when none."""

RLIMIT_MSGQUEUE = "RLIMIT_MSGQUEUE"

HOST = "host"
"""The ``container`` label of a tmpfs that is no container's /dev/shm (or whose namespace is not known)."""


@dataclass(frozen=True, slots=True)
class ScanStats:
    """How the refresher has fared so far: counters since the exporter started."""

    scans: int = 0
    errors: int = 0


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _shm(snapshot: Snapshot) -> Iterator[Metric]:
    count: Counter[tuple[str, str]] = Counter()
    allocated: Counter[tuple[str, str]] = Counter()
    for segment in snapshot.shm:
        key: tuple[str, str] = ("posix" if segment.kind == "shm" else "sem", segment.state)
        count[key] += 1
        allocated[key] += segment.allocated
    sysv_states = {"attached": "held", "orphaned": "orphaned", "removed": "deleted"}
    for sysv in snapshot.sysv.shm:
        key = ("sysv", sysv_states[health.sysv_shm_state(sysv)])
        count[key] += 1
        allocated[key] += sysv.rss if sysv.rss is not None else sysv.size
    segments = _gauge("ipcmon_shm_segments", "Shared memory segments (POSIX, POSIX semaphores, SysV) by kind and "
                      "state: held, orphaned (nobody holds it, it stays until unlinked: ipcmon leaks), orphaned? "
                      "(an unreadable process may hold it), deleted (unlinked or IPC_RMID, still held).",
                      ("kind", "state"))
    sizes = _gauge("ipcmon_shm_allocated_bytes", "Bytes of memory the shared memory segments take, by kind and "
                   "state (allocated tmpfs pages; SysV: resident bytes, or the size when unknown).", ("kind", "state"))
    for kind in SHM_KINDS:
        for state in SHM_STATES:
            segments.add_metric([kind, state], count[kind, state])
            sizes.add_metric([kind, state], allocated[kind, state])
    yield segments
    yield sizes
    yield GaugeMetricFamily(
        "ipcmon_shm_deleted_pinned_bytes",
        "Bytes of memory pinned by POSIX segments that were unlinked but are still held open or mapped: freed only "
        "when the last holder lets go (ipcmon leaks names them).",
        value=sum(segment.pinned_bytes for segment in snapshot.shm if segment.state == "deleted"),
    )


_PROC_ROOT = re.compile(r"^/proc/[0-9]+/root(?=/)")


def mount_label(path: str) -> str:
    """The ``mount`` label of a shm tmpfs: its path as its own namespace sees it. A container's /dev/shm is listed
    through one of its processes (``/proc/4242/root/dev/shm``); that pid is left out, or the series would change
    with the process the scan went through (and a label would carry a pid)."""
    return _PROC_ROOT.sub("", path)


def _mounts(snapshot: Snapshot) -> Iterator[Metric]:
    labels = ("mount", "container")
    size = _gauge("ipcmon_shm_mount_size_bytes", "Size of a tmpfs that holds POSIX shared memory (/dev/shm, a "
                  "container's /dev/shm), statvfs.", labels)
    used = _gauge("ipcmon_shm_mount_used_bytes", "Bytes in use on a shm tmpfs, statvfs: a writer past its size "
                  "gets SIGBUS or ENOSPC.", labels)
    fill = _gauge("ipcmon_shm_mount_fill_ratio", "Used / size of a shm tmpfs, 0-1 (ipcmon limits).", labels)
    seen: set[tuple[str, str]] = set()
    for mount in snapshot.capacity.shm_mounts if snapshot.capacity else ():
        values = [mount_label(mount.path), mount.place.label if mount.place is not None else HOST]
        if tuple(values) in seen:  # two tmpfs of one container by one path: told apart by their device
            values[0] += f" (dev {os.major(mount.dev)}:{os.minor(mount.dev)})"
        seen.add((values[0], values[1]))
        if mount.size is not None:
            size.add_metric(values, mount.size)
        if mount.used is not None:
            used.add_metric(values, mount.used)
        if mount.fill is not None:
            fill.add_metric(values, mount.fill)
    yield from (size, used, fill)


def _mqueues(snapshot: Snapshot) -> Iterator[Metric]:
    queues = snapshot.mqueues
    fills = [fill for queue in queues if (fill := queue.fill) is not None]
    yield GaugeMetricFamily("ipcmon_mqueue_queues", "POSIX message queues.", value=len(queues))
    yield GaugeMetricFamily("ipcmon_mqueue_messages", "Messages waiting in POSIX message queues (mq_curmsgs).",
                            value=sum(queue.messages or 0 for queue in queues))
    yield GaugeMetricFamily("ipcmon_mqueue_queued_bytes", "Bytes of the messages waiting in POSIX message queues.",
                            value=sum(queue.qsize_bytes or 0 for queue in queues))
    yield GaugeMetricFamily("ipcmon_mqueue_max_fill_ratio", "The highest mq_curmsgs / mq_maxmsg of any POSIX "
                            "message queue, 0-1 (0 with no queue).", value=max(fills, default=0.0))
    yield GaugeMetricFamily("ipcmon_mqueue_full_queues", "POSIX message queues at mq_maxmsg: senders block or get "
                            "EAGAIN.", value=sum(health.queue_full(queue) for queue in queues))
    rlimit = _gauge("ipcmon_mqueue_rlimit_used_ratio", "Bytes a user's POSIX queues reserve against its "
                    "RLIMIT_MSGQUEUE, 0-1: at 1 mq_open fails with EMFILE (ipcmon limits).", ("uid",))
    budgets = snapshot.capacity.budgets if snapshot.capacity else ()
    for budget in budgets:
        if budget.name == RLIMIT_MSGQUEUE and budget.uid is not None and (ratio := budget.fill) is not None:
            rlimit.add_metric([str(budget.uid)], ratio)
    yield rlimit


def _budgets(snapshot: Snapshot) -> Iterator[Metric]:
    metric = _gauge("ipcmon_budget_used_ratio", "Used / limit of each system-wide kernel IPC limit, 0-1 "
                    "(kernel.shmmni, fs.mqueue.queues_max, fs.pipe-user-pages-soft…; ipcmon limits). Per-user "
                    "limits are elsewhere (ipcmon_mqueue_rlimit_used_ratio).", ("budget",))
    for budget in snapshot.capacity.budgets if snapshot.capacity else ():
        if budget.uid is None and (ratio := budget.fill) is not None:
            metric.add_metric([budget.name], ratio)
    yield metric


def _pipes(snapshot: Snapshot) -> Iterator[Metric]:
    yield GaugeMetricFamily("ipcmon_pipes", "Pipes and FIFOs some process holds open.", value=len(snapshot.pipes))
    flagged = _gauge("ipcmon_pipes_flagged", "Pipes and FIFOs by hazard: full (a writer blocks), no-reader (a "
                     "writer gets SIGPIPE), both-ends (one process holds both ends: its reader never sees EOF).",
                     ("flag",))
    counts: Counter[str] = Counter(flag for pipe in snapshot.pipes for flag in pipe.flags)
    for flag in PIPE_FLAGS:
        flagged.add_metric([flag], counts[flag])
    yield flagged


def _processes(snapshot: Snapshot) -> Iterator[Metric]:
    stuck = _gauge("ipcmon_ipc_stuck_processes", "Processes blocked in a system call on IPC: deadlocked (only "
                   "other members of the group could release it), blocked (nobody holds the other side), waiting.",
                   ("state",))
    states: Counter[str] = Counter(entry.state for entry in snapshot.stuck)
    for state in STUCK_STATES:
        stuck.add_metric([state], states[state])
    yield stuck
    yield GaugeMetricFamily("ipcmon_deadlocks", "Groups of processes blocked on IPC that only members of the group "
                            "could release.", value=len(snapshot.deadlocks))
    yield GaugeMetricFamily("ipcmon_deadlocked_processes", "Processes in a deadlock on IPC.",
                            value=sum(len(deadlock.members) for deadlock in snapshot.deadlocks))
    pending = _gauge("ipcmon_signal_pending_processes", "Processes with the signal pending (to the process or one "
                     "of its threads).", ("signal",))
    counts = Counter(name for entry in snapshot.signals
                     for name in {*entry.pending, *(name for thread in entry.threads for name in thread.pending)})
    for name in (*SIGNALS, *sorted(set(counts) - set(SIGNALS))):
        pending.add_metric([name], counts[name])
    yield pending
    yield GaugeMetricFamily("ipcmon_processes", "Processes scanned.", value=len(snapshot.processes))
    yield GaugeMetricFamily("ipcmon_unreadable_processes", "Processes whose descriptors or mappings could not be "
                            "read (not permitted): what they hold is not counted.", value=snapshot.hidden_processes)


def families(snapshot: Snapshot | None, stats: ScanStats = ScanStats()) -> list[Metric]:
    """Every metric of one snapshot, then the scan's own (duration, time, counters). None (no scan done yet): only
    the counters. Pure: the same snapshot gives the same families."""
    result: list[Metric] = []
    if snapshot is not None:
        for part in (_shm, _mounts, _mqueues, _budgets, _pipes, _processes):
            result.extend(part(snapshot))
        result.append(GaugeMetricFamily("ipcmon_scan_duration_seconds", "How long the latest scan took.",
                                        value=snapshot.scan_seconds))
        result.append(GaugeMetricFamily("ipcmon_scan_timestamp_seconds", "When the latest scan was taken, Unix "
                                        "time.", value=snapshot.taken_at))
    result.append(CounterMetricFamily("ipcmon_scans", "Scans done since the exporter started.", value=stats.scans))
    result.append(CounterMetricFamily("ipcmon_scan_errors", "Scans that failed since the exporter started (the "
                                      "previous scan's values stay served).", value=stats.errors))
    return result


class SentSignals(Collector):
    """``ipcmon_signals_sent_total{signal, result}``: signals sent since the exporter started, counted from the
    Attributor's tracefs records (issue 16; as root with tracefs mounted). Bounded labels: a signal's name (64 at
    most) and signal_generate's result (5, include/trace/events/signal.h). Thread-safe: records are added on the
    source's thread, scrapes read on the server's."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def add(self, records: Iterable[Attribution]) -> None:
        """Count the ``sent`` records (a coalesced record counts its ``count``); others are ignored."""
        with self._lock:
            for record in records:
                if record.action == "sent" and record.signal is not None:
                    key = (signal_name(record.signal), record.result or "unknown")
                    self._counts[key] = self._counts.get(key, 0) + record.count

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("ipcmon_signals_sent", "Signals sent since the exporter started, by signal and "
                                     "result (tracefs signal_generate; served only as root with tracefs mounted).",
                                     labels=("signal", "result"))
        with self._lock:
            counts = sorted(self._counts.items())
        for (name, result), count in counts:
            family.add_metric([name, result], count)
        yield family


class SnapshotCollector(Collector):
    """A prometheus_client collector that serves what it is given, never scanning itself."""

    def __init__(self) -> None:
        self._families: list[Metric] = families(None)

    def set(self, metrics: list[Metric]) -> None:
        """Serve these from now on (a list replaced whole: a scrape sees one scan's families or the next's)."""
        self._families = metrics

    def collect(self) -> Iterable[Metric]:
        return self._families


class Refresher:
    """Scans in a thread every ``interval`` seconds and gives each scan's families to a SnapshotCollector.

    scan: one scan (a Scanner's ``scan``); an exception it raises is counted in ipcmon_scan_errors_total and the
    previous families stay. after: called after each scan (the textfile writer), in the thread.
    """

    def __init__(self, scan: Callable[[], Snapshot], interval: float, collector: SnapshotCollector,
                 after: Callable[[], None] | None = None) -> None:
        self.scan = scan
        self.interval = interval
        self.collector = collector
        self.after = after
        self.stats = ScanStats()
        self.snapshot: Snapshot | None = None
        self.problem: str | None = None
        """The latest scan's error, in words; None when it succeeded."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ipcmon-exporter-scan", daemon=True)

    def refresh(self) -> None:
        """Scan once now and serve the result (in the calling thread)."""
        try:
            snapshot = self.scan()
        except Exception as error:  # a scan that fails must not end the exporter: counted, said, served
            self.stats = ScanStats(self.stats.scans, self.stats.errors + 1)
            self.problem = f"{type(error).__name__}: {error}"
        else:
            self.snapshot = snapshot
            self.stats = ScanStats(self.stats.scans + 1, self.stats.errors)
            self.problem = None
        self.collector.set(families(self.snapshot, self.stats))
        if self.after is not None:
            self.after()

    def start(self) -> None:
        """The first scan is done in the background thread, as every next one."""
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # Re-armed after each scan (STYLE.md 5): a scan longer than the interval delays the next, never overlaps it.
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


TEXTFILE = "ipcmon.prom"
"""The file --textfile writes in its directory (node_exporter's textfile collector reads *.prom)."""


def write_textfile(directory: str, registry: CollectorRegistry) -> str:
    """Write the registry's exposition to DIRECTORY/ipcmon.prom atomically: a temporary file in the same directory
    (node_exporter skips names not ending in .prom), flushed, then renamed over the old one, so a reader sees the
    old file or the new one whole, never a part. Returns the path. OSError when the directory is not writable."""
    from prometheus_client.exposition import generate_latest

    path = os.path.join(directory, TEXTFILE)
    data = generate_latest(registry)
    fd, temporary = tempfile.mkstemp(prefix=".ipcmon.prom.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # node_exporter may run as another user; mkstemp makes it 0600
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return path
