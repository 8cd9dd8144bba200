"""Leak hunting: objects nobody holds any more, memory pinned by unlinked segments, and whether one may go.

Analysis only: ipcmon.actions.remove_orphans does the removal, asking a :class:`Recheck` about each object
right before it unlinks it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ipcmon import health
from ipcmon.collect.procfs import user_name
from ipcmon.model import Holder, Mechanism, Place, Snapshot, file_key

# Who usually makes objects with these names: the best hint when nobody holds them any more. Each entry names
# the kinds it is for: a semaphore is named as sem_open(3) was given it (``/mp-…``, the file ``sem.mp-…``).
KNOWN_PREFIXES: tuple[tuple[frozenset[Mechanism], str, str], ...] = (
    (frozenset({"shm"}), "/psm_", "Python multiprocessing.shared_memory"),
    (frozenset({"sem"}), "/mp-", "Python multiprocessing semaphore"),
    (frozenset({"shm"}), "/torch_", "PyTorch shared tensors"),
    (frozenset({"shm"}), "/ray_", "Ray object store"),
    (frozenset({"shm", "sem"}), "/vllm", "vLLM worker"),
    (frozenset({"shm"}), "/nccl", "NCCL"),
    (frozenset({"shm"}), "/pulse-shm-", "PulseAudio"),
    (frozenset({"shm", "sem", "mqueue"}), "/ipcmon-demo-", "ipcmon demo"),
    (frozenset({"shm", "sem", "mqueue"}), "/ipcmon-test-", "ipcmon tests"),
)

CLEAN_MIN_AGE = 10.0
"""`clean`'s default ``--min-age`` (seconds): an object its creator made a moment ago, and has not opened yet
(shm_open then mmap, mq_open then a fork), looks orphaned for that moment."""

CLEAN_CANNOT = "clean cannot free it: each holder must close it (and unmap it) or exit"
"""Why a deleted-but-held segment is not clean's to remove: it has no name left to unlink (shm_unlink(3))."""


@dataclass(frozen=True, slots=True)
class SysvIdentity:
    """What tells a SysV segment from a later one that got the same id: checked again right before IPC_RMID."""

    shmid: int
    ipc_key: int
    ctime: int
    """shm_ctime (seconds): set at creation and by IPC_SET, so a recreated or changed segment differs."""
    ipc: int | None = None
    """Inode of its IPC namespace when that is not ipcmon's own (ids are per namespace: the removal enters it);
    None for ipcmon's own."""


@dataclass(frozen=True, slots=True)
class Leak:
    """One object worth a look: orphaned (held by nobody) or deleted but still pinning memory."""

    mechanism: Mechanism
    """``shm``, ``sem``, ``mqueue`` or ``sysv-shm`` (memfd and anonymous regions are never leaks)."""
    problem: str
    """``orphaned`` (no holder, still linked) or ``deleted-but-held`` (unlinked, memory still pinned)."""
    name: str
    """The POSIX name (``/foo``; a semaphore's as sem_open(3) was given it, the file being ``sem.foo``), or a
    SysV segment's ``key 0x… id N``."""
    path: str | None
    """The file to unlink, for a linked POSIX object; None otherwise."""
    key: str
    size: int | None
    """Bytes: the segment's or semaphore's size (st_size, shm_segsz); None for a queue."""
    allocated: int | None
    """Bytes of memory it takes: allocated pages (st_blocks × 512) of a POSIX segment or semaphore, which a
    deleted one pins; resident bytes (rss) of a SysV segment; None for a queue or when unknown."""
    queued: int | None
    """Bytes in a queue's messages (QSIZE); None for memory, or when the queue could not be asked."""
    age: float | None
    """Seconds since it last changed, None when unknown: the mtime of an orphaned POSIX object (a queue's is its
    last send or receive); for a deleted-but-held segment, its ctime read through a holder's descriptor, which
    unlink(2) set, so the time since it was deleted; for a SysV segment, since its last detach or change."""
    owner: str | None
    hint: str
    """Who made it (by its name), its owner, who held it last; for a deleted one, its holders and why clean
    cannot free it."""
    holders: tuple[Holder, ...] = ()
    refusal: str | None = None
    """Why `clean` would not remove it for this user (held, not permitted); None when it would."""
    sysv: SysvIdentity | None = None
    """A SysV segment's identity, checked again right before IPC_RMID; None for a POSIX object."""
    place: Place | None = None
    """The namespace it is in (its record's place, issue 15); None when not known, or ipcmon's own."""

    @property
    def removable(self) -> bool:
        """Whether `clean` may remove it, as this user: an orphan (POSIX, or a SysV segment with nattch 0) that
        the caller is permitted to unlink or IPC_RMID. A deleted-but-held segment never is."""
        return self.refusal is None


def prefix_hint(name: str, mechanism: Mechanism) -> str:
    for kinds, prefix, who in KNOWN_PREFIXES:
        if mechanism in kinds and name.startswith(prefix):
            return who
    return ""


