"""memfd and anonymous shared memory: regions of the kernel's internal shm mount, found in holders' fds and maps.

A ``memfd_create(2)`` file shows as ``/memfd:NAME (deleted)`` in /proc/PID/fd links and /proc/PID/maps; a
``MAP_SHARED|MAP_ANONYMOUS`` region as ``/dev/zero (deleted)`` in maps (mm/shmem.c: shmem_zero_setup). Both
are files of the kernel's internal shm mount, so they are told from ordinary files with such names by that
mount's device number (fds.internal_shm_dev), and from each other by (device, inode). They have no name in
any directory: a region is seen only through its holders, and dies with the last of them (never orphaned).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping

from ipcmon.collect import procfs
from ipcmon.collect.collector import Collector, ScanInputs, held_by
from ipcmon.collect.fds import MEMFD_PREFIX, FdRef, MapRef, comm_of, refresh
from ipcmon.collect.recall import Recall
from ipcmon.collect.shm import fd_holders, mapped_file, mapping_holders
from ipcmon.model import Process, RegionKind, SharedRegion

ANONYMOUS = "anonymous"
"""The name of a MAP_SHARED|MAP_ANONYMOUS region, which has none."""


def region_name(kind: RegionKind, path: str) -> str:
    """The name given to memfd_create (``/memfd:NAME`` → ``NAME``), or ``anonymous``."""
    if kind == "memfd" and path.startswith(MEMFD_PREFIX):
        return path[len(MEMFD_PREFIX) :]
    return ANONYMOUS


def collect(
    processes: Mapping[int, Process],
    fds: Iterable[FdRef],
    maps: Iterable[MapRef],
    proc: str = procfs.PROC,
    recall: Recall[SharedRegion] | None = None,
) -> tuple[SharedRegion, ...]:
    """Every memfd and anonymous shared region some readable process holds by descriptor or mapping.

    Size and allocated bytes come from a stat of a holder's descriptor, else of the mapping in
    /proc/PID/map_files (root only; else the size is the largest mapping and allocated is None). With recall
    (a Scanner's), a region whose size and holders are what they were is the previous scan's record.
    """
    fds_by_id: dict[tuple[int, int], list[FdRef]] = defaultdict(list)
    for ref in fds:
        if ref.kind == "memfd" or ref.kind == "anon":
            fds_by_id[(ref.dev, ref.inode)].append(ref)
    maps_by_id: dict[tuple[int, int], list[MapRef]] = defaultdict(list)
    for mref in maps:
        if mref.region is not None:
            maps_by_id[(mref.dev, mref.inode)].append(mref)

    regions = []
    for identity in fds_by_id.keys() | maps_by_id.keys():
        held_fds = fds_by_id.get(identity, [])
        held_maps = maps_by_id.get(identity, [])
        kind: RegionKind = "memfd" if (held_fds[0].kind if held_fds else held_maps[0].region) == "memfd" else "anon"
        size: int | None
        allocated: int | None
        if held_fds:
            # Read again: a Scanner may hold this descriptor from an earlier scan, and any holder may resize.
            first = refresh(held_fds[0], proc)
            path: str = first.path or ""
            size, allocated = first.size, first.blocks * 512
        elif (on_file := mapped_file(held_maps[0], proc)) is not None:
            path, st = on_file  # the exact name: maps prints a newline in it as "\012"
            size, allocated = st.st_size, st.st_blocks * 512
        else:
            path = held_maps[0].path
            size, allocated = max(ref.size for ref in held_maps), None
        name = region_name(kind, path)
        inputs = None
        if recall is not None:
            inputs = (kind, name, size, allocated,
                      tuple((ref.pid, ref.fd, ref.access, comm_of(processes, ref.pid)) for ref in held_fds),
                      tuple((ref.pid, ref.prot, ref.start, ref.end, comm_of(processes, ref.pid)) for ref in held_maps))
            region = recall.get(identity, inputs)
            if region is not None:
                regions.append(recall.keep(identity, inputs, region))
                continue
        holders = fd_holders(held_fds, processes) + mapping_holders(held_maps, processes)
        holders.sort(key=lambda holder: (holder.pid, holder.fd is None, holder.fd or 0))
        region = SharedRegion(kind=kind, name=name, dev=identity[0], inode=identity[1], size=size,
                              allocated=allocated, holders=tuple(holders))
        regions.append(region if recall is None else recall.keep(identity, inputs, region))
    regions.sort(key=_order)
    return tuple(regions) if recall is None else recall.result(regions)


def _order(region: SharedRegion) -> tuple[str, str, int]:
    return region.kind, region.name, region.inode


def _build(inputs: ScanInputs) -> tuple[SharedRegion, ...]:
    return collect(inputs.processes, inputs.fds, inputs.maps, inputs.config.proc, recall=inputs.recall("regions"))


def _restrict(regions: tuple[SharedRegion, ...], wanted: Collection[int]) -> tuple[SharedRegion, ...]:
    return tuple(region for region in regions if held_by(region.holders, wanted))


COLLECTOR = Collector(
    kind="memfd", snapshot_field="regions", needs=frozenset({"fds", "maps"}), build=_build, restrict=_restrict
)
