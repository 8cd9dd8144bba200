"""memfd and anonymous shared memory: real regions held by children, read back through scan() and a Scanner."""

from __future__ import annotations

import os
from pathlib import Path

from ipcmon.collect import ScanConfig, Scanner, scan
from ipcmon.collect.collectors import COLLECTORS
from ipcmon.collect.fds import parse_maps
from ipcmon.model import KINDS, Holder, SharedRegion, Snapshot
from tests.helpers import Spawn, new_name, proc_view, scan_kinds, wait_until

PAGE = os.sysconf("SC_PAGE_SIZE")

HOLDER = """
    say("ready")
    hold()
"""

MAPPER = """
    map_fd({fd}, {size})
    os.close({fd})
    say("ready")
    for line in commands():
        if line == "map-again":
            map_fd(int({fd_again}), {size}, prot=1)  # PROT_READ: a second holder entry, r--s
            os.close(int({fd_again}))
            say("mapped")
"""

FORKER = """
    shared = map_fd(-1, {size}, flags=0x21)  # MAP_SHARED | MAP_ANONYMOUS
    touch(shared, {size})
    child = os.fork()
    if child == 0:
        _libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: it goes when its parent is killed
        hold()
        os._exit(0)
    say("ready", child)
    hold()
"""

NAMESAKE = """
    # A file of its own tmpfs, named /dev/zero and unlinked, in a mount no other namespace can reach: its
    # fd link and mapping read "/dev/zero (deleted)" like a shared anonymous region, on another device.
    import subprocess, tempfile
    if _libc.unshare(0x20000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    top = tempfile.mkdtemp()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", top], check=True)
    os.mkdir(top + "/dev")
    fd = os.open(top + "/dev/zero", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, {size})
    map_fd(fd, {size})
    os.unlink(top + "/dev/zero")
    subprocess.run(["umount", "-l", top], check=True)
    os.rmdir(top)
    say("ready", fd, os.fstat(fd).st_dev, os.fstat(fd).st_ino)
    hold()
"""


def regions_of(snapshot: Snapshot, *pids: int) -> list[SharedRegion]:
    """The regions some of these processes hold."""
    return [region for region in snapshot.regions if {holder.pid for holder in region.holders} & set(pids)]


def new_memfd(name: str, size: int, written: int) -> int:
    """A memfd of size bytes with the first `written` bytes written (allocated), as a descriptor of ours."""
    fd = os.memfd_create(name)
    os.ftruncate(fd, size)
    os.pwrite(fd, b"x" * written, 0)
    return fd


def test_a_memfd_held_by_descriptor_in_one_child_and_by_mapping_in_another(spawn: Spawn) -> None:
    name = new_name()[1:]  # no slash: memfd names are file names
    fd = new_memfd(name, 2 * PAGE, PAGE)
    holder = spawn(HOLDER, pass_fds=(fd,), comm="ipcm-fdholder")
    mapper = spawn(MAPPER.format(fd=fd, size=2 * PAGE, fd_again=-1), pass_fds=(fd,), comm="ipcm-mapper")
    holder.expect()
    mapper.expect()
    st = os.fstat(fd)
    os.close(fd)  # only the children hold it now

    (region,) = regions_of(scan_kinds("memfd"), holder.pid, mapper.pid)
    assert (region.kind, region.name) == ("memfd", name)
    assert (region.dev, region.inode) == (st.st_dev, st.st_ino)
    assert region.object_key == f"memfd:{st.st_dev}:{st.st_ino}"
    assert region.size == 2 * PAGE
    assert region.allocated == PAGE
    assert region.holders == (
        Holder(pid=holder.pid, comm="ipcm-fdholder", fd=fd, mapped=False, access="rw"),
        Holder(pid=mapper.pid, comm="ipcm-mapper", fd=None, mapped=True, access="rw", shared=True, prot="rw-s",
               mapped_bytes=2 * PAGE),
    )


def test_an_anonymous_region_shared_by_a_parent_and_its_forked_child(spawn: Spawn) -> None:
    parent = spawn(FORKER.format(size=3 * PAGE), comm="ipcm-forker")
    (child,) = (int(word) for word in parent.expect())

    (region,) = regions_of(scan_kinds("memfd"), parent.pid, child)
    assert (region.kind, region.name) == ("anon", "anonymous")
    assert region.size == 3 * PAGE
    assert region.allocated == 3 * PAGE  # as root, from /proc/PID/map_files
    assert [(holder.pid, holder.fd, holder.access, holder.prot, holder.mapped_bytes) for holder in region.holders] == [
        (pid, None, "rw", "rw-s", 3 * PAGE) for pid in sorted((parent.pid, child))
    ]


