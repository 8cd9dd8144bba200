"""Containers and IPC namespaces seen from the host (issue 15): real namespaces made with unshare (tests/containers.py),
the same names in two of them and on the host, each object with its own place, holders and capacity.

The cgroup parsers are also checked on canned /proc/PID/cgroup text for every runtime: a test cannot start docker,
podman, Kubernetes, lxc and systemd-nspawn (the edge-case text of STYLE.md 11); the docker one is also made for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest

from ipcmon import health
from ipcmon.collect import ScanConfig, Scanner, mqueue, namespaces, scan, shm
from ipcmon.collect.config import MountDir, Places
from ipcmon.collect.fds import Devices, parse_maps, read_fds
from ipcmon.collect.procfs import PidFds
from ipcmon.model import MessageQueue, Place, ShmSegment, Snapshot
from tests.containers import SHM_SIZE, Scene, cgroup_root, container
from tests.helpers import DEADLINE, REPO, Cleanup, Spawn, first_arguments, new_name, settle, wait_until

MiB = 1 << 20
HEX = "0123456789abcdef" * 4


# --- cgroup text of every runtime -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "runtime", "ident", "pod"),
    [
        (f"0::/system.slice/docker-{HEX}.scope\n", "docker", HEX, None),
        (f"12:pids:/docker/{HEX}\n11:memory:/docker/{HEX}\n0::/\n", "docker", HEX, None),
        (f"0::/machine.slice/libpod-{HEX}.scope/container\n", "podman", HEX, None),
        (f"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{HEX}.scope\n", "podman", HEX, None),
        (f"0::/system.slice/containerd.service/kubepods-besteffort-pod1a2b3c4d_0000_1111_2222_333344445555.slice:"
         f"cri-containerd:{HEX}\n", "containerd", HEX, "1a2b3c4d-0000-1111-2222-333344445555"),
        ("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_0000_1111_2222_333344445555.slice"
         f"/cri-containerd-{HEX}.scope\n", "containerd", HEX, "1a2b3c4d-0000-1111-2222-333344445555"),
        ("0::/kubepods.slice/kubepods-pod1a2b3c4d_0000_1111_2222_333344445555.slice"
         f"/crio-{HEX}.scope\n", "cri-o", HEX, "1a2b3c4d-0000-1111-2222-333344445555"),
        (f"4:memory:/kubepods/burstable/pod1a2b3c4d-0000-1111-2222-333344445555/{HEX}\n0::/\n", "kubernetes", HEX,
         "1a2b3c4d-0000-1111-2222-333344445555"),
        ("0::/kubepods/besteffort/pod1a2b3c4d-0000-1111-2222-333344445555\n", "kubernetes",
         "1a2b3c4d-0000-1111-2222-333344445555", "1a2b3c4d-0000-1111-2222-333344445555"),
        (f"0::/containerd/{HEX}\n", "containerd", HEX, None),
        ("0::/lxc.payload.web1/init.scope\n", "lxc", "web1", None),
        ("5:cpu:/lxc/db2\n0::/\n", "lxc", "db2", None),
        ("0::/machine.slice/machine-build\\x2dbox.scope/payload\n", "systemd-nspawn", "build-box", None),
    ],
)
def test_cgroup_paths_of_every_runtime_name_their_container(text: str, runtime: str, ident: str,
                                                             pod: str | None) -> None:
    found, unit = namespaces.parse_cgroup(text.encode())
    assert found is not None, text
    assert (found.runtime, found.id, found.pod, unit) == (runtime, ident, pod, None)
    assert found.short_id == ident[:12]


@pytest.mark.parametrize(
    ("text", "unit"),
    [
        ("0::/system.slice/nginx.service\n", "nginx.service"),
        ("0::/user.slice/user-0.slice/session-3.scope\n", "session-3.scope"),
        ("1:name=systemd:/system.slice/cron.service\n2:cpu:/\n", "cron.service"),
        ("0::/system.slice/foo\\x2dbar.service/sub\n", "foo-bar.service"),
        ("0::/\n", None),
        ("", None),
        ("garbage without colons\n", None),
        # conmon's own cgroups are not the container's
        (f"0::/machine.slice/libpod-conmon-{HEX}.scope\n", f"libpod-conmon-{HEX}.scope"),
        # not 64 hex digits: no docker id
        ("0::/system.slice/docker-1234.scope\n", "docker-1234.scope"),
    ],
)
def test_cgroup_paths_without_a_container_name_the_unit_or_nothing(text: str, unit: str | None) -> None:
    assert namespaces.parse_cgroup(text.encode()) == (None, unit)


def test_docker_names_from_config_and_never_a_crash(tmp_path: Path) -> None:
    def config(ident: str, data: bytes) -> None:
        (tmp_path / "containers" / ident).mkdir(parents=True)
        (tmp_path / "containers" / ident / "config.v2.json").write_bytes(data)

    good, bad, odd, big, empty = (f"{n:x}" * 64 for n in range(1, 6))
    config(good, json.dumps({"Name": "/web-1", "ID": good}).encode())
    config(bad, b"{not json")
    config(odd, b'["Name"]')
    config(big, b'{"Name": "/x", "pad": "' + b"x" * (2 << 20) + b'"}')
    config(empty, b'{"Name": "/"}')
    assert namespaces.docker_name(good, str(tmp_path)) == "web-1"
    for ident in (bad, odd, big, empty, "f" * 64):
        assert namespaces.docker_name(ident, str(tmp_path)) is None
    assert namespaces.docker_name("../../etc", str(tmp_path)) is None  # not an id: never a path


def test_namespace_links_and_nspid_of_this_process() -> None:
    ipc, mnt = namespaces.read_ns("self")
    assert ipc == os.stat("/proc/self/ns/ipc").st_ino and mnt == os.stat("/proc/self/ns/mnt").st_ino
    assert namespaces.read_ns(os.getpid()) == (ipc, mnt)
    assert namespaces.parse_ns_link("ipc:[4026531839]") == 4026531839
    with pytest.raises(ValueError):
        namespaces.parse_ns_link("socket:[12]x")
    assert namespaces.read_nspid(os.getpid()) is None  # the same pid: not a container's


def test_maps_lines_of_several_shm_tmpfs_devices() -> None:
    data = (b"7f00-7f01 rw-s 00000000 00:1b 5  /dev/shm/host\n"
            b"7f02-7f03 rw-s 00000000 00:29 2  /dev/shm/inside\n"
            b"7f04-7f05 r--s 00000000 00:2c 2  /dev/shm/inside\n"
            b"7f06-7f07 rw-s 00000000 00:30 9  /dev/shm/unknown\n")
    refs = parse_maps(9, data, (b"00:1b", b"00:29", b"00:2c"))
    assert [(ref.dev, ref.inode, ref.path) for ref in refs] == [
        (os.makedev(0, 0x1B), 5, "/dev/shm/host"), (os.makedev(0, 0x29), 2, "/dev/shm/inside"),
        (os.makedev(0, 0x2C), 2, "/dev/shm/inside")]


# --- real namespaces ------------------------------------------------------------------------------------------------


@pytest.fixture
def docker_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(namespaces, "DOCKER_ROOT", str(tmp_path))
    return tmp_path


def _named(records: tuple[ShmSegment, ...] | tuple[MessageQueue, ...], name: str) -> list:  # type: ignore[type-arg]
    return [record for record in records if record.name == name]


def _of(records: list, scene: Scene):  # type: ignore[no-untyped-def, type-arg]
    found = [record for record in records if record.place is not None and record.place.ipc == scene.ipc]
    assert len(found) == 1, (scene, records)
    return found[0]


def _check_place(place: Place | None, scene: Scene, named: str | None) -> None:
    assert place is not None
    assert (place.ipc, place.mnt, place.host) == (scene.ipc, scene.mnt, False)
    if scene.container_id is None:
        assert place.container is None
    else:
        assert place.container is not None
        assert (place.container.runtime, place.container.id, place.container.name) == (
            "docker", scene.container_id, named)
        assert place.container.short_id == scene.container_id[:12] and len(place.container.short_id) == 12
        assert place.label == (named or scene.container_id[:12])


def _used(scene: Scene) -> int:
    st = os.statvfs(f"/proc/{scene.pid}/root/dev/shm")
    return (st.f_blocks - st.f_bfree) * st.f_frsize


@pytest.fixture
def two(docker_root: Path, cleanup: Cleanup) -> Iterator[tuple[Scene, Scene, str, str]]:
    """A docker-named scene (its tmpfs 95 % full, a docker config naming it), a plain one, and the host's own
    segment and queue of the same names."""
    name, queue = new_name("ns"), new_name("nsq")
    key = 0x15000000 + os.getpid() % 0xFFFF
    with container(name, queue, key, cgroup=True, segment_size=61 * MiB) as docker, \
            container(name, queue, key) as plain:
        assert docker.container_id is not None
        (docker_root / "containers" / docker.container_id).mkdir(parents=True)
        (docker_root / "containers" / docker.container_id / "config.v2.json").write_text(
            json.dumps({"Name": "/ipcmon-web", "ID": docker.container_id}))
        posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=4096).close_fd()
        posix_ipc.MessageQueue(cleanup.mqueue(queue), posix_ipc.O_CREX, max_messages=2, max_message_size=16).close()
        yield docker, plain, name, queue


def _check_scene(snapshot: Snapshot, scene: Scene, named: str | None) -> None:
    name, queue = scene.name, scene.queue
    for kind_name, kind in ((name, "shm"), (name + "-sem", "sem")):
        segment = _of(_named(snapshot.shm, kind_name), scene)
        assert segment.kind == kind and segment.state == "held", segment
        assert segment.path.startswith("/proc/") and segment.path.endswith("/dev/shm/" + (
            "sem." + name[1:] + "-sem" if kind == "sem" else name[1:]))
        assert os.stat(segment.path).st_dev == scene.shm_dev == segment.dev  # works from the host
        _check_place(segment.place, scene, named)
        assert {(holder.pid, holder.nspid) for holder in segment.holders} == {(scene.pid, 1)}
    orphan = _of(_named(snapshot.shm, name + "-orphan"), scene)
    assert orphan.state == "orphaned" and not orphan.holders and orphan.allocated == 256 << 10
    held = _of(_named(snapshot.mqueues, queue), scene)
    assert held.messages == 1 and held.qsize_bytes == 5 and held.dev == scene.mqueue_dev
    assert held.path is not None and os.stat(held.path).st_dev == scene.mqueue_dev
    assert {(holder.pid, holder.nspid) for holder in held.holders} == {(scene.pid, 1)}
    _check_place(held.place, scene, named)
    lone = _of(_named(snapshot.mqueues, queue + "-orphan"), scene)
    assert health.queue_orphaned(lone) and lone.messages == 0 and lone.max_messages == 2
    _check_place(lone.place, scene, named)
    (mount,) = [mount for mount in snapshot.capacity.shm_mounts if mount.dev == scene.shm_dev]  # type: ignore[union-attr]
    assert mount.size == SHM_SIZE and mount.used == _used(scene)
    assert mount.path == f"/proc/{mount.path.split('/')[2]}/root/dev/shm"
    _check_place(mount.place, scene, named)
    (space,) = [space for space in snapshot.namespaces if space.place.ipc == scene.ipc]
    assert space.processes >= 1 and space.access == "read" and space.shm_dev == scene.shm_dev
    assert space.mqueue_dev == scene.mqueue_dev and space.shm_dir == mount.path
    holder = next(process for process in snapshot.processes if process.pid == scene.pid)
    assert holder.nspid == 1
    _check_place(holder.place, scene, named)


def _check_host(snapshot: Snapshot, name: str, queue: str) -> None:
    (segment,) = [segment for segment in _named(snapshot.shm, name) if segment.place and segment.place.host]
    assert segment.path == "/dev/shm" + name and segment.state == "orphaned"
    (mq,) = [q for q in _named(snapshot.mqueues, queue) if q.place and q.place.host]
    assert mq.path == "/dev/mqueue" + queue
    assert snapshot.shm_dir == "/dev/shm" and snapshot.namespaces[0].place.host
    assert snapshot.namespaces[0].shm_dir == "/dev/shm"
    assert snapshot.capacity is not None and snapshot.capacity.shm_mounts[0].path == "/dev/shm"
    assert snapshot.capacity.shm_mounts[0].place == snapshot.namespaces[0].place


def test_same_names_in_two_containers_and_the_host_are_three_objects_each_in_its_place(
    two: tuple[Scene, Scene, str, str],
) -> None:
    docker, plain, name, queue = two
    snapshot = scan(ScanConfig(kinds=("shm", "mqueue"), hide_self=True))
    _check_scene(snapshot, docker, "ipcmon-web")
    _check_scene(snapshot, plain, None)
    _check_host(snapshot, name, queue)
    for records in (_named(snapshot.shm, name), _named(snapshot.mqueues, queue)):
        assert len(records) == 3 and len({record.object_key for record in records}) == 3
    # The docker one's 64 MiB tmpfs is 95 % full: a hazard that names its path and the container.
    (hazard,) = [hazard for hazard in health.capacity_hazards(snapshot) if str(docker.shm_dev) in hazard.key]
    assert hazard.level == "warn" and "container ipcmon-web" in hazard.problem
    assert hazard.object.endswith("/root/dev/shm") and hazard.object in hazard.problem
    assert not [hazard for hazard in health.capacity_hazards(snapshot) if str(plain.shm_dev) in hazard.key]
    # fs.mqueue.queues_max is the host IPC namespace's: the containers' queues count against their own.
    assert snapshot.capacity is not None
    (queues_max,) = [budget for budget in snapshot.capacity.budgets if budget.name == "fs.mqueue.queues_max"]
    host_queues = [queue for queue in snapshot.mqueues if queue.place is not None and queue.place.host]
    assert queues_max.used == len(host_queues) <= len(snapshot.mqueues) - 4
    # Each orphan is an orphan in its own namespace only.
    orphans = {(hazard.object, hazard.key) for hazard in health.hazards(snapshot) if "orphaned" in hazard.problem}
    for scene in (docker, plain):
        orphan = _of(_named(snapshot.shm, name + "-orphan"), scene)
        assert (orphan.label, orphan.object_key) in orphans


def test_a_scanner_sees_the_same_twice(two: tuple[Scene, Scene, str, str]) -> None:
    docker, plain, name, queue = two
    scanner = Scanner(ScanConfig(kinds=("shm", "mqueue"), hide_self=True))

    def seen(snapshot: Snapshot) -> set[tuple[object, ...]]:
        return {(record.object_key, record.place, record.path, tuple((h.pid, h.nspid, h.fd) for h in record.holders))
                for record in (*_named(snapshot.shm, name), *_named(snapshot.shm, name + "-orphan"),
                               *_named(snapshot.mqueues, queue))}

    first, second = scanner.scan(), scanner.scan()
    assert seen(first) == seen(second) and len(seen(first)) == 8
    for scene in (docker, plain):  # (the host's process count moves with the other work on the machine)
        assert [space for space in first.namespaces if space.place.ipc == scene.ipc] == [
            space for space in second.namespaces if space.place.ipc == scene.ipc]
    for snapshot in (first, second):
        _check_scene(snapshot, docker, "ipcmon-web")
        _check_scene(snapshot, plain, None)


def test_only_the_host_costs_two_readlinks_a_process() -> None:
    """With no other namespace, the pre-pass reads nothing but each process's two namespace links: counted."""
    places = Places("/dev/shm", os.stat("/dev/shm").st_dev, None, None)
    calls: list[str] = []
    real = os.readlink

    def counting(path: str) -> str:
        calls.append(path)
        return real(path)

    os.readlink = counting  # type: ignore[assignment]
    try:
        world = namespaces.discover([os.getpid()], places)
    finally:
        os.readlink = real
    assert sorted(calls) == sorted(["/proc/self/ns/ipc", "/proc/self/ns/mnt", f"/proc/{os.getpid()}/ns/ipc",
                                    f"/proc/{os.getpid()}/ns/mnt"])
    assert world.host is not None and world.places == {os.getpid(): world.host}
    assert [space.processes for space in world.namespaces] == [1]
    assert [mount.path for mount in world.shm_dirs] == ["/dev/shm"] and world.shm_dirs[0].place == world.host


