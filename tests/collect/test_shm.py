"""POSIX shared memory and named semaphores: real segments created here, read back through scan()."""

from __future__ import annotations

import os
import subprocess

import posix_ipc

from ipcmon.model import Holder, ShmSegment, Snapshot
from ipcmon.report import SHM_HEADERS, shm_row
from ipcmon.text import human_bytes
from tests.helpers import Cleanup, Spawn, new_name, scan_kinds, tool

PAGE = os.sysconf("SC_PAGE_SIZE")


def segment(snapshot: Snapshot, name: str, inode: int | None = None) -> ShmSegment:
    """The one segment with this name (and inode, when a name was reused)."""
    found = [s for s in snapshot.shm if s.name == name and (inode is None or s.inode == inode)]
    assert len(found) == 1, f"{name!r} (inode {inode}) appears {len(found)} times"
    return found[0]


def create_segment(cleanup: Cleanup, size: int, mode: int = 0o600) -> tuple[str, os.stat_result]:
    """A new segment of `size` bytes that this process does not keep open; its name and stat."""
    name = cleanup.shm(new_name())
    memory = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=mode, size=size)
    memory.close_fd()
    return name, os.stat(f"/dev/shm{name}")


MAPPER = """
    import posix_ipc
    memory = posix_ipc.SharedMemory({name!r})
    shared = map_fd(memory.fd, {size})
    touch(shared, {touched})
    private = map_fd(memory.fd, {page}, prot=1, flags=2)  # PROT_READ, MAP_PRIVATE
    memory.close_fd()
    say("ready")
    hold()
"""

OPENER = """
    fd = os.open("/dev/shm" + {name!r}, os.O_RDONLY)
    say("ready", fd)
    hold()
"""


def test_segment_held_by_a_mapping_and_by_a_descriptor(spawn: Spawn, cleanup: Cleanup) -> None:
    name, st = create_segment(cleanup, 2 * PAGE, mode=0o640)
    mapper = spawn(MAPPER.format(name=name, size=2 * PAGE, touched=PAGE, page=PAGE), comm="ipcm-mapper")
    opener = spawn(OPENER.format(name=name), comm="ipcm-opener")
    mapper.expect()
    (fd,) = opener.expect()

    found = segment(scan_kinds("shm"), name)
    st = os.stat(f"/dev/shm{name}")  # again: the mapper's writes allocated a page since
    assert found.kind == "shm"
    assert found.path == f"/dev/shm{name}"
    assert (found.dev, found.inode) == (st.st_dev, st.st_ino)
    assert found.size == 2 * PAGE
    assert found.allocated == st.st_blocks * 512 == PAGE  # one page touched of two: sparse
    assert found.mode == 0o640
    assert (found.uid, found.gid, found.owner, found.group) == (0, 0, "root", "root")
    assert found.mtime == st.st_mtime
    assert found.state == "held"
    assert found.pinned_bytes == 0
    assert set(found.holders) == {
        Holder(pid=mapper.pid, comm="ipcm-mapper", fd=None, mapped=True, access="rw", shared=True,
               prot="rw-s", mapped_bytes=2 * PAGE),
        Holder(pid=mapper.pid, comm="ipcm-mapper", fd=None, mapped=True, access="r", shared=False,
               prot="r--p", mapped_bytes=PAGE),
        Holder(pid=opener.pid, comm="ipcm-opener", fd=int(fd), mapped=False, access="r"),
    }
    assert len(found.holders) == 3


def test_segment_holders_agree_with_lsof(spawn: Spawn, cleanup: Cleanup) -> None:
    name, _ = create_segment(cleanup, PAGE)
    mapper = spawn(MAPPER.format(name=name, size=PAGE, touched=PAGE, page=PAGE))
    opener = spawn(OPENER.format(name=name))
    mapper.expect()
    (fd,) = opener.expect()

    found = segment(scan_kinds("shm"), name)
    ours = {(h.pid, "mem" if h.mapped else str(h.fd)) for h in found.holders}

    # lsof -F: one field a line; p starts a process, f a file (a number, or "mem" for a mapping), n its name.
    output = subprocess.run(
        [tool("lsof"), "-n", "-w", "-F", "pfn", "-p", f"{mapper.pid},{opener.pid}"],
        capture_output=True, text=True, check=False,
    ).stdout
    theirs = set()
    pid = fd_field = None
    for line in output.splitlines():
        field, value = line[:1], line[1:]
        if field == "p":
            pid = int(value)
        elif field == "f":
            fd_field = value
        elif field == "n" and value.startswith(f"/dev/shm{name}"):
            theirs.add((pid, fd_field))
    assert ours == theirs == {(mapper.pid, "mem"), (opener.pid, fd)}


def test_segment_nobody_holds_is_orphaned(cleanup: Cleanup) -> None:
    name, st = create_segment(cleanup, 3 * PAGE, mode=0)
    found = segment(scan_kinds("shm"), name)
    assert found.state == "orphaned"
    assert found.holders == ()
    assert (found.size, found.allocated, found.pinned_bytes) == (3 * PAGE, 0, 0)
    assert found.inode == st.st_ino
    assert found.mode == 0
    row = dict(zip(SHM_HEADERS, shm_row(found), strict=True))
    assert (row["MODE"], row["STATE"], row["HOLDERS"]) == ("---------", "orphaned", "-")
    assert row["SIZE"] == human_bytes(3 * PAGE)


