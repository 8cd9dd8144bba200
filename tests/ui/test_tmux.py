"""End to end: `ipcmon` in a real terminal (tmux) shows a segment the test creates, switches views, quits cleanly."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import posix_ipc
import pytest

from tests.helpers import REPO, Cleanup, tool
from tests.ui.conftest import DEADLINE, ui_name

# Real scans of a machine other tests keep busy: generous, but bounded.
pytestmark = pytest.mark.timeout(300)


class Terminal:
    """One tmux session of our own (unique name); only it is ever killed."""

    def __init__(self, tmux: str, command: str, cwd: Path) -> None:
        self.tmux = tmux
        self.session = f"ipcmon-test-ui-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
        env.pop("TMUX", None)
        subprocess.run(
            [tmux, "new-session", "-d", "-s", self.session, "-x", "120", "-y", "40", "-c", str(cwd), command],
            check=True, env=env, timeout=30,
        )

    def screen(self) -> str:
        result = subprocess.run([self.tmux, "capture-pane", "-p", "-t", self.session],
                                capture_output=True, text=True, timeout=30)
        return result.stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([self.tmux, "send-keys", "-t", self.session, *keys], check=True, timeout=30)

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float = DEADLINE) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; the screen:\n{screen}")
            time.sleep(0.2)

    def kill(self) -> None:
        subprocess.run([self.tmux, "kill-session", "-t", self.session], capture_output=True, timeout=30)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[[str], Terminal]]:
    """Start commands in tmux sessions of our own, in a temporary directory (an export lands there)."""
    started: list[Terminal] = []

    def start(command: str) -> Terminal:
        started.append(Terminal(tool("tmux"), command, tmp_path))
        return started[-1]

    yield start
    for term in started:
        term.kill()


def test_dashboard_in_tmux(terminal: Callable[[str], Terminal], cleanup: Cleanup, tmp_path: Path) -> None:
    status = tmp_path / "status"
    # An "e" typed by mistake would export into tmp_path (checked at the end).
    ipcmon = shlex.join(["env", f"IPCMON_EXPORT_DIR={tmp_path}", sys.executable, "-m", "ipcmon", "--kind", "shm",
                         "--interval", "0.3"])
    # After ipcmon exits, its status is saved and the pane stays a while so a traceback would be seen.
    term = terminal(f"{ipcmon}; echo $? > {shlex.quote(str(status))}; echo IPCMON-EXITED; sleep 60")
    term.wait_for(lambda screen: "1 Overview" in screen and "Leaks and hazards" in screen, "the dashboard")

    name = ui_name("tmux")
    segment = cleanup.add(lambda s: s.unlink(), posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096))
    # Other tests' objects may fill the table: filter to ours (keys typed right after "/" go to the filter).
    term.keys("2", "/")
    term.keys("-l", name)
    term.keys("Enter")
    shm_row = re.compile(re.escape(name) + r"\s+shm\s+4\.0K")
    term.wait_for(lambda screen: shm_row.search(screen) is not None, f"{name} in the Shared memory view")
    # Its detail pane: this process holds it by descriptor.
    term.wait_for(lambda screen: f"{os.getpid()}" in screen and "Holders (1)" in screen, "its holder")

    term.keys("6")
    term.keys("/")
    term.keys("-l", f"event:created {name}")
    term.keys("Enter")
    # A row of the table, not the filter box echoing what was typed.
    created_row = re.compile(r"\bshm\s+created\s+" + re.escape(name))
    term.wait_for(lambda screen: created_row.search(screen) is not None, "its created event in the Events view")
    term.keys("4")
    term.wait_for(lambda screen: "Not scanned" in screen, "the Pipes view saying --kind left pipes out")
    segment.unlink()
    term.keys("1")
    term.wait_for(lambda screen: "Shared memory" in screen and "Leaks and hazards" in screen, "the Overview")

    term.keys("q")
    screen = term.wait_for(lambda screen: "IPCMON-EXITED" in screen, "ipcmon to exit")
    assert status.read_text().strip() == "0"
    assert "Traceback" not in screen and "Error" not in screen
    assert not list(tmp_path.glob("ipcmon-snapshot-*.json"))  # every key typed after "/" went to the filter
