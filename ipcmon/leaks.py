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
from ipcmon.model import Holder, Mechanism, Snapshot, file_key

# Who usually makes objects with these names: the best hint when nobody holds them any more.
KNOWN_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/psm_", "Python multiprocessing.shared_memory"),
    ("/sem.mp-", "Python multiprocessing semaphore"),
    ("/torch_", "PyTorch shared tensors"),
    ("/ray_", "Ray object store"),
    ("/vllm", "vLLM worker"),
    ("/nccl", "NCCL"),
    ("/pulse-shm-", "PulseAudio"),
    ("/ipcmon-demo-", "ipcmon demo"),
    ("/ipcmon-test-", "ipcmon tests"),
    ("/sem.", "POSIX named semaphore"),
)


@dataclass(frozen=True, slots=True)
class Leak:
    """One object worth a look: orphaned (held by nobody) or deleted but still pinning memory."""

    mechanism: Mechanism
    """``shm``, ``sem``, ``mqueue`` or ``sysv-shm`` (memfd and anonymous regions are never leaks)."""
    problem: str
    """``orphaned`` (no holder, still linked) or ``deleted-but-held`` (unlinked, memory still pinned)."""
    name: str
    path: str | None
    key: str
    bytes: int | None
    """Memory it uses (allocated, or pinned for a deleted segment; queued bytes for a queue)."""
    age: float | None
    """Seconds since it last changed (mtime), None when unknown."""
    owner: str | None
    hint: str
    holders: tuple[Holder, ...] = ()

    @property
    def removable(self) -> bool:
        """Only orphaned POSIX objects can be unlinked by name; the rest need their holders to exit."""
        return self.problem == "orphaned" and self.mechanism in ("shm", "sem", "mqueue")


def prefix_hint(name: str) -> str:
    for prefix, who in KNOWN_PREFIXES:
        if name.startswith(prefix):
            return who
    return ""


def _hint(name: str, owner: str | None, last_holder: str | None) -> str:
    parts = [part for part in (prefix_hint(name), f"owner {owner}" if owner else "", last_holder or "") if part]
    return "; ".join(parts)


def find_leaks(
    snapshot: Snapshot,
    *,
    min_age: float = 0.0,
    last_holders: Mapping[str, str] | None = None,
) -> list[Leak]:
    """Leaks in a snapshot, oldest first. last_holders maps an object key to "last held by PID CMD"."""
    now = snapshot.taken_at
    last = last_holders or {}
    leaks = []
    for segment in snapshot.shm:
        age = None if segment.mtime is None else now - segment.mtime
        if segment.state == "orphaned":
            leaks.append(Leak(segment.kind, "orphaned", segment.name, segment.path, segment.object_key,
                              segment.allocated, age, segment.owner,
                              _hint(segment.name, segment.owner, last.get(segment.object_key))))
        elif segment.state == "deleted" and segment.pinned_bytes != 0:  # pinning nothing is no leak (health)
            leaks.append(Leak(segment.kind, "deleted-but-held", segment.name, None, segment.object_key,
                              segment.pinned_bytes, age, segment.owner,
                              _hint(segment.name, segment.owner, None), segment.holders))
    for queue in snapshot.mqueues:
        if not health.queue_orphaned(queue):
            continue
        age = None if queue.mtime is None else now - queue.mtime
        leaks.append(Leak("mqueue", "orphaned", queue.name, queue.path, queue.object_key, queue.qsize_bytes, age,
                          queue.owner, _hint(queue.name, queue.owner, last.get(queue.object_key))))
    for sysv_segment in snapshot.sysv.shm:
        if health.sysv_shm_orphaned(sysv_segment):
            changed = max(sysv_segment.dtime, sysv_segment.ctime)
            leaks.append(Leak("sysv-shm", "orphaned", sysv_segment.label,
                              None, sysv_segment.object_key, sysv_segment.size,
                              now - changed if changed else None, sysv_segment.owner,
                              f"created by pid {sysv_segment.cpid}, last used by pid {sysv_segment.lpid}"))
    if min_age > 0:
        leaks = [leak for leak in leaks if leak.age is not None and leak.age >= min_age]  # unknown is not "old"
    leaks.sort(key=lambda leak: -(leak.age or 0))
    return leaks


def sem_open_name(name: str) -> str | None:
    """The name sem_open(3) was given for a semaphore file: /sem.foo → /foo; None for other names."""
    return "/" + name[len("/sem.") :] if name.startswith("/sem.") else None


def matching(leaks: Iterable[Leak], pattern: str | None) -> list[Leak]:
    """Leaks whose name matches a shell glob (``/psm_*``); a semaphore also matches by its sem_open name.

    All of them when pattern is None.
    """
    if pattern is None:
        return list(leaks)
    return [
        leak
        for leak in leaks
        if fnmatch.fnmatchcase(leak.name, pattern)
        or (leak.mechanism == "sem" and fnmatch.fnmatchcase(sem_open_name(leak.name) or "", pattern))
    ]


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


class Recheck:
    """A fresh scan of shm and mqueue, asked about each orphan listed earlier right before its removal."""

    def __init__(self, fresh: Snapshot) -> None:
        self._orphans = {leak.key for leak in find_leaks(fresh) if leak.problem == "orphaned"}
        self._holders: dict[str, tuple[Holder, ...]] = {segment.object_key: segment.holders for segment in fresh.shm}
        self._holders.update({queue.object_key: queue.holders for queue in fresh.mqueues})

    def keep_reason(self, leak: Leak) -> str | None:
        """Why the object must be kept now (not removable by name, held now, gone already); None when it is
        still an orphan that may be unlinked by name."""
        if not leak.removable or leak.path is None:
            return "not removable by name (still held, or not a POSIX object)"
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
