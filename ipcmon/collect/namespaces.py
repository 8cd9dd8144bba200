"""Every IPC and mount namespace the scanned processes run in, seen from the host (issue 15): which processes are
in each, the container or systemd unit they belong to, and each mount namespace's own shm tmpfs and mqueue mounts.

A namespace is named by the inode of ``/proc/PID/ns/ipc`` or ``/proc/PID/ns/mnt`` (namespaces(7)); one readlink
each, for every process, is all a machine with only the host pays. For every other mount namespace, one process in
it (the lowest pid that can be read) shows its mounts: ``/proc/PID/mountinfo`` names them, ``/proc/PID/root/…``
reaches them from the host (proc(5)). A mount is one mount, whatever number of namespaces see it: they are told
apart by st_dev and listed once, at the first namespace that has it (the host's first). Container labels come from
``/proc/PID/cgroup`` (cgroups(7)), read only for processes outside the host's namespaces.

Nothing here raises for a process that is gone or not readable: it is left out, or counted and said in a note.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from ipcmon.collect import procfs
from ipcmon.collect.config import MountDir, Places
from ipcmon.collect.procfs import Denied, Gone
from ipcmon.model import Container, Namespace, Place, Runtime, names_better
from ipcmon.safe import counted

DOCKER_ROOT = "/var/lib/docker"
"""Docker's data root: ``containers/<id>/config.v2.json`` holds a container's name (``"Name": "/web"``)."""

SHM_MOUNT_POINT = "/dev/shm"
"""Where a container's shm tmpfs is mounted inside it (docker, podman and Kubernetes all put it there)."""

_CONFIG_MAX = 1 << 20
"""A docker config.v2.json is a few KiB; a bigger one is not read (never a crash, never a stall)."""


# --- one process --------------------------------------------------------------------------------------------------


def parse_ns_link(target: str) -> int:
    """The inode of a namespace link's target: ``ipc:[4026531839]`` → 4026531839; ValueError for anything else."""
    _, open_bracket, rest = target.partition(":[")
    if not open_bracket or not rest.endswith("]"):
        raise ValueError(f"not a namespace link: {target!r}")
    return int(rest[:-1])


def read_ns(pid: int | str, proc: str = procfs.PROC) -> tuple[int, int]:
    """(IPC namespace inode, mount namespace inode) of a process (``self`` for this one); raises Gone or Denied.

    Another user's links are refused (EACCES) unless the reader may ptrace the process (root may)."""
    base = f"{proc}/{pid}/ns/"
    try:
        return parse_ns_link(os.readlink(base + "ipc")), parse_ns_link(os.readlink(base + "mnt"))
    except OSError as error:
        raise procfs.translate(error) if procfs.is_gone(error) or procfs.is_denied(error) else Gone(
            str(error)) from None
    except ValueError as error:
        raise Gone(str(error)) from None  # no such link on this kernel: as if gone (nothing to read)


def read_nspid(pid: int, proc: str = procfs.PROC) -> int | None:
    """The pid of a process inside its own pid namespace: the last field of ``NSpid`` in /proc/PID/status (Linux
    4.1+); None when it is the host pid itself, or unknown (gone, refused, no such line)."""
    try:
        data = procfs.read_bytes(f"{proc}/{pid}/status", single=True)
    except (Gone, Denied, OSError):
        return None
    start = data.find(b"\nNSpid:")
    if start == -1:
        return None
    end = data.find(b"\n", start + 1)
    fields = data[start + 7 : end if end != -1 else len(data)].split()
    if len(fields) < 2 or not fields[-1].isdigit():
        return None
    inside = int(fields[-1])
    return None if inside == pid else inside


# --- container labels from the cgroup path ------------------------------------------------------------------------

