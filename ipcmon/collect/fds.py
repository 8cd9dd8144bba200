"""Per-process descriptor and mapping tables, reduced to the entries that are IPC objects.

One pass over /proc/PID/fd and /proc/PID/maps feeds every mechanism: a descriptor is classified once
(pipe, FIFO, shm object, message queue, memfd or anonymous shared region) and everything else is dropped
as early as possible, because on a busy machine almost every descriptor is a socket or a regular file.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Collection, Iterable, Mapping
from typing import Literal, NamedTuple

from ipcmon.collect import procfs
from ipcmon.model import Access, Process

FdKind = Literal["pipe", "fifo", "shm", "mqueue", "memfd", "anon"]

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


class FdRef(NamedTuple):
    """One descriptor on an IPC object (a NamedTuple: thousands are made per scan, and tuples are cheap)."""

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


MEMFD_PREFIX = "/memfd:"
"""How a memfd_create(2) file's path reads in fd links and maps: ``/memfd:NAME (deleted)``."""
ANON_PATH = "/dev/zero"
"""How a MAP_SHARED|MAP_ANONYMOUS region's file reads in maps: ``/dev/zero (deleted)`` (mm/shmem.c
shmem_zero_setup names it so)."""


@functools.cache
def internal_shm_dev() -> int | None:
    """The device number of the kernel's internal shm mount (mm/shmem.c shm_mnt), where memfd files,
    shared anonymous mappings and SysV segments live; None when memfd_create(2) is refused.

    Learned from a memfd of our own, closed at once: the mount is the same for every process, and no other
    file has this device, so a file merely named ``/dev/zero (deleted)`` elsewhere is never taken for one.
    """
    try:
        fd = os.memfd_create("ipcmon-probe", os.MFD_CLOEXEC)
    except (OSError, AttributeError):
        return None
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


def region_kind(dev: int, path: str, region_dev: int | None) -> FdKind | None:
    """"memfd" or "anon" for a file of the internal shm mount with such a path (without " (deleted)"),
    None for anything else: SysV segments (``/SYSV…``) on the same mount stay the sysv collector's."""
    if dev != region_dev:
        return None
    if path.startswith(MEMFD_PREFIX):
        return "memfd"
    if path == ANON_PATH:
        return "anon"
    return None


class Devices:
    """Which device numbers are the shm tmpfs mounts (the shm directory's and each container's /dev/shm), the
    mqueue filesystems, pipefs and the kernel's internal shm mount (memfd and anonymous shared regions), for one
    scan.

    Message queues are recognised by their filesystem (statfs f_type), not by the shape of the link,
    so a queue is found even when no mqueue filesystem is mounted anywhere.
    """

    def __init__(
        self, shm_dev: int | None, mqueue_dev: int | None, *, shm_devs: Iterable[int] = (),
        mqueue_devs: Iterable[int] = (),
    ) -> None:
        self.shm_dev = shm_dev
        """The shm directory's device (the host's)."""
        self.shm_devs = frozenset(shm_devs) | ({shm_dev} if shm_dev is not None else set())
        """Every shm tmpfs of the scan: the shm directory's and each container's /dev/shm (issue 15)."""
        self.region_dev = internal_shm_dev()
        self._mqueue: dict[int, bool] = {}
        for dev in mqueue_devs:
            self._mqueue[dev] = True
        if mqueue_dev is not None:
            self._mqueue[mqueue_dev] = True
        for dev in self.shm_devs:
            self._mqueue[dev] = False
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


