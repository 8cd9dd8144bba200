"""SysV IPC from /proc/sysvipc (shm, msg, sem), with shm attachments found in /proc/PID/maps."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace

from ipcmon.collect import procfs
from ipcmon.collect.collector import Collector, ScanInputs, held_by
from ipcmon.collect.fds import MapRef
from ipcmon.collect.shm import mapping_holders
from ipcmon.model import Process, Sysv, SysvMsg, SysvSem, SysvShm

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


def _read(name: str, proc: str) -> list[dict[str, int]] | None:
    try:
        return parse_table(procfs.read_bytes(f"{proc}/sysvipc/{name}"))
    except (procfs.Gone, procfs.Denied):
        return None


def collect(processes: Mapping[int, Process], maps: Iterable[MapRef], proc: str = procfs.PROC) -> Sysv:
    shm_rows = _read("shm", proc)
    msg_rows = _read("msg", proc)
    sem_rows = _read("sem", proc)
    if shm_rows is None and msg_rows is None and sem_rows is None:
        return Sysv(available=False)

    # A SysV mapping shows as "/SYSV<key in hex> (deleted)" with the shmid as its inode number.
    maps_by_id: dict[int, list[MapRef]] = defaultdict(list)
    for ref in maps:
        if ref.sysv:
            maps_by_id[ref.inode].append(ref)

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
                sorted(mapping_holders(maps_by_id.get(row["shmid"], []), processes), key=lambda h: h.pid)
            ),
            cuid=row.get("cuid"),
        )
        for row in shm_rows or []
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
        )
        for row in msg_rows or []
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
        )
        for row in sem_rows or []
    )
    return Sysv(shm=shm, msg=msg, sem=sem, available=True)


def _build(inputs: ScanInputs) -> Sysv:
    tables = collect(inputs.processes, inputs.maps, inputs.config.proc)
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