_HEX64 = r"[0-9a-f]{64}"
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_RUNTIMES: tuple[tuple[re.Pattern[str], Runtime], ...] = (
    (re.compile(rf"(?:^|/)docker-({_HEX64})\.scope(?:/|$)"), "docker"),
    (re.compile(rf"(?:^|/)docker/({_HEX64})(?:/|$)"), "docker"),
    (re.compile(rf"(?:^|/)libpod-({_HEX64})(?:\.scope)?(?:/|$)"), "podman"),
    (re.compile(rf"(?:^|/)cri-containerd-({_HEX64})\.scope(?:/|$)"), "containerd"),
    (re.compile(rf":cri-containerd:({_HEX64})(?:/|$)"), "containerd"),
    (re.compile(rf"(?:^|/)containerd/({_HEX64})(?:/|$)"), "containerd"),
    (re.compile(rf"(?:^|/)crio-({_HEX64})\.scope(?:/|$)"), "cri-o"),
    (re.compile(rf"(?:^|/)crio/({_HEX64})(?:/|$)"), "cri-o"),
)
"""Each runtime's cgroup names (systemd and cgroupfs drivers): ``/system.slice/docker-<id>.scope``, ``/docker/<id>``,
``/machine.slice/libpod-<id>.scope``, ``…/cri-containerd-<id>.scope`` (or ``…pod<uid>.slice:cri-containerd:<id>``
under containerd.service), ``…/crio-<id>.scope``. Conmon's own cgroups
(``libpod-conmon-<id>``, ``crio-conmon-<id>``) are not the container's and match none."""
_KUBE_BARE = re.compile(rf"(?:^|/)({_HEX64})(?:/|$)")
"""Under ``kubepods``, the cgroupfs driver names a container by its bare id: ``/kubepods/burstable/pod<uid>/<id>``."""
_LXC = re.compile(r"(?:^|/)lxc\.payload[./]([^/]+)|(?:^|/)lxc/([^/]+)")
_NSPAWN = re.compile(r"(?:^|/)machine-([^/]+)\.scope(?:/|$)")
_UNIT = re.compile(r"([^/]+\.(?:service|scope))(?:/|$)")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape_unit(name: str) -> str:
    """systemd-escape(1) undone: ``web\\x2d1`` → ``web-1``."""
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), name)


def container_of_path(path: str) -> Container | None:
    """The container a cgroup path names (without its docker name), None when it names none."""
    pod_match = _POD.search(path) if "kubepods" in path else None
    pod = pod_match.group(1).replace("_", "-") if pod_match else None
    for pattern, runtime in _RUNTIMES:
        match = pattern.search(path)
        if match:
            return Container(id=match.group(1), runtime=runtime, pod=pod)
    if pod is not None:
        bare = _KUBE_BARE.search(path[pod_match.end() :]) if pod_match else None
        if bare:
            return Container(id=bare.group(1), runtime="kubernetes", pod=pod)
        return Container(id=pod, runtime="kubernetes", pod=pod)
    match = _LXC.search(path)
    if match:
        return Container(id=match.group(1) or match.group(2), runtime="lxc", name=match.group(1) or match.group(2))
    match = _NSPAWN.search(path)
    if match and not path.startswith("/machine.slice/libpod"):
        name = _unescape_unit(match.group(1))
        return Container(id=name, runtime="systemd-nspawn", name=name)
    return None


def parse_cgroup(data: bytes) -> tuple[Container | None, str | None]:
    """(container, systemd unit) of /proc/PID/cgroup (``ID:CONTROLLERS:PATH`` lines, v1 and v2, cgroups(7)).

    Every line is looked at, the unified (``0::``) one first: a container on any of them wins; else the unit is
    the last ``*.service`` or ``*.scope`` component of the unified or ``name=systemd`` path (else of any line);
    (None, None) when neither is there."""
    lines = [line.split(":", 2) for line in os.fsdecode(data).splitlines()]
    paths = [parts[2] for parts in lines if len(parts) == 3]
    preferred = [parts[2] for parts in lines if len(parts) == 3 and (parts[0] == "0" or "name=systemd" in parts[1])]
    for path in preferred + paths:
        container = container_of_path(path)
        if container is not None:
            return container, None
    for path in preferred + paths:
        units = _UNIT.findall(path)
        if units:
            return None, _unescape_unit(units[-1])
    return None, None


def docker_name(container_id: str, docker_root: str = DOCKER_ROOT) -> str | None:
    """A docker container's name from ``<docker_root>/containers/<id>/config.v2.json`` (``"Name": "/web"`` → web);
    None when the file is missing, unreadable, too big or not what docker writes."""
    if not re.fullmatch(_HEX64, container_id):
        return None
    try:
        with open(os.path.join(docker_root, "containers", container_id, "config.v2.json"), "rb") as file:
            data = file.read(_CONFIG_MAX + 1)
        if len(data) > _CONFIG_MAX:
            return None
        config = json.loads(data)
    except (OSError, ValueError):
        return None
    name = config.get("Name") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name.strip("/"):
        return None
    return name.removeprefix("/")


