"""SysV IPC: real segments, message queues and semaphore sets, read back and checked against ipcs."""

from __future__ import annotations

import os
import re
import subprocess

import sysv_ipc

from ipcmon.model import Holder, Place, SysvMsg, SysvSem, SysvShm
from tests.helpers import Cleanup, Spawn, scan_kinds, tool

PAGE = os.sysconf("SC_PAGE_SIZE")

ATTACHER = """
    import sysv_ipc
    memory = sysv_ipc.attach({shmid}, None, sysv_ipc.SHM_RDONLY if {read_only} else 0)
    say("ready")
    hold()
"""

HOST = Place(ipc=os.stat("/proc/self/ns/ipc").st_ino, mnt=None, host=True)
"""ipcmon's own IPC namespace, as the scan places its SysV objects (mnt None: they are IPC-namespaced only)."""


def ipcs_details(option: str, ipc_id: int) -> dict[str, str]:
    """The name=value pairs of `ipcs OPTION -i ID` (util-linux), e.g. {"nattch": "2", "lpid": "1234"}."""
    output = subprocess.run(
        [tool("ipcs"), option, "-i", str(ipc_id)], capture_output=True, text=True, check=True
    ).stdout
    return dict(re.findall(r"(\w+)\s*=\s*(\S+)", output))


def sysv_shm(shmid: int) -> SysvShm:
    snapshot = scan_kinds("sysv")
    assert snapshot.sysv.available
    found = [segment for segment in snapshot.sysv.shm if segment.id == shmid]
    assert len(found) == 1
    return found[0]


def create_shm(cleanup: Cleanup, size: int) -> sysv_ipc.SharedMemory:
    """A new segment under a random key; sysv_ipc attaches it to this process, so the caller detaches it."""
    memory = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, mode=0o640, size=size)
    cleanup.sysv_shm(memory.id)
    return memory


def test_segment_attached_by_two_processes(spawn: Spawn, cleanup: Cleanup) -> None:
    memory = create_shm(cleanup, 2 * PAGE)
    memory.detach()
    writer = spawn(ATTACHER.format(shmid=memory.id, read_only=False), comm="ipcm-sysv-rw")
    writer.expect()
    reader = spawn(ATTACHER.format(shmid=memory.id, read_only=True), comm="ipcm-sysv-r")
    reader.expect()

    found = sysv_shm(memory.id)
    assert (found.key, found.size, found.mode, found.uid, found.owner) == (memory.key, 2 * PAGE, 0o640, 0, "root")
    assert found.nattch == 2
    assert (found.cpid, found.lpid) == (os.getpid(), reader.pid)
    assert found.removed is False
    assert found.holders == tuple(sorted([
        Holder(pid=writer.pid, comm="ipcm-sysv-rw", fd=None, mapped=True, access="rw", shared=True, prot="rw-s",
               mapped_bytes=2 * PAGE),
        Holder(pid=reader.pid, comm="ipcm-sysv-r", fd=None, mapped=True, access="r", shared=True, prot="r--s",
               mapped_bytes=2 * PAGE),
    ], key=lambda holder: holder.pid))

    ipcs = ipcs_details("-m", memory.id)
    assert (int(ipcs["nattch"]), int(ipcs["bytes"])) == (found.nattch, found.size)
    assert (int(ipcs["cpid"]), int(ipcs["lpid"])) == (found.cpid, found.lpid)
    assert int(ipcs["access_perms"], 8) == found.mode


def test_segment_attached_twice_by_one_process(spawn: Spawn, cleanup: Cleanup) -> None:
    memory = create_shm(cleanup, PAGE)
    memory.detach()
    child = spawn(f"""
        import sysv_ipc
        first, second = sysv_ipc.attach({memory.id}), sysv_ipc.attach({memory.id})
        say("ready")
        hold()
    """, comm="ipcm-twice")
    child.expect()

    found = sysv_shm(memory.id)
    assert found.nattch == 2 == int(ipcs_details("-m", memory.id)["nattch"])
    # Both attachments are rw-s in one process: one holder with the bytes of both.
    assert found.holders == (
        Holder(pid=child.pid, comm="ipcm-twice", fd=None, mapped=True, access="rw", shared=True, prot="rw-s",
               mapped_bytes=2 * PAGE),
    )


def test_segment_removed_while_attached(spawn: Spawn, cleanup: Cleanup) -> None:
    memory = create_shm(cleanup, PAGE)
    memory.detach()
    child = spawn(ATTACHER.format(shmid=memory.id, read_only=False), comm="ipcm-sysv-rw")
    child.expect()
    memory.remove()

    found = sysv_shm(memory.id)
    assert found.removed is True
    assert found.key == 0  # IPC_PRIVATE once marked for removal
    assert found.nattch == 1
    assert [holder.pid for holder in found.holders] == [child.pid]

    listing = subprocess.run([tool("ipcs"), "-m"], capture_output=True, text=True, check=True).stdout
    (row,) = [line.split() for line in listing.splitlines() if line.split()[1:2] == [str(memory.id)]]
    assert row[-1] == "dest"
    assert int(ipcs_details("-m", memory.id)["mode"], 8) & 0o1000  # SHM_DEST


def test_message_queue_with_messages(spawn: Spawn, cleanup: Cleanup) -> None:
    queue = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX, mode=0o620)
    cleanup.sysv_msg(queue.id)
    sender = spawn(f"""
        import sysv_ipc
        queue = sysv_ipc.MessageQueue({queue.key})
        queue.send(b"first")
        queue.send(b"second!", type=2)
        say("ready")
        hold()
    """)
    sender.expect()

    snapshot = scan_kinds("sysv")
    (found,) = [msg for msg in snapshot.sysv.msg if msg.id == queue.id]
    assert found == SysvMsg(
        key=queue.key, id=queue.id, mode=0o620, qbytes=len(b"first") + len(b"second!"), qnum=2, lspid=sender.pid,
        lrpid=0, uid=0, gid=0, owner="root", stime=found.stime, rtime=0, ctime=found.ctime, place=HOST,
    )
    assert found.stime > 0
    ipcs = ipcs_details("-q", queue.id)
    assert (int(ipcs["cbytes"]), int(ipcs["qnum"])) == (found.qbytes, found.qnum)
    assert (int(ipcs["lspid"]), int(ipcs["lrpid"])) == (found.lspid, found.lrpid)

    # Scanning received nothing.
    assert queue.receive(block=False) == (b"first", 1)
    assert queue.receive(block=False) == (b"second!", 2)


def test_semaphore_set(cleanup: Cleanup) -> None:
    semaphore = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX, mode=0o600, initial_value=3)
    cleanup.sysv_sem(semaphore.id)

    (found,) = [sem for sem in scan_kinds("sysv").sysv.sem if sem.id == semaphore.id]
    assert found == SysvSem(key=semaphore.key, id=semaphore.id, mode=0o600, nsems=1, uid=0, gid=0, owner="root",
                            otime=found.otime, ctime=found.ctime, place=HOST)
    assert found.ctime > 0
    assert int(ipcs_details("-s", semaphore.id)["nsems"]) == found.nsems
