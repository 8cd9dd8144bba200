"""POSIX message queues: the mounted mqueue filesystem joined with holders' descriptors.

Counts come from mq_getattr(3) on a read-only, non-blocking descriptor and the QSIZE/NOTIFY text
from pread(2) at offset 0: neither receives a message, and pread leaves the file offset alone. Reading
the text does update the queue file's atime and ctime (ipc/mqueue.c mqueue_read_file); nothing else
about the queue changes. Queues the scanning process holds itself are read through its own descriptor,
so a notification it registered survives (own_descriptors).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ipcmon.collect import procfs
from ipcmon.collect.collector import Collector, ScanInputs, held_by
from ipcmon.collect.config import MountDir, Places, ScanConfig
from ipcmon.collect.fds import FdRef, comm_of, refresh
from ipcmon.collect.procfs import PidFds
from ipcmon.collect.recall import Recall
from ipcmon.collect.shm import fd_holders, nspid_of
from ipcmon.model import MessageQueue, Place, Process

MOUNT_MQUEUE_HINT = "mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue"


class _MqAttr(ctypes.Structure):
    _fields_ = [
        ("mq_flags", ctypes.c_long),
        ("mq_maxmsg", ctypes.c_long),
        ("mq_msgsize", ctypes.c_long),
        ("mq_curmsgs", ctypes.c_long),
        ("_reserved", ctypes.c_long * 4),
    ]


@dataclass(frozen=True, slots=True)
class QueueState:
    """What a queue descriptor tells: the counts from mq_getattr and the text of the queue file."""

    qsize_bytes: int | None
    messages: int | None
    max_messages: int | None
    message_size: int | None
    notify: int | None
    signo: int | None
    notify_pid: int | None


def parse_queue_text(data: bytes) -> dict[str, int]:
    """Parse "QSIZE:129 NOTIFY:0 SIGNO:0 NOTIFY_PID:0" into a dict."""
    result = {}
    for word in data.split():
        key, sep, value = word.partition(b":")
        if sep and value.lstrip(b"-").isdigit():
            result[key.decode()] = int(value)
    return result


def _queue_text(fd: int, *, reopen: bool) -> dict[str, int]:
    """The QSIZE/NOTIFY text of the queue behind fd; for a write-only fd, only when reopen is allowed."""
    try:
        return parse_queue_text(os.pread(fd, 256, 0))
    except OSError as error:
        if error.errno != errno.EBADF or not reopen:
            return {}
    # A write-only descriptor (a sender's, borrowed) cannot be read: open the same queue read-only through
    # its magic link. A plain open neither receives nor registers anything on the queue.
    try:
        readable = os.open(f"{procfs.PROC}/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        return parse_queue_text(os.pread(readable, 256, 0))
    except OSError:
        return {}
    finally:
        os.close(readable)


def read_queue_fd(fd: int, *, reopen: bool = True) -> QueueState:
    """Read a queue's state from a descriptor already open on it; never receives a message.

    With reopen=False nothing is opened or closed (see own_descriptors), so a write-only fd leaves
    QSIZE and the notification unknown.
    """
    attr = _MqAttr()
    libc = procfs.libc()
    ok = libc.mq_getattr(fd, ctypes.byref(attr)) == 0
    text = _queue_text(fd, reopen=reopen)
    notify_pid = text.get("NOTIFY_PID") or None
    return QueueState(
        qsize_bytes=text.get("QSIZE"),
        messages=attr.mq_curmsgs if ok else None,
        max_messages=attr.mq_maxmsg if ok else None,
        message_size=attr.mq_msgsize if ok else None,
        notify=text.get("NOTIFY") if notify_pid else None,
        signo=text.get("SIGNO") if notify_pid else None,
        notify_pid=notify_pid,
    )


_UNKNOWN = QueueState(None, None, None, None, None, None, None)


def read_queue_path(path: str) -> QueueState:
    """Open the queue file read-only and non-blocking to read its state; unknown when refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return _UNKNOWN
    try:
        return read_queue_fd(fd)
    finally:
        os.close(fd)


def read_queue_borrowed(pid: int, fd: int, pidfds: PidFds, identity: tuple[int, int] | None = None) -> QueueState:
    """Read a queue's state through a holder's descriptor (pidfd_getfd), when there is no path to open.

    identity (dev, inode) makes sure the descriptor is still that queue."""
    borrowed = pidfds.borrow(pid, fd, identity)
    if borrowed is None:
        return _UNKNOWN
    try:
        return read_queue_fd(borrowed)
    finally:
        os.close(borrowed)


