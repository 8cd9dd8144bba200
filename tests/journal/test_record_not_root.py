"""`ipcmon record` and `ipcmon history` as an ordinary user (nobody): the journal goes to $XDG_STATE_HOME/ipcmon,
0700 and 0600, the missing sources are said, and the user's own history reads back (issue 16)."""

from __future__ import annotations

import os
import pwd
import select
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest

from tests.helpers import Cleanup, new_name, wait_until
from tests.reliability.cli import Unprivileged, assert_inert, unprivileged_setup


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup(["watchdog"])


def _read_until(process: subprocess.Popen[bytes], word: bytes, timeout: float = 60.0) -> bytes:
    assert process.stderr is not None
    said = b""
    deadline = time.monotonic() + timeout
    while word not in said and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 0.1)
        if ready:
            chunk = os.read(process.stderr.fileno(), 65536)
            if not chunk:
                break
            said += chunk
    assert word in said, said
    return said


def test_record_as_nobody_keeps_its_journal_in_the_xdg_state_directory(nobody: Unprivileged,
                                                                      cleanup: Cleanup) -> None:
    name = cleanup.shm(new_name("nobody"))
    journal = Path(nobody.home) / "state" / "ipcmon" / "journal.db"
    process = nobody.popen([nobody.python, "-m", "ipcmon", "record", "--interval", "0.3"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        said = _read_until(process, b"recording")
        posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
        wait_until(lambda: nobody.run("history", name).returncode == 0, "the creation in nobody's journal")
        process.send_signal(signal.SIGTERM)
        said += _read_until(process, b"stopped:")
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert f"to {journal} ".encode() in said and b"Traceback" not in said
    history = nobody.run("history", name.removeprefix("/"))
    assert history.returncode == 0 and b"created " + name.encode() in history.stdout
    assert_inert(history.stdout)
    uid = pwd.getpwnam("nobody").pw_uid
    for path, mode in ((journal.parent, 0o700), (journal.parent.parent, 0o700), (journal, 0o600)):
        st = os.stat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, uid), path
