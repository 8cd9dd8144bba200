"""Where an object or process lives, seen from the host: its IPC and mount namespaces and the container or systemd
unit they belong to (issue 15).

Records only, filled by ``ipcmon.collect.namespaces``. A namespace is named by the inode number of its
``/proc/PID/ns/ipc`` or ``/proc/PID/ns/mnt`` link (namespaces(7)); ``host`` means the namespaces ipcmon itself
runs in, whatever they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Runtime = Literal["docker", "podman", "containerd", "cri-o", "kubernetes", "lxc", "systemd-nspawn"]
"""The container runtime a cgroup path names (``docker-<id>.scope``, ``/docker/<id>``, ``libpod-<id>``,
``cri-containerd-<id>``, ``crio-<id>``, ``kubepods…pod<uid>``, ``lxc.payload.NAME``, ``machine-NAME.scope``)."""


@dataclass(frozen=True, slots=True)
class Container:
    """A container, as its processes' cgroup path names it (/proc/PID/cgroup, cgroups(7))."""

    id: str
    """The runtime's id as the cgroup path has it: 64 hex digits for docker, podman, containerd and cri-o; the pod's
    uid for a Kubernetes pod whose container id is not in the path; the name for lxc and systemd-nspawn. Raw: show it
    through safe.printable."""
    runtime: Runtime
    name: str | None = None
    """The runtime's name for it where one can be read without asking the runtime (docker's
    ``/var/lib/docker/containers/<id>/config.v2.json``); None when unknown. Raw (untrusted)."""
    pod: str | None = None
    """The Kubernetes pod uid when the path is under ``kubepods``; None otherwise."""

    @property
    def short_id(self) -> str:
        """The first 12 characters of the id, as ``docker ps`` shows it."""
        return self.id[:12]

    @property
    def label(self) -> str:
        """What a person calls it: its name, else its short id. Raw: show it through safe.printable."""
        return self.name or self.short_id


@dataclass(frozen=True, slots=True)
class Place:
    """The IPC namespace and mount namespace an object or process is in, and what they belong to."""

    ipc: int | None
    """Inode of /proc/PID/ns/ipc; None when it could not be read (not permitted)."""
    mnt: int | None
    """Inode of /proc/PID/ns/mnt; None when it could not be read, or for a SysV object (IPC-namespaced only)."""
    container: Container | None = None
    unit: str | None = None
    """The systemd unit of its processes (``foo.service``) when no container is named; None when none. Raw."""
    host: bool = False
    """The IPC namespace is ipcmon's own, and no container's cgroup names it (a process with a mount namespace of its
    own, such as a systemd service's PrivateTmp, is still the host's; a docker ``--ipc=host`` container is not)."""

    @property
    def label(self) -> str:
        """``host``, the container's label, the systemd unit, else ``ipc:INODE`` (``?`` when unknown). Raw."""
        if self.host:
            return "host"
        if self.container is not None:
            return self.container.label
        if self.unit:
            return self.unit
        return f"ipc:{self.ipc if self.ipc is not None else '?'}"


def names_better(place: Place | None, known: Place) -> bool:
    """Whether a member process's place names its namespace better than the one kept: a container over a unit over
    none. Members of one namespace may differ (a pod's containers share one IPC namespace; a process that entered
    with nsenter is not in the container's cgroup), and the best of them names the namespace, whichever comes
    first."""
    if place is None or known.container is not None:
        return False
    return place.container is not None or (bool(place.unit) and not known.unit)


NamespaceAccess = Literal["read", "partial", "denied"]
"""How much of a namespace ipcmon could read: all of it; some (say which in ``Namespace.note``); nothing."""


@dataclass(frozen=True, slots=True)
class Namespace:
    """One (IPC namespace, mount namespace) pair that at least one process runs in, and what was read of it."""

    place: Place
    processes: int
    """Processes seen in it (host pids)."""
    shm_dir: str | None = None
    """The path its shm tmpfs was listed through (``/proc/PID/root/dev/shm``, ``/dev/shm`` for the host); None
    when it has none of its own (the same device as another namespace's: listed once, there) or it could not be
    read."""
    shm_dev: int | None = None
    """st_dev of its /dev/shm, whether or not listed here; None when unknown."""
    mqueue_dir: str | None = None
    """The path its mqueue mount was listed through; None when it has none of its own, or none is mounted."""
    mqueue_dev: int | None = None
    sysv: bool | None = None
    """True when its SysV objects were read (entered with setns(2) in a forked reader, or ipcmon's own); False when
    they could not be (see note); None when another namespace of the same IPC namespace read them."""
    access: NamespaceAccess = "read"
    note: str = ""
    """What could not be read and why, in words (``not permitted: run as root``); empty when all was. Raw."""
