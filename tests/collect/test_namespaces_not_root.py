"""Namespaces as nobody (issue 15): root's container cannot be looked into, so its processes are counted and said in
a note, never silently missing; nobody's own rootless one (a user namespace it made, as rootless podman does) is
read in full. Nothing crashes."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator

import pytest

from tests.containers import _child_of, container
from tests.helpers import DEADLINE, new_name
from tests.reliability.cli import Unprivileged, assert_no_traceback, unprivileged_setup

SCAN = """
import json
from ipcmon.collect import ScanConfig, scan
snapshot = scan(ScanConfig(kinds=("shm", "mqueue"), hide_self=True))
place = lambda record: None if record.place is None else [record.place.ipc, record.place.mnt, record.place.host]
print(json.dumps({
    "notes": list(snapshot.notes),
    "shm": [[s.name, s.path, s.state, place(s), [[h.pid, h.nspid] for h in s.holders]] for s in snapshot.shm],
    "mqueues": [[q.name, q.path, place(q)] for q in snapshot.mqueues],
    "namespaces": [[n.place.ipc, n.place.mnt, n.place.host, n.processes, n.shm_dir, n.access]
                   for n in snapshot.namespaces],
    "mounts": [[m.path, m.size, place(m)] for m in snapshot.capacity.shm_mounts],
}))
"""

ROOTLESS = r"""
import os, subprocess, sys
name, queue = sys.argv[1:3]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ipcmon-test", "/dev/shm"], check=True)
subprocess.run(["mount", "-t", "mqueue", "ipcmon-test", "/dev/mqueue"], check=True)
fd = os.open("/dev/shm" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)  # held
os.ftruncate(fd, 4096)
os.close(os.open("/dev/mqueue" + queue, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o600))  # open(2) makes a queue there
print("ready", os.stat("/proc/self/ns/ipc").st_ino, os.stat("/proc/self/ns/mnt").st_ino, flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup(["watchdog"])


def test_as_nobody_roots_containers_are_counted_and_its_own_are_read(nobody: Unprivileged) -> None:
    name, queue = new_name("nsnr"), new_name("nsnrq")
    with container(name, queue, 0x15100000 + os.getpid() % 0xFFFF) as scene:
        rootless = nobody.popen(["unshare", "--user", "--map-root-user", "--ipc", "--mount", "--kill-child", "--fork",
                                 nobody.python, "-c", textwrap.dedent(ROOTLESS), name, queue],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            words = rootless.stdout.readline().split()  # type: ignore[union-attr]
            assert words[:1] == [b"ready"], words
            ipc, mnt = int(words[1]), int(words[2])
            holder = _child_of(rootless.pid)  # setpriv execs unshare, which forks the holder
            result = subprocess.run(nobody.command([nobody.python, "-c", SCAN]), capture_output=True,
                                    env=nobody.env(), cwd=nobody.home, timeout=120)
        finally:
            rootless.stdin.close()  # type: ignore[union-attr]
            try:
                rootless.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                rootless.kill()
                rootless.wait()
            rootless.stdout.close()  # type: ignore[union-attr]
        assert_no_traceback(result)
        report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    # Root's container: not looked into, but its processes (unshare and the holder, at least) are counted.
    counts = [note for note in report["notes"] if "could not be read (not permitted)" in note and "namespaces" in note]
    assert len(counts) == 1, report["notes"]
    assert int(counts[0].split("The namespaces of ")[1].split()[0]) >= 2 and "run as root" in counts[0]
    assert scene.ipc not in [space[0] for space in report["namespaces"]]
    assert not [mount for mount in report["mounts"] if mount[2] and mount[2][0] == scene.ipc]
    # Nobody's own: read in full, through /proc/PID/root like any container.
    (segment,) = [s for s in report["shm"] if s[0] == name]
    assert segment[2] == "held" and segment[4] == [[holder, None]], segment  # no pid namespace: nspid is the pid
    assert segment[3] == [ipc, mnt, False] and "/root/dev/shm/" in segment[1]
    (mq,) = [q for q in report["mqueues"] if q[0] == queue]
    assert mq[2] == [ipc, mnt, False] and "/root/dev/mqueue/" in mq[1]
    (space,) = [space for space in report["namespaces"] if space[0] == ipc]
    assert space[1] == mnt and space[3] >= 1 and space[5] == "read" and space[4].endswith("/root/dev/shm")
    assert report["namespaces"][0][2] is True  # the host's first
    assert [mount[1] for mount in report["mounts"] if mount[2] and mount[2][0] == ipc] == [1 << 20]
