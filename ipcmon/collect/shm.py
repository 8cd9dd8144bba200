"""POSIX shared memory and named semaphores: the shm directory joined with every holder's fds and maps."""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ipcmon.collect import procfs
from ipcmon.collect.collector import Collector, ScanInputs, held_by
from ipcmon.collect.config import SHM_DIR as SHM_DIR  # where it was defined before config.py; callers use it
from ipcmon.collect.config import MountDir, Places, ScanConfig
from ipcmon.collect.fds import FdRef, MapRef, comm_of, refresh, split_deleted
from ipcmon.collect.recall import Recall
from ipcmon.health import shm_state
from ipcmon.model import Access, Holder, Place, Process, ShmKind, ShmSegment

SEM_PREFIX = "sem."
"""glibc's sem_open(3) keeps semaphore NAME as the file sem.NAME in the shm directory (sysdeps/pthread/sem_open.c)."""


def name_of(file_name: str) -> tuple[ShmKind, str]:
    """A shm directory entry's kind and POSIX name: ``foo`` → (shm, /foo); ``sem.foo`` → (sem, /foo), the name
    sem_open(3) was given."""
    if file_name.startswith(SEM_PREFIX) and len(file_name) > len(SEM_PREFIX):
        return "sem", "/" + file_name[len(SEM_PREFIX) :]
    return "shm", "/" + file_name


def file_name_of(kind: str, name: str) -> str:
    """The inverse of :func:`name_of`: the entry in the shm directory for a segment or semaphore's POSIX name
    (``/foo`` of kind sem → ``sem.foo``)."""
    bare = name.removeprefix("/")
    return SEM_PREFIX + bare if kind == "sem" else bare


