"""The records of one scan: processes and their holds, and one record per IPC object (shm, memfd and anonymous
regions, queues, pipes, signals, SysV IPC), each with its stable key and label."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ipcmon.model.places import Place
from ipcmon.model.vocabulary import (
    Access,
    PipeFlag,
    PipeKind,
    RegionKind,
    ShmKind,
    ShmState,
    WaitKind,
    file_key,
    pipe_ref,
    sysv_label,
    sysv_object_key,
)


@dataclass(frozen=True, slots=True)
class ProcessKey:
    """A process identity that survives pid reuse: the pid plus its start time in clock ticks."""

    pid: int
    start_ticks: int


@dataclass(frozen=True, slots=True)
class Watched:
    """One IPC descriptor in the set a process blocked in poll, ppoll, select, pselect6 or epoll_wait watches."""

    fd: int
    object: str
    """The object in words, as ``Waiting.object``: ``pipe:[INODE]``, ``fifo:PATH``, ``mqueue:/NAME``."""
    key: str | None
    """Its ``object_key`` when it is one ipcmon lists."""
    events: str
    """What it waits for on it: ``read``, ``write`` or ``read,write`` (POLLIN/POLLOUT, the fd_set it is in,
    the epoll event mask)."""


@dataclass(frozen=True, slots=True)
class Waiting:
    """What a process is blocked on, read from /proc/PID/syscall and /proc/PID/wchan (and, where permitted, the
    system call's arguments in the process's memory: a poll set, a FIFO's path, a signal set)."""

    syscall: str
    """System call name (``write``, ``mq_timedsend``, ``pause``…) or ``nr=N`` when unknown."""
    fd: int | None
    """The descriptor argument, for calls that take one."""
    wchan: str
    """Kernel function the task sleeps in (``pipe_write``, ``do_sigtimedwait``…), may be empty."""
    object: str | None
    """The IPC object waited on, in words: ``pipe:[INODE]``, ``mqueue:/NAME``, ``fifo:PATH``, ``signal``,
    ``child 42``; for a poll, the first IPC object of its set."""
    key: str | None = None
    """The waited-on object's ``object_key`` when it is one ipcmon lists."""
    kind: WaitKind = "read"
    """How it waits (vocabulary.WaitKind)."""
    path: str | None = None
    """For ``open``: the FIFO's path, read from the caller's memory; None when it could not be read."""
    missing: Literal["reader", "writer"] | None = None
    """For ``open``: the end nobody has open, that the open waits for (a reader for O_WRONLY, a writer for
    O_RDONLY); None when the open flags could not be read."""
    watched: tuple[Watched, ...] = ()
    """For ``poll``: the IPC descriptors in the watched set; () when the set could not be read."""
    children: tuple[int, ...] = ()
    """For ``child``: the pids of the children it waits for (every child for wait(-1)); () for none known."""
    signals: tuple[str, ...] = ()
    """For ``signal``: the signals that would end the wait, by name (text.signal_name); () when unknown."""
    timed: bool = False
    """The call was given a timeout, so it returns by itself (poll, ppoll, select, pselect6, epoll_wait,
    mq_timedsend/mq_timedreceive, rt_sigtimedwait, semtimedop with a timeout), told from its argument
    registers; a timed wait is never part of a deadlock."""
    other_watched: int = 0
    """For ``poll``: how many descriptors of the watched set are not pipes, FIFOs or queues (sockets,
    eventfds, timers…): any of them could end the wait too."""
    since: float | None = field(default=None, compare=False)
    """When the process last ran, as a Unix epoch (collect/schedclock.py: se.exec_start of /proc/PID/sched);
    None when the kernel does not say. Not compared: the same wait is the same wait whenever it began."""


@dataclass(frozen=True, slots=True)
class Process:
    """A process seen during the scan."""

    pid: int
    ppid: int
    comm: str
    cmdline: tuple[str, ...]
    uid: int | None
    user: str | None
    start_ticks: int
    """Start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    start_time: float
    """Start time as a Unix epoch."""
    hidden: bool = False
    """True when its descriptors or mappings could not be read (permission denied)."""
    waiting: Waiting | None = None
    place: Place | None = None
    """Its IPC and mount namespaces and container (collect/namespaces.py); None when not read."""
    nspid: int | None = None
    """Its pid inside its own pid namespace (the last field of ``NSpid`` in /proc/PID/status) when that differs
    from the host pid; None when the same, or unknown."""
    state: str = ""
    """The state letter /proc/PID/stat showed when it was read (field 3; proc(5)): ``R`` running, ``S`` sleeping,
    ``D`` uninterruptible, ``T`` stopped (by a signal), ``t`` stopped by its tracer, ``Z`` zombie, ``I`` an idle
    kernel thread; "" when not read."""

    @property
    def key(self) -> ProcessKey:
        return ProcessKey(self.pid, self.start_ticks)


@dataclass(frozen=True, slots=True)
class Holder:
    """One process holding an IPC object, by descriptor or by mapping (one record per fd or mapping)."""

    pid: int
    comm: str
    fd: int | None
    """The descriptor number, or None for a holder by mapping only."""
    mapped: bool
    access: Access
    """For a descriptor, its open mode; for a mapping, the mapping's protection (``r``, ``rw``)."""
    shared: bool | None = None
    """For a mapping: MAP_SHARED (True) or MAP_PRIVATE (False)."""
    prot: str | None = None
    """For a mapping: the perms column of /proc/PID/maps (``rw-s``)."""
    mapped_bytes: int | None = None
    """For a mapping: the bytes mapped."""
    nspid: int | None = None
    """The holder's pid inside its container's pid namespace (Process.nspid); None when the same as pid."""


@dataclass(frozen=True, slots=True)
class ShmSegment:
    """A POSIX shared memory object or named semaphore in the shm directory (or pinned after unlink)."""

    name: str
    """POSIX name with its leading slash (``/foo``); a semaphore's is the name sem_open(3) was given (``/foo``
    for the file ``sem.foo``, kind ``sem``)."""
    path: str
    kind: ShmKind
    size: int
    allocated: int
    """Bytes of memory actually used (st_blocks × 512); sparse segments allocate less than size."""
    mode: int | None
    """Permission bits; None when unknown (an unlinked segment held only by a mapping, not root)."""
    uid: int | None
    gid: int | None
    owner: str | None
    group: str | None
    mtime: float | None
    ctime: float | None
    dev: int
    inode: int
    state: ShmState
    holders: tuple[Holder, ...] = ()
    pinned_bytes: int = 0
    """For a deleted segment, the memory it still pins (allocated bytes, or mapped bytes if unknown)."""
    place: Place | None = None
    """The namespace whose shm tmpfs it is on (the first, host first, of those that share the mount); None when
    not known. Its identity needs no more: each tmpfs has its own device number."""

    @property
    def object_key(self) -> str:
        """Stable identity across snapshots (a row key, an event's object key)."""
        return file_key(self.kind, self.dev, self.inode)

    @property
    def label(self) -> str:
        """What a person calls it: its POSIX name."""
        return self.name


@dataclass(frozen=True, slots=True)
class SharedRegion:
    """Shared memory with no name in the shm directory: a ``memfd_create`` file or a ``MAP_SHARED|MAP_ANONYMOUS``
    region (issue 11). Both live on the kernel's internal shm mount; /proc shows them as ``/memfd:NAME (deleted)``
    and ``/dev/zero (deleted)`` in fd links and maps. Such a region dies with its last holder: never orphaned."""

    kind: RegionKind
    name: str
    """The memfd's name as given to ``memfd_create`` (without ``memfd:``), or ``anonymous``."""
    dev: int
    inode: int
    size: int | None
    """Bytes (st_size of the file, or the largest mapping); None when unknown."""
    allocated: int | None
    """Bytes of memory actually used (st_blocks × 512) where the kernel says; None when unknown."""
    holders: tuple[Holder, ...] = ()

    @property
    def object_key(self) -> str:
        return file_key(self.kind, self.dev, self.inode)

    @property
    def label(self) -> str:
        """The memfd's name; ``anonymous:[INODE]`` for an anonymous region, which has no name to tell it by."""
        return self.name if self.kind == "memfd" else f"{self.name}:[{self.inode}]"


@dataclass(frozen=True, slots=True)
class MessageQueue:
    """A POSIX message queue, from the mqueue filesystem or seen only through a holder's descriptor."""

    name: str
    path: str | None
    """Path in the mounted mqueue filesystem, or None when none is mounted or the queue was unlinked."""
    qsize_bytes: int | None
    """Bytes queued (QSIZE); None when the queue could not be opened to ask."""
    messages: int | None
    """Messages queued (mq_curmsgs); None when the queue could not be opened to ask."""
    max_messages: int | None
    message_size: int | None
    notify: int | None
    """Notification method (SIGEV_SIGNAL=0, SIGEV_NONE=1, SIGEV_THREAD=2) when one is registered."""
    signo: int | None
    notify_pid: int | None
    uid: int | None
    gid: int | None
    owner: str | None
    mode: int | None
    dev: int
    inode: int
    holders: tuple[Holder, ...] = ()
    deleted: bool = False
    """Unlinked but still open by a holder."""
    mtime: float | None = None
    """Last send or receive (the queue file's mtime)."""
    maybe_held: bool = False
    """No process ipcmon could read has it open, but one it could not read might (``health.qualify``): it is then
    not known to be orphaned (``health.queue_state`` reads ``orphaned?``)."""
    place: Place | None = None
    """The IPC namespace whose mqueue filesystem it is on; None when not known. Each IPC namespace's mqueue
    filesystem has its own device number, so its identity needs no more."""

    @property
    def object_key(self) -> str:
        return file_key("mqueue", self.dev, self.inode)

    @property
    def label(self) -> str:
        return self.name

    @property
    def fill(self) -> float | None:
        """Fill fraction (0–1) by message count, None when unknown."""
        if self.messages is None or not self.max_messages:
            return None
        return self.messages / self.max_messages


@dataclass(frozen=True, slots=True)
class PipeEnd:
    """One descriptor on a pipe or FIFO."""

    pid: int
    comm: str
    fd: int


@dataclass(frozen=True, slots=True)
class Pipe:
    """An anonymous pipe or a FIFO, grouped by inode across every process holding it."""

    inode: int
    dev: int
    kind: PipeKind
    path: str | None
    """For a FIFO, its path (as the holder's descriptor shows it)."""
    buffered: int | None
    """Bytes waiting to be read; None when no descriptor could be borrowed to ask."""
    capacity: int | None
    readers: tuple[PipeEnd, ...]
    writers: tuple[PipeEnd, ...]
    flags: tuple[PipeFlag, ...] = ()

    @property
    def object_key(self) -> str:
        return file_key(self.kind, self.dev, self.inode)

    @property
    def label(self) -> str:
        """What a person calls it: a FIFO's path, else ``pipe:[INODE]``."""
        return self.path or f"pipe:[{self.inode}]"

    @property
    def ref(self) -> str:
        """How events and waits name it (``Waiting.object``): ``pipe:[INODE]`` or ``fifo:PATH``."""
        return pipe_ref(self.kind, self.inode, self.path)


@dataclass(frozen=True, slots=True)
class ThreadSignals:
    """Per-thread signal state (thread-directed pending, and the thread's blocked mask)."""

    tid: int
    comm: str
    pending: tuple[str, ...]
    blocked: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProcessSignals:
    """Signal dispositions and masks of one process, decoded to names."""

    pid: int
    comm: str
    pending: tuple[str, ...]
    """Process-directed pending (ShdPnd)."""
    blocked: tuple[str, ...]
    """Blocked mask of the main thread."""
    ignored: tuple[str, ...]
    caught: tuple[str, ...]
    threads: tuple[ThreadSignals, ...] = ()
    queued: int | None = None
    """Signals queued for the real user (first half of SigQ)."""
    queue_limit: int | None = None

    @property
    def object_key(self) -> str:
        return f"signal:{self.pid}"

    @property
    def label(self) -> str:
        """``PID COMM``."""
        return f"{self.pid} {self.comm}"


@dataclass(frozen=True, slots=True)
class SysvShm:
    key: int
    id: int
    mode: int
    size: int
    nattch: int
    cpid: int
    lpid: int
    uid: int
    gid: int
    owner: str | None
    atime: int
    dtime: int
    ctime: int
    rss: int | None
    removed: bool
    """Marked for removal (IPC_RMID) but still attached: its key reads as IPC_PRIVATE."""
    holders: tuple[Holder, ...] = ()
    cuid: int | None = None
    """The creator's uid (with the owner ``uid``, who may remove it: shmctl(2) IPC_RMID); None when unknown."""
    place: Place | None = None
    """Its IPC namespace (``mnt`` None); None when not known, or ipcmon's own."""

    @property
    def object_key(self) -> str:
        return sysv_object_key("sysv-shm", self.id, self.place)

    @property
    def label(self) -> str:
        return sysv_label(self.key, self.id)


@dataclass(frozen=True, slots=True)
class SysvMsg:
    key: int
    id: int
    mode: int
    qbytes: int
    """Bytes currently queued (cbytes)."""
    qnum: int
    lspid: int
    lrpid: int
    uid: int
    gid: int
    owner: str | None
    stime: int
    rtime: int
    ctime: int
    place: Place | None = None
    """Its IPC namespace (``mnt`` None); None when not known, or ipcmon's own."""

    @property
    def object_key(self) -> str:
        return sysv_object_key("sysv-msg", self.id, self.place)

    @property
    def label(self) -> str:
        return sysv_label(self.key, self.id)


@dataclass(frozen=True, slots=True)
class SysvSem:
    key: int
    id: int
    mode: int
    nsems: int
    uid: int
    gid: int
    owner: str | None
    otime: int
    ctime: int
    place: Place | None = None
    """Its IPC namespace (``mnt`` None); None when not known, or ipcmon's own."""

    @property
    def object_key(self) -> str:
        return sysv_object_key("sysv-sem", self.id, self.place)

    @property
    def label(self) -> str:
        return sysv_label(self.key, self.id)


@dataclass(frozen=True, slots=True)
class Sysv:
    shm: tuple[SysvShm, ...] = ()
    msg: tuple[SysvMsg, ...] = ()
    sem: tuple[SysvSem, ...] = ()
    available: bool = True
    """False when /proc/sysvipc is missing (kernel without CONFIG_SYSVIPC, or /proc not mounted)."""
    read: tuple[int, ...] = ()
    """The IPC namespaces (inodes) whose objects are listed: ipcmon's own and every other one entered."""
    unread: tuple[int, ...] = ()
    """The IPC namespaces a process runs in whose objects could not be read (not permitted), said in a note."""
