"""Where a scan looks: ScanConfig, the IPCMON_* environment it defaults from, and the places it resolves to."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ipcmon.collect import procfs
from ipcmon.model import KINDS, Place

ENV_PROC = "IPCMON_PROC"
ENV_SHM_DIR = "IPCMON_SHM_DIR"
ENV_MQUEUE_DIR = "IPCMON_MQUEUE_DIR"
"""A directory to list as the mqueue mount, or ``none`` to scan as if none were mounted."""

SHM_DIR = "/dev/shm"
"""Where glibc's shm_open(3) and sem_open(3) put their files (shm_overview(7))."""


def _env_mqueue_dir() -> str | None:
    value = os.environ.get(ENV_MQUEUE_DIR, "")
    return value if value and value.lower() != "none" else None


def _env_find_mqueue() -> bool:
    return os.environ.get(ENV_MQUEUE_DIR, "").lower() != "none"


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """Where to look. The defaults are the system's, or the IPCMON_* environment variables (README.md,
    "Pointing ipcmon elsewhere"): every command and the dashboard build theirs from the defaults."""

    kinds: tuple[str, ...] = KINDS
    pids: frozenset[int] | None = None
    """Only these processes (and the objects they hold); None for every process."""
    proc: str = field(default_factory=lambda: os.environ.get(ENV_PROC) or procfs.PROC)
    shm_dir: str = field(default_factory=lambda: os.environ.get(ENV_SHM_DIR) or SHM_DIR)
    mqueue_dir: str | None = field(default_factory=_env_mqueue_dir)
    """The mqueue mount to list; None to find it in /proc/self/mountinfo (unless find_mqueue is False)."""
    find_mqueue: bool = field(default_factory=_env_find_mqueue)
    """With mqueue_dir None, look the mount up; False scans as if none were mounted (queues only via fds)."""
    pipe_fill: bool = True
    """Borrow a descriptor of each pipe to read its fill (pidfd_getfd)."""
    hide_self: bool = False
    """Leave out the scanning process itself (os.getpid() at scan time): its record, signal masks and every
    descriptor and mapping it holds, and every pipe one of whose ends it holds, so the other ends of those
    pipes are dropped too (its event-loop and inotify wake-up pipes, the pipes to the demos it started:
    ipcmon's own plumbing, not the machine's IPC). Every ipcmon command sets it unless given ``--show-self``;
    the library default shows everything, because a program that scans itself (the pytest plugin, a test)
    wants its own objects seen. A segment or queue that only ipcmon held would show as orphaned: ipcmon holds
    none across a scan. Its threads are not processes of /proc, and the forked second reader (forked.py) reads
    only pids listed before it existed, so neither appears either way."""


def find_mqueue_dir(proc: str = procfs.PROC) -> str | None:
    """Where the mqueue filesystem is mounted, from /proc/self/mountinfo; None when it is not."""
    mount = procfs.find_mount("mqueue", proc)
    return mount.mount_point if mount else None


@dataclass(frozen=True, slots=True)
class MountDir:
    """One directory a collector lists: the shm directory or a container's /dev/shm, an mqueue mount."""

    path: str
    """Where it is listed from, a path that works from the host: ``/dev/shm``, ``/proc/PID/root/dev/shm``."""
    dev: int
    """Its st_dev: every file on it has this device number, whoever sees it through which path."""
    place: Place | None = None
    """The namespace it belongs to (the first, host first, of those that share it); None when not known."""
    inner: str = ""
    """Its mount point as the processes of its namespace see it (the path their descriptors and maps show:
    ``/dev/shm``); empty for the same as path."""

    @property
    def seen_as(self) -> str:
        return self.inner or self.path


@dataclass(frozen=True, slots=True)
class Places:
    """The directories of one scan and their device numbers (st_dev); None where there is none."""

    shm_dir: str
    shm_dev: int | None
    """None when the shm directory does not exist."""
    mqueue_dir: str | None
    """The mqueue mount to list: the configured one, else the one found in mountinfo; None when neither."""
    mqueue_dev: int | None
    shm_dirs: tuple[MountDir, ...] = ()
    """Every shm tmpfs to list, the shm directory first, then each other mount namespace's /dev/shm of its own
    (collect/namespaces.py); empty before namespaces are discovered (then the shm directory alone)."""
    mqueue_dirs: tuple[MountDir, ...] = ()
    """Every mqueue mount to list, the host's first, then each distinct one of another mount namespace."""

    def shm_mounts(self) -> tuple[MountDir, ...]:
        """shm_dirs, or the shm directory alone when namespaces were not discovered; () when it does not exist."""
        if self.shm_dirs:
            return self.shm_dirs
        return () if self.shm_dev is None else (MountDir(self.shm_dir, self.shm_dev),)

    def mqueue_mounts(self) -> tuple[MountDir, ...]:
        """mqueue_dirs, or the mqueue directory alone when namespaces were not discovered; () when there is none."""
        if self.mqueue_dirs:
            return self.mqueue_dirs
        if self.mqueue_dir is None or self.mqueue_dev is None:
            return ()
        return (MountDir(self.mqueue_dir, self.mqueue_dev),)


def locate(config: ScanConfig) -> Places:
    """Resolve the configured directories once per scan (a stat each, and mountinfo when asked)."""
    try:
        shm_dev: int | None = os.stat(config.shm_dir).st_dev
    except OSError:
        shm_dev = None
    mqueue_dir = config.mqueue_dir
    if mqueue_dir is None and config.find_mqueue:
        mqueue_dir = find_mqueue_dir(config.proc)
    mqueue_dev: int | None = None
    if mqueue_dir is not None:
        try:
            mqueue_dev = os.stat(mqueue_dir).st_dev
        except OSError:
            mqueue_dir = None
    return Places(config.shm_dir, shm_dev, mqueue_dir, mqueue_dev)