def list_dir(shm_dir: str) -> dict[tuple[int, int], tuple[str, os.stat_result]]:
    """Regular files in the shm directory, keyed by (dev, inode). Missing directory → empty."""
    entries: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
    # Through a descriptor of the directory each stat is an fstatat(2) of the bare name: no walk of shm_dir's path
    # for each of thousands of files.
    try:
        directory = os.open(shm_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return entries
    prefix = os.path.join(shm_dir, "")
    try:
        with os.scandir(directory) as scanner:
            for entry in scanner:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # unlinked between readdir and stat
                if stat.S_ISREG(st.st_mode):
                    entries[(st.st_dev, st.st_ino)] = (prefix + entry.name, st)
    finally:
        os.close(directory)
    return entries


def mapping_access(prot: str) -> Access:
    readable = prot[0] == "r"
    writable = prot[1] == "w"
    return "rw" if readable and writable else "r" if readable else "w" if writable else "-"


def nspid_of(processes: Mapping[int, Process], pid: int) -> int | None:
    """A holder's pid inside its container (Process.nspid); None when the same, or its process is not in the scan."""
    process = processes.get(pid)
    return process.nspid if process is not None else None


def mapping_holders(maps: Iterable[MapRef], processes: Mapping[int, Process]) -> list[Holder]:
    """One holder per (pid, protection) with the bytes of its VMAs added up."""
    merged: dict[tuple[int, str], int] = defaultdict(int)
    for ref in maps:
        merged[(ref.pid, ref.prot)] += ref.size
    holders = []
    for (pid, prot), size in merged.items():
        holders.append(
            Holder(
                pid=pid,
                comm=comm_of(processes, pid),
                fd=None,
                mapped=True,
                access=mapping_access(prot),
                shared=prot.endswith("s"),
                prot=prot,
                mapped_bytes=size,
                nspid=nspid_of(processes, pid),
            )
        )
    return holders


def fd_holders(fds: Iterable[FdRef], processes: Mapping[int, Process]) -> list[Holder]:
    holders = []
    for ref in fds:
        holders.append(
            Holder(pid=ref.pid, comm=comm_of(processes, ref.pid), fd=ref.fd, mapped=False, access=ref.access,
                   nspid=nspid_of(processes, ref.pid))
        )
    return holders


def posix_name(path: str, shm_dir: str) -> tuple[ShmKind, str]:
    """The kind and POSIX name of a segment file: /dev/shm/foo → (shm, /foo), /dev/shm/sem.foo → (sem, /foo).

    A held file whose path is not inside shm_dir (a holder in another mount namespace) is named by its
    path's last part."""
    prefix = shm_dir.rstrip("/") + "/"
    if path.startswith(prefix):
        return name_of(path[len(prefix) :])
    kind, _ = name_of(path.rsplit("/", 1)[-1])
    return kind, path


def mapped_file(ref: MapRef, proc: str = procfs.PROC) -> tuple[str, os.stat_result] | None:
    """(path, stat) of the file behind a mapping, via /proc/PID/map_files (root only), else None.

    For a segment that only a mapping still holds this is the one exact source: the maps text prints a
    newline in a path as "\\012" (and a backslash as itself), and gives no size, mode or owner.
    """
    link = f"{proc}/{ref.pid}/map_files/{ref.start:x}-{ref.end:x}"
    try:
        target = os.readlink(link)
        st = os.stat(link)
    except OSError:
        return None
    return split_deleted(target)[0], st


def held_times(refs: Iterable[FdRef], proc: str = procfs.PROC) -> tuple[float | None, float | None]:
    """(mtime, ctime) of an unlinked segment, read through a holder's descriptor; (None, None) when none can be.

    stat(2) of /proc/PID/fd/N follows the link to the open file itself, so it gives the segment's own times
    although its name is gone (the descriptor's open time is kept nowhere). unlink(2) sets the file's ctime
    (mm/shmem.c shmem_unlink), so unless its mode or owner changed since, the ctime is when it was deleted.
    """
    for ref in refs:
        try:
            st = os.stat(f"{proc}/{ref.pid}/fd/{ref.fd}")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (ref.dev, ref.inode):
            return st.st_mtime, st.st_ctime
    return None, None


def _path_filter(shm_dir: str) -> Callable[[str | None], bool]:
    """Which held files are segments: on its own mount, every file of that device (whatever path a
    holder in another mount namespace sees); a plain directory shares its device with unrelated files
    (libraries, logs), so there only files whose path is inside it (issue 7)."""
    if os.path.ismount(shm_dir):
        return _everything
    prefix = os.path.realpath(shm_dir).rstrip("/") + "/"
    return lambda path: path is not None and path.startswith(prefix) and "/" not in path[len(prefix) :]


def dir_note(shm_dir: str) -> str | None:
    """A remark when the shm directory is not the usual tmpfs mount, None when it is."""
    if procfs.fs_type(shm_dir) == procfs.TMPFS_MAGIC and os.path.ismount(shm_dir):
        return None
    return (
        f"{shm_dir} is not a tmpfs mount: POSIX shared memory normally lives on its own tmpfs there "
        f"(as root: mount -t tmpfs tmpfs {shm_dir}). Its files are listed as segments, and holders are "
        "matched by path."
    )


@dataclass(slots=True)
class Seen:
    """What a Scanner's shm collector keeps of one scan besides its records: the mounts it listed, every descriptor
    and mapping of a segment, the pids that held one, and its result (collect)."""

    mounts: tuple[MountDir, ...]
    fds: list[FdRef] = field(default_factory=list)
    maps: list[MapRef] = field(default_factory=list)
    holders: set[int] = field(default_factory=set)
    segments: tuple[ShmSegment, ...] = ()


def collect(
    shm_dir: str | Sequence[MountDir],
    processes: Mapping[int, Process],
    fds: Iterable[FdRef],
    maps: Iterable[MapRef],
    proc: str = procfs.PROC,
    recall: Recall[ShmSegment] | None = None,
    settled: Collection[int] = (),
    history: Recall[Seen] | None = None,
) -> tuple[ShmSegment, ...]:
    """Every segment on the shm tmpfs (or each of several) with its holders, plus unlinked segments still held.

    shm_dir is the shm directory, or every shm tmpfs to list (Places.shm_mounts: the shm directory first, then
    each container's ``/proc/PID/root/dev/shm``, issue 15). A segment's name is relative to its mount (``/foo``);
    its ``path`` is one that works from the host (``/proc/PID/root/dev/shm/foo`` for a container's), and its
    place the namespace of the mount whose device it is on. Holders are matched by (device, inode) across every
    process, whichever mount namespace it sees the file in, so two containers' ``/foo`` are two segments, each
    orphaned only when no process at all holds it.

    With recall and history (a Scanner's), a listed segment is the previous scan's record when its file is as listed
    then (path, size, blocks, mode, owner, times: anyone may change them by its path) and no process that has run
    since (not settled: Scanner) holds it now or held it then: only a process itself changes its descriptors,
    mappings, name and pid in its namespace. When every segment is, the result is the previous scan's tuple."""
    mounts = _mounts(shm_dir)
    by_dev = {mount.dev: mount for mount in reversed(mounts)}  # the first of those sharing a device wins
    # The first (the shm directory) may be a plain directory, where only paths inside it are segments (issue 7);
    # a container's is a tmpfs mount point, checked in its mountinfo (namespaces.discover).
    inside: dict[int, Callable[[str | None], bool]] = {mount.dev: _everything for mount in mounts[1:]}
    if mounts:
        inside[mounts[0].dev] = _path_filter(mounts[0].path)
    kept_seen = history.previous(None) if history is not None and recall is not None else None
    before = kept_seen[1] if kept_seen is not None and kept_seen[1].mounts == mounts else None
    shm_fds = [ref for ref in fds if ref.kind == "shm"]
    shm_maps = [mref for mref in maps if not mref.sysv and mref.region is None]
    if any(accepts is not _everything for accepts in inside.values()):
        shm_fds = [ref for ref in shm_fds if inside.get(ref.dev, _everything)(ref.path)]
        shm_maps = [mref for mref in shm_maps if inside.get(mref.dev, _everything)(mref.path)]
    fds_by_id: dict[tuple[int, int], list[FdRef]] = defaultdict(list)
    for ref in shm_fds:
        fds_by_id[(ref.dev, ref.inode)].append(ref)
    maps_by_id: dict[tuple[int, int], list[MapRef]] = defaultdict(list)
    for mref in shm_maps:
        maps_by_id[(mref.dev, mref.inode)].append(mref)
    now = Seen(mounts, shm_fds, shm_maps, {ref.pid for ref in shm_fds} | {mref.pid for mref in shm_maps})
    # The segments a process that ran (or is gone) holds now or held in the last scan.
    moved: set[tuple[int, int]] = set()
    if before is not None:
        ran = now.holders.difference(settled) | before.holders.difference(settled)
        if ran:
            moved = {(ref.dev, ref.inode) for refs in (shm_fds, shm_maps, before.fds, before.maps) for ref in refs
                     if ref.pid in ran}

    segments: list[ShmSegment] = []
    listings: list[Collection[tuple[int, int]]] = []
    reused = 0
    previous = recall.previous if recall is not None and before is not None else None
    for index, mount in enumerate(mounts):
        listing = list_dir(mount.path)
        if index:
            # A container's path runs through its root: were its /dev/shm swapped for a symlink since it was found
            # (absolute links resolve from the host's root), only files of the tmpfs found are its segments.
            listing = {identity: entry for identity, entry in listing.items() if identity[0] == mount.dev}
        listings.append(listing.keys())
        for identity, (path, st) in listing.items():
            inputs = None
            if recall is not None:
                key = (path, st.st_size, st.st_blocks, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                       st.st_ctime_ns)
                kept = previous(identity) if previous is not None else None
                if kept is not None and identity not in moved and kept[0][0] == key:
                    segments.append(recall.carry(identity, kept))
                    reused += 1
                    continue
                # Built again unless every input is what it was: the holders' descriptors and mappings, then the
                # name and inner pid of each.
                held_fds = fds_by_id.get(identity, [])
                held_maps = maps_by_id.get(identity, [])
                holders = [ref.pid for ref in held_fds] + [mref.pid for mref in held_maps]
                inputs = (key, mount.place, tuple(held_fds), tuple(held_maps),
                          tuple((comm_of(processes, pid), nspid_of(processes, pid)) for pid in holders))
                segment = recall.get(identity, inputs)
                if segment is not None:
                    segments.append(recall.keep(identity, inputs, segment))
                    reused += 1
                    continue
            segment = _segment(path, mount.path, st.st_size, st.st_blocks * 512, st.st_mode, st.st_uid, st.st_gid,
                               st.st_mtime, st.st_ctime, identity, fds_by_id.get(identity, []),
                               maps_by_id.get(identity, []), processes, linked=True, place=mount.place)
            segments.append(segment if recall is None else recall.keep(identity, inputs, segment))

    listed = listings[0] if len(listings) == 1 else {identity for listing in listings for identity in listing}
    unlisted = (fds_by_id.keys() - listed) | (maps_by_id.keys() - listed)
    if before is not None and not unlisted and reused == len(segments) == len(before.segments):
        # The last scan's records, all of them listed then (its result has no more), and no other.
        now.segments = before.segments
        if history is not None:
            history.keep(None, None, now)
        return now.segments
    # Held segments missing from the listing: unlinked while held, or created after the listing.
    for identity in unlisted:
        held_fds = [refresh(ref, proc) for ref in fds_by_id.get(identity, [])]
        held_maps = maps_by_id.get(identity, [])
        deleted = any(ref.deleted for ref in held_fds) or any(ref.deleted for ref in held_maps)
        seen = (held_fds[0].path if held_fds else None) or held_maps[0].path
        on = by_dev.get(identity[0])
        place = on.place if on is not None else None
        # The holder's path is the one its mount namespace sees (/dev/shm/foo in a container): from the host,
        # the same file is reached through the mount's own path.
        path = _from_host(seen, on)
        shm_dir = on.path if on is not None else mounts[0].path if mounts else ""
        if not deleted:
            try:
                st = os.stat(path)  # created mid-scan: read it as it is now
            except OSError:
                # The link count a holder's descriptor shows (fds.refresh) still says whether it has a name: the
                # host's path to a container's mount runs through a process that may have just exited.
                deleted = not held_fds
            else:
                if (st.st_dev, st.st_ino) == identity:
                    segments.append(
                        _segment(path, shm_dir, st.st_size, st.st_blocks * 512, st.st_mode, st.st_uid,
                                 st.st_gid, st.st_mtime, st.st_ctime, identity, held_fds, held_maps,
                                 processes, linked=True, place=place)
                    )
                    continue
                deleted = True
        mode: int | None
        uid: int | None
        gid: int | None
        if held_fds:
            first = held_fds[0]
            size, allocated = first.size, first.blocks * 512
            mode, uid, gid = first.mode, first.uid, first.gid
            mtime, ctime = held_times(held_fds, proc)
        elif (on_file := mapped_file(held_maps[0], proc)) is not None:
            seen, st = on_file
            path = _from_host(seen, on)
            size, allocated = st.st_size, st.st_blocks * 512
            mode, uid, gid, mtime, ctime = st.st_mode, st.st_uid, st.st_gid, st.st_mtime, st.st_ctime
        else:
            size = allocated = max(ref.size for ref in held_maps)
            mode = uid = gid = None  # only map_files (root) could tell
            mtime = ctime = None
        segments.append(
            _segment(path, shm_dir, size, allocated, mode, uid, gid, mtime, ctime, identity, held_fds,
                     held_maps, processes, linked=not deleted, place=place)
        )
    segments.sort(key=_order)
    now.segments = tuple(segments)
    if history is not None and recall is not None:
        history.keep(None, None, now)
    return now.segments


def _mounts(shm_dir: str | Sequence[MountDir]) -> tuple[MountDir, ...]:
    if not isinstance(shm_dir, str):
        return tuple(shm_dir)
    try:
        return (MountDir(shm_dir, os.stat(shm_dir).st_dev),)
    except OSError:
        return ()


def _everything(path: str | None) -> bool:
    return True


def _from_host(path: str, mount: MountDir | None) -> str:
    """The path a holder sees (``/dev/shm/foo`` inside its container) as reached from the host
    (``/proc/PID/root/dev/shm/foo``); unchanged for the shm directory's own, or when not under the mount point."""
    if mount is None or not mount.inner or mount.inner == mount.path:
        return path
    prefix = mount.inner.rstrip("/") + "/"
    return mount.path.rstrip("/") + "/" + path[len(prefix) :] if path.startswith(prefix) else path


def _order(segment: ShmSegment) -> tuple[str, int, int]:
    return segment.name, segment.inode, segment.dev


def _segment(
    path: str,
    shm_dir: str,
    size: int,
    allocated: int,
    mode: int | None,
    uid: int | None,
    gid: int | None,
    mtime: float | None,
    ctime: float | None,
    identity: tuple[int, int],
    held_fds: list[FdRef],
    held_maps: list[MapRef],
    processes: Mapping[int, Process],
    *,
    linked: bool,
    place: Place | None = None,
) -> ShmSegment:
    holders = fd_holders(held_fds, processes) + mapping_holders(held_maps, processes)
    holders.sort(key=lambda holder: (holder.pid, holder.fd is None, holder.fd or 0))
    state = shm_state(linked=linked, held=bool(holders))
    kind, name = posix_name(path, shm_dir)
    return ShmSegment(
        name=name,
        path=path,
        kind=kind,
        size=size,
        allocated=allocated,
        mode=None if mode is None else stat.S_IMODE(mode),
        uid=uid,
        gid=gid,
        owner=None if uid is None else procfs.user_name(uid),
        group=None if gid is None else procfs.group_name(gid),
        mtime=mtime,
        ctime=ctime,
        dev=identity[0],
        inode=identity[1],
        state=state,
        holders=tuple(holders),
        pinned_bytes=allocated if state == "deleted" else 0,
        place=place,
    )


def _notes(config: ScanConfig, places: Places) -> list[str]:
    if places.shm_dev is None:
        return [f"{places.shm_dir} does not exist: POSIX shared memory cannot be listed."]
    note = dir_note(places.shm_dir)
    return [] if note is None else [note]


def _build(inputs: ScanInputs) -> tuple[ShmSegment, ...]:
    mounts = inputs.places.shm_mounts()
    if not mounts:
        return ()
    return collect(mounts, inputs.processes, inputs.fds, inputs.maps, inputs.config.proc,
                   recall=inputs.recall("shm"), settled=inputs.settled, history=inputs.recall("shm.seen"))


def _restrict(segments: tuple[ShmSegment, ...], wanted: Collection[int]) -> tuple[ShmSegment, ...]:
    return tuple(segment for segment in segments if held_by(segment.holders, wanted))


COLLECTOR = Collector(
    kind="shm", snapshot_field="shm", needs=frozenset({"fds", "maps"}), build=_build, notes=_notes, restrict=_restrict
)
