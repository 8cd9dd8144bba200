"""Leaving the dashboard (issue 12): SIGTERM, SIGHUP and SIGINT in a real terminal (tmux) restore it, stop the
demos the dashboard started (they remove what they made) and exit 0; Ctrl+C quits."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from ipcmon.collect import procfs
from ipcmon.demos import OBJECT_PREFIX
from ipcmon.model import ProcessKey
from tests.helpers import wait_until
from tests.ui import test_tmux
from tests.ui.test_tmux import Terminal

# Real scans and a real demo on a machine other tests keep busy: generous, but bounded.
pytestmark = pytest.mark.timeout(300)

terminal = test_tmux.terminal
"""The fixture: commands in tmux sessions of our own (unique names); only those are killed."""


def modes(term: Terminal) -> tuple[str, str, str]:
    """(alternate screen on, mouse reporting on, cursor shown) of the pane, each "0" or "1"."""
    shown = subprocess.run([term.tmux, "display", "-p", "-t", term.session,
                            "#{alternate_on} #{mouse_any_flag} #{cursor_flag}"],
                           capture_output=True, text=True, check=True, timeout=30).stdout.split()
    alternate, mouse, cursor = shown
    return alternate, mouse, cursor


def pane_child(term: Terminal, needle: str) -> int:
    """The pid of the pane shell's child whose command line holds `needle` (the shell runs the command)."""
    shell = int(subprocess.run([term.tmux, "display", "-p", "-t", term.session, "#{pane_pid}"],
                               capture_output=True, text=True, check=True, timeout=30).stdout)
    found: list[int] = []

    def look() -> bool:
        found[:] = [child.pid for child in psutil.Process(shell).children()
                    if needle in " ".join(_cmdline(child))]
        return bool(found)

    wait_until(look, f"a child of the pane's shell running {needle}")
    return found[0]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def key_of(pid: int) -> ProcessKey | None:
    try:
        return ProcessKey(pid, procfs.parse_stat(procfs.read_bytes(f"/proc/{pid}/stat")).start_ticks)
    except procfs.Gone:
        return None


def alive(key: ProcessKey) -> bool:
    try:
        stat = procfs.parse_stat(procfs.read_bytes(f"/proc/{key.pid}/stat"))
    except procfs.Gone:
        return False
    return stat.start_ticks == key.start_ticks and stat.state != "Z"


def demo_objects(demo_pid: int) -> list[str]:
    prefix = f"{OBJECT_PREFIX[1:]}{demo_pid}-"
    return [f"/dev/shm/{name}" for name in os.listdir("/dev/shm") if name.startswith(prefix)]


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_restores_the_terminal_stops_the_demos_and_exits_0(
    terminal: Callable[[str], Terminal], tmp_path: Path, signo: int
) -> None:
    status = tmp_path / "status"
    ipcmon = shlex.join([sys.executable, "-m", "ipcmon", "--kind", "shm", "--interval", "0.5", "--demo", "shm"])
    term = terminal(f"{ipcmon}; echo $? > {shlex.quote(str(status))}; echo IPCMON-EXITED; sleep 60")
    family: set[ProcessKey] = set()
    demo_pid = None
    try:
        term.wait_for(lambda screen: "1 Overview" in screen and "Leaks and hazards" in screen, "the dashboard")
        # What the signal must undo: the dashboard runs in the alternate screen, mouse on, cursor hidden.
        assert modes(term) == ("1", "1", "0")
        dashboard = pane_child(term, "-m ipcmon")
        demos = [child for child in psutil.Process(dashboard).children() if "demos/shm.py" in " ".join(_cmdline(child))]
        assert len(demos) == 1, demos
        demo_pid = demos[0].pid
        wait_until(lambda: demo_objects(demo_pid), "the demo's segment")
        for pid in [demo_pid, *(child.pid for child in demos[0].children(recursive=True))]:
            key = key_of(pid)
            if key is not None:
                family.add(key)

        os.kill(dashboard, signo)  # by pid: the dashboard alone, not the pane's shell

        screen = term.wait_for(lambda screen: "IPCMON-EXITED" in screen, "the dashboard to exit")
        assert status.read_text().strip() == "0", screen
        assert modes(term) == ("0", "0", "1"), screen
        assert "Traceback" not in screen
        # The demo was stopped and waited for: it removed its segment, and it and its children are gone.
        assert not demo_objects(demo_pid)
        assert not [key for key in family if alive(key)]
    finally:
        term.kill()
        for key in family:
            if alive(key):
                os.kill(key.pid, signal.SIGKILL)
        for path in demo_objects(demo_pid) if demo_pid is not None else ():
            os.unlink(path)


def catches(pid: int, signo: int) -> bool:
    """Whether the process has a handler for signo (SigCgt of /proc/PID/status, proc(5))."""
    for line in procfs.read_bytes(f"/proc/{pid}/status").decode().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signo - 1) & 1)
    return False


