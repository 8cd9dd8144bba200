"""Per-process descriptor and mapping tables, reduced to the entries that are IPC objects.

One pass over /proc/PID/fd and /proc/PID/maps feeds every mechanism: a descriptor is classified once
(pipe, FIFO, shm object, message queue) and everything else is dropped as early as possible, because on
a busy machine almost every descriptor is a socket or a regular file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Literal

from ipcmon.collect import procfs
from ipcmon.collect.procfs import Denied, Gone
from ipcmon.model import Access

FdKind = Literal["pipe", "fifo", "shm", "mqueue"]

_DELETED = " (deleted)"
_ACCESS_BY_MODE: dict[int, Access] = {0: "-", 1: "r", 2: "w", 3: "rw"}


def split_deleted(target: str) -> tuple[str, bool]:
    """Strip the " (deleted)" suffix the kernel appends to an unlinked file's path."""
    if target.endswith(_DELETED):
        return target[: -len(_DELETED)], True
    return target, False


def access_from_link_mode(mode: int) -> Access:
    """The open mode of a descriptor, from the st_mode of its /proc/PID/fd/N symlink.

    The kernel gives the link S_IRUSR when the file is open for reading and S_IWUSR when open for
    writing (fs/proc/fd.c), so one lstat tells it without reading fdinfo.
    """
    return _ACCESS_BY_MODE[((mode >> 8) & 1) | (((mode >> 7) & 1) << 1)]


@dataclass(frozen=True, slots=True)
class FdRef:
    """One descriptor on an IPC object."""

    pid: int
    fd: int
    kind: FdKind
    dev: int
    inode: int
    access: Access
    path: str | None
    """The link target with " (deleted)" removed; None for anonymous pipes."""
    deleted: bool
    size: int = 0
    blocks: int = 0
    uid: int = 0
    gid: int = 0
    mode: int = 0


class Devices:
    """Which device numbers are the shm directory, the mqueue filesystem and pipefs, for one scan.

    Message queues are recognised by their filesystem (statfs f_type), not by the shape of the link,
    so a queue is found even when no mqueue filesystem is mounted anywhere.
    """

    def __init__(self, shm_dev: int | None, mqueue_dev: int | None) -> None:
        self.shm_dev = shm_dev
        self._mqueue: dict[int, bool] = {}
        if mqueue_dev is not None:
            self._mqueue[mqueue_dev] = True
        if shm_dev is not None:
            self._mqueue[shm_dev] = False
        self.pipefs_dev: int | None = None

    def is_mqueue(self, dev: int, path: str) -> bool:
        known = self._mqueue.get(dev)
        if known is None:
            known = procfs.fs_type(path) == procfs.MQUEUE_MAGIC
            self._mqueue[dev] = known
        return known

    @property
    def mqueue_devs(self) -> set[int]:
        return {dev for dev, is_mqueue in self._mqueue.items() if is_mqueue}


def read_fds(pid: int, devices: Devices, proc: str = procfs.PROC) -> list[FdRef]:
    """The IPC descriptors of one process; raises Gone or Denied for the whole process."""
    base = f"{proc}/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError as error:
        raise procfs.translate(error) from None
    refs = []
    for name in names:
        link = f"{base}/{name}"
        try:
            target = os.readlink(link)
            if target.startswith("pipe:["):
                if devices.pipefs_dev is None:
                    devices.pipefs_dev = os.stat(link).st_dev
                refs.append(
                    FdRef(
                        pid=pid,
                        fd=int(name),
                        kind="pipe",
                        dev=devices.pipefs_dev,
                        inode=int(target[6:-1]),
                        access=access_from_link_mode(os.lstat(link).st_mode),
                        path=None,
                        deleted=False,
                    )
                )
                continue
            if not target.startswith("/"):
                continue  # socket:[…], anon_inode:…, and other non-path descriptors
            st = os.stat(link)
            kind: FdKind
            if stat.S_ISFIFO(st.st_mode):
                kind = "fifo"
            elif st.st_dev == devices.shm_dev and stat.S_ISREG(st.st_mode):
                kind = "shm"
            elif devices.is_mqueue(st.st_dev, link):
                kind = "mqueue"
            else:
                continue
            path, deleted = split_deleted(target)
            refs.append(
                FdRef(
                    pid=pid,
                    fd=int(name),
                    kind=kind,
                    dev=st.st_dev,
                    inode=st.st_ino,
                    access=access_from_link_mode(os.lstat(link).st_mode),
                    path=path,
                    deleted=deleted or st.st_nlink == 0,
                    size=st.st_size,
                    blocks=st.st_blocks,
                    uid=st.st_uid,
                    gid=st.st_gid,
                    mode=st.st_mode,
                )
            )
        except OSError as error:
            failure = procfs.translate(error)
            if isinstance(failure, Denied):
                raise failure from None
            if isinstance(failure, Gone) and not os.path.exists(f"{proc}/{pid}"):
                raise failure from None
            # The descriptor was closed between listdir and readlink/stat: it simply drops out.
    return refs


@dataclass(frozen=True, slots=True)
class MapRef:
    """One mapping (VMA) of a shm-backed file: a POSIX segment, a semaphore, or a SysV segment."""

    pid: int
    start: int
    end: int
    prot: str
    """The perms column: ``rw-s``."""
    dev: int
    inode: int
    path: str
    deleted: bool
    sysv: bool

    @property
    def shared(self) -> bool:
        return self.prot.endswith("s")

    @property
    def size(self) -> int:
        return self.end - self.start


def maps_token(dev: int) -> bytes:
    """How /proc/PID/maps prints a device number ("%02x:%02x" of major and minor)."""
    return b"%02x:%02x" % (os.major(dev), os.minor(dev))


def parse_maps(pid: int, data: bytes, shm_token: bytes | None) -> list[MapRef]:
    """Pick the shm and SysV mappings out of the text of /proc/PID/maps."""
    refs = []
    for line in data.splitlines():
        is_sysv = b" /SYSV" in line
        if not is_sysv and (shm_token is None or shm_token not in line):
            continue
        fields = line.split(None, 5)
        if len(fields) < 6:
            continue
        address, perms, _offset, device, inode, raw_path = fields
        if not is_sysv and device != shm_token:
            continue
        start, _, end = address.partition(b"-")
        major, _, minor = device.partition(b":")
        path, deleted = split_deleted(os.fsdecode(raw_path.rstrip(b"\n")))
        refs.append(
            MapRef(
                pid=pid,
                start=int(start, 16),
                end=int(end, 16),
                prot=perms.decode(),
                dev=os.makedev(int(major, 16), int(minor, 16)),
                inode=int(inode),
                path=path,
                deleted=deleted,
                sysv=is_sysv and path.startswith("/SYSV"),
            )
        )
    return refs


def read_maps(pid: int, shm_token: bytes | None, proc: str = procfs.PROC) -> list[MapRef]:
    """The shm and SysV mappings of one process; raises Gone or Denied."""
    return parse_maps(pid, procfs.read_bytes(f"{proc}/{pid}/maps"), shm_token)