def own_descriptors(skip: Collection[str] = ()) -> dict[tuple[int, int], int]:
    """This process's own descriptors by (dev, inode), a readable one where there are several; not those named in
    skip (as /proc/self/fd names them: the /proc files a Scanner keeps open, ScanInputs.kept_fds).

    A process that registered mq_notify(3) loses the registration as soon as it closes *any* descriptor
    of that queue (ipc/mqueue.c, mqueue_flush_file), so a scan running inside such a process (the pytest
    plugin, a library user) must read the queue through a descriptor the process already has, and never
    open and close one of its own. The owner always still holds one: closing its last would have dropped
    the registration. Other processes' registrations are safe from our closes.
    """
    own: dict[tuple[int, int], int] = {}
    try:
        names = os.listdir(f"{procfs.PROC}/self/fd")
    except OSError:
        return own
    for name in names:
        if skip and name in skip:
            continue
        fd = int(name)
        try:
            st = os.fstat(fd)
        except OSError:
            continue  # the listing's own descriptor, already closed
        identity = (st.st_dev, st.st_ino)
        first = own.get(identity)
        # The open mode is asked only of a file open more than once (a Scanner keeps hundreds of /proc files open).
        if first is None or (not _readable(first) and _readable(fd)):
            own[identity] = fd
    return own


def _readable(fd: int) -> bool:
    try:
        return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_WRONLY
    except OSError:
        return False