def _hint(*parts: str | None) -> str:
    return "; ".join(part for part in parts if part)


def held_by(holders: Iterable[Holder]) -> str:
    """``held by 1234 comm fd 3, 1240 other map`` (by pid, each descriptor and mapping once); '' for none."""
    seen: list[str] = []
    for holder in sorted(holders, key=lambda holder: (holder.pid, holder.fd is None, holder.fd or 0)):
        how = f"fd {holder.fd}" if holder.fd is not None else "map"
        text = f"{holder.pid} {holder.comm} {how}"
        if text not in seen:
            seen.append(text)
    return "held by " + ", ".join(seen) if seen else ""


def find_leaks(
    snapshot: Snapshot,
    *,
    min_age: float = 0.0,
    last_holders: Mapping[str, str] | None = None,
) -> list[Leak]:
    """Leaks in a snapshot, oldest first, each with whether this user may remove it (``refusal``).

    last_holders maps an object key to "last held by PID CMD". An object whose age is unknown is left out
    when min_age is above 0 (unknown is not "old").
    """
    now = snapshot.taken_at
    last = last_holders or {}
    leaks = []
    for segment in snapshot.shm:
        owner = f"owner {segment.owner}" if segment.owner else ""
        who = prefix_hint(segment.name, segment.kind)
        if segment.state == "orphaned":
            age = None if segment.mtime is None else now - segment.mtime
            leaks.append(Leak(segment.kind, "orphaned", segment.name, segment.path, segment.object_key,
                              segment.size, segment.allocated, None, age, segment.owner,
                              _hint(who, owner, last.get(segment.object_key)),
                              refusal=unlink_refusal(segment.path), place=segment.place))
        elif segment.state == "deleted" and segment.pinned_bytes != 0:  # pinning nothing is no leak (health)
            age = None if segment.ctime is None else now - segment.ctime
            holders = held_by(segment.holders)
            leaks.append(Leak(segment.kind, "deleted-but-held", segment.name, None, segment.object_key,
                              segment.size, segment.pinned_bytes, None, age, segment.owner,
                              _hint(holders, CLEAN_CANNOT, who, owner), segment.holders,
                              refusal=f"deleted but still {holders or 'held'}: {CLEAN_CANNOT}", place=segment.place))
    for queue in snapshot.mqueues:
        if not health.queue_orphaned(queue):
            continue
        age = None if queue.mtime is None else now - queue.mtime
        leaks.append(Leak("mqueue", "orphaned", queue.name, queue.path, queue.object_key, None, None,
                          queue.qsize_bytes, age, queue.owner,
                          _hint(prefix_hint(queue.name, "mqueue"), f"owner {queue.owner}" if queue.owner else "",
                                last.get(queue.object_key)),
                          refusal=unlink_refusal(queue.path) if queue.path else "no mqueue mount to unlink it from",
                          place=queue.place))
    for sysv_segment in snapshot.sysv.shm:
        if health.sysv_shm_orphaned(sysv_segment):
            changed = max(sysv_segment.dtime, sysv_segment.ctime)
            leaks.append(Leak("sysv-shm", "orphaned", sysv_segment.label, None, sysv_segment.object_key,
                              sysv_segment.size, sysv_segment.rss, None, now - changed if changed else None,
                              sysv_segment.owner,
                              f"created by pid {sysv_segment.cpid}, "
                              + (f"last used by pid {sysv_segment.lpid}" if sysv_segment.lpid else "never attached"),
                              refusal=ipc_rmid_refusal(sysv_segment.uid, sysv_segment.cuid),
                              sysv=SysvIdentity(sysv_segment.id, sysv_segment.key, sysv_segment.ctime,
                                                _foreign_ipc(sysv_segment.place)),
                              place=sysv_segment.place))
    if min_age > 0:
        leaks = [leak for leak in leaks if leak.age is not None and leak.age >= min_age]  # unknown is not "old"
    leaks.sort(key=lambda leak: -(leak.age or 0))
    return leaks


def _foreign_ipc(place: Place | None) -> int | None:
    """The IPC namespace inode of a place that is not ipcmon's own; None for ipcmon's own or an unknown one."""
    return None if place is None or place.host else place.ipc


def spellings(mechanism: str, name: str) -> tuple[str, ...]:
    """The ways a person may write an object's name in ``--match``: with or without the leading slash, and, for
    a semaphore, its file name as ``ls /dev/shm`` prints it (``/foo`` → ``/foo``, ``foo``, ``sem.foo``,
    ``/sem.foo``, and ``sem:/foo`` as the pytest plugin names it; a queue ``mqueue:/q`` likewise). A SysV segment is
    matched by its label (``key 0x0000abcd id 5``), its key alone (``0x0000abcd``) and its shmid alone (``5``), as
    ``ipcs`` prints them."""
    if mechanism.startswith("sysv-"):
        _, key, _, ident = [*name.split(), "", "", "", ""][:4]
        return tuple(spelling for spelling in (name, key, ident) if spelling)
    bare = name.removeprefix("/")
    if mechanism == "sem":
        return (name, bare, "sem." + bare, "/sem." + bare, "sem:" + name)
    if mechanism == "mqueue":
        return (name, bare, "mqueue:" + name)
    return (name, bare)