DELETED_BY_MAP = """
    import posix_ipc
    memory = posix_ipc.SharedMemory({name!r})
    shared = map_fd(memory.fd, {size})
    touch(shared, {page})
    memory.close_fd()
    say("ready")
    hold()
"""

DELETED_BY_FD = """
    fd = os.open("/dev/shm" + {name!r}, os.O_RDWR)
    os.write(fd, b"x" * {page})
    say("ready", fd)
    hold()
"""


def test_segment_unlinked_while_mapped_is_deleted_and_pins_memory(spawn: Spawn, cleanup: Cleanup) -> None:
    name, st = create_segment(cleanup, 4 * PAGE, mode=0o640)
    holder = spawn(DELETED_BY_MAP.format(name=name, size=4 * PAGE, page=PAGE), comm="ipcm-pinner")
    holder.expect()
    posix_ipc.unlink_shared_memory(name)
    # The name is free again: a new segment under it is a different object, listed on its own.
    cleanup.shm(name)
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=PAGE).close_fd()

    snapshot = scan_kinds("shm")
    old = segment(snapshot, name, st.st_ino)
    assert old.state == "deleted"
    assert old.path == f"/dev/shm{name}"
    # Read through /proc/PID/map_files: the mapping is all that is left of it.
    assert (old.size, old.allocated, old.pinned_bytes) == (4 * PAGE, PAGE, PAGE)
    assert (old.mode, old.uid, old.gid, old.owner, old.group) == (0o640, 0, 0, "root", "root")
    assert old.mtime is not None and old.ctime is not None
    row = dict(zip(SHM_HEADERS, shm_row(old), strict=True))
    assert (row["STATE"], row["MODE"]) == (f"deleted, pins {human_bytes(PAGE)}", "rw-r-----")
    assert row["HOLDERS"] == f"{holder.pid} ipcm-pinner map rw-s {human_bytes(4 * PAGE)}"
    assert old.holders == (
        Holder(pid=holder.pid, comm="ipcm-pinner", fd=None, mapped=True, access="rw", shared=True,
               prot="rw-s", mapped_bytes=4 * PAGE),
    )
    new = segment(snapshot, name, os.stat(f"/dev/shm{name}").st_ino)
    assert new.state == "orphaned"


def test_segment_unlinked_while_open_is_deleted_with_its_attributes(spawn: Spawn, cleanup: Cleanup) -> None:
    name, st = create_segment(cleanup, 0, mode=0o604)
    holder = spawn(DELETED_BY_FD.format(name=name, page=PAGE), comm="ipcm-pinner")
    (fd,) = holder.expect()
    posix_ipc.unlink_shared_memory(name)

    old = segment(scan_kinds("shm"), name, st.st_ino)
    assert old.state == "deleted"
    assert (old.size, old.allocated, old.pinned_bytes) == (PAGE, PAGE, PAGE)
    assert (old.mode, old.uid, old.owner) == (0o604, 0, "root")
    assert old.holders == (Holder(pid=holder.pid, comm="ipcm-pinner", fd=int(fd), mapped=False, access="rw"),)


def test_named_semaphore_is_a_sem_held_by_its_mapping(spawn: Spawn, cleanup: Cleanup) -> None:
    name = cleanup.semaphore(new_name())
    posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600, initial_value=1).close()
    user = spawn(
        f"""
        import posix_ipc
        semaphore = posix_ipc.Semaphore({name!r})
        say("ready")
        hold()
        """,
        comm="ipcm-sem",
    )
    user.expect()

    found = segment(scan_kinds("shm"), name)  # the name sem_open was given; the file is sem.NAME
    st = os.stat(f"/dev/shm/sem.{name[1:]}")
    assert (found.kind, found.path) == ("sem", f"/dev/shm/sem.{name[1:]}")
    assert (found.size, found.inode, found.mode) == (st.st_size, st.st_ino, 0o600)
    assert found.state == "held"
    (holder,) = found.holders
    assert (holder.pid, holder.comm, holder.fd, holder.mapped) == (user.pid, "ipcm-sem", None, True)
    assert (holder.prot, holder.shared, holder.access, holder.mapped_bytes) == ("rw-s", True, "rw", PAGE)


def test_segment_with_a_newline_in_its_name_unlinked_while_mapped(spawn: Spawn, cleanup: Cleanup) -> None:
    # /proc/PID/maps prints a newline in a path as "\\012" (and a backslash as itself): the exact name must
    # come from elsewhere (the map_files link) for a segment that only a mapping still holds.
    name = new_name() + "-a\nb\\012c"
    path = cleanup.path(f"/dev/shm{name}")
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    holder = spawn(f"""
        fd = os.open("/dev/shm" + {name!r}, os.O_RDWR)
        os.ftruncate(fd, {PAGE})
        touch(map_fd(fd, {PAGE}), {PAGE})
        os.close(fd)
        say("ready")
        hold()
    """)
    holder.expect()
    inode = os.stat(path).st_ino
    os.unlink(path)

    old = segment(scan_kinds("shm"), name, inode)
    assert old.state == "deleted"
    assert old.path == f"/dev/shm{name}"
    assert [h.pid for h in old.holders] == [holder.pid]