# --- the discovery ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class World:
    """What one scan's pre-pass found: each process's place, every namespace pair, and every mount to list."""

    host: Place | None
    """ipcmon's own namespaces; None when they could not be read (then nothing is placed)."""
    places: dict[int, Place] = field(default_factory=dict)
    """The place of every process whose namespaces could be read, by pid."""
    namespaces: tuple[Namespace, ...] = ()
    shm_dirs: tuple[MountDir, ...] = ()
    mqueue_dirs: tuple[MountDir, ...] = ()
    notes: tuple[str, ...] = ()
    unknown: int = 0
    """Processes whose namespaces could not be read (not permitted)."""
    pairs: dict[int, tuple[int, int]] = field(default_factory=dict)
    """(IPC, mount) namespace inodes of every process whose namespaces could be read, by pid."""
    assumed: frozenset[int] = frozenset()
    """The pids whose pair was taken from ``known`` (discover) rather than read."""


@dataclass(slots=True)
class _MountNamespace:
    """What one process of a mount namespace showed of its mounts."""

    shm: MountDir | None = None
    shm_dev: int | None = None
    mqueues: list[MountDir] = field(default_factory=list)
    mqueue_dev: int | None = None
    readable: bool = True


def _mount_table(pid: int, proc: str) -> list[procfs.Mount]:
    """The tmpfs and mqueue mounts of /proc/PID/mountinfo (mount points as the process sees them); raises Gone or
    Denied."""
    data = procfs.read_bytes(f"{proc}/{pid}/mountinfo")
    found = []
    for line in data.splitlines():
        if b" - tmpfs " not in line and b" - mqueue " not in line:
            continue
        mount = procfs.parse_mountinfo_line(line)
        if mount is not None:
            found.append(mount)
    return found


def _read_mounts(
    pid: int, proc: str, place: Place, seen_shm: set[int] | None, seen_mqueue: set[int] | None
) -> _MountNamespace:
    """One mount namespace's /dev/shm (when it is a tmpfs mount point there) and mqueue mounts, through one of its
    processes; raises Gone or Denied. Devices already seen are recorded, not listed again; None: not looked for."""
    root = f"{proc}/{pid}/root"
    table = _mount_table(pid, proc)
    found = _MountNamespace()
    try:
        shm_dev = os.stat(root + SHM_MOUNT_POINT).st_dev if seen_shm is not None else None
    except OSError as error:
        if procfs.is_denied(error):
            raise procfs.translate(error) from None
        shm_dev = None  # no /dev/shm in it
    if seen_shm is not None and shm_dev is not None and any(
        mount.fstype == "tmpfs" and mount.mount_point == SHM_MOUNT_POINT and mount.dev == shm_dev for mount in table
    ):
        found.shm_dev = shm_dev
        if shm_dev not in seen_shm:
            seen_shm.add(shm_dev)
            found.shm = MountDir(root + SHM_MOUNT_POINT, shm_dev, place, SHM_MOUNT_POINT)
    for mount in table:
        if mount.fstype != "mqueue" or seen_mqueue is None:
            continue
        path = root + mount.mount_point.rstrip("/")
        try:
            if os.stat(path).st_dev != mount.dev:
                continue  # covered by another mount (the host's, under the namespace's own): not reachable there
        except OSError:
            continue
        if found.mqueue_dev is None:
            found.mqueue_dev = mount.dev
        if mount.dev in seen_mqueue:
            continue
        seen_mqueue.add(mount.dev)
        found.mqueues.append(MountDir(path, mount.dev, place, mount.mount_point))
    return found


