"""A fixed, made-up Snapshot for the dashboard's SVG snapshots and sorting tests: nothing here reads the kernel."""

from __future__ import annotations

from dataclasses import replace

from ipcmon.model import (
    KINDS,
    Budget,
    Capacity,
    Container,
    Holder,
    HolderUsage,
    MessageQueue,
    Namespace,
    Pipe,
    PipeEnd,
    Place,
    Process,
    ProcessSignals,
    ShmMount,
    ShmSegment,
    Snapshot,
    Stuck,
    Sysv,
    SysvShm,
    ThreadSignals,
    Waiting,
)

TAKEN_AT = 1_790_000_000.0
HOST = "testhost"
KERNEL = "6.1.0-canned"

HOSTILE_NAMES = (
    "/[@click=app.quit]x",
    "/foo[/]bar",
    "/title\x1b]2;pwned\x07",
    "/two\nlines",
    "/bad-utf8-\udcff\udcfe",
)


def _process(pid: int, comm: str, *cmdline: str, waiting: Waiting | None = None) -> Process:
    return Process(pid, 1, comm, cmdline or (comm,), 0, "root", 1000 + pid, TAKEN_AT - 300, waiting=waiting)


def _segment(name: str, inode: int, state: str, holders: tuple[Holder, ...] = (), size: int = 8192,
             kind: str = "shm") -> ShmSegment:
    # A semaphore is named as sem_open(3) was given it; its file is sem.NAME.
    return ShmSegment(
        name=name, path=f"/dev/shm/sem.{name[1:]}" if kind == "sem" else f"/dev/shm{name}",
        kind=kind, size=size,  # type: ignore[arg-type]
        allocated=size, mode=0o600, uid=0, gid=0, owner="root", group="root", mtime=TAKEN_AT - 60,
        ctime=TAKEN_AT - 60, dev=23, inode=inode, state=state,  # type: ignore[arg-type]
        holders=holders, pinned_bytes=size if state == "deleted" else 0,
    )


MIB = 1 << 20


def canned_capacity() -> Capacity:
    """A container's 64 MiB /dev/shm, 91 % full of files parked there (a hazard: warn), and budgets as a scan
    would read them: root's queues reserve /jobs' 82,880 bytes and /forgotten's 2,080 (ipc/mqueue.c), another
    user's limit in force is known but not what it uses."""
    mount = ShmMount(
        "/dev/shm", 23, size=64 * MIB, used=58 * MIB + 278528, available=5 * MIB + 770048, inodes_used=12,
        inodes_total=1_007_426, named=8192 + (1 << 20), deleted=65536, semaphores=4096,
        other=58 * MIB + 278528 - (8192 + (1 << 20)) - 65536 - 4096,
        top_holders=(HolderUsage(4242, "producer", 73728), HolderUsage(4243, "consumer", 12288)),
    )
    budgets = (
        Budget("mqueue", "fs.mqueue.queues_max", "queues", 2, 256),
        Budget("mqueue", "RLIMIT_MSGQUEUE", "bytes", 84960, 819200, uid=0, user="root", next_needs=82880),
        Budget("mqueue", "RLIMIT_MSGQUEUE", "bytes", None, 819200, uid=1000, user="alice", next_needs=82880,
               note="use unknown: alice's queues are not readable"),
        Budget("pipe", "fs.pipe-user-pages-soft", "pages", 48, 16384, uid=0, user="root"),
        Budget("signal", "RLIMIT_SIGPENDING", "signals", 1, 31000, uid=0, user="root"),
        Budget("sysv", "kernel.shmmni", "ids", 1, 4096),
        Budget("sysv", "kernel.shmall", "pages", 1, None, unlimited=True),
    )
    return Capacity((mount,), budgets, memory_total=8 * 1024 * MIB, shmem=312 * MIB, memory_available=5 * 1024 * MIB)


