"""Run Python code as the first process of a private pid namespace, with its own /proc.

Inside, a scan sees only the test's own processes, so it is fast whatever else runs on the machine, and
pids can be reused on purpose (``/proc/sys/kernel/ns_last_pid``). When the first process exits, the kernel
kills everything left in the namespace, so a failed run leaves no process behind. Needs root (as CI is).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any

import pytest

from tests.helpers import REPO


def unshare_command() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is not installed; .ci/run installs util-linux")
    if os.geteuid() != 0:
        pytest.fail("these tests need root (a private pid namespace); run them as root, as CI does")
    return [unshare, "--pid", "--fork", "--mount-proc", "--kill-child"]


def run_module(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """python -m module args…, in a new pid namespace, from the repository root.

    A run that is killed (timeout) takes its processes with it but cannot remove its objects: they carry a
    prefix of this test's own (churn.PREFIX_VARIABLE) and are removed here.
    """
    prefix = f"ipcmon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        return subprocess.run(
            [*unshare_command(), sys.executable, "-m", module, *args],
            cwd=REPO, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(REPO), "IPCMON_CHURN_PREFIX": prefix},
        )
    finally:
        remove_prefixed(prefix)


def remove_prefixed(prefix: str, settle: float = 0.3, deadline: float = 10.0) -> None:
    """Unlink every /dev/shm and /dev/mqueue entry named prefix…, until two passes settle seconds apart find none.

    A run killed on timeout has its namespace torn down by the kernel after subprocess.run returns: its
    processes may create objects for a moment more, after a single pass would have looked (seen in a loaded
    run that left 4 queues behind).
    """
    quiet = 0
    give_up = time.monotonic() + deadline
    while quiet < 2 and time.monotonic() < give_up:
        found = glob.glob(f"/dev/shm/{prefix}*") + glob.glob(f"/dev/mqueue/{prefix}*")
        for path in found:
            with contextlib.suppress(OSError):
                os.unlink(path)
        quiet = 0 if found else quiet + 1
        time.sleep(settle)


def run_code(code: str, *, timeout: float) -> dict[str, Any]:
    """Run code in a new pid namespace; it reports by printing one JSON object as its last line."""
    result = subprocess.run(
        [*unshare_command(), sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if result.returncode != 0 or not result.stdout.strip():
        pytest.fail(f"namespace run exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report
