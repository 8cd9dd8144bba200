"""The ipcmon command line in a subprocess, as root or as nobody, and checks on the bytes it wrote.

Every run asserts there is no traceback on stderr: a crash is never an acceptable answer.
"""

from __future__ import annotations

import importlib.util
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from tests.helpers import REPO

OTHER_UID = 54321
"""An owner with no process on the machine (no name either): its private objects are orphaned in fact, even to
nobody, who may not remove them."""

DEADLINE = 120.0

# What a name must never put on a terminal: ESC (CSI/OSC/…), BEL, other C0 controls but tab and
# newline, DEL, and the C1 controls (U+0080–U+009F, which some terminals honour as CSI/OSC).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def terminal_controls(output: bytes) -> list[str]:
    """Control characters in output (decoded as the terminal would), each with some context."""
    text = output.decode("utf-8", errors="replace")
    return [repr(text[max(match.start() - 20, 0) : match.end() + 20]) for match in _CONTROL.finditer(text)]


def assert_inert(output: bytes) -> None:
    controls = terminal_controls(output)
    assert not controls, f"control characters reached the terminal: {controls[:5]}"
    assert b"\t" not in output, "a tab reached the terminal (it would shift the columns)"
    assert "\u202e" not in output.decode("utf-8", errors="replace"), "a right-to-left override reached the terminal"


def assert_no_traceback(result: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stdout, result.stdout.decode(errors="replace")


def root_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def run_ipcmon(
    *args: str, env: dict[str, str] | None = None, timeout: float = DEADLINE
) -> subprocess.CompletedProcess[bytes]:
    """python -m ipcmon args… as root; never a traceback."""
    result = subprocess.run([sys.executable, "-m", "ipcmon", *args], capture_output=True, timeout=timeout,
                            env=root_env(env), cwd=REPO, stdin=subprocess.DEVNULL)
    assert_no_traceback(result)
    return result


@dataclass
class Unprivileged:
    """How to run ipcmon as nobody: Debian's python3 with copies of ipcmon and its dependencies.

    The test interpreter and the repository may sit under /root (mode 700), which nobody cannot enter,
    so what nobody runs is copied to a world-readable directory first.
    """

    python: str
    site: str
    home: str

    @property
    def action_log(self) -> str:
        return f"{self.home}/state/ipcmon/actions.log"

    def command(self, argv: Sequence[str]) -> list[str]:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("setpriv (util-linux) is not installed; .ci/run installs util-linux")
        return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("IPCMON_", "PYTHON"))}
        return {**env, "PYTHONPATH": self.site, "HOME": self.home, "XDG_STATE_HOME": f"{self.home}/state",
                **(extra or {})}

    def run(self, *args: str, timeout: float = DEADLINE, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        """python -m ipcmon args… as nobody; never a traceback."""
        result = subprocess.run(self.command([self.python, "-m", "ipcmon", *args]), capture_output=True,
                                timeout=timeout, env=self.env(env), cwd=self.home, stdin=subprocess.DEVNULL)
        assert_no_traceback(result)
        return result

    def popen(self, argv: Sequence[str], **options: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(argv), env=self.env(), cwd=self.home,  # type: ignore[call-overload]
                                **options)


def unprivileged_setup(packages: Sequence[str]) -> Iterator[Unprivileged]:
    """Copy the packages nobody needs to a world-readable temporary directory; removed afterwards."""
    python = "/usr/bin/python3"
    if not os.access(python, os.X_OK):
        pytest.fail("/usr/bin/python3 (Debian's python3) is needed to run ipcmon as nobody")
    base = tempfile.mkdtemp(prefix="ipcmon-nobody-")
    try:
        os.chmod(base, 0o755)
        site = f"{base}/site"
        home = f"{base}/home"
        os.mkdir(site)
        os.mkdir(home)
        shutil.chown(home, "nobody", "nogroup")
        for package in ("ipcmon", *packages):
            spec = importlib.util.find_spec(package)
            assert spec is not None and spec.origin, f"{package} is not importable"
            if spec.submodule_search_locations:  # a package: its directory
                source = next(iter(spec.submodule_search_locations))
                shutil.copytree(source, f"{site}/{package}", ignore=shutil.ignore_patterns("__pycache__"))
            else:  # a single-file module
                shutil.copy(spec.origin, site)
        for directory, _, files in os.walk(site):
            os.chmod(directory, 0o755)
            for name in files:
                os.chmod(os.path.join(directory, name), 0o644)
        yield Unprivileged(python, site, home)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def watch_briefly(
    command: list[str], env: dict[str, str], cwd: str, during: object, *, after: float = 3.0,
    ready_timeout: float = 60.0,
) -> tuple[int, bytes, bytes]:
    """Run `ipcmon watch`, call during() once it says (on stderr) that it is watching, then SIGTERM it.

    Both streams are read all along, so a busy machine's events cannot fill a pipe and stall the watch.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                               stdin=subprocess.DEVNULL)
    assert process.stdout is not None and process.stderr is not None
    out, err = bytearray(), bytearray()
    streams = {process.stdout.fileno(): out, process.stderr.fileno(): err}

    def pump(seconds: float, until: bytes | None = None) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and streams and not (until and until in err):
            ready, _, _ = select.select(list(streams), [], [], 0.1)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    streams[fd] += chunk
                else:
                    del streams[fd]

    try:
        pump(ready_timeout, until=b"watching")
        assert b"watching" in err, f"watch never started: {bytes(err[-2000:])!r}"
        pump(0.5)  # inotify starts right after the banner
        if callable(during):
            during()
        pump(after)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, bytes(out) + stdout, bytes(err) + stderr
