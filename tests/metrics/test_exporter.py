"""ipcmon exporter (issue 17): the metrics of a real scan parse with prometheus_client's parser and are named, typed,
documented and labelled as specified; no label names a process or an object; an orphaned segment is counted; a
real HTTP scrape of the running command; the textfile, atomic; a non-local address refused without the flag; the
number of series does not grow with the workload."""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import posix_ipc
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from ipcmon import metrics
from ipcmon.cli.exporter import is_local, parse_listen
from ipcmon.collect import ScanConfig, Scanner
from ipcmon.model import Actor, Attribution
from tests.helpers import REPO, Cleanup, wait_until
from tests.metrics.serving import exporter, free_port, samples, scrape, wait_for_scrape

SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
    "ipcmon_shm_segments": ("gauge", ("kind", "state")),
    "ipcmon_shm_allocated_bytes": ("gauge", ("kind", "state")),
    "ipcmon_shm_deleted_pinned_bytes": ("gauge", ()),
    "ipcmon_shm_mount_size_bytes": ("gauge", ("container", "mount")),
    "ipcmon_shm_mount_used_bytes": ("gauge", ("container", "mount")),
    "ipcmon_shm_mount_fill_ratio": ("gauge", ("container", "mount")),
    "ipcmon_mqueue_queues": ("gauge", ()),
    "ipcmon_mqueue_messages": ("gauge", ()),
    "ipcmon_mqueue_queued_bytes": ("gauge", ()),
    "ipcmon_mqueue_max_fill_ratio": ("gauge", ()),
    "ipcmon_mqueue_full_queues": ("gauge", ()),
    "ipcmon_mqueue_rlimit_used_ratio": ("gauge", ("uid",)),
    "ipcmon_budget_used_ratio": ("gauge", ("budget",)),
    "ipcmon_pipes": ("gauge", ()),
    "ipcmon_pipes_flagged": ("gauge", ("flag",)),
    "ipcmon_ipc_stuck_processes": ("gauge", ("state",)),
    "ipcmon_deadlocks": ("gauge", ()),
    "ipcmon_deadlocked_processes": ("gauge", ()),
    "ipcmon_signal_pending_processes": ("gauge", ("signal",)),
    "ipcmon_processes": ("gauge", ()),
    "ipcmon_unreadable_processes": ("gauge", ()),
    "ipcmon_scan_duration_seconds": ("gauge", ()),
    "ipcmon_scan_timestamp_seconds": ("gauge", ()),
    "ipcmon_scans": ("counter", ()),
    "ipcmon_scan_errors": ("counter", ()),
    "ipcmon_signals_sent": ("counter", ("result", "signal")),
}
"""Every family the exporter serves: its type and label names (README.md, "Prometheus exporter", lists them)."""

UNITS = ("_bytes", "_seconds", "_ratio")
FORBIDDEN_LABELS = {"pid", "ppid", "tid", "comm", "name", "cmdline", "object", "path", "process", "user", "key", "id"}


def exposition(snapshot_scanner: Scanner | None = None) -> str:
    """One real scan's exposition text, as a scrape gets it (with the signals-sent counter, as root serves it)."""
    registry = CollectorRegistry()
    collector = metrics.SnapshotCollector()
    registry.register(collector)
    sent = metrics.SentSignals()
    sent.add([Attribution(0.0, "sent", "signal", "1 init", Actor(2, "kthreadd"), "tracefs", signal=10, target=1,
                          result="delivered")])
    registry.register(sent)
    scanner = snapshot_scanner or Scanner(ScanConfig())
    refresher = metrics.Refresher(scanner.scan, 15.0, collector)
    refresher.refresh()
    assert refresher.problem is None
    return generate_latest(registry).decode()


def test_names_types_help_and_labels_are_as_specified() -> None:
    text = exposition()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert set(families) == set(SPEC)
    for name, family in families.items():
        kind, labels = SPEC[name]
        assert family.type == kind, name
        assert family.documentation.strip(), f"{name} has no HELP"
        assert name.startswith("ipcmon_")
        if kind == "counter":
            assert {sample.name for sample in family.samples} <= {f"{name}_total", f"{name}_created"}
            assert f"# TYPE {name}_total counter" in text and f"{name}_total " in text
        for unit in ("bytes", "seconds", "ratio"):
            assert unit not in name.split("_") or name.endswith(f"_{unit}"), f"{name}: the unit comes last"
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            assert tuple(sorted(sample.labels)) == labels, (name, sample.labels)
            assert not FORBIDDEN_LABELS & set(sample.labels)
            assert sample.value >= 0
    assert any(name.endswith(UNITS) for name in families)
    assert "ipcmon_shm_mount_fill_ratio" in text  # this machine has a /dev/shm tmpfs