def test_kind_memfd_limits_the_scan_to_regions(spawn: Spawn, tmp_path: Path) -> None:
    parent = spawn(FORKER.format(size=PAGE))
    (child,) = (int(word) for word in parent.expect())
    snapshot = scan(ScanConfig(kinds=("memfd",), proc=proc_view(tmp_path / "proc", [parent.pid, child])))
    assert snapshot.kinds == ("memfd",)
    assert len(regions_of(snapshot, parent.pid)) == 1
    assert (snapshot.shm, snapshot.mqueues, snapshot.pipes, snapshot.signals) == ((), (), (), ())
    assert not snapshot.sysv.shm
    assert regions_of(scan_kinds("shm", "pipe", "sysv"), parent.pid) == []


def test_regions_vanish_with_their_last_holder(spawn: Spawn) -> None:
    fd = new_memfd(new_name()[1:], PAGE, 0)
    holder = spawn(HOLDER, pass_fds=(fd,))
    forker = spawn(FORKER.format(size=PAGE))
    holder.expect()
    (child,) = (int(word) for word in forker.expect())
    os.close(fd)
    pids = (holder.pid, forker.pid, child)
    assert len(regions_of(scan_kinds("memfd"), *pids)) == 2
    holder.stop()
    forker.stop()  # its child follows it (PR_SET_PDEATHSIG)
    wait_until(lambda: regions_of(scan_kinds("memfd"), *pids) == [], "the regions to go with their holders")


def test_a_deleted_file_named_dev_zero_on_another_filesystem_is_no_region(spawn: Spawn) -> None:
    namesake = spawn(NAMESAKE.format(size=PAGE))
    fd, dev, inode = (int(word) for word in namesake.expect())
    assert os.readlink(f"/proc/{namesake.pid}/fd/{fd}") == "/dev/zero (deleted)"
    snapshot = scan_kinds("memfd")
    assert regions_of(snapshot, namesake.pid) == []
    assert (dev, inode) not in {(region.dev, region.inode) for region in snapshot.regions}


def test_the_scanner_sees_an_attach_in_the_next_scan(spawn: Spawn, tmp_path: Path) -> None:
    fd = new_memfd(new_name()[1:], PAGE, PAGE)
    again = os.dup(fd)
    mapper = spawn(MAPPER.format(fd=fd, size=PAGE, fd_again=again), pass_fds=(fd, again))
    mapper.expect()
    os.close(again)
    scanner = Scanner(ScanConfig(kinds=("memfd",), proc=proc_view(tmp_path / "proc", [mapper.pid, os.getpid()])))
    first = scanner.scan()
    (before,) = regions_of(first, mapper.pid)
    second = scanner.scan()
    assert regions_of(second, mapper.pid) == [before]
    assert regions_of(second, mapper.pid)[0] is before  # unchanged inputs: the previous scan's record

    mapper.tell("map-again")
    mapper.expect("mapped")
    (after,) = regions_of(scanner.scan(), mapper.pid)
    mine = sorted((holder.pid, holder.fd, holder.prot) for holder in after.holders if holder.pid == mapper.pid)
    assert mine == [(mapper.pid, None, "r--s"), (mapper.pid, None, "rw-s")]
    os.close(fd)


def test_the_collectors_table_follows_kinds() -> None:
    assert tuple(collector.kind for collector in COLLECTORS) == KINDS
    assert len({collector.snapshot_field for collector in COLLECTORS}) == len(KINDS)


def test_maps_lines_of_the_internal_shm_mount() -> None:
    """Each line once: a SysV segment (same device) stays SysV; other files of that device are not regions."""
    data = (
        b"7f0000000000-7f0000002000 rw-s 00000000 00:01 26                         /memfd:a name (deleted)\n"
        b"7f0000003000-7f0000004000 rw-s 00000000 00:01 27                         /dev/zero (deleted)\n"
        b"7f0000005000-7f0000006000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)\n"
        b"7f0000007000-7f0000008000 rw-s 00000000 00:01 28                         /i915 (deleted)\n"
        b"7f0000009000-7f000000a000 rw-s 00000000 08:01 29                         /dev/zero (deleted)\n"
        b"7f000000b000-7f000000c000 rw-s 00000000 00:1b 30                         /dev/shm/seg\n"
    )
    refs = parse_maps(9, data, b"00:1b", b"00:01")
    assert sorted((ref.inode, ref.path, ref.region, ref.sysv) for ref in refs) == [
        (26, "/memfd:a name", "memfd", False),
        (27, "/dev/zero", "anon", False),
        (30, "/dev/shm/seg", None, False),
        (32769, "/SYSV00000000", None, True),
    ]
    assert [ref.inode for ref in parse_maps(9, data, b"00:1b")] == [30, 32769]  # without the token, as before
