"""fanotify(7) through ctypes: which process created, opened, closed or removed a file on a filesystem (issue 16).

There is no well-kept Python binding (pyfanotify is a single-maintainer C extension shipped as source), so this is
the small part of the API that attribution needs: fanotify_init(2) with ``FAN_REPORT_DFID_NAME | FAN_REPORT_FID``
(events name the directory and the entry, and carry no open descriptor), fanotify_mark(2) with
``FAN_MARK_FILESYSTEM`` on a shm tmpfs, and the decoding of the event records (include/uapi/linux/fanotify.h).

Every event carries the pid of the process that acted (its thread group id). Marking a whole filesystem needs
CAP_SYS_ADMIN: without it, :class:`Fanotify` raises PermissionError and the caller keeps to inotify and polling.
On the mqueue filesystem, FID marks are refused (EOPNOTSUPP): queues are attributed through tracefs instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from ipcmon.live.ready import readable

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_REPORT_FID = 0x200
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
FAN_REPORT_TARGET_FID = 0x1000
"""Linux 5.17: entry events (create, delete, moves) also carry the entry's own file handle, so a removed file's
inode is still known (:func:`tmpfs_inode`)."""

FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100

FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_CLOSE_WRITE = 0x8
FAN_CLOSE_NOWRITE = 0x10
FAN_OPEN = 0x20
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_Q_OVERFLOW = 0x4000
FAN_ONDIR = 0x40000000

LIFECYCLE = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_OPEN | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE
"""What attribution watches for: entries made, removed and renamed, and files opened and closed."""

_NAMES = {
    FAN_CREATE: "create", FAN_DELETE: "delete", FAN_MOVED_FROM: "moved-from", FAN_MOVED_TO: "moved-to",
    FAN_OPEN: "open", FAN_CLOSE_WRITE: "close-write", FAN_CLOSE_NOWRITE: "close-nowrite", FAN_MODIFY: "modify",
    FAN_ATTRIB: "attrib", FAN_Q_OVERFLOW: "overflow",
}

FAN_EVENT_INFO_TYPE_FID = 1
FAN_EVENT_INFO_TYPE_DFID_NAME = 2
FAN_EVENT_INFO_TYPE_DFID = 3

_METADATA = struct.Struct("=IBBHQii")
"""struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid (24 bytes)."""
_INFO_HEADER = struct.Struct("=BBH")
"""struct fanotify_event_info_header: info_type, pad, len."""
_FSID = struct.Struct("=ii")
_HANDLE = struct.Struct("=Ii")
"""struct file_handle: handle_bytes, handle_type, then f_handle[handle_bytes]."""
FANOTIFY_METADATA_VERSION = 3
FAN_NOFD = -1
_BUFFER = 64 * 1024


@dataclass(frozen=True, slots=True)
class FanEvent:
    """One fanotify event: what happened, who did it, and to which entry."""

    mask: int
    """The FAN_* bits of the event (several may be merged into one record)."""
    pid: int
    """The thread group id of the process that acted (0 for an overflow)."""
    name: str | None
    """The entry's name in its directory (``FAN_REPORT_NAME``), as raw bytes decoded by os.fsdecode; None when the
    record has none (an overflow). Untrusted: show it through safe.printable."""
    directory: bytes | None
    """The directory's file handle (fsid and f_handle bytes): equal handles are the same directory."""
    handle: bytes | None
    """The file's own handle (``FAN_REPORT_FID``), when the kernel gave one: for opens and closes always, for entry
    events (create, delete, moves) when the group reports target handles (``FAN_REPORT_TARGET_FID``)."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The event's bits in words: ``create``, ``delete``, ``open``, ``close-write``… (fanotify(7))."""
        return tuple(word for bit, word in _NAMES.items() if self.mask & bit)

    @property
    def overflow(self) -> bool:
        """The kernel's queue overflowed (FAN_Q_OVERFLOW): events were lost, and the state must be re-read."""
        return bool(self.mask & FAN_Q_OVERFLOW)


def fsid(handle: bytes) -> bytes:
    """The filesystem id a handle starts with (statfs(2) ``f_fsid``, 8 bytes): :func:`fsid_of` of its mount."""
    return handle[: _FSID.size]


def fsid_of(path: str) -> bytes:
    """The filesystem id of the filesystem path is on, as the handles in its events start with."""
    value = os.statvfs(path).f_fsid  # glibc folds f_fsid's two ints into one: val[0] | val[1] << 32
    return struct.pack("=II", value & 0xFFFFFFFF, value >> 32 & 0xFFFFFFFF)


_SHMEM_HANDLE = struct.Struct("=IiIII")
"""tmpfs's handle after its header (mm/shmem.c shmem_encode_fh, type 1, three words): generation, inode low and high
32 bits."""


