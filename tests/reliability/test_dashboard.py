"""The dashboard under issue 7's conditions: through churn, hostile names in a real terminal (the raw bytes),
as nobody, and its remove and signal actions (logged, re-checked, blocked by IPCMON_READ_ONLY)."""

from __future__ import annotations

import fcntl
import gc
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import posix_ipc
import pytest
from textual.pilot import Pilot
from textual.widgets._footer import FooterKey

from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.screens.confirm import ConfirmScreen
from ipcmon.ui.screens.signal import SignalPicker
from ipcmon.ui.widgets.timeline_table import ROWS_KEPT
from tests.helpers import REPO, Cleanup, Spawn, proc_view
from tests.reliability.cli import Unprivileged, unprivileged_setup
from tests.reliability.dashboard_churn import KEYS
from tests.reliability.namespace import run_module
from tests.ui.conftest import canned_app, jump, live_app, record_notifications, started, wait_for

SHM_DIR = "/dev/shm"


def test_the_dashboard_runs_through_churn_without_an_error() -> None:
    """tests/reliability/dashboard_churn.py at a CI size: Pilot walks the views while everything churns."""
    result = run_module("tests.reliability.dashboard_churn", "--scans", "60", "--warmup", "20", "--history", "300",
                        "--concurrency", "2", "--timeout", "100", timeout=150)
    assert result.stdout.strip(), f"no report (exit {result.returncode}); stderr:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["exception"] is None, report["exception"]
    assert report["scan_errors"] == []
    assert report["scans"] >= 60
    assert report["keys_pressed"] >= len(KEYS), "the dashboard did not keep taking keys"
    assert report["process_lifetimes"] >= 500
    sizes = report["at_end"]["sizes"]
    assert sizes["events"] <= 300 and sizes["rows:events"] <= 300 and sizes["event_cells"] <= ROWS_KEPT
    assert sizes["inotify_backlog"] <= 5000
    assert result.returncode == 0


# --- a real terminal: what the dashboard writes, byte for byte ---------------------------------------------


def run_in_pty(argv: Sequence[str], env: dict[str, str], keys: Sequence[tuple[float, bytes]], *,
               until: float, size: tuple[int, int] = (40, 140)) -> tuple[int, bytes]:
    """Run argv on a new pseudo-terminal, type keys at the given seconds, and return (exit status, output).

    The child is killed (by its pid) if it has not exited `until` seconds after the start.
    """
    pid, master = pty.fork()
    if pid == 0:  # the child: size its terminal, then become the command
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
            os.execvpe(argv[0], list(argv), env)
        finally:
            os._exit(127)
    output = bytearray()
    started = time.monotonic()
    pending = list(keys)
    status = None
    try:
        while status is None:
            elapsed = time.monotonic() - started
            while pending and elapsed >= pending[0][0]:
                os.write(master, pending.pop(0)[1])
            if elapsed > until:
                os.kill(pid, signal.SIGKILL)
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    output += os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    pass
            finished, code = os.waitpid(pid, os.WNOHANG)
            if finished:
                status = code
        while True:  # what it wrote last
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if status is not None else -9, bytes(output)


HOLDER = """
    fds = [os.open(path, os.O_RDWR) for path in {paths!r}]
    say("ready")
    hold()
"""


def test_hostile_names_reach_the_terminal_only_as_visible_escapes(spawn: Spawn, cleanup: Cleanup) -> None:
    marker = f"ipcmon-pwned-{uuid.uuid4().hex[:6]}".encode()
    names = [
        b"osc-\x1b]2;" + marker + b"\x07",
        b"csi-\x1b[2J\x1b[31m" + marker,
        b"c1-\xc2\x9b31m" + marker,
        b"rtl-\xe2\x80\xae" + marker,
        b"[@click=app.quit]" + marker,
        b"bad-\xff\xfe" + marker + b"\nnewline",
    ]
    paths = [os.fsencode(SHM_DIR) + b"/" + name for name in names]
    for path in paths:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        cleanup.path(path)
    child = spawn(HOLDER.format(paths=paths), comm="ipcm-\x1b[2Jcomm")
    child.expect()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    code, output = run_in_pty(
        [sys.executable, "-m", "ipcmon", "--pid", str(child.pid), "--interval", "0.5"], env,
        [(4.0, b"2"), (8.0, b"q")], until=40,
    )
    assert code == 0, output[-2000:]
    assert b"Traceback" not in output
    assert marker in output, "the hostile names were never drawn"
    for raw in (b"\x1b]2;" + marker, marker + b"\x07", b"\xc2\x9b31m" + marker, b"\xe2\x80\xae" + marker,
                b"\x1b[2J\x1b[31m" + marker, b"\x1b[2Jcomm"):
        assert raw not in output, f"{raw!r} from a name reached the terminal"
    assert b"\\x1b]2;" + marker + b"\\x07" in output or b"x1b]2;" + marker in output


