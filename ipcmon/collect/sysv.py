"""SysV IPC from /proc/sysvipc (shm, msg, sem) of every IPC namespace, with shm attachments found in /proc/PID/maps."""

from __future__ import annotations

import errno
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import replace

from ipcmon.collect import ipcns, procfs
from ipcmon.collect.collector import Collector, ScanInputs, held_by
from ipcmon.collect.fds import MapRef
from ipcmon.collect.shm import mapping_holders
from ipcmon.model import Place, Process, Sysv, SysvMsg, SysvSem, SysvShm
from ipcmon.safe import counted

SHM_DEST = 0o1000
"""Set in the mode of a segment marked for removal (IPC_RMID) that is still attached."""


def parse_table(data: bytes) -> list[dict[str, int]]:
    """Parse a /proc/sysvipc file by its header line, so added columns don't shift the others."""
    lines = data.splitlines()
    if not lines:
        return []
    header = [name.decode() for name in lines[0].split()]
    rows = []
    for line in lines[1:]:
        values = line.split()
        if len(values) < len(header):
            continue  # a row cut short cannot be trusted
        try:
            # perms is printed in octal; every other column is decimal.
            row = {
                name: int(value, 8) if name == "perms" else int(value)
                for name, value in zip(header, values, strict=False)
            }
        except ValueError:
            continue  # a garbled row: skip it rather than lose the whole table
        rows.append(row)
    return rows


TABLES = ("shm", "msg", "sem")
"""The files of /proc/sysvipc, in the order they are read."""

Tables = tuple[bytes | None, bytes | None, bytes | None]
"""The bytes of /proc/sysvipc/shm, msg and sem as one IPC namespace shows them; None for one that is missing."""


def read_tables(proc: str = procfs.PROC) -> Tables:
    """/proc/sysvipc/shm, msg and sem as this process's IPC namespace shows them; None for a missing one."""
    found: list[bytes | None] = []
    for name in TABLES:
        try:
            found.append(procfs.read_bytes(f"{proc}/sysvipc/{name}"))
        except (procfs.Gone, procfs.Denied):
            found.append(None)
    return found[0], found[1], found[2]


def collect(
    processes: Mapping[int, Process],
    maps: Iterable[MapRef],
    proc: str = procfs.PROC,
    notes: list[str] | None = None,
) -> Sysv:
    """The SysV objects of ipcmon's own IPC namespace and of every other one a process runs in, each with its
    place, and who has each segment mapped.

    Other namespaces are read in one forked child that enters each with setns(2) (ipcns.in_ipc_namespaces), only
    when there is one: on a machine with only the host, nothing is forked. A namespace that cannot be entered (not
    root) or read is said in notes, by its count and labels, never silently left out."""
    spaces = ipcns.ipc_namespaces(processes, proc)
    own = read_tables(proc)
    if all(table is None for table in own):
        return Sysv(available=False)
    # A SysV mapping shows as "/SYSV<key in hex> (deleted)" with the shmid as its inode number; shmids are per IPC
    # namespace, so a mapping belongs to the segment of that id in its process's namespace.
    maps_by_id: dict[tuple[int | None, int], list[MapRef]] = defaultdict(list)
    for ref in maps:
        if ref.sysv:
            maps_by_id[(spaces.namespace_of(ref.pid), ref.inode)].append(ref)

    host = Place(ipc=spaces.own, mnt=None, host=True) if spaces.own is not None else None
    records = [_records(own, spaces.own, host, maps_by_id, processes)]
    read = [spaces.own] if spaces.own is not None else []
    unread: dict[str, list[Place]] = defaultdict(list)
    if spaces.members:
        for inode, result in ipcns.in_ipc_namespaces(spaces.members, _read_entered(proc), proc=proc).items():
            place = spaces.places[inode]
            if isinstance(result, OSError):
                if result.errno not in (errno.ESRCH, errno.ENOENT):  # every member exited: the namespace went too
                    unread[_why(result)].append(place)
                continue
            records.append(_records(result, inode, place, maps_by_id, processes))
            read.append(inode)
    if notes is not None:
        notes.extend(_unread_note(why, places) for why, places in unread.items())
    return Sysv(shm=tuple(record for found in records for record in found.shm),
                msg=tuple(record for found in records for record in found.msg),
                sem=tuple(record for found in records for record in found.sem), available=True, read=tuple(read),
                unread=tuple(place.ipc for places in unread.values() for place in places if place.ipc is not None))