def collect(
    mqueue_dir: str | Sequence[MountDir] | None,
    processes: Mapping[int, Process],
    fds: Iterable[FdRef],
    pidfds: PidFds,
    proc: str = procfs.PROC,
    recall: Recall[MessageQueue] | None = None,
    kept_fds: Collection[str] = (),
) -> tuple[MessageQueue, ...]:
    """Every queue in the mounted filesystem (or each of several) with its holders, plus queues seen only through
    fds.

    mqueue_dir is the mqueue mount, or every one to list (Places.mqueue_mounts: the host's first, then each other
    IPC namespace's, reached as ``/proc/PID/root/dev/mqueue``, issue 15). A queue's place is that of the mount
    whose device it is on; one seen only through descriptors, on no listed mount (an IPC namespace that mounted
    none), takes the place of its first holder's process.

    With recall (a Scanner's), a queue read exactly as in the previous scan (its file, its state, its holders and
    their names) is the previous scan's record: every queue is still read, as anyone may send to it or receive
    from it by its name."""
    mounts = _mounts(mqueue_dir)
    by_dev = {mount.dev: mount for mount in reversed(mounts)}
    # A configured directory that is no mqueue filesystem (IPCMON_MQUEUE_DIR): names are stripped of its path as
    # before, whatever device a held queue is on.
    fallback = mounts[0] if mounts and procfs.fs_type(mounts[0].path) != procfs.MQUEUE_MAGIC else None
    fds_by_id: dict[tuple[int, int], list[FdRef]] = defaultdict(list)
    for ref in fds:
        if ref.kind == "mqueue":
            fds_by_id[(ref.dev, ref.inode)].append(ref)

    own = own_descriptors(kept_fds)
    queues = []
    listed: set[tuple[int, int]] = set()
    for mount in mounts:
        try:
            names = os.listdir(mount.path)
        except OSError:
            names = []
        for file_name in names:
            path = os.path.join(mount.path, file_name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # a queue is a regular file; a directory or FIFO in a listed plain directory is not one
            if mount is not mounts[0] and st.st_dev != mount.dev:
                break  # a container's path, swapped since it was found (see shm.collect): not its queues
            identity = (st.st_dev, st.st_ino)
            listed.add(identity)
            state = read_queue_fd(own[identity], reopen=False) if identity in own else read_queue_path(path)
            refs = fds_by_id.get(identity, [])
            inputs: tuple[object, ...] | None = None
            if recall is not None:
                inputs = ("/" + file_name, path, st.st_uid, st.st_gid, st.st_mode, st.st_mtime, state, mount.place,
                          _holders_as_read(refs, processes))
                queue = recall.get(identity, inputs)
                if queue is not None:
                    queues.append(recall.keep(identity, inputs, queue))
                    continue
            queue = _queue("/" + file_name, path, st, identity, state, refs, processes, deleted=False,
                           place=mount.place)
            queues.append(queue if recall is None else recall.keep(identity, inputs, queue))

    for identity in fds_by_id.keys() - listed:
        refs = [refresh(ref, proc) for ref in fds_by_id[identity]]
        first = refs[0]
        if identity in own:
            state = read_queue_fd(own[identity], reopen=False)
        else:
            state = read_queue_borrowed(first.pid, first.fd, pidfds, identity)
        name: str = first.path or "?"
        holder = processes.get(first.pid)
        holder_place = holder.place if holder is not None else None
        on = by_dev.get(identity[0])
        if on is None and (holder_place is None or holder_place.host):
            on = fallback  # another namespace's queue is never taken for one in the configured directory
        # The link of a queue descriptor reads "/name" (relative to the mqueue root) or a mounted path.
        for prefix in {on.path, on.seen_as} if on is not None else ():
            if name.startswith(prefix.rstrip("/") + "/"):
                name = name[len(prefix.rstrip("/")) :]
                break
        deleted = any(ref.deleted for ref in refs)
        held_path = None if deleted or on is None else os.path.join(on.path, name.lstrip("/"))
        place = on.place if on is not None and on is not fallback else None
        if place is None:
            place = holder_place
        inputs = None
        if recall is not None:
            inputs = (name, held_path, first.uid, first.gid, first.mode, deleted, state, place,
                      _holders_as_read(refs, processes))
            queue = recall.get(identity, inputs)
            if queue is not None:
                queues.append(recall.keep(identity, inputs, queue))
                continue
        queue = _queue(name, held_path, None, identity, state, refs, processes, deleted=deleted, owner_ref=first,
                       place=place)
        queues.append(queue if recall is None else recall.keep(identity, inputs, queue))
    queues.sort(key=lambda queue: (queue.name, queue.inode, queue.dev))
    return tuple(queues) if recall is None else recall.result(queues)


def _holders_as_read(refs: list[FdRef], processes: Mapping[int, Process]) -> tuple[object, ...]:
    """What a queue's holders come from: each descriptor, and the name and inner pid of its process."""
    return (*refs, *((comm_of(processes, ref.pid), nspid_of(processes, ref.pid)) for ref in refs))


def _mounts(mqueue_dir: str | Sequence[MountDir] | None) -> tuple[MountDir, ...]:
    if mqueue_dir is None:
        return ()
    if not isinstance(mqueue_dir, str):
        return tuple(mqueue_dir)
    try:
        return (MountDir(mqueue_dir, os.stat(mqueue_dir).st_dev),)
    except OSError:
        return (MountDir(mqueue_dir, -1),)  # listed as before (nothing), and names stripped of it


def _queue(
    name: str,
    path: str | None,
    st: os.stat_result | None,
    identity: tuple[int, int],
    state: QueueState,
    refs: list[FdRef],
    processes: Mapping[int, Process],
    *,
    deleted: bool,
    owner_ref: FdRef | None = None,
    place: Place | None = None,
) -> MessageQueue:
    uid = st.st_uid if st else owner_ref.uid if owner_ref else None
    gid = st.st_gid if st else owner_ref.gid if owner_ref else None
    mode = stat.S_IMODE(st.st_mode) if st else stat.S_IMODE(owner_ref.mode) if owner_ref else None
    holders = fd_holders(refs, processes)
    holders.sort(key=lambda holder: (holder.pid, holder.fd or 0))
    return MessageQueue(
        name=name,
        path=path,
        qsize_bytes=state.qsize_bytes,
        messages=state.messages,
        max_messages=state.max_messages,
        message_size=state.message_size,
        notify=state.notify,
        signo=state.signo,
        notify_pid=state.notify_pid,
        uid=uid,
        gid=gid,
        owner=procfs.user_name(uid) if uid is not None else None,
        mode=mode,
        dev=identity[0],
        inode=identity[1],
        holders=tuple(holders),
        deleted=deleted,
        mtime=st.st_mtime if st else None,
        place=place,
    )


def _notes(config: ScanConfig, places: Places) -> list[str]:
    if places.mqueue_dir is not None:
        return []
    return [
        "No mqueue filesystem is mounted: only queues some process holds open are listed. "
        f"To see all of them, mount it (as root): {MOUNT_MQUEUE_HINT}"
    ]


def _build(inputs: ScanInputs) -> tuple[MessageQueue, ...]:
    return collect(inputs.places.mqueue_mounts(), inputs.processes, inputs.fds, inputs.pidfds, inputs.config.proc,
                   recall=inputs.recall("mqueues"), kept_fds=inputs.kept_fds)


def _restrict(queues: tuple[MessageQueue, ...], wanted: Collection[int]) -> tuple[MessageQueue, ...]:
    return tuple(queue for queue in queues if held_by(queue.holders, wanted))


COLLECTOR = Collector(
    kind="mqueue", snapshot_field="mqueues", needs=frozenset({"fds"}), build=_build, notes=_notes, restrict=_restrict
)
