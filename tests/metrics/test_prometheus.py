"""End to end with a real Prometheus (issue 17): .ci/run starts one on 127.0.0.1:9090 that scrapes 127.0.0.1:9464
every second (.ci/prometheus.yml); this test runs `ipcmon exporter` there, makes real orphaned segments, a full
queue and a full pipe, sees Prometheus's HTTP API report them, removes them and sees the values fall."""

from __future__ import annotations

import fcntl
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

import posix_ipc
import pytest

from tests.helpers import Cleanup, new_name
from tests.metrics.serving import exporter, wait_for_scrape

PROMETHEUS = "http://127.0.0.1:9090"
PORT = 9464
"""The port .ci/prometheus.yml scrapes."""
JOB = 'job="ipcmon-ci"'
WAIT = 60.0
"""Seconds for a change to go through a scan (1 s), a scrape (1 s) and a query."""


def prometheus_ready() -> None:
    try:
        with urllib.request.urlopen(f"{PROMETHEUS}/-/ready", timeout=5) as response:
            if response.status == 200:
                return
    except (urllib.error.URLError, ConnectionError):
        pass
    pytest.fail(f"no Prometheus server at {PROMETHEUS}: .ci/run starts one (prometheus "
                "--config.file=.ci/prometheus.yml --web.listen-address=127.0.0.1:9090); start it the same way")


def query(expression: str) -> float | None:
    """The value of an instant query that yields one sample; None when it yields none."""
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result = body["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def wait_for(expression: str, good: Callable[[float], bool], what: str) -> float:
    """Query until the value is good; fail with the last value at the deadline."""
    deadline = time.monotonic() + WAIT
    value = None
    while time.monotonic() < deadline:
        value = query(expression)
        if value is not None and good(value):
            return value
        time.sleep(0.5)
    pytest.fail(f"Prometheus: {expression} = {value} after {WAIT:.0f}s, waiting for {what}")


def full_pipe() -> tuple[int, int]:
    """A pipe whose buffer this process has filled (writes until EAGAIN); both ends returned, open."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETFL, os.O_NONBLOCK)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    return read_end, write_end


def test_prometheus_scrapes_the_exporter_and_sees_objects_come_and_go(cleanup: Cleanup) -> None:
    prometheus_ready()
    orphaned = f'sum(ipcmon_shm_segments{{{JOB},kind="posix",state="orphaned"}})'
    full_queues = f"sum(ipcmon_mqueue_full_queues{{{JOB}}})"
    full_pipes = f'sum(ipcmon_pipes_flagged{{{JOB},flag="full"}})'
    with exporter("--listen", f"127.0.0.1:{PORT}", "--interval", "1") as process:
        wait_for_scrape(PORT, process)
        duration = wait_for(f"ipcmon_scan_duration_seconds{{{JOB}}}", lambda value: value > 0,
                            "a scan's duration scraped")
        assert duration < 60
        before = {name: wait_for(name, lambda value: value >= 0, "a baseline")
                  for name in (orphaned, full_queues, full_pipes)}

        names = [new_name(f"prom{index}") for index in range(3)]
        for name in names:
            posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=4096).close_fd()
        queue_name = new_name("promq")
        queue = posix_ipc.MessageQueue(cleanup.mqueue(queue_name), posix_ipc.O_CREX, max_messages=2,
                                       max_message_size=64)
        queue.send(b"a")
        queue.send(b"b")
        read_end, write_end = full_pipe()
        try:
            wait_for(orphaned, lambda value: value >= before[orphaned] + 3, "3 more orphaned segments")
            wait_for(full_queues, lambda value: value >= before[full_queues] + 1, "a full queue")
            wait_for(full_pipes, lambda value: value >= before[full_pipes] + 1, "a full pipe")
        finally:
            os.close(read_end)
            os.close(write_end)
            queue.close()
            queue.unlink()
            for name in names:
                posix_ipc.unlink_shared_memory(name)
        wait_for(orphaned, lambda value: value <= before[orphaned], "the orphaned segments gone")
        wait_for(full_queues, lambda value: value <= before[full_queues], "the full queue gone")
        wait_for(full_pipes, lambda value: value <= before[full_pipes], "the full pipe gone")
    assert process.returncode == 0


def test_prometheus_takes_every_dashboard_query_and_loaded_the_rules() -> None:
    from tests.metrics.test_contrib import dashboard_queries

    prometheus_ready()
    for expression in dashboard_queries():
        url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expression.replace("$instance", ".*")})
        with urllib.request.urlopen(url, timeout=5) as response:
            assert json.load(response)["status"] == "success", expression
    with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/rules", timeout=5) as response:
        groups = json.load(response)["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert {"IpcmonShmMountNearlyFull", "IpcmonDeadlock", "IpcmonMqueueRlimitNearlyUsed"} <= alerts
