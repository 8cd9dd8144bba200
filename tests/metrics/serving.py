"""Running `ipcmon exporter` as a subprocess and scraping it, for the metrics tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.helpers import DEADLINE, REPO


def free_port() -> int:
    """A localhost TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text → {(sample name, sorted labels): value}, through prometheus_client's own parser."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert isinstance(sample, Sample)
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


@contextmanager
def exporter(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`ipcmon exporter ARGS…` running; stopped with SIGTERM (and its exit status checked to be 0) at the end, killed
    by pid if it does not stop."""
    process = subprocess.Popen([sys.executable, "-m", "ipcmon", "exporter", *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail("ipcmon exporter did not stop on SIGTERM")
        assert status == 0, process.stderr.read() if process.stderr else status


def wait_for_scrape(port: int, process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The first scrape that has a scan's metrics (ipcmon_scan_duration_seconds); fails at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = process.stderr.read() if process.stderr else ""
            pytest.fail(f"ipcmon exporter exited {process.returncode}: {said}")
        try:
            text = scrape(port)
        except (urllib.error.URLError, ConnectionError):
            text = ""
        if "ipcmon_scan_duration_seconds " in text:
            return text
        time.sleep(0.1)
    pytest.fail(f"no scan's metrics at 127.0.0.1:{port} after {timeout:.0f}s")