@pytest.mark.parametrize("from_", ["caught", "drawn"])
def test_a_sigterm_every_2_ms_until_it_has_gone_never_kills_the_dashboard(
    terminal: Callable[[str], Terminal], tmp_path: Path, from_: str
) -> None:
    """From the moment the dashboard catches SIGTERM (while Python and Textual still start), or from its first frame
    (then while it shuts down after the App gave the signals back, and while Python finalizes). A reviewer's double
    SIGTERM 0.3 s apart, and one 0.3 s after the start, got exit status 143 (issue 12)."""
    status = tmp_path / "status"
    ipcmon = shlex.join([sys.executable, "-m", "ipcmon", "--kind", "shm", "--interval", "0.5"])
    term = terminal(f"{ipcmon}; echo $? > {shlex.quote(str(status))}; echo IPCMON-EXITED; sleep 60")
    try:
        dashboard = psutil.Process(pane_child(term, "-m ipcmon"))
        wait_until(lambda: catches(dashboard.pid, signal.SIGTERM), "the dashboard to catch SIGTERM")
        if from_ == "drawn":
            term.wait_for(lambda screen: "1 Overview" in screen and "Leaks and hazards" in screen, "the dashboard")
        sent = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if dashboard.status() == psutil.STATUS_ZOMBIE:
                    break
                dashboard.send_signal(signal.SIGTERM)  # psutil checks it is still the same process
            except psutil.NoSuchProcess:
                break
            sent += 1
            time.sleep(0.002)
        screen = term.wait_for(lambda screen: "IPCMON-EXITED" in screen, "the dashboard to exit")
        assert sent >= 2, sent
        assert status.read_text().strip() == "0", screen
        assert modes(term) == ("0", "0", "1"), screen
        assert "Traceback" not in screen
    finally:
        term.kill()


def test_closing_the_terminal_stops_the_dashboard_and_its_demos(terminal: Callable[[str], Terminal]) -> None:
    """A closed window hangs the terminal up: the dashboard (the pane's own process here, so the hangup's SIGHUP
    goes to it) must still stop its demos and exit, though nothing can be written any more."""
    term = terminal(shlex.join([sys.executable, "-m", "ipcmon", "--kind", "shm", "--interval", "0.1", "--demo", "shm"]))
    family: set[ProcessKey] = set()
    demo_pid = None
    try:
        term.wait_for(lambda screen: "1 Overview" in screen and "Leaks and hazards" in screen, "the dashboard")
        shell_or_dashboard = int(subprocess.run([term.tmux, "display", "-p", "-t", term.session, "#{pane_pid}"],
                                                capture_output=True, text=True, check=True, timeout=30).stdout)
        dashboard = psutil.Process(shell_or_dashboard)
        assert "-m ipcmon" in " ".join(_cmdline(dashboard))
        dashboard_key = key_of(dashboard.pid)
        assert dashboard_key is not None
        demos = [child for child in dashboard.children() if "demos/shm.py" in " ".join(_cmdline(child))]
        assert len(demos) == 1, demos
        demo_pid = demos[0].pid
        wait_until(lambda: demo_objects(demo_pid), "the demo's segment")
        family = {key for key in map(key_of, [dashboard.pid, demo_pid]) if key is not None}

        term.kill()  # the pty's master closes: a hangup

        wait_until(lambda: not alive(dashboard_key), "the dashboard to exit after the hangup")
        assert not demo_objects(demo_pid)
        assert not [key for key in family if alive(key)]
    finally:
        for key in family:
            if alive(key):
                os.kill(key.pid, signal.SIGKILL)
        for path in demo_objects(demo_pid) if demo_pid is not None else ():
            os.unlink(path)


def test_output_to_a_hung_up_terminal_is_dropped_not_blocking() -> None:
    """Textual's writer thread died at the first EIO and the App then blocked on its full queue (issue 12)."""
    from textual.drivers._writer_thread import MAX_QUEUED_WRITES, WriterThread

    from ipcmon.ui.app import _TerminalOutput

    controller, terminal_fd = os.openpty()
    output = _TerminalOutput(open(terminal_fd, "w", encoding="utf-8", closefd=True))  # noqa: SIM115
    writer = WriterThread(output)  # type: ignore[arg-type]
    writer.start()
    try:
        writer.write("before the hangup\n")
        os.close(controller)  # the window closes: writes to the terminal now fail with EIO
        for _ in range(3 * MAX_QUEUED_WRITES):
            writer.write("\x1b[?1049l")  # each would block once the queue was full, had the thread died
        writer.stop()  # joins: returns only if the thread consumed everything
        assert output.gone
    finally:
        if writer.is_alive():
            pytest.fail("the writer thread is stuck")


def test_ctrl_c_quits_and_restores_the_terminal(terminal: Callable[[str], Terminal], tmp_path: Path) -> None:
    """As in htop (Textual's own Ctrl+C only says to press Ctrl+Q); the terminal's ISIG is off, so it is a key."""
    status = tmp_path / "status"
    ipcmon = shlex.join([sys.executable, "-m", "ipcmon", "--kind", "shm", "--interval", "0.5"])
    term = terminal(f"{ipcmon}; echo $? > {shlex.quote(str(status))}; echo IPCMON-EXITED; sleep 60")
    term.wait_for(lambda screen: "1 Overview" in screen and "Leaks and hazards" in screen, "the dashboard")
    term.keys("C-c")
    screen = term.wait_for(lambda screen: "IPCMON-EXITED" in screen, "the dashboard to exit")
    assert status.read_text().strip() == "0", screen
    assert modes(term) == ("0", "0", "1"), screen