def discover(
    pids: Iterable[int], places: Places, proc: str = procfs.PROC, *, docker_root: str | None = None,
    look_shm: bool = True, look_mqueue: bool = True, known: Mapping[int, tuple[int, int]] | None = None,
) -> World:
    """The pre-pass of a scan, before any process is read: every process's namespaces, and every shm tmpfs and
    mqueue mount to list (the configured ones first, as the host's).

    Costs two readlinks per process; only processes outside ipcmon's own namespaces cost more (their cgroup, and
    per other mount namespace one mountinfo and a few stats). docker_root defaults to DOCKER_ROOT (as it is when
    called). look_shm and look_mqueue False leave other namespaces' shm tmpfs or mqueue mounts out (ipcmon pointed
    at a directory of its own: IPCMON_SHM_DIR, IPCMON_MQUEUE_DIR). The processes whose namespaces could not be read
    are counted (World.unknown), not said in a note: the scan words it (unknown_note), knowing which of them it
    could not read at all.

    known: pairs to take as they are instead of reading them (a Scanner's, from its last scan; World.assumed
    says which were taken): the caller must check them afterwards (the Scanner's argument is in scan.py)."""
    docker_root = docker_root or DOCKER_ROOT
    try:
        host_pair = read_ns("self", procfs.PROC)
    except (Gone, Denied):
        return World(None, shm_dirs=places.shm_mounts(), mqueue_dirs=places.mqueue_mounts())
    host = Place(host_pair[0], host_pair[1], host=True)
    host_shm = next((replace(mount, place=host) for mount in places.shm_mounts()), None)
    host_mqueue = next((replace(mount, place=host) for mount in places.mqueue_mounts()), None)
    by_pid: dict[int, Place] = {}
    groups: dict[tuple[int, int], list[int]] = {host_pair: []}
    unknown = 0
    known = known or {}
    pairs: dict[int, tuple[int, int]] = {}
    assumed = []
    for pid in pids:
        pair = known.get(pid)
        if pair is not None:
            assumed.append(pid)
        else:
            try:
                pair = read_ns(pid, proc)
            except Gone:
                continue
            except Denied:
                unknown += 1
                continue
        pairs[pid] = pair
        if pair == host_pair:
            by_pid[pid] = host
            groups[host_pair].append(pid)
        else:
            groups.setdefault(pair, []).append(pid)
    if len(groups) == 1:  # only the host: nothing more to read
        world = World(host, by_pid, (_host_namespace(host, len(groups[host_pair]), host_shm, host_mqueue),),
                      (host_shm,) if host_shm else (), (host_mqueue,) if host_mqueue else (), (), unknown)
    else:
        world = _elsewhere(host, host_pair, groups, by_pid, host_shm, host_mqueue, unknown, proc, docker_root,
                           look_shm=look_shm, look_mqueue=look_mqueue)
    return replace(world, pairs=pairs, assumed=frozenset(assumed))


def _host_namespace(host: Place, count: int, shm: MountDir | None, mqueue: MountDir | None) -> Namespace:
    return Namespace(host, count, shm.path if shm else None, shm.dev if shm else None, mqueue.path if mqueue else None,
                     mqueue.dev if mqueue else None)