def tmpfs_inode(handle: bytes | None) -> int | None:
    """The inode number in a tmpfs file handle (fsid, then handle_bytes 12, type 1, generation, inode low, inode
    high); None for a handle of another shape."""
    if handle is None or len(handle) != _FSID.size + _SHMEM_HANDLE.size:
        return None
    handle_bytes, handle_type, _generation, low, high = _SHMEM_HANDLE.unpack_from(handle, _FSID.size)
    if handle_bytes != 12 or handle_type != 1:
        return None
    return int(low | high << 32)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
    libc.fanotify_init.restype = ctypes.c_int
    libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    libc.fanotify_mark.restype = ctypes.c_int
    return libc


def _raise(name: str, path: str | None = None) -> None:
    code = ctypes.get_errno()
    raise OSError(code, f"{name}: {os.strerror(code)}", path)


def parse_events(data: bytes) -> list[FanEvent]:
    """Decode a read(2) of a fanotify descriptor initialised with FAN_REPORT_DFID_NAME | FAN_REPORT_FID.

    A record cut short, or of a metadata version other than 3, ends the decoding there (the rest is dropped,
    never guessed at).
    """
    events: list[FanEvent] = []
    offset = 0
    while offset + _METADATA.size <= len(data):
        event_len, version, _reserved, metadata_len, mask, _fd, pid = _METADATA.unpack_from(data, offset)
        if version != FANOTIFY_METADATA_VERSION or event_len < metadata_len or offset + event_len > len(data):
            break
        name = directory = handle = None
        info = offset + metadata_len
        end = offset + event_len
        while info + _INFO_HEADER.size <= end:
            info_type, _pad, length = _INFO_HEADER.unpack_from(data, info)
            if length < _INFO_HEADER.size or info + length > end:
                break
            body = data[info + _INFO_HEADER.size : info + length]
            if info_type in (FAN_EVENT_INFO_TYPE_FID, FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_DFID):
                fid, rest = _file_id(body)
                if info_type == FAN_EVENT_INFO_TYPE_FID:
                    handle = fid
                else:
                    directory = fid
                    if info_type == FAN_EVENT_INFO_TYPE_DFID_NAME:
                        name = os.fsdecode(rest.split(b"\0", 1)[0])
            info += length
        events.append(FanEvent(mask, pid, name, directory, handle))
        offset += event_len
    return events


def _file_id(body: bytes) -> tuple[bytes | None, bytes]:
    """(fsid + handle bytes, what follows the handle) of a FID info record's body; (None, b"") when cut short."""
    if len(body) < _FSID.size + _HANDLE.size:
        return None, b""
    handle_bytes, _handle_type = _HANDLE.unpack_from(body, _FSID.size)
    end = _FSID.size + _HANDLE.size + handle_bytes
    if end > len(body):
        return None, b""
    return body[:end], body[end:]


class Fanotify:
    """A fanotify group marking whole filesystems for LIFECYCLE events; a context manager that closes it.

    Raises PermissionError without CAP_SYS_ADMIN, OSError(ENOSYS) on a kernel without fanotify, and OSError with
    the kernel's errno when a filesystem cannot be marked (EOPNOTSUPP: no file handles, as on mqueue; EXDEV: a
    filesystem with a non-unique fsid). target: ask for the entry's own handle on entry events too
    (FAN_REPORT_TARGET_FID); a kernel older than 5.17 refuses it (EINVAL) and the group is made without it
    (``self.target`` says which).
    """

    def __init__(self, *, target: bool = False) -> None:
        self._libc = _libc()
        flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME | FAN_REPORT_FID
        fd = -1
        if target:
            fd = self._libc.fanotify_init(flags | FAN_REPORT_TARGET_FID, os.O_RDONLY | os.O_CLOEXEC)
            if fd < 0 and ctypes.get_errno() != errno.EINVAL:
                _raise("fanotify_init")
        self.target = fd >= 0
        if fd < 0:
            fd = self._libc.fanotify_init(flags, os.O_RDONLY | os.O_CLOEXEC)
        if fd < 0:
            _raise("fanotify_init")
        self.fd: int = fd
        self.marked: list[str] = []

    def mark_filesystem(self, path: str, mask: int = LIFECYCLE) -> None:
        """Watch every file and directory of the filesystem path is on (FAN_MARK_FILESYSTEM)."""
        if self._libc.fanotify_mark(self.fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask | FAN_ONDIR, -100,
                                    os.fsencode(path)) != 0:  # -100: AT_FDCWD
            _raise("fanotify_mark", path)
        self.marked.append(path)

    def read(self, timeout: float | None = 0.0) -> list[FanEvent]:
        """The events queued now, waiting up to timeout seconds for the first (None: until one comes)."""
        ready = readable([self.fd], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fd, _BUFFER)
        except BlockingIOError:
            return []
        except OSError as error:
            if error.errno == errno.EINTR:
                return []
            raise
        return parse_events(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Fanotify:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