def read_fds(pid: int, devices: Devices, proc: str = procfs.PROC, skip: Collection[str] = ()) -> list[FdRef]:
    """The IPC descriptors of one process; raises Gone or Denied for the whole process. skip: descriptor numbers
    (as /proc/PID/fd names them) not to look at (a Scanner reading its own process: the /proc files it keeps).

    This is the hot loop of a scan (one readlink per descriptor on the machine), so it does as little as
    it can per descriptor: sockets and anon inodes are dropped on the first character of their link, and
    only IPC descriptors pay for an lstat (their open mode) and a stat (identity and size).
    """
    base = f"{proc}/{pid}/fd/"
    try:
        names = os.listdir(base)
    except OSError as error:
        raise procfs.translate(error) from None
    readlink, lstat = os.readlink, os.lstat
    refs = []
    for name in names:
        if skip and name in skip:
            continue
        link = base + name
        try:
            target = readlink(link)
            first = target[:1]
            if first == "p" and target.startswith("pipe:["):
                pipefs_dev = devices.pipefs_dev
                if pipefs_dev is None:
                    pipefs_dev = devices.pipefs_dev = os.stat(link).st_dev
                mode = lstat(link).st_mode
                refs.append(
                    FdRef(pid, int(name), "pipe", pipefs_dev, int(target[6:-1]),
                          _ACCESS_BY_MODE[((mode >> 8) & 1) | ((mode >> 6) & 2)], None, False)
                )
                continue
            if first != "/" or target.startswith("/proc/"):
                # socket:[…], anon_inode:…, and other non-path descriptors; /proc files, which a monitor keeps open
                # by the thousand (ipcmon's own, procfs.OpenProcFiles: a second ipcmon reads them at every scan)
                continue
            st = os.stat(link)
            kind: FdKind
            if stat.S_ISFIFO(st.st_mode):
                kind = "fifo"
            elif not stat.S_ISREG(st.st_mode):
                # Segments, queues and memfds are regular files: a descriptor on a directory (the shm or
                # mqueue mount's root, a directory someone made in /dev/shm), a symlink (O_PATH) or a device
                # on those filesystems is no IPC object (issue 13).
                continue
            elif st.st_dev in devices.shm_devs:
                kind = "shm"
            elif st.st_dev == devices.region_dev:
                region = region_kind(st.st_dev, split_deleted(target)[0], devices.region_dev)
                if region is None:
                    continue
                kind = region
            elif devices.is_mqueue(st.st_dev, link):
                kind = "mqueue"
            else:
                continue
            path, deleted = split_deleted(target)
            refs.append(
                FdRef(pid, int(name), kind, st.st_dev, st.st_ino, access_from_link_mode(lstat(link).st_mode), path,
                      deleted or st.st_nlink == 0, st.st_size, st.st_blocks, st.st_uid, st.st_gid, st.st_mode)
            )
        except OSError as error:
            if procfs.is_denied(error) or (procfs.is_gone(error) and not os.path.exists(f"{proc}/{pid}")):
                raise procfs.translate(error) from None
            # The descriptor was closed between listdir and readlink/stat: it simply drops out.
    return refs


def comm_of(processes: Mapping[int, Process], pid: int) -> str:
    """The command name of a holder, "" when its process is not in the scan."""
    process = processes.get(pid)
    return process.comm if process is not None else ""


def refresh(ref: FdRef, proc: str = procfs.PROC) -> FdRef:
    """The descriptor with what others can change about its file read again (size, owner, mode, link
    count): a Scanner keeps descriptors from earlier scans. As it was when it is gone or names another file."""
    try:
        st = os.stat(f"{proc}/{ref.pid}/fd/{ref.fd}")
    except OSError:
        return ref
    if (st.st_dev, st.st_ino) != (ref.dev, ref.inode):
        return ref
    return ref._replace(deleted=ref.deleted or st.st_nlink == 0, size=st.st_size, blocks=st.st_blocks,
                        uid=st.st_uid, gid=st.st_gid, mode=st.st_mode)


class MapRef(NamedTuple):
    """One mapping (VMA) of a shm-backed file: a POSIX segment, a semaphore, a SysV segment, or a memfd or
    anonymous shared region (``region``)."""

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
    region: FdKind | None = None
    """"memfd" or "anon" for a region of the kernel's internal shm mount, else None."""

    @property
    def shared(self) -> bool:
        return self.prot.endswith("s")

    @property
    def size(self) -> int:
        return self.end - self.start