def _elsewhere(
    host: Place, host_pair: tuple[int, int], groups: dict[tuple[int, int], list[int]], by_pid: dict[int, Place],
    host_shm: MountDir | None, host_mqueue: MountDir | None, unknown: int, proc: str, docker_root: str, *,
    look_shm: bool, look_mqueue: bool,
) -> World:
    """discover, when some process runs in namespaces other than ipcmon's own."""
    shared: dict[tuple[int, int, Container | None, str | None], Place] = {}
    names: dict[str, str | None] = {}
    first_place: dict[tuple[int, int], Place] = {}
    for pair, members in groups.items():
        if pair == host_pair:
            continue
        for pid in members:
            try:
                container, unit = parse_cgroup(procfs.read_bytes(f"{proc}/{pid}/cgroup"))
            except (Gone, Denied, OSError):
                container, unit = None, None
            if container is not None and container.runtime == "docker" and container.name is None:
                if container.id not in names:
                    names[container.id] = docker_name(container.id, docker_root)
                if names[container.id] is not None:
                    container = Container(container.id, container.runtime, names[container.id], container.pod)
            place = shared.get((*pair, container, unit))
            if place is None:
                # The host's IPC namespace with a mount namespace of its own (a systemd service's PrivateTmp, an
                # `unshare -m`) is the host, unless a container's cgroup says otherwise (docker's --ipc=host).
                place = shared[(*pair, container, unit)] = Place(pair[0], pair[1], container, unit,
                                                                 host=pair[0] == host_pair[0] and container is None)
            by_pid[pid] = place
            if pair not in first_place or names_better(place, first_place[pair]):
                first_place[pair] = place  # the namespace's own place: the best named of its members

    seen_shm = {host_shm.dev} if host_shm else set()
    seen_mqueue = {host_mqueue.dev} if host_mqueue else set()
    shm_dirs = [host_shm] if host_shm else []
    mqueue_dirs = [host_mqueue] if host_mqueue else []
    mounts: dict[int, _MountNamespace] = {host_pair[1]: _MountNamespace(
        host_shm, host_shm.dev if host_shm else None, [host_mqueue] if host_mqueue else [],
        host_mqueue.dev if host_mqueue else None)}
    # Host first, then by the lowest pid in each: the same order every scan, whatever the namespaces' inodes.
    ordered = sorted((pair for pair in groups if pair != host_pair), key=lambda pair: min(groups[pair]))
    by_mnt: dict[int, list[int]] = {}
    for pair in ordered:
        by_mnt.setdefault(pair[1], []).extend(groups[pair])
    for pair in ordered:
        mnt = pair[1]
        if mnt in mounts:
            continue
        # Its processes in pid order, until one shows them: one that exits meanwhile is no refusal (if all of
        # them have, there is nothing left to list).
        found = _MountNamespace()
        for pid in sorted(by_mnt[mnt]):
            try:
                found = _read_mounts(pid, proc, first_place[pair], seen_shm if look_shm else None,
                                     seen_mqueue if look_mqueue else None)
            except Denied:
                found = _MountNamespace(readable=False)
                continue
            except (Gone, OSError):
                continue
            break
        mounts[mnt] = found
        if found.shm is not None:
            shm_dirs.append(found.shm)
        mqueue_dirs.extend(found.mqueues)

    namespaces = [_host_namespace(host, len(groups[host_pair]), host_shm, host_mqueue)]
    listed_shm = {host_shm.dev} if host_shm else set()
    listed_mqueue = {host_mqueue.dev} if host_mqueue else set()
    unreadable: list[Place] = []
    for pair in ordered:
        found = mounts[pair[1]]
        shm = found.shm if found.shm is not None and found.shm.dev not in listed_shm else None
        mqueue = next((mount for mount in found.mqueues if mount.dev not in listed_mqueue), None)
        if shm is not None:
            listed_shm.add(shm.dev)
        if mqueue is not None:
            listed_mqueue.update(mount.dev for mount in found.mqueues)
        note = "" if found.readable else "its mounts could not be read (not permitted): run as root"
        if not found.readable:
            unreadable.append(first_place[pair])
        namespaces.append(Namespace(
            first_place[pair], len(groups[pair]), shm.path if shm else None, found.shm_dev,
            mqueue.path if mqueue else None, found.mqueue_dev, access="read" if found.readable else "partial",
            note=note,
        ))
    notes = []
    if unreadable:
        notes.append(_unreadable_note(unreadable))
    return World(host, by_pid, tuple(namespaces), tuple(shm_dirs), tuple(mqueue_dirs), tuple(notes), unknown)


def unknown_note(count: int, *, privileged: bool) -> str:
    """The note of a scan in which count processes' namespaces could not be read; privileged: ipcmon runs as root,
    whom only the kernel refuses (a non-dumpable process in another user namespace)."""
    what = (f"The namespaces of {counted(count, 'process', 'processes')} could not be read (not permitted): "
            "containers among them, and their shared memory and queues, are not listed")
    if privileged:
        return f"{what}; the kernel refuses even root here (a non-dumpable process, or another namespace)."
    return f"{what}; run as root to see them."


def _unreadable_note(places: Sequence[Place]) -> str:
    ipc = {place.ipc for place in places}
    mnt = {place.mnt for place in places}
    labels = ", ".join(sorted({place.label for place in places})[:6])
    return (f"{counted(len(mnt), 'mount namespace', 'mount namespaces')} "
            f"({counted(len(ipc), 'IPC namespace', 'IPC namespaces')}) not readable: run as root. Their /dev/shm "
            f"and mqueue mounts are not listed ({labels}).")