def test_every_fixed_label_value_is_served_even_when_zero() -> None:
    found = samples(exposition())
    for kind in metrics.SHM_KINDS:
        for state in metrics.SHM_STATES:
            assert ("ipcmon_shm_segments", (("kind", kind), ("state", state))) in found
    for flag in metrics.PIPE_FLAGS:
        assert ("ipcmon_pipes_flagged", (("flag", flag),)) in found
    assert ("ipcmon_signal_pending_processes", (("signal", "SIGUSR1"),)) in found
    assert len([key for key in found if key[0] == "ipcmon_signal_pending_processes"]) == len(metrics.SIGNALS)


def test_an_orphaned_segment_is_counted_with_its_bytes(cleanup: Cleanup, unique_name: str) -> None:
    scanner = Scanner(ScanConfig())
    orphaned = ("ipcmon_shm_segments", (("kind", "posix"), ("state", "orphaned")))
    orphaned_bytes = ("ipcmon_shm_allocated_bytes", (("kind", "posix"), ("state", "orphaned")))
    segment = posix_ipc.SharedMemory(cleanup.shm(unique_name), posix_ipc.O_CREX, size=64 * 1024)
    with mmap.mmap(segment.fd, 64 * 1024) as memory:
        memory.write(b"x" * 64 * 1024)  # allocate its pages
    segment.close_fd()  # nobody holds it now: orphaned
    with_it = samples(exposition(scanner))
    posix_ipc.unlink_shared_memory(unique_name)
    without = samples(exposition(scanner))
    assert with_it[orphaned] - without[orphaned] == 1
    assert with_it[orphaned_bytes] - without[orphaned_bytes] == 64 * 1024


def test_a_scrape_serves_the_latest_scan_and_never_scans() -> None:
    calls: list[int] = []
    scanner = Scanner(ScanConfig())

    def counted() -> object:
        calls.append(1)
        return scanner.scan()

    registry = CollectorRegistry()
    collector = metrics.SnapshotCollector()
    registry.register(collector)
    refresher = metrics.Refresher(counted, 3600.0, collector)  # type: ignore[arg-type]
    assert "ipcmon_scan_duration_seconds" not in generate_latest(registry).decode()  # no scan yet: counters only
    refresher.refresh()
    texts = [generate_latest(registry).decode() for _ in range(5)]
    assert len(calls) == 1
    assert all(samples(text)[("ipcmon_scans_total", ())] == 1 for text in texts)


def test_a_failing_scan_is_counted_and_the_previous_values_stay() -> None:
    scanner = Scanner(ScanConfig())
    results: list[object] = [scanner.scan, OSError("no /proc")]

    def scan() -> object:
        step = results.pop(0)
        if isinstance(step, Exception):
            raise step
        return step()  # type: ignore[operator]

    collector = metrics.SnapshotCollector()
    refresher = metrics.Refresher(scan, 3600.0, collector)  # type: ignore[arg-type]
    refresher.refresh()
    refresher.refresh()
    registry = CollectorRegistry()
    registry.register(collector)
    found = samples(generate_latest(registry).decode())
    assert found[("ipcmon_scan_errors_total", ())] == 1 and found[("ipcmon_scans_total", ())] == 1
    assert ("ipcmon_scan_duration_seconds", ()) in found
    assert refresher.problem == "OSError: no /proc"


def test_a_real_http_scrape_of_the_running_exporter() -> None:
    port = free_port()
    with exporter("--listen", f"127.0.0.1:{port}", "--interval", "3600") as process:
        first = samples(wait_for_scrape(port, process))
        again = [samples(scrape(port)) for _ in range(3)]
        assert first[("ipcmon_scans_total", ())] == 1
        assert all(found[("ipcmon_scans_total", ())] == 1 for found in again)  # scrapes do not scan
        assert first[("ipcmon_processes", ())] > 0
    assert process.returncode == 0


def test_a_signal_sent_is_counted_by_signal_and_result() -> None:
    """As root with tracefs mounted, ipcmon_signals_sent_total counts signals as they are sent (issue 16's
    attribution): a SIGUSR1 to a sleeper that does not handle it is one more SIGUSR1, delivered."""
    if os.geteuid() != 0:
        pytest.fail("counting signals sent needs root and tracefs, as CI has")
    port = free_port()
    key = ("ipcmon_signals_sent_total", (("result", "delivered"), ("signal", "SIGUSR1")))
    with exporter("--listen", f"127.0.0.1:{port}", "--interval", "3600") as process:
        before = samples(wait_for_scrape(port, process)).get(key, 0.0)
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            comm = Path(f"/proc/{sleeper.pid}/comm")
            wait_until(lambda: comm.read_text().strip() == "sleep", "sleep to run")
            os.kill(sleeper.pid, signal.SIGUSR1)
        finally:
            sleeper.wait(timeout=10)
        wait_until(lambda: samples(scrape(port)).get(key, 0.0) >= before + 1, "the SIGUSR1 counted")
    assert process.returncode == 0