def holds_file(pid: int, dev: int, inode: int, proc: str = procfs.PROC) -> bool | None:
    """Whether a process has the file (dev, inode) open or mapped now: a descriptor in /proc/PID/fd or a line of
    /proc/PID/maps (proc(5)). False when the process is gone; None when the kernel refuses to show either.

    A few system calls per descriptor of one process: for re-checking the last scan's holders of one object,
    not for scanning.
    """
    try:
        fds = os.listdir(f"{proc}/{pid}/fd")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    for fd in fds:
        try:
            st = os.stat(f"{proc}/{pid}/fd/{fd}")
        except OSError:
            continue  # closed since the listing, or not a file
        if (st.st_dev, st.st_ino) == (dev, inode):
            return True
    try:
        maps = procfs.read_bytes(f"{proc}/{pid}/maps")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    needle = b" " + maps_token(dev) + b" "
    wanted = str(inode).encode()
    for line in maps.splitlines():
        if needle in line:
            fields = line.split(None, 5)
            if len(fields) >= 5 and fields[4] == wanted:
                return True
    return False


def maps_token(dev: int) -> bytes:
    """How /proc/PID/maps prints a device number ("%02x:%02x" of major and minor)."""
    return b"%02x:%02x" % (os.major(dev), os.minor(dev))


_SYSV_MARK = b" /SYSV"


def parse_maps(
    pid: int, data: bytes, shm_token: bytes | Iterable[bytes] | None, region_token: bytes | None = None
) -> list[MapRef]:
    """Pick the shm, SysV and (with region_token, the internal shm mount's device) memfd and anonymous
    shared mappings out of the text of /proc/PID/maps.

    shm_token is the shm tmpfs's device as maps prints it (maps_token), or several: the host's and each
    container's /dev/shm (issue 15). Only the lines holding one of those device numbers or a /SYSV path are
    looked at, found with bytes.find: a large process has thousands of mappings and almost none of them are
    shared memory.
    """
    refs: list[MapRef] = []
    shm_tokens = () if shm_token is None else (shm_token,) if isinstance(shm_token, bytes) else tuple(shm_token)
    needles = [b" " + token + b" " for token in shm_tokens]
    region_needle = None if region_token is None else b" " + region_token + b" "
    if region_needle is not None:
        needles.append(region_needle)
    needles.append(_SYSV_MARK)
    for needle in needles:
        position = data.find(needle)
        while position != -1:
            line_start = data.rfind(b"\n", 0, position) + 1
            line_end = data.find(b"\n", position)
            if line_end == -1:
                line_end = len(data)
            ref = _map_line(pid, data[line_start:line_end], shm_tokens, region_token)
            # Each line once, found by its own needle: a SysV line also holds the region device.
            if ref is not None and (needle is _SYSV_MARK) == ref.sysv and (
                ref.sysv or (ref.region is not None) == (needle is region_needle)
            ):
                refs.append(ref)
            position = data.find(needle, line_end)
    return refs


def _map_line(pid: int, line: bytes, shm_tokens: tuple[bytes, ...], region_token: bytes | None) -> MapRef | None:
    fields = line.split(None, 5)
    if len(fields) < 6:
        return None
    address, perms, _offset, device, inode, raw_path = fields
    path, deleted = split_deleted(os.fsdecode(raw_path))
    on_shm = device in shm_tokens
    is_sysv = not on_shm and path.startswith("/SYSV")
    region: FdKind | None = None
    if not on_shm and not is_sysv:
        if device != region_token:
            return None
        region = "memfd" if path.startswith(MEMFD_PREFIX) else "anon" if path == ANON_PATH else None
        if region is None:
            return None
    start, _, end = address.partition(b"-")
    major, _, minor = device.partition(b":")
    return MapRef(pid, int(start, 16), int(end, 16), perms.decode(), os.makedev(int(major, 16), int(minor, 16)),
                  int(inode), path, deleted, is_sysv, region)


def read_maps(
    pid: int, shm_token: bytes | Iterable[bytes] | None, proc: str = procfs.PROC, region_token: bytes | None = None
) -> list[MapRef]:
    """The shm, SysV and (with region_token) memfd and anonymous shared mappings of one process; raises Gone
    or Denied."""
    return parse_maps(pid, procfs.read_bytes(f"{proc}/{pid}/maps"), shm_token, region_token)