def canned_snapshot(*, hostile: bool = False, extra_shm: tuple[ShmSegment, ...] = ()) -> Snapshot:
    writer_waits = Waiting("write", 3, "pipe_write", "fifo:/tmp/myfifo", "fifo:12:5710", "write")
    processes = (
        _process(4242, "producer", "python3", "producer.py", "--frames"),
        _process(4243, "consumer", "python3", "consumer.py"),
        _process(4300, "forgetful", "./forgetful"),
        _process(4310, "writer", "./writer", waiting=writer_waits),
        _process(4311, "reader", "./reader"),
        _process(4400, "worker", "./worker"),
    )
    shm = [
        _segment("/demo-frames", 101, "held", (
            Holder(4242, "producer", 3, False, "rw"),
            Holder(4243, "consumer", None, True, "rw", True, "rw-s", 8192),
        )),
        _segment("/old-cache", 102, "orphaned", size=1 << 20),
        _segment("/unlinked-buffer", 103, "deleted", (Holder(4242, "producer", None, True, "r", True, "r--s", 65536),),
                 size=65536),
        _segment("/ticket", 104, "held", (Holder(4243, "consumer", None, True, "rw", True, "rw-s", 32),), size=32,
                 kind="sem"),
    ]
    if hostile:
        shm.extend(_segment(name, 200 + index, "orphaned") for index, name in enumerate(HOSTILE_NAMES))
    shm.extend(extra_shm)
    queues = (
        MessageQueue(
            name="/jobs", path="/dev/mqueue/jobs", qsize_bytes=70, messages=10, max_messages=10, message_size=8192,
            notify=0, signo=10, notify_pid=4243, uid=0, gid=0, owner="root", mode=0o600, dev=24, inode=301,
            holders=(Holder(4242, "producer", 4, False, "w"), Holder(4243, "consumer", 4, False, "r")),
            mtime=TAKEN_AT - 5,
        ),
        MessageQueue(
            name="/forgotten", path="/dev/mqueue/forgotten", qsize_bytes=0, messages=0, max_messages=10,
            message_size=128, notify=None, signo=None, notify_pid=None, uid=0, gid=0, owner="root", mode=0o644,
            dev=24, inode=302, mtime=TAKEN_AT - 3600,
        ),
    )
    pipes = (
        Pipe(5637, 12, "pipe", None, 0, 65536, (PipeEnd(4242, "producer", 1),), (PipeEnd(4243, "consumer", 0),)),
        Pipe(5702, 12, "pipe", None, 12, 65536, (PipeEnd(4300, "forgetful", 4),), (PipeEnd(4300, "forgetful", 3),),
             ("both-ends",)),
        Pipe(5710, 12, "fifo", "/tmp/myfifo", 65536, 65536, (PipeEnd(4310, "writer", 3),), (), ("no-reader", "full")),
    )
    signals = (
        ProcessSignals(
            4400, "worker", ("SIGUSR1",), ("SIGUSR1",), ("SIGINT",), ("SIGUSR1", "SIGTERM"),
            (
                ThreadSignals(4400, "worker", (), ("SIGUSR1",)),
                ThreadSignals(4401, "worker-io", ("SIGRTMIN+3",), ("SIGRTMIN+3",)),
            ),
            queued=1, queue_limit=31000,
        ),
        ProcessSignals(4242, "producer", (), (), (), ("SIGTERM",), (ThreadSignals(4242, "producer", (), ()),)),
        ProcessSignals(4310, "writer", (), (), ("SIGPIPE",), (), (ThreadSignals(4310, "writer", (), ()),)),
    )
    sysv = Sysv(shm=(SysvShm(key=0x1234, id=65538, mode=0o600, size=4096, nattch=0, cpid=4242, lpid=4242, uid=0, gid=0,
                             owner="root", atime=0, dtime=0, ctime=int(TAKEN_AT) - 100, rss=4096, removed=False),))
    return Snapshot(
        taken_at=TAKEN_AT,
        kinds=KINDS,
        processes=processes,
        hidden_processes=1,
        shm=tuple(shm),
        mqueues=queues,
        pipes=pipes,
        signals=signals,
        sysv=sysv,
        notes=("1 processes could not be fully read (not permitted): objects only they hold may show as orphaned.",),
        shm_dir="/dev/shm",
        mqueue_dir="/dev/mqueue",
        scan_seconds=0.012,
        # The writer blocked on the full FIFO (its reader went: canned, as waiting.analyse would word it).
        stuck=(Stuck(4310, "writer", writer_waits, "blocked", (), "nobody: no process holds the read end",
                     TAKEN_AT - 125),),
        capacity=canned_capacity(),
    )