# --- as nobody ------------------------------------------------------------------------------------------------


_LIST_PACKAGES = """
import sys, sysconfig
import ipcmon.cli, ipcmon.ui.app, ipcmon.live.monitor
roots = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
found = {name.partition(".")[0] for name, module in list(sys.modules.items())
         if (getattr(module, "__file__", None) or "").startswith(roots)}
print(" ".join(sorted(name for name in found if name != "ipcmon" and not name.startswith("_"))))
"""


def _dashboard_packages() -> list[str]:
    """The installed packages the dashboard imports (copied for nobody, who cannot read root's site-packages)."""
    result = subprocess.run([sys.executable, "-c", _LIST_PACKAGES], capture_output=True, text=True, cwd=REPO,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture(scope="module")
def nobody_dashboard() -> Iterator[Unprivileged]:
    yield from unprivileged_setup(_dashboard_packages())


def test_the_dashboard_as_nobody_says_what_is_hidden_and_refuses_what_it_cannot_do(
    nobody_dashboard: Unprivileged, cleanup: Cleanup
) -> None:
    orphan = f"/ipcmon-test-{os.getpid()}-nrdash{uuid.uuid4().hex[:6]}"
    posix_ipc.SharedMemory(cleanup.shm(orphan), posix_ipc.O_CREX, mode=0o600, size=4096).close_fd()
    nobody = nobody_dashboard
    env = {**nobody.env(), "TERM": "xterm-256color"}
    # Shared memory view, filter to our root-owned orphan, try to remove it (d, then y), then quit.
    keys = [(4.0, b"2"), (5.0, b"/"), (5.5, orphan.encode()), (6.5, b"\r"), (7.5, b"d"), (9.0, b"y"),
            (12.0, b"q")]
    code, output = run_in_pty(nobody.command([nobody.python, "-m", "ipcmon", "--interval", "0.5"]), env, keys,
                              until=60)
    assert code == 0, output[-3000:]
    assert b"Traceback" not in output
    assert b"not root:" in output and b"processes unreadable" in output
    assert os.path.exists(SHM_DIR + orphan), "nobody removed root's segment"
    # Root's segment may be held by a root process nobody cannot read: not known to be orphaned, so not removed.
    assert b"it may be held by a process you cannot read" in output, "the refusal was not shown"


# --- actions: logged, re-checked, blocked by the environment -------------------------------------------------


@pytest.fixture
def action_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "actions.log"
    monkeypatch.setenv("IPCMON_ACTION_LOG", str(path))
    return path


def _orphan(cleanup: Cleanup, tag: str) -> str:
    name = f"/ipcmon-test-{os.getpid()}-{tag}{uuid.uuid4().hex[:6]}"
    posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=4096).close_fd()
    return name


async def _ask_to_remove(pilot: Pilot[None], app: IpcmonApp, name: str) -> None:
    """Put the cursor on the segment's row, press d, and wait for the confirmation."""
    await wait_for(pilot, lambda: any(s.name == name for s in app.snapshot.shm), name)  # type: ignore[union-attr]
    key = next(s.object_key for s in app.snapshot.shm if s.name == name)  # type: ignore[union-attr]
    await jump(pilot, app, "shm", key)
    await pilot.press("d")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")


def _log(path: Path, needle: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if needle in line] if path.exists() else []


def _only(monkeypatch: pytest.MonkeyPatch, directory: Path, pids: Sequence[int]) -> Path:
    """Point the dashboard's scans (ScanConfig's default /proc, IPCMON_PROC) at these processes only: fast
    scans whatever else runs on the machine; pids can be added later as symlinks."""
    proc = proc_view(directory, pids)
    monkeypatch.setenv("IPCMON_PROC", proc)
    return Path(proc)


