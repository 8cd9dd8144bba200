"""Real container-like namespaces for tests (issue 15): ``unshare --ipc --mount --pid --fork`` with a private tmpfs on
/dev/shm, a private mqueue filesystem on /dev/mqueue, and optionally a cgroup named like a container runtime's.

Inside, a holder process creates a POSIX segment, a semaphore, a queue (one message queued) and a SysV segment with
names and key the caller gives: two scenes given the same names make the same-name-in-two-containers case. It also
leaves an unheld segment (``orphan``) and an unheld queue behind, for leaks and clean. Everything lives inside the
namespaces, so when the holder exits (the test closes its stdin, or it is killed) the kernel takes the tmpfs, the
mqueue filesystem and the SysV segment with it: nothing can leak to the host. The cgroup directory is removed
after. Needs root, as CI is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.helpers import DEADLINE, REPO

SHM_SIZE = 64 << 20
"""Docker's default /dev/shm size: 64 MiB."""

_HOLDER = r'''
import ctypes, mmap, os, subprocess, sys
import posix_ipc, sysv_ipc
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, 9)  # PR_SET_PDEATHSIG: SIGKILL when unshare goes
libc.prctl(15, b"ipcmon-ns-hold", 0, 0, 0)
name, queue_name, key, shm_size, segment_size, orphan_size, deleted_size = sys.argv[1:8]
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={shm_size}", "ipcmon-test", "/dev/shm"], check=True)
os.makedirs("/dev/mqueue", exist_ok=True)
subprocess.run(["mount", "-t", "mqueue", "ipcmon-test", "/dev/mqueue"], check=True)
segment = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=int(segment_size))
memory = mmap.mmap(segment.fd, segment.size)
memory.write(b"x" * segment.size)  # every page allocated: it counts in the tmpfs
orphan = posix_ipc.SharedMemory(name + "-orphan", posix_ipc.O_CREX, size=int(orphan_size))
with mmap.mmap(orphan.fd, orphan.size) as pages:
    pages.write(b"o" * orphan.size)
orphan.close_fd()
if int(deleted_size):  # unlinked at once, its pages kept by this process's descriptor alone
    deleted = posix_ipc.SharedMemory(name + "-deleted", posix_ipc.O_CREX, size=int(deleted_size))
    os.pwrite(deleted.fd, b"d" * deleted.size, 0)
    deleted.unlink()
semaphore = posix_ipc.Semaphore(name + "-sem", posix_ipc.O_CREX, initial_value=1)
queue = posix_ipc.MessageQueue(queue_name, posix_ipc.O_CREX, max_messages=4, max_message_size=64)
queue.send(b"hello")
posix_ipc.MessageQueue(queue_name + "-orphan", posix_ipc.O_CREX, max_messages=2, max_message_size=32).close()
sysv = sysv_ipc.SharedMemory(int(key), sysv_ipc.IPC_CREX, size=4096)  # attached by the constructor
ipc = os.stat("/proc/self/ns/ipc").st_ino
mnt = os.stat("/proc/self/ns/mnt").st_ino
print("ready", ipc, mnt, os.stat("/dev/shm").st_dev, os.stat("/dev/mqueue").st_dev, sysv.id, flush=True)
for command in sys.stdin:  # Scene.tell; the end of stdin ends the scene
    if command.strip() == "detach-sysv":
        sysv.detach()
    print("done", command.strip(), flush=True)
'''