def later_snapshot() -> Snapshot:
    """The canned snapshot two seconds later: a segment created and attached, one destroyed, a queue drained."""
    first = canned_snapshot()
    new = _segment("/fresh", 105, "held", (Holder(4243, "consumer", 5, False, "rw"),))
    shm = (*(s for s in first.shm if s.name != "/old-cache"), new)
    queues = (replace(first.mqueues[0], messages=4, qsize_bytes=28), *first.mqueues[1:])
    return replace(first, taken_at=TAKEN_AT + 2, shm=shm, mqueues=queues)


class Sequence:
    """A snapshot source that returns each snapshot in turn, then the last one forever."""

    def __init__(self, *snapshots: Snapshot) -> None:
        self.snapshots = list(snapshots)
        self.calls = 0

    def __call__(self) -> Snapshot:
        self.calls += 1
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]


HOST_PLACE = Place(4026531839, 4026531841, host=True)
WEB = Container("3f2a9c1d0b7e" + "5" * 52, "docker", name="web-1")
WEB_PLACE = Place(4026532281, 4026532279, container=WEB)
BATCH_PLACE = Place(4026532290, 4026532288, container=Container("9b1e0c7d2a44" + "7" * 52, "podman"))


def containers_snapshot() -> Snapshot:
    """The canned snapshot on a machine that runs two containers (issue 15): the host's objects placed on the host,
    a docker container ``web-1`` with a segment of the same name as the host's (/demo-frames) held by its pid 1, a
    queue, a SysV segment with the host's key, and its own 64 MiB /dev/shm 95 % full; a podman container with no
    name and an orphan; an unreadable namespace."""
    base = canned_snapshot()
    host_shm = tuple(replace(segment, place=HOST_PLACE) for segment in base.shm)
    web_holder = Holder(7001, "gunicorn", 5, False, "rw", nspid=1)
    web_segment = replace(base.shm[0], dev=61, inode=11, holders=(web_holder,), path="/dev/shm/demo-frames",
                          place=WEB_PLACE)
    batch_orphan = replace(base.shm[1], name="/batch-spill", dev=62, inode=12, place=BATCH_PLACE)
    web_queue = replace(base.mqueues[1], name="/web-jobs", path="/dev/mqueue/web-jobs", dev=63, inode=13,
                        holders=(Holder(7001, "gunicorn", 6, False, "rw", nspid=1),), place=WEB_PLACE)
    queues = (*(replace(queue, place=HOST_PLACE) for queue in base.mqueues), web_queue)
    sysv = replace(base.sysv, shm=(replace(base.sysv.shm[0], place=HOST_PLACE),
                                   replace(base.sysv.shm[0], id=0, cpid=1, lpid=1, place=WEB_PLACE)))
    processes = (*(replace(process, place=HOST_PLACE) for process in base.processes),
                 replace(_process(7001, "gunicorn", "gunicorn", "app:web"), place=WEB_PLACE, nspid=1),
                 replace(_process(7100, "batch", "./batch"), place=BATCH_PLACE, nspid=1))
    assert base.capacity is not None
    host_mount = replace(base.capacity.shm_mounts[0], size=4 * 1024 * MIB, used=70 * MIB, available=4000 * MIB,
                         place=HOST_PLACE)
    web_mount = ShmMount("/proc/7001/root/dev/shm", 61, size=64 * MIB, used=61 * MIB, available=3 * MIB,
                         inodes_used=3, inodes_total=1000, named=61 * MIB, deleted=0, semaphores=0, other=0,
                         top_holders=(HolderUsage(7001, "gunicorn", 61 * MIB),), place=WEB_PLACE)
    namespaces = (
        Namespace(HOST_PLACE, 6, "/dev/shm", 23, "/dev/mqueue", 24, True),
        Namespace(WEB_PLACE, 1, "/proc/7001/root/dev/shm", 61, "/proc/7001/root/dev/mqueue", 63, True),
        Namespace(BATCH_PLACE, 1, "/proc/7100/root/dev/shm", 62, None, None, False, "partial",
                  "SysV not read: setns refused (not permitted)"),
    )
    return replace(base, shm=(*host_shm, web_segment, batch_orphan), mqueues=queues, sysv=sysv, processes=processes,
                   capacity=replace(base.capacity, shm_mounts=(host_mount, web_mount)), namespaces=namespaces)