async def test_dashboard_removal_and_signal_are_logged(
    spawn: Spawn, cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, action_log: Path
) -> None:
    log = action_log
    orphan = _orphan(cleanup, "dlog")
    child = spawn("""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        say("ready")
        hold()
    """, comm="ipcm-logged")
    child.expect()
    _only(monkeypatch, tmp_path / "proc", [child.pid])
    app = live_app(interval=0.3, kinds=("shm", "signal"))
    messages = record_notifications(app)
    async with app.run_test(size=(140, 45)) as pilot:
        await started(pilot, app)
        await _ask_to_remove(pilot, app, orphan)
        await pilot.press("y")
        await wait_for(pilot, lambda: not os.path.exists(SHM_DIR + orphan), "the orphan removed")
        await wait_for(pilot, lambda: any(orphan in line for line in _log(log, orphan)), "the log line")
        await jump(pilot, app, "signals", f"signal:{child.pid}")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker), "the signal picker")
        await pilot.press(*"usr1", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: any(m.startswith("sent SIGUSR1") for m in messages), "the signal sent")
        await wait_for(pilot, lambda: _log(log, f"signal SIGUSR1 to {child.pid}"), "the signal's log line")
    (removed,) = _log(log, orphan)
    assert f"remove shm {orphan} (shm:" in removed and removed.endswith(": removed")
    (sent,) = _log(log, f"signal SIGUSR1 to {child.pid}")
    assert "ipcm-logged" in sent and "sent SIGUSR1" in sent


async def test_dashboard_removal_rechecks_after_the_confirmation(
    spawn: Spawn, cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, action_log: Path
) -> None:
    name = _orphan(cleanup, "drecheck")
    proc = _only(monkeypatch, tmp_path / "proc", [])
    app = live_app(interval=3600.0, kinds=("shm",))  # no refresh between the question and the answer
    messages = record_notifications(app)
    async with app.run_test(size=(140, 45)) as pilot:
        await started(pilot, app)
        await _ask_to_remove(pilot, app, name)
        # While the question is on screen, a process opens the segment.
        child = spawn(f"""
            import posix_ipc
            shm = posix_ipc.SharedMemory({name!r})
            say("ready")
            hold()
        """)
        child.expect()
        os.symlink(f"/proc/{child.pid}", proc / str(child.pid))
        await pilot.press("y")
        await wait_for(pilot, lambda: any(m.startswith("Refused") and f"held now by {child.pid}" in m
                                          for m in messages), f"the refusal in {messages}")
    assert os.path.exists(SHM_DIR + name)
    (line,) = _log(action_log, name)
    assert f"kept: held now by {child.pid}" in line


async def test_read_only_from_the_environment_blocks_the_dashboard(
    cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IPCMON_READ_ONLY", "1")
    _only(monkeypatch, tmp_path / "proc", [])
    name = _orphan(cleanup, "dro")
    app = live_app(interval=3600.0, kinds=("shm",))  # read_only not passed: the environment decides
    messages = record_notifications(app)
    async with app.run_test(size=(140, 45)) as pilot:
        await started(pilot, app)
        key = next(s.object_key for s in app.snapshot.shm if s.name == name)  # type: ignore[union-attr]
        await jump(pilot, app, "shm", key)
        await pilot.press("d")
        await pilot.press("k")
        await wait_for(pilot, lambda: sum("Read-only" in m for m in messages) == 2, f"two refusals in {messages}")
        assert not isinstance(app.screen, ConfirmScreen | SignalPicker)
    assert os.path.exists(SHM_DIR + name)


# --- long runs: what the dashboard keeps ---------------------------------------------------------------------


async def test_switching_views_does_not_pile_up_widgets() -> None:
    """Each view switch rebuilds the footer's keys; the old ones must be freed (textual#6666 kept them)."""
    app = canned_app(interval=3600.0)  # refreshed on demand below
    async with app.run_test(size=(140, 45)) as pilot:
        await started(pilot, app)
        for step in range(18):
            await pilot.press("123456"[step % 6])
        scans = {"seen": 0}
        app.watch(app, "snapshot", lambda _: scans.__setitem__("seen", scans["seen"] + 1), init=False)
        app.request_scan()
        await wait_for(pilot, lambda: scans["seen"] >= 1, "a refresh")
        gc.collect()
        alive = sum(isinstance(obj, FooterKey) for obj in gc.get_objects())
        shown = len(app.query(FooterKey))
        assert alive <= 3 * shown, f"{alive} footer keys alive, {shown} shown"