def test_the_textfile_once_is_parseable_and_nothing_else_is_left(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "ipcmon", "exporter", "--textfile", str(tmp_path), "--once"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path) == ["ipcmon.prom"]  # the temporary file was renamed, not left
    text = (tmp_path / "ipcmon.prom").read_text()
    once = set(SPEC) - {"ipcmon_signals_sent"}  # --once counts no signals sent: it watched none
    assert {family.name for family in text_string_to_metric_families(text)} == once
    assert os.stat(tmp_path / "ipcmon.prom").st_mode & 0o777 == 0o644


def test_the_textfile_is_replaced_whole_never_seen_in_part(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    collector = metrics.SnapshotCollector()
    registry.register(collector)
    metrics.Refresher(Scanner(ScanConfig()).scan, 3600.0, collector).refresh()
    whole = generate_latest(registry).decode()
    path = metrics.write_textfile(str(tmp_path), registry)
    done = threading.Event()
    seen: list[str] = []

    def read() -> None:
        while not done.is_set():
            seen.append(Path(path).read_text())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(200):
            metrics.write_textfile(str(tmp_path), registry)
    finally:
        done.set()
        reader.join()
    assert seen and all(text == whole for text in seen)
    assert os.listdir(tmp_path) == ["ipcmon.prom"]


def test_a_non_local_address_is_refused_without_the_flag() -> None:
    result = subprocess.run([sys.executable, "-m", "ipcmon", "exporter", "--listen", f"0.0.0.0:{free_port()}"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "--allow-remote" in result.stderr
    assert [is_local(parse_listen(text)[0]) for text in ("127.0.0.1:1", "[::1]:1", "localhost:1", ":1",
                                                        "10.0.0.1:1", "example.org:1")] == [
        True, True, True, False, False, False]


def test_once_needs_a_textfile() -> None:
    result = subprocess.run([sys.executable, "-m", "ipcmon", "exporter", "--once"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--textfile" in result.stderr


def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return set(samples(text))


@pytest.mark.slow
def test_the_number_of_series_does_not_grow_with_2000_segments_and_500_processes() -> None:
    from benchmarks.scan_bench import start_workload, stop_workload

    small = series(exposition())
    workload = start_workload({"processes": 500, "segments": 2000, "pipes": 0, "queues": 0})
    try:
        large_text = exposition()
    finally:
        stop_workload(workload)
    large = series(large_text)
    found = samples(large_text)
    assert found[("ipcmon_processes", ())] >= 500
    assert sum(value for (name, _labels), value in found.items() if name == "ipcmon_shm_segments") >= 2000
    assert len(large) == len(small)
    assert large == small


def test_a_containers_shm_mount_is_labelled_by_its_own_path_and_container_without_a_pid() -> None:
    # Canned records: a container's /dev/shm as the scan lists it, through one of its processes (the namespaced
    # scan itself is tested in tests/collect/test_namespaces.py).
    from ipcmon.model import Capacity, Place, ShmMount, Snapshot
    from ipcmon.model.places import Container

    web = Place(ipc=4026532178, mnt=4026532176, container=Container("a" * 64, "docker", name="web"))
    mounts = (ShmMount("/dev/shm", os.makedev(0, 25), 1000, 100, 900, 1, 10, place=Place(1, 2, host=True)),
              ShmMount("/proc/4242/root/dev/shm", os.makedev(0, 90), 1000, 950, 50, 1, 10, place=web),
              ShmMount("/proc/4243/root/dev/shm", os.makedev(0, 91), 1000, 0, 1000, 1, 10, place=web))
    registry = CollectorRegistry()
    collector = metrics.SnapshotCollector()
    registry.register(collector)
    collector.set(metrics.families(Snapshot(taken_at=0.0, kinds=(), capacity=Capacity(shm_mounts=mounts))))
    found = samples(generate_latest(registry).decode())
    fills = {labels: value for (name, labels), value in found.items() if name == "ipcmon_shm_mount_fill_ratio"}
    assert fills == {
        (("container", "host"), ("mount", "/dev/shm")): 0.1,
        (("container", "web"), ("mount", "/dev/shm")): 0.95,
        (("container", "web"), ("mount", "/dev/shm (dev 0:91)")): 0.0,
    }


def test_sigint_stops_the_exporter_with_status_0() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ipcmon", "exporter", "--listen", f"127.0.0.1:{port}"],
                               cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_scrape(port, process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_textfile_is_rewritten_each_interval_without_http(tmp_path: Path) -> None:
    with exporter("--textfile", str(tmp_path), "--interval", "0.2") as process:
        prom = tmp_path / "ipcmon.prom"

        def scans() -> float:
            return samples(prom.read_text())[("ipcmon_scans_total", ())] if prom.exists() else 0.0

        wait_until(lambda: scans() >= 3, "three scans written to the textfile", timeout=60)
        assert process.poll() is None
        assert os.listdir(tmp_path) == ["ipcmon.prom"]
    said = process.stderr.read() if process.stderr else ""
    assert f"serving {tmp_path}/ipcmon.prom," in said and "http://" not in said