def _read_entered(proc: str) -> Callable[[int], Tables]:
    def read(inode: int) -> Tables:  # in the child, inside the namespace: /proc/sysvipc shows it
        return read_tables(proc)
    return read


def _why(error: OSError) -> str:
    if error.errno in (errno.EPERM, errno.EACCES):
        return "not permitted (setns(2) needs CAP_SYS_ADMIN): run as root to see {its} SysV objects"
    return f"{error.strerror or 'not read'}"


NOTE_NAMES = 5
"""Namespaces named in a note; the rest are counted."""


def _unread_note(why: str, places: list[Place]) -> str:
    names = ", ".join(ipcns.place_words(place) for place in places[:NOTE_NAMES])
    more = f" and {len(places) - NOTE_NAMES} more" if len(places) > NOTE_NAMES else ""
    reason = why.replace("{its}", "its" if len(places) == 1 else "their")
    return f"{counted(len(places), 'IPC namespace', 'IPC namespaces')} not readable ({names}{more}): {reason}."


def _records(
    tables: Tables,
    inode: int | None,
    place: Place | None,
    maps_by_id: Mapping[tuple[int | None, int], list[MapRef]],
    processes: Mapping[int, Process],
) -> Sysv:
    """One IPC namespace's records from its tables (shm, msg, sem), with place and the holders of its segments."""
    shm_rows, msg_rows, sem_rows = (parse_table(table) if table is not None else [] for table in tables)
    shm = tuple(
        SysvShm(
            key=row["key"],
            id=row["shmid"],
            mode=row["perms"] & 0o777,
            size=row["size"],
            nattch=row["nattch"],
            cpid=row["cpid"],
            lpid=row["lpid"],
            uid=row["uid"],
            gid=row["gid"],
            owner=procfs.user_name(row["uid"]),
            atime=row["atime"],
            dtime=row["dtime"],
            ctime=row["ctime"],
            rss=row.get("rss"),
            removed=bool(row["perms"] & SHM_DEST),
            holders=tuple(
                sorted(mapping_holders(maps_by_id.get((inode, row["shmid"]), []), processes), key=lambda h: h.pid)
            ),
            cuid=row.get("cuid"),
            place=place,
        )
        for row in shm_rows
    )
    msg = tuple(
        SysvMsg(
            key=row["key"],
            id=row["msqid"],
            mode=row["perms"] & 0o777,
            qbytes=row["cbytes"],
            qnum=row["qnum"],
            lspid=row["lspid"],
            lrpid=row["lrpid"],
            uid=row["uid"],
            gid=row["gid"],
            owner=procfs.user_name(row["uid"]),
            stime=row["stime"],
            rtime=row["rtime"],
            ctime=row["ctime"],
            place=place,
        )
        for row in msg_rows
    )
    sem = tuple(
        SysvSem(
            key=row["key"],
            id=row["semid"],
            mode=row["perms"] & 0o777,
            nsems=row["nsems"],
            uid=row["uid"],
            gid=row["gid"],
            owner=procfs.user_name(row["uid"]),
            otime=row["otime"],
            ctime=row["ctime"],
            place=place,
        )
        for row in sem_rows
    )
    return Sysv(shm=shm, msg=msg, sem=sem, available=True)


def _build(inputs: ScanInputs) -> Sysv:
    tables = collect(inputs.processes, inputs.maps, inputs.config.proc, inputs.notes)
    if not tables.available:
        inputs.notes.append("/proc/sysvipc is missing: this kernel has no SysV IPC (or /proc is not mounted).")
    return tables


def _restrict(tables: Sysv, wanted: Collection[int]) -> Sysv:
    return replace(
        tables,
        shm=tuple(s for s in tables.shm if held_by(s.holders, wanted) or s.cpid in wanted),
        msg=tuple(m for m in tables.msg if m.lspid in wanted or m.lrpid in wanted),
        sem=(),
    )


COLLECTOR = Collector(kind="sysv", snapshot_field="sysv", needs=frozenset({"maps"}), build=_build, restrict=_restrict)
