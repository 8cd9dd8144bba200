"""SysV IPC of every IPC namespace, seen from the host (issue 15): setns(2) through ctypes, the forked reader, and
two container-like scenes holding a segment of the same key (and, typically, the same shmid 0)."""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import subprocess
import sys
import textwrap
import time

import pytest
import sysv_ipc

from ipcmon.collect import ScanConfig, ipcns, scan, sysv
from ipcmon.collect.fds import MapRef
from ipcmon.model import Container, Place, SysvShm
from tests.containers import Scene, container
from tests.helpers import DEADLINE, REPO, Cleanup, new_name, scan_kinds, wait_until


def _key() -> int:
    return random.randrange(0x10000000, 0x7FFFFFFF)


def _segments(scene: Scene, segments: tuple[SysvShm, ...]) -> list[SysvShm]:
    return [segment for segment in segments if segment.place is not None and segment.place.ipc == scene.ipc]


SETNS_CHILD = """
import os, sys
from ipcmon.collect import ipcns, sysv
fd = ipcns.open_namespace(int(sys.argv[1]), int(sys.argv[2]))
ipcns.setns(fd, ipcns.CLONE_NEWIPC)
rows = sysv.parse_table(open("/proc/sysvipc/shm", "rb").read())
print(hasattr(os, "setns"), os.stat("/proc/self/ns/ipc").st_ino, *[(row["key"], row["shmid"]) for row in rows])
"""