_IPC_ONLY = r'''
import os, sys
import posix_ipc
name = sys.argv[1]
queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=3, max_message_size=16)
queue.send(b"abc")
print("ready", os.stat("/proc/self/ns/ipc").st_ino, os.stat("/dev/mqueue").st_dev, flush=True)
sys.stdin.read()
'''


def test_a_queue_of_an_ipc_namespace_with_no_mount_of_its_own_is_placed_by_its_holder() -> None:
    """``unshare --ipc --mount`` without remounting mqueue: /dev/mqueue is still the host's (listed once, at the
    host); the namespace's own queue is seen only through its holder's descriptor, in the holder's place."""
    name = new_name("ipconly")
    child = subprocess.Popen(["unshare", "--ipc", "--mount", "--kill-child", "--fork", sys.executable, "-c",
                              textwrap.dedent(_IPC_ONLY), name], cwd=REPO, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None
        words = child.stdout.readline().split()
        assert words[:1] == ["ready"], words
        ipc, mqueue_dev = int(words[1]), int(words[2])
        snapshot = scan(ScanConfig(kinds=("mqueue",), hide_self=True))
        host_dev = os.stat("/dev/mqueue").st_dev
        assert mqueue_dev == host_dev  # it sees the host's mount
        (queue,) = _named(snapshot.mqueues, name)
        assert queue.place is not None and queue.place.ipc == ipc and not queue.place.host
        assert queue.path is None and queue.messages == 1 and queue.dev != host_dev
        spaces = [space for space in snapshot.namespaces if space.place.ipc == ipc]
        assert len(spaces) == 1, (spaces, [(p.pid, p.comm, p.place) for p in snapshot.processes
                                           if p.place is not None and p.place.ipc == ipc])
        (space,) = spaces
        assert space.mqueue_dev == host_dev and space.mqueue_dir is None  # the host's: listed there, once
        assert [space.mqueue_dev for space in snapshot.namespaces].count(host_dev) >= 2
        assert len({queue.path for queue in snapshot.mqueues if queue.path and queue.path.startswith("/dev/")}) == \
            len([queue for queue in snapshot.mqueues if queue.path and queue.path.startswith("/dev/")])
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_holders_are_found_by_device_from_any_process_and_deleted_segments_keep_their_place() -> None:
    """A host process that opens a container's orphan through /proc/PID/root holds it (it is no orphan); a segment the
    container unlinked but holds is on its tmpfs, in its place, named as inside; a host process holding the
    container's queue leaves the queue in the container's place."""
    name, queue = new_name("nsdel"), new_name("nsdelq")
    with container(name, queue, 0x15200000 + os.getpid() % 0xFFFF, deleted_size=128 << 10) as scene:
        root = f"/proc/{scene.pid}/root"
        orphan = os.open(f"{root}/dev/shm/{name[1:]}-orphan", os.O_RDONLY)
        mq = os.open(f"{root}/dev/mqueue/{queue[1:]}-orphan", os.O_RDONLY | os.O_NONBLOCK)
        try:
            snapshot = scan(ScanConfig(kinds=("shm", "mqueue")))  # this process too
        finally:
            os.close(orphan)
            os.close(mq)
        held = _of(_named(snapshot.shm, name + "-orphan"), scene)
        assert held.state == "held" and [(h.pid, h.nspid, h.fd) for h in held.holders] == [(os.getpid(), None, orphan)]
        _check_place(held.place, scene, None)
        deleted = _of(_named(snapshot.shm, name + "-deleted"), scene)
        assert deleted.state == "deleted" and deleted.pinned_bytes == 128 << 10 and deleted.dev == scene.shm_dev
        (mount,) = [mount for mount in snapshot.capacity.shm_mounts if mount.dev == scene.shm_dev]  # type: ignore[union-attr]
        assert deleted.path == f"{mount.path}/{name[1:]}-deleted"  # the name it had, on the mount's host path
        assert {(h.pid, h.nspid) for h in deleted.holders} == {(scene.pid, 1)}
        _check_place(deleted.place, scene, None)
        assert mount.deleted == 128 << 10 and mount.named == (1 << 20) + (256 << 10)
        lone = _of(_named(snapshot.mqueues, queue + "-orphan"), scene)
        assert [(h.pid, h.fd) for h in lone.holders] == [(os.getpid(), mq)] and not health.queue_orphaned(lone)
        _check_place(lone.place, scene, None)
        host = [queue for queue in snapshot.mqueues if queue.place is not None and queue.place.host]
        assert not [queue for queue in host if queue.dev == scene.mqueue_dev]


def test_pointed_at_directories_of_its_own_it_lists_those_alone(tmp_path: Path) -> None:
    """IPCMON_SHM_DIR / IPCMON_MQUEUE_DIR elsewhere ("Pointing ipcmon elsewhere"): containers' mounts are not added,
    though their processes are still placed."""
    name, queue = new_name("nsown"), new_name("nsownq")
    with container(name, queue, 0x15300000 + os.getpid() % 0xFFFF) as scene:
        snapshot = scan(ScanConfig(kinds=("shm", "mqueue"), shm_dir=str(tmp_path), mqueue_dir=str(tmp_path)))
        assert not _named(snapshot.shm, name + "-orphan") and not _named(snapshot.mqueues, queue + "-orphan")
        assert [mount.dev for mount in snapshot.capacity.shm_mounts if mount.dev == scene.shm_dev] == []  # type: ignore[union-attr]
        (space,) = [space for space in snapshot.namespaces if space.place.ipc == scene.ipc]
        assert space.shm_dir is None and space.mqueue_dir is None
        # Held ones are still seen through their holder's descriptors, as before (the queue, named as inside).
        (held,) = _named(snapshot.mqueues, queue)
        _check_place(held.place, scene, None)
        assert held.path is None
        default = scan(ScanConfig(kinds=("shm", "mqueue")))
        assert len(_named(default.shm, name + "-orphan")) == 1 and len(_named(default.mqueues, queue + "-orphan")) == 1


def test_a_namespace_whose_mounts_are_refused_is_counted_partial_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root is refused /proc/PID/mountinfo and /proc/PID/root only for a process it may not ptrace (a non-dumpable one
    in another user namespace), which a test cannot make of its own scene: the refusal is simulated there alone."""
    name, queue = new_name("nspart"), new_name("nspartq")
    with container(name, queue, 0x15400000 + os.getpid() % 0xFFFF) as scene:
        real = namespaces._mount_table
        members = {scene.pid, scene.unshare_pid}

        def refused(pid: int, proc: str) -> list:  # type: ignore[type-arg]
            if pid in members:
                raise namespaces.Denied("simulated EACCES")
            return real(pid, proc)

        monkeypatch.setattr(namespaces, "_mount_table", refused)
        snapshot = scan(ScanConfig(kinds=("shm", "mqueue"), hide_self=True))
    (space,) = [space for space in snapshot.namespaces if space.place.ipc == scene.ipc]
    assert space.access == "partial" and "not permitted" in space.note and space.processes == 2
    assert space.shm_dir is None and space.shm_dev is None
    notes = [note for note in snapshot.notes if "not readable: run as root" in note]
    assert len(notes) == 1 and "mount namespace" in notes[0] and f"ipc:{scene.ipc}" in notes[0]
    assert not [segment for segment in snapshot.shm if segment.name.startswith(name)]  # its tmpfs is not listed
    assert not [mount for mount in snapshot.capacity.shm_mounts if mount.dev == scene.shm_dev]  # type: ignore[union-attr]


def test_a_container_path_leading_to_another_device_lists_nothing(tmp_path: Path) -> None:
    """A container's /dev/shm found as one tmpfs and swapped since for a link elsewhere: files of another device are
    none of its segments or queues (real files, listed through a MountDir whose device they are not on)."""
    (tmp_path / "looks-like-a-segment").write_bytes(b"x" * 4096)
    elsewhere = os.stat(tmp_path).st_dev + 1
    host = MountDir("/dev/shm", os.stat("/dev/shm").st_dev)
    swapped = MountDir(str(tmp_path), elsewhere, Place(1, 2), "/dev/shm")
    assert not [s for s in shm.collect([host, swapped], {}, [], []) if s.name == "/looks-like-a-segment"]
    with PidFds() as pidfds:
        assert not [q for q in mqueue.collect([MountDir("/dev/mqueue", os.stat("/dev/mqueue").st_dev), swapped], {},
                                              [], pidfds) if q.name == "/looks-like-a-segment"]
    # The same directory as the first (the configured one) is listed as before.
    assert [s.name for s in shm.collect(str(tmp_path), {}, [], [])] == ["/looks-like-a-segment"]


def test_many_namespaces_cost_one_mount_read_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight more namespaces, each with its own 1 MiB tmpfs: the pre-pass reads each mount namespace's mounts once
    (through one of its processes) and each process's two links once, whatever their number: it stays linear."""
    if os.geteuid() != 0:
        pytest.fail("needs root (unshare, mount), as CI is")
    script = "mount -t tmpfs -o size=1m ipcmon-test /dev/shm && echo ready && exec sleep 600"
    children = [subprocess.Popen(["unshare", "--ipc", "--mount", "--fork", "--kill-child", "sh", "-c", script],
                                 stdout=subprocess.PIPE, text=True) for _ in range(8)]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        devs = {os.stat(f"/proc/{pid}/root/dev/shm").st_dev
                for pid in (int(Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()[0])
                            for child in children)}
        assert len(devs) == 8
        reads: list[int] = []
        links: list[str] = []
        real_mounts, real_readlink = namespaces._read_mounts, os.readlink

        def read_mounts(pid, *args):  # type: ignore[no-untyped-def]
            reads.append(pid)
            return real_mounts(pid, *args)

        def readlink(path):  # type: ignore[no-untyped-def]
            links.append(path)
            return real_readlink(path)

        monkeypatch.setattr(namespaces, "_read_mounts", read_mounts)
        monkeypatch.setattr(namespaces.os, "readlink", readlink)
        pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
        places = Places("/dev/shm", os.stat("/dev/shm").st_dev, None, None)
        world = namespaces.discover(pids, places)
        monkeypatch.undo()
        assert world.host is not None
        other_mnts = {space.place.mnt for space in world.namespaces if space.place.mnt != world.host.mnt}
        assert len(reads) == len(other_mnts) >= 8  # (other work on the machine may add its own)
        assert len(links) <= 2 * len(pids) + 2
        assert devs <= {mount.dev for mount in world.shm_dirs}
    finally:
        for child in children:
            child.kill()  # unshare --kill-child takes its sleep along
            child.wait()
            if child.stdout is not None:
                child.stdout.close()


def test_a_stranger_that_entered_a_container_does_not_take_its_label() -> None:
    """Processes in the container's namespaces but outside its cgroup (an administrator's nsenter shell; here also
    unshare itself, the lowest pid of them, moved out) are members too: the namespace keeps the container's label
    whichever of them the scan meets first."""
    name = new_name("stranger")
    with container(name, name + "-q", 0x1C500000 + os.getpid() % 4096, cgroup=True) as scene:
        with open(os.path.join(cgroup_root(), "cgroup.procs"), "w") as procs:
            procs.write(str(scene.unshare_pid))  # the lowest pid of the namespaces now names no container
        stranger = subprocess.Popen(["nsenter", "-t", str(scene.pid), "--ipc", "--mount", "sleep", "60"])
        try:
            def entered() -> bool:
                try:
                    return os.readlink(f"/proc/{stranger.pid}/ns/ipc") == f"ipc:[{scene.ipc}]"
                except OSError:
                    return False

            wait_until(entered, "the stranger in the container's namespaces")
            snapshot = scan(ScanConfig(kinds=("shm", "sysv")))
        finally:
            stranger.kill()
            stranger.wait()
    processes = {process.pid: process for process in snapshot.processes}
    for outsider in (stranger.pid, scene.unshare_pid):
        assert processes[outsider].place is not None and processes[outsider].place.container is None
    (namespace,) = [n for n in snapshot.namespaces if (n.place.ipc, n.place.mnt) == (scene.ipc, scene.mnt)]
    assert namespace.place.container is not None and namespace.place.container.id == scene.container_id
    (segment,) = [s for s in snapshot.shm if s.name == name and s.dev == scene.shm_dev]
    assert segment.place is not None and segment.place.container == namespace.place.container
    (sysv,) = [s for s in snapshot.sysv.shm if s.place is not None and s.place.ipc == scene.ipc]
    assert sysv.place is not None and sysv.place.container == namespace.place.container


def test_a_held_segment_whose_mount_path_went_with_a_process_is_still_named_not_deleted() -> None:
    """The host reaches a container's tmpfs through /proc/PID/root of one of its processes; when that process exits
    mid-scan the path fails, yet the holder's descriptor still shows the file's link count: a segment with a name
    is never called deleted for it (seen under churn: created mid-scan, read as 'deleted, pins 0B')."""
    name = new_name("gone-path")
    with container(name, name + "-q", 0x1C600000 + os.getpid() % 4096) as scene:
        devices = Devices(None, None, shm_devs=[scene.shm_dev])
        fds = [ref for ref in read_fds(scene.pid, devices) if ref.kind == "shm" and ref.dev == scene.shm_dev]
        assert fds, "the scene's holder has its segment open"
        gone = MountDir("/proc/999999999/root/dev/shm", scene.shm_dev, Place(scene.ipc, scene.mnt), "/dev/shm")
        processes = {process.pid: process for process in scan(ScanConfig(kinds=("shm",))).processes}
        host = MountDir("/dev/shm", os.stat("/dev/shm").st_dev)  # the first is always the shm directory
        (segment,) = [s for s in shm.collect([host, gone], processes, fds, []) if s.name == name]
    assert segment.state == "held" and segment.pinned_bytes == 0
    assert segment.size == 1 << 20 and segment.place == Place(scene.ipc, scene.mnt)


UNSHARES_ON_COMMAND = """
    say("ready")
    for command in commands():
        if _libc.unshare(0x08000000) != 0:  # CLONE_NEWIPC
            say("failed", ctypes.get_errno())
        say("done", os.stat("/proc/self/ns/ipc").st_ino)
"""


def test_a_scanner_keeps_namespaces_of_a_process_taken_over_and_sees_an_unshare_at_once(
    spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Scanner reads no namespace link of a process that has not run since the last scan; a process that leaves
    its IPC namespace (unshare(2): it ran) is placed in its new one by the very next scan."""
    child = spawn(UNSHARES_ON_COMMAND, comm="ipcm-unsharer")
    child.expect()
    scanner = Scanner(ScanConfig(kinds=("signal",)))
    settle(scanner, child.pid)
    calls = first_arguments(monkeypatch, os, "readlink")

    def unread_scan() -> bool:
        calls.clear()
        snapshot = scanner.scan()
        return child.pid in scanner.reused and not any(path.startswith(f"/proc/{child.pid}/") for path in calls) \
            and [p.place for p in snapshot.processes if p.pid == child.pid] == [
                next(space.place for space in snapshot.namespaces if space.place.host)]

    wait_until(unread_scan, "a scan that takes the child's namespaces over unread")
    child.tell("unshare")
    (inode,) = child.expect("done")
    after = scanner.scan()  # the very next scan
    [place] = [process.place for process in after.processes if process.pid == child.pid]
    assert place is not None and place.ipc == int(inode) and not place.host
    assert any(space.place.ipc == int(inode) for space in after.namespaces)


def test_the_note_of_unreadable_namespaces_tells_root_that_the_kernel_refuses_it() -> None:
    """Root is refused a process's namespaces only by the kernel (a reviewer saw ``run as root`` said to root, with
    ``--kind signal``, where no descriptor table is read and so no process counts as hidden); anyone else is told
    to run as root."""
    as_root = namespaces.unknown_note(1, privileged=True)
    assert "run as root" not in as_root and "refuses even root" in as_root
    assert namespaces.unknown_note(2, privileged=False).endswith("run as root to see them.")
    assert "2 processes" in namespaces.unknown_note(2, privileged=False)