def matches(mechanism: str, name: str, pattern: str) -> bool:
    """Whether a shell glob (``/psm_*``, ``psm_*``, ``sem.mp-*``) matches any spelling of an object's name."""
    return any(fnmatch.fnmatchcase(spelling, pattern) for spelling in spellings(mechanism, name))


def matching(leaks: Iterable[Leak], pattern: str | None) -> list[Leak]:
    """Leaks whose name matches a shell glob in any of its spellings (:func:`spellings`); all when pattern is None."""
    if pattern is None:
        return list(leaks)
    return [leak for leak in leaks if matches(leak.mechanism, leak.name, pattern)]


def count_matching(snapshot: Snapshot, pattern: str) -> int:
    """How many objects `leaks` looks at (POSIX segments, semaphores and queues, SysV segments), leaks or not,
    match the glob: 0 means the glob names nothing, which is not the same as nothing leaking."""
    named = [
        *((segment.kind, segment.name) for segment in snapshot.shm),
        *(("mqueue", queue.name) for queue in snapshot.mqueues),
        *(("sysv-shm", segment.label) for segment in snapshot.sysv.shm),
    ]
    return sum(matches(mechanism, name, pattern) for mechanism, name in named)


def unlink_refusal(path: str) -> str | None:
    """Why this process would not be allowed to unlink path, said before trying; None when it may.

    /dev/shm and /dev/mqueue are sticky (mode 1777): only the file's owner (or root) may remove a file.
    """
    if os.geteuid() == 0:
        return None
    directory = os.path.dirname(path) or "."
    try:
        st = os.stat(path)
        directory_st = os.stat(directory)
    except OSError:
        return None  # gone: the removal will say so
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"not permitted: you cannot write to {directory} (run as root)"
    if directory_st.st_mode & stat.S_ISVTX and os.geteuid() not in (st.st_uid, directory_st.st_uid):
        owner = user_name(st.st_uid) or str(st.st_uid)
        return f"not permitted: it belongs to {owner}, and only its owner or root may remove it (run as root)"
    return None


CAP_SYS_ADMIN = 21
"""capabilities(7): the capability that lets shmctl(2) IPC_RMID remove anyone's segment."""


def has_capability(number: int, status: str = "/proc/self/status") -> bool:
    """Whether this process has a capability in its effective set (the CapEff mask of /proc/self/status)."""
    try:
        with open(status, "rb") as file:
            for line in file:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> number & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def ipc_rmid_refusal(uid: int, cuid: int | None) -> str | None:
    """Why this process may not remove a SysV segment with shmctl(2) IPC_RMID, said before trying; None when it may.

    shmctl(2): the caller's effective uid must be the segment's owner (uid) or creator (cuid), or it must have
    CAP_SYS_ADMIN.
    """
    if os.geteuid() in (uid, cuid) or has_capability(CAP_SYS_ADMIN):
        return None
    owner = user_name(uid) or str(uid)
    return f"not permitted: it belongs to {owner}, and only its owner, its creator or root may remove it (run as root)"


class Recheck:
    """A fresh scan of shm and mqueue, asked about each orphan listed earlier right before its removal."""

    def __init__(self, fresh: Snapshot) -> None:
        self._orphans = {leak.key for leak in find_leaks(fresh) if leak.problem == "orphaned"}
        self._holders: dict[str, tuple[Holder, ...]] = {segment.object_key: segment.holders for segment in fresh.shm}
        self._holders.update({queue.object_key: queue.holders for queue in fresh.mqueues})

    def keep_reason(self, leak: Leak) -> str | None:
        """Why the object must be kept now (not removable by name, held now, gone already); None when it is
        still an orphan that may be unlinked by name."""
        if leak.refusal is not None:
            return leak.refusal
        if leak.path is None:
            return "not removable by name"
        if leak.key in self._orphans:
            return None
        if leak.key not in self._holders:
            return "gone already"
        held = self._holders[leak.key]
        return "held now by " + ", ".join(sorted({f"{holder.pid} {holder.comm}" for holder in held}))


def same_object(leak: Leak, dev: int, inode: int) -> bool:
    """Whether the file now at the leak's path (its st_dev, st_ino) is the object that was listed."""
    return file_key(leak.mechanism, dev, inode) == leak.key


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90' or '90s' → 90; '5m' → 300; '2h', '1d', '1w'. Raises ValueError."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 2h, 1d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