@dataclass
class Scene:
    """One namespace pair made by :func:`container` and what it holds."""

    pid: int
    """The holder's host pid (its pid inside its pid namespace is 1)."""
    ipc: int
    """Inode of its /proc/PID/ns/ipc."""
    mnt: int
    shm_dev: int
    """st_dev of its private /dev/shm tmpfs."""
    mqueue_dev: int
    sysv_id: int
    """The shmid of its SysV segment (in its own IPC namespace)."""
    name: str
    """The held segment's POSIX name; ``name + "-orphan"`` is unheld, ``name + "-sem"`` a semaphore."""
    queue: str
    """The held queue's name (one 5-byte message queued); ``queue + "-orphan"`` is unheld."""
    key: int
    """The SysV key of its segment."""
    container_id: str | None = None
    """The 64-hex id of the cgroup it runs in, when given one."""
    cgroup: str | None = None
    """The cgroup directory it runs in, when given one."""
    unshare_pid: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[str] | None = None
    """unshare, whose stdin and stdout reach the holder (:meth:`tell`)."""

    def tell(self, command: str) -> None:
        """Have the holder do something and wait until it has: ``detach-sysv`` detaches its SysV segment (nattch
        0, so an orphan to leaks and clean)."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().split()
        assert answer == ["done", command], f"the namespace holder answered {answer!r} to {command!r}"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("container scenes need root (unshare, mount); run them as root, as CI does")
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is not installed; .ci/run installs util-linux")


def cgroup_root() -> str:
    """A writable cgroup hierarchy of this machine: the cgroup2 mount if there is one, else the v1 ``name=systemd``
    one, else the first v1 hierarchy (read from /proc/self/mountinfo)."""
    v2: list[str] = []
    v1: list[tuple[str, str]] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
        for line in mountinfo:
            before, _, after = line.partition(" - ")
            fstype, _, options = after.split(" ", 2) if after.count(" ") >= 2 else (after, "", "")
            point = before.split()[4]
            if fstype == "cgroup2":
                v2.append(point)
            elif fstype == "cgroup":
                v1.append((point, options))
    if v2:
        return v2[0]
    for point, options in v1:
        if "name=systemd" in options:
            return point
    if v1:
        return v1[0][0]
    pytest.fail("no cgroup hierarchy is mounted: cannot make a container's cgroup")


def docker_cgroup(root: str | None = None) -> tuple[str, str]:
    """(directory, id): a new ``ipcmon-test-<pid>-<random>/docker-<64 hex>.scope`` cgroup under root, as docker's
    systemd driver names a container's (``/system.slice/docker-<id>.scope``). The caller removes both levels."""
    root = root or cgroup_root()
    container_id = secrets.token_hex(32)
    parent = os.path.join(root, f"ipcmon-test-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(parent)
    directory = os.path.join(parent, f"docker-{container_id}.scope")
    try:
        os.mkdir(directory)
    except OSError:
        os.rmdir(parent)
        raise
    return directory, container_id


def remove_cgroup(directory: str, levels: int = 2) -> None:
    """rmdir the cgroup and its parents up to levels, once its processes are gone (EBUSY until then)."""
    deadline = time.monotonic() + DEADLINE
    for _ in range(levels):
        while True:
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        directory = os.path.dirname(directory)


def _child_of(pid: int) -> int:
    """The first child of a process (unshare --fork's), from /proc/PID/task/PID/children."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                found = children.read().split()
            if found:
                return int(found[0])
        time.sleep(0.01)
    pytest.fail(f"unshare (pid {pid}) started no child")


@contextlib.contextmanager
def container(
    name: str,
    queue: str,
    key: int,
    *,
    cgroup: bool = False,
    shm_size: int = SHM_SIZE,
    segment_size: int = 1 << 20,
    orphan_size: int = 256 << 10,
    deleted_size: int = 0,
) -> Iterator[Scene]:
    """A holder in fresh IPC, mount and pid namespaces (with a docker-named cgroup if asked), holding the objects
    above; torn down on exit, even when the test fails. Names must be unique to the test (tests.helpers.new_name):
    two scenes given the same names are the same-name-in-two-containers case. With deleted_size, the holder also
    keeps a segment ``name + "-deleted"`` of that many written bytes by its descriptor alone, unlinked at once."""
    require_root()
    directory = container_id = None
    if cgroup:
        directory, container_id = docker_cgroup()
    procs = os.path.join(directory, "cgroup.procs") if directory else None

    def enter_cgroup() -> None:  # in the child, before exec: unshare and all it forks run in the cgroup
        if procs is not None:
            with open(procs, "w") as file:
                file.write(str(os.getpid()))

    command = ["unshare", "--ipc", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
               sys.executable, "-c", textwrap.dedent(_HOLDER), name, queue, str(key), str(shm_size),
               str(segment_size), str(orphan_size), str(deleted_size)]
    process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                               preexec_fn=enter_cgroup if procs else None)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if not line or line[0] != "ready":
            process.kill()
            _, err = process.communicate(timeout=DEADLINE)
            pytest.fail(f"the namespace holder did not start: {line!r}\n{err}")
        ipc, mnt, shm_dev, mqueue_dev, sysv_id = map(int, line[1:6])
        yield Scene(pid=_child_of(process.pid), ipc=ipc, mnt=mnt, shm_dev=shm_dev, mqueue_dev=mqueue_dev,
                    sysv_id=sysv_id, name=name, queue=queue, key=key, container_id=container_id, cgroup=directory,
                    unshare_pid=process.pid, process=process)
    finally:
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)  # --kill-child takes the holder with it
            process.wait(timeout=DEADLINE)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        if directory is not None:
            remove_cgroup(directory)
