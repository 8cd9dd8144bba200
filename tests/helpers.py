"""Test helpers: unique IPC names, Python child processes driven line by line, and removal of what a test made.

Other people run their own tests on the same machine at the same time, so every test names its objects
``/ipcmon-test-<pid>-<random>``, finds them in a snapshot by that name (or inode, or pid), never asserts
on global counts, and removes exactly what it made, by name or id, even when it fails.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TypeVar

import posix_ipc
import pytest
import sysv_ipc

from ipcmon.collect import ScanConfig, Scanner, scan
from ipcmon.model import Snapshot

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 10.0
"""Seconds to wait for a child to report or for a condition to come true before the test fails."""


def new_name(tag: str = "") -> str:
    """A POSIX IPC name no other test or process uses: /ipcmon-test-<pid>-<random>[-tag]."""
    suffix = f"-{tag}" if tag else ""
    return f"/ipcmon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"


def first_arguments(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[Any]:
    """The first argument of each call of the function ``owner.name`` from now on (it still runs; monkeypatch.undo()
    puts it back): which paths a scan reads, which descriptors it looks at."""
    seen: list[Any] = []
    original = getattr(owner, name)

    def recording(first: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(first)
        return original(first, *args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return seen


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Poll condition until it is true; fail the test with `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.01)


def gather(read: Callable[[float], list[T]], done: Callable[[list[T]], bool], what: str) -> list[T]:
    """Call read(0.1) (a source's read with a timeout) until done(everything read so far); fail at the deadline."""
    found: list[T] = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found += read(0.1)
        if done(found):
            return found
    pytest.fail(f"timed out after {DEADLINE:.0f}s waiting for {what}: {found[-20:]}")


def settle(scanner: Scanner, pid: int) -> Snapshot:
    """Scan until a scan takes the process over (it sleeps, and it is not its turn to be read in full)."""
    snapshots: list[Snapshot] = []

    def taken_over() -> bool:
        snapshots.append(scanner.scan())
        return pid in scanner.reused

    wait_until(taken_over, f"a scan that takes process {pid} over")
    return snapshots[-1]


# Code every child runs first: name itself (comm), report over stdout, take commands from stdin.
_CHILD_PRELUDE = '''
import ctypes, os, signal, sys
_libc = ctypes.CDLL(None, use_errno=True)
def set_comm(name):
    _libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
def say(*words):
    sys.stdout.write(" ".join(str(word) for word in words) + "\\n")
    sys.stdout.flush()
def commands():
    for line in sys.stdin:
        yield line.strip()
def hold():
    """Stay alive until the test closes our stdin (or kills us)."""
    sys.stdin.read()
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
def map_fd(fd, size, prot=3, flags=1):
    """mmap(2) without keeping a descriptor (Python's mmap module keeps a dup of fd); default rw, MAP_SHARED."""
    address = _libc.mmap(None, size, prot, flags, fd, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    return address
def fill_pipe(fd):
    """Write into a pipe until it is full (without blocking), then make fd blocking again."""
    os.set_blocking(fd, False)
    try:
        while True:
            os.write(fd, b"f" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)
def touch(address, size):
    """Write to every page so the memory is allocated."""
    ctypes.memset(address, 0x5A, size)
'''


class Child:
    """A Python child process that reports lines on stdout and reads commands from stdin."""

    def __init__(self, popen: subprocess.Popen[str], stderr: IO[str]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._stderr = stderr

    def expect(self, first_word: str = "ready", timeout: float = DEADLINE) -> list[str]:
        """Wait for the next line from the child, which must start with first_word; return its words."""
        assert self.popen.stdout is not None
        ready, _, _ = select.select([self.popen.stdout], [], [], timeout)
        line = self.popen.stdout.readline() if ready else ""
        words = line.split()
        if not words or words[0] != first_word:
            self._stderr.seek(0)
            errors = self._stderr.read()
            self.stop()
            pytest.fail(
                f"child {self.pid} said {line!r} instead of {first_word!r} (exit {self.popen.returncode}); "
                f"stderr:\n{errors}"
            )
        return words[1:]

    def tell(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def status(self) -> dict[str, str]:
        """/proc/PID/status of the child as {key: value}."""
        text = Path(f"/proc/{self.pid}/status").read_text()
        return {key: value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}

    def stop(self) -> None:
        """Kill the child by its pid and reap it (idempotent)."""
        if self.popen.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self._stderr.close()


class Spawn:
    """Starts Python children; stop_all() kills each one by its pid (the spawn fixture calls it)."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def __call__(self, code: str, *, pass_fds: tuple[int, ...] = (), comm: str | None = None) -> Child:
        """Run code in a child; it can use say(), commands(), hold(), map_fd(), touch(), fill_pipe() and set_comm().

        Descriptors in pass_fds keep their numbers in the child; comm names the child (15 bytes at most).
        """
        source = _CHILD_PRELUDE
        if comm is not None:
            source += f"set_comm({comm!r})\n"
        source += textwrap.dedent(code)
        stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (Child.stop closes it, after the child is gone)
        popen = subprocess.Popen(
            [sys.executable, "-c", source],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            pass_fds=pass_fds,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        child = Child(popen, stderr)
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            child.stop()


class Cleanup:
    """What a test created, removed at teardown by exact name or id, whatever happened in the test."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], object]] = []

    def add(self, remove: Callable[[T], object], what: T) -> T:
        """Call remove(what) at teardown; returns what, so creation and registration read as one line."""
        self._undo.append(lambda: remove(what))
        return what

    def shm(self, name: str) -> str:
        return self.add(posix_ipc.unlink_shared_memory, name)

    def semaphore(self, name: str) -> str:
        return self.add(posix_ipc.unlink_semaphore, name)

    def mqueue(self, name: str) -> str:
        return self.add(posix_ipc.unlink_message_queue, name)

    def path(self, path: str | bytes) -> str | bytes:
        return self.add(os.unlink, path)

    def sysv_shm(self, shmid: int) -> int:
        return self.add(sysv_ipc.remove_shared_memory, shmid)

    def sysv_msg(self, msqid: int) -> int:
        return self.add(sysv_ipc.remove_message_queue, msqid)

    def sysv_sem(self, semid: int) -> int:
        return self.add(sysv_ipc.remove_semaphore, semid)

    def run(self) -> None:
        for undo in reversed(self._undo):
            try:
                undo()
            except (OSError, posix_ipc.ExistentialError, sysv_ipc.ExistentialError):
                pass  # already gone: the test removed it itself (or the kernel did, on last detach)
        self._undo.clear()


def tool(name: str) -> str:
    """The path of a command-line tool the cross-checks compare against; .ci/run installs them all."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; the cross-check needs it (.ci/run installs lsof, procps, util-linux)")
    return path


def proc_view(directory: Path, pids: Iterable[int]) -> str:
    """A /proc look-alike that shows only these processes: symlinks to the real /proc entries.

    A scan through it reads the very same kernel files for these processes and skips the rest of the
    machine, for tests that scan many times while other people's workloads (thousands of processes and
    pipes) run on the same machine.
    """
    directory.mkdir()
    for name in ("stat", "self", "sysvipc", *(str(pid) for pid in pids)):
        os.symlink(f"/proc/{name}", directory / name)
    return str(directory)


def scan_kinds(*kinds: str, **options: object) -> Snapshot:
    """One scan of the real system limited to the given mechanisms."""
    return scan(ScanConfig(kinds=kinds, **options))  # type: ignore[arg-type]


BLOCKS_SIGUSR1 = """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    say("ready")
    hold()
    """
"""A child (Spawn) that blocks SIGUSR1, says ready and holds: a SIGUSR1 sent to it stays pending."""

DIE_WITH_PARENT = "import ctypes; ctypes.CDLL(None).prctl(1, 9)\n"  # PR_SET_PDEATHSIG: SIGKILL
"""Python a grandchild runs first, so that it dies with the child that started it (the spawn fixture stops that)."""

WAIT_FOR_BLOCKED_CHILD = f"""
import subprocess
read_end, write_end = os.pipe()
child = subprocess.Popen(
    [sys.executable, "-c", {DIE_WITH_PARENT!r} + f"import os; os.write({{write_end}}, b'x' * 200000)"],
    pass_fds=(write_end,))
os.close(write_end)
say("ready", child.pid)
child.wait()   # never reads read_end: the deadlock the subprocess documentation warns about
"""
"""A spawn() body: a parent in wait() for a child blocked writing a pipe only the parent would drain; it says
``ready CHILDPID``."""


def kill_pids(*pids: int) -> None:
    """SIGKILL processes a test started (grandchildren the spawn fixture does not know), by pid; gone is fine."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