def test_setns_enters_a_scene_namespace_and_sees_its_segment() -> None:
    name = new_name("setns")
    key = _key()
    with container(name, name + "-q", key) as scene:
        # A process of its own (not this one, which must stay in its namespace) enters with ipcns.setns.
        done = subprocess.run([sys.executable, "-c", SETNS_CHILD, str(scene.pid), str(scene.ipc)], cwd=REPO,
                              capture_output=True, text=True, timeout=DEADLINE,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        native, inode, _ = done.stdout.split(" ", 2)
        assert native == str(hasattr(os, "setns"))  # False on 3.11: the ctypes call was the one tested
        assert int(inode) == scene.ipc
        assert f"({key}, {scene.sysv_id})" in done.stdout
        assert os.stat("/proc/self/ns/ipc").st_ino != scene.ipc


def test_setns_errors_are_oserrors_with_their_errno() -> None:
    closed = os.open("/dev/null", os.O_RDONLY)
    os.close(closed)
    with pytest.raises(OSError) as bad:
        ipcns.setns(closed, ipcns.CLONE_NEWIPC)
    assert bad.value.errno == errno.EBADF
    not_a_namespace = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as wrong:
            ipcns.setns(not_a_namespace, ipcns.CLONE_NEWIPC)
        assert wrong.value.errno == errno.EINVAL
    finally:
        os.close(not_a_namespace)
    own = ipcns.own_namespace()
    assert own is not None
    with pytest.raises(OSError) as moved:
        ipcns.open_namespace(os.getpid(), own + 1)  # not the namespace it is in: a reused pid looks like this
    assert moved.value.errno == errno.ESRCH


def test_one_forked_reader_reads_each_namespace_and_says_what_it_could_not() -> None:
    name = new_name("reader")
    key = _key()
    with container(name, name + "-q", key) as first, container(name, name + "-q", key) as second:
        gone = first.ipc + second.ipc  # no such namespace: no pid of it can be opened as it
        results = ipcns.in_ipc_namespaces(
            {first.ipc: [first.pid], second.ipc: [999_999_999, second.pid], gone: [os.getpid()]},
            lambda inode: (inode, os.stat("/proc/self/ns/ipc").st_ino,
                           [(row["key"], row["shmid"]) for row in sysv.parse_table(sysv.read_tables()[0] or b"")]),
        )
        assert results[first.ipc] == (first.ipc, first.ipc, [(key, first.sysv_id)])
        assert results[second.ipc] == (second.ipc, second.ipc, [(key, second.sysv_id)])  # its first pid is no more
        error = results[gone]
        assert isinstance(error, OSError) and error.errno == errno.ESRCH
    assert ipcns.in_ipc_namespaces({}, lambda inode: inode) == {}


def test_a_failure_inside_one_namespace_is_that_namespaces_only() -> None:
    name = new_name("fails")
    with container(name, name + "-q", _key()) as first, container(name, name + "-q", _key()) as second:
        def work(inode: int) -> int:
            if inode == first.ipc:
                raise ValueError("no")
            return os.stat("/proc/self/ns/ipc").st_ino

        results = ipcns.in_ipc_namespaces({first.ipc: [first.pid], second.ipc: [second.pid]}, work)
        error = results[first.ipc]
        assert isinstance(error, OSError) and (error.errno, error.strerror) == (errno.EIO, "ValueError: no")
        assert results[second.ipc] == second.ipc


def test_the_reader_holds_none_of_its_parents_descriptors_and_is_killed_when_late() -> None:
    name = new_name("late")
    read_end, write_end = os.pipe()  # a pipe the monitored machine might have: the child must not hold an end
    try:
        with container(name, name + "-q", _key()) as scene:
            held = ipcns.in_ipc_namespaces({scene.ipc: [scene.pid]}, lambda inode: os.listdir("/proc/self/fd"))
            listed = held[scene.ipc]
            assert isinstance(listed, list), listed
            descriptors = {int(fd) for fd in listed}
            assert not descriptors & {read_end, write_end}
            assert len(descriptors) <= 6  # stdio, its pipe, the namespace, and listdir's own

            late = ipcns.in_ipc_namespaces({scene.ipc: [scene.pid]}, lambda inode: time.sleep(DEADLINE), timeout=0.5)
            error = late[scene.ipc]
            assert isinstance(error, OSError) and error.errno == errno.ETIMEDOUT
    finally:
        os.close(read_end)
        os.close(write_end)


def test_two_namespaces_with_the_same_key_are_two_segments_each_with_its_place_and_holder(
    cleanup: Cleanup,
) -> None:
    name = new_name("samekey")
    key = _key()
    own = sysv_ipc.SharedMemory(key, sysv_ipc.IPC_CREX, size=4096)  # the same key in ipcmon's own namespace
    cleanup.sysv_shm(own.id)
    own.detach()
    with container(name, name + "-q", key) as first, container(name, name + "-q", key, cgroup=True) as second:
        snapshot = scan_kinds("sysv")
        assert not [note for note in snapshot.notes if "not readable" in note], snapshot.notes
        (a,), (b,) = _segments(first, snapshot.sysv.shm), _segments(second, snapshot.sysv.shm)
        for scene, segment in ((first, a), (second, b)):
            assert (segment.key, segment.id, segment.nattch) == (key, scene.sysv_id, 1)
            assert segment.place is not None
            assert (segment.place.ipc, segment.place.mnt, segment.place.host) == (scene.ipc, None, False)
            if segment.place.container is not None:  # once collect/namespaces.py fills Process.place
                assert segment.place.container.id == scene.container_id
            assert [holder.pid for holder in segment.holders] == [scene.pid]
            assert segment.object_key == f"sysv-shm:{scene.ipc}:{scene.sysv_id}"
        assert a.object_key != b.object_key
        (host,) = [segment for segment in snapshot.sysv.shm if segment.id == own.id and segment.place is not None
                   and segment.place.host]
        assert (host.key, host.nattch, host.holders, host.object_key) == (key, 0, (), f"sysv-shm:{own.id}")


def test_a_member_process_place_names_the_namespace_of_its_segments() -> None:
    name = new_name("label")
    with container(name, name + "-q", _key(), cgroup=True) as scene:
        assert scene.container_id is not None
        docker = Container(id=scene.container_id, runtime="docker")
        snapshot = scan_kinds("sysv")
        processes = {process.pid: process for process in snapshot.processes}
        # What collect/namespaces.py fills, given by hand: the holder's place names its container.
        processes[scene.pid] = dataclasses.replace(processes[scene.pid],
                                                   place=Place(ipc=scene.ipc, mnt=scene.mnt, container=docker))
        maps = [MapRef(scene.pid, 0, 4096, "rw-s", 0, scene.sysv_id, "/SYSV", True, True)]
        (segment,) = _segments(scene, sysv.collect(processes, maps).shm)
        assert segment.place == Place(ipc=scene.ipc, mnt=None, container=docker)
        assert segment.place.label == scene.container_id[:12]
        assert [holder.pid for holder in segment.holders] == [scene.pid]


def test_with_only_ipcmons_own_namespace_nothing_is_forked(cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=4096)
    cleanup.sysv_shm(memory.id)
    own = ipcns.own_namespace()
    snapshot = scan_kinds("sysv")
    host_only = {process.pid: process for process in snapshot.processes
                 if ipcns.namespace_of(process) == own}

    def no_fork() -> int:
        raise AssertionError("forked with only ipcmon's own IPC namespace")

    monkeypatch.setattr(os, "fork", no_fork)
    tables = sysv.collect(host_only, [])
    (found,) = [segment for segment in tables.shm if segment.id == memory.id]
    assert found.place is not None and found.place.host and found.place.mnt is None
    assert (found.nattch, found.object_key) == (1, f"sysv-shm:{memory.id}")


MSGRCV = """
import sys, sysv_ipc
queue = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX)
print(queue.id, flush=True)
queue.receive()
"""


def test_a_wait_on_a_sysv_queue_in_another_namespace_is_keyed_by_it() -> None:
    name = new_name("msgwait")
    with container(name, name + "-q", _key()) as scene:
        waiter = subprocess.Popen(["nsenter", f"--target={scene.pid}", "--ipc", sys.executable, "-c",
                                   textwrap.dedent(MSGRCV)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            assert waiter.stdout is not None
            msqid = int(waiter.stdout.readline())
            snapshot = scan_kinds("sysv")

            def waits() -> bool:
                nonlocal snapshot
                snapshot = scan_kinds("sysv")
                return any(p.pid == waiter.pid and p.waiting is not None for p in snapshot.processes)

            wait_until(waits, "the waiter to block in msgrcv")
            (queue,) = [queue for queue in snapshot.sysv.msg if queue.place and queue.place.ipc == scene.ipc]
            assert queue.id == msqid
            (process,) = [process for process in snapshot.processes if process.pid == waiter.pid]
            assert process.waiting is not None and process.waiting.syscall == "msgrcv"
            assert process.waiting.key == queue.object_key == f"sysv-msg:{scene.ipc}:{msqid}"
        finally:
            waiter.kill()  # the queue goes with the scene's namespace
            waiter.wait(timeout=DEADLINE)
            if waiter.stdout is not None:
                waiter.stdout.close()


def test_pid_selection_keeps_the_selected_holders_namespace_segment_only() -> None:
    name = new_name("pidsel")
    key = _key()
    with container(name, name + "-q", key) as first, container(name, name + "-q", key) as second:
        snapshot = scan_kinds("sysv", pids=frozenset({first.pid}))
        assert [(segment.place.ipc if segment.place else None, segment.id) for segment in snapshot.sysv.shm] == [
            (first.ipc, first.sysv_id)]
        assert [process.pid for process in snapshot.processes] == [first.pid]
        assert not _segments(second, snapshot.sysv.shm)


def test_the_hosts_sysv_limits_count_the_hosts_objects_and_the_others_are_said_not_read() -> None:
    """kernel.shmmni and the rest are per IPC namespace: the host's count the host's segments, not a container's
    (which count against the container's own limits), and a note says those are not read."""
    name = new_name("limits")
    with container(name, name + "-q", _key()) as scene:
        snapshot = scan(ScanConfig(kinds=("sysv", "mqueue")))
    assert snapshot.capacity is not None
    (shmmni,) = [budget for budget in snapshot.capacity.budgets if budget.name == "kernel.shmmni"]
    own = [segment for segment in snapshot.sysv.shm if segment.place is not None and segment.place.host]
    assert any(segment.place is not None and segment.place.ipc == scene.ipc for segment in snapshot.sysv.shm)
    assert shmmni.used == len(own)
    assert any("limits of their own, not read here" in note for note in snapshot.capacity.notes)
