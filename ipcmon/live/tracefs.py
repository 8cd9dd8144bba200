"""A private tracefs instance for attribution (issue 16): who sent which signal to whom, who opened or removed a queue.

The kernel's trace events are read through an instance of ipcmon's own under ``instances/`` of the tracing directory
(Documentation/trace/ftrace.rst, "Instances"), so the machine's main trace buffer and anyone else's instances are
left alone. The instance is named ``ipcmon-<pid>-<start ticks>`` (``-1``, ``-2``… after it for more instances of
one process): it is removed on close, and :func:`remove_stale`
removes one whose process is gone (an ipcmon killed with SIGKILL) at the next start.

Events used (include/trace/events/signal.h, syscalls): ``signal:signal_generate`` (the sender is the task of the
record; the target, signal and result are its fields), ``syscalls:sys_enter_mq_open`` and
``syscalls:sys_enter_mq_unlink`` (the caller is the task; the name is a pointer into its memory), and their
``sys_exit_*`` returns (whether the call worked), and ``task:task_newtask`` and ``task:task_rename``
(include/trace/events/task.h): each task's command name as it was when it acted. The comm printed at the head of a
record is looked up in saved_cmdlines when the line is read, so a process that renamed itself (exec, prctl
PR_SET_NAME) and acted before its next context switch is printed under its old name.

tracefs may not be mounted: mounting it is a system change left to the user (:data:`MOUNT_HINT`). Creating an
instance needs root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ipcmon.live.ready import readable

TRACING_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
"""Where tracefs is mounted on modern kernels, and where it appears inside debugfs on older ones."""
MOUNT_HINT = "mount -t tracefs nodev /sys/kernel/tracing"
PREFIX = "ipcmon-"

READ_CHUNKS = 16
"""64 KiB reads of trace_pipe per TraceInstance.read at most (what is left is there for the next call)."""

SIGNAL_GENERATE = "signal/signal_generate"
MQ_OPEN = "syscalls/sys_enter_mq_open"
MQ_UNLINK = "syscalls/sys_enter_mq_unlink"
MQ_OPEN_EXIT = "syscalls/sys_exit_mq_open"
MQ_UNLINK_EXIT = "syscalls/sys_exit_mq_unlink"
"""A system call's return: the record of the same task that follows its entry says whether it worked (``ret``)."""
TASK_NEWTASK = "task/task_newtask"
TASK_RENAME = "task/task_rename"
"""A new task (``pid``, the parent's ``comm`` it starts with) and a task's new name (exec, prctl PR_SET_NAME):
with both, the name a task had when it acted is known exactly, whatever saved_cmdlines says when the line is read."""

RESULTS = {0: "delivered", 1: "ignored", 2: "already pending", 3: "queue full", 4: "delivered without info"}
"""signal_generate's ``res`` (include/trace/events/signal.h, enum trace_signal_result). ``delivered`` means queued to
the target: whether the target blocks it is read from the target's mask, not from the event."""

_LINE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<tid>\d+)\s+(?:\(\s*(?P<tgid>[-\d]+)\)\s+)?\[(?P<cpu>\d+)\]\s+\S+\s+"
    r"(?P<time>\d+\.\d+):\s+(?P<event>\w+)(?::\s?(?P<body>.*)|\((?P<arguments>.*)\)| -> (?P<ret>0x[0-9a-f]+))$"
)
_SIGNAL = re.compile(
    r"^sig=(?P<sig>-?\d+) errno=(?P<errno>-?\d+) code=(?P<code>-?\d+) comm=(?P<comm>.*) pid=(?P<pid>-?\d+) "
    r"grp=(?P<grp>\d+) res=(?P<res>\d+)$"
)
_NEWTASK = re.compile(
    r"^pid=(?P<pid>-?\d+) comm=(?P<comm>.*) clone_flags=(?P<clone_flags>[0-9a-f]+) oom_score_adj=(?P<adj>-?\d+)$")
_RENAME = re.compile(  # Linux 6.14 dropped pid= (it is always the task of the record)
    r"^(?:pid=(?P<pid>-?\d+) )?oldcomm=(?P<oldcomm>.*?) newcomm=(?P<newcomm>.*) oom_score_adj=(?P<adj>-?\d+)$")
_SHAPES = {"signal_generate": _SIGNAL, "task_newtask": _NEWTASK, "task_rename": _RENAME}
"""Events whose print format holds a comm, which may hold spaces and ``=``: matched whole, by their format."""
_ARGUMENT = re.compile(r"(\w+): (0x[0-9a-f]+|-?\d+)")
_ASSIGNMENT = re.compile(r"(\w+)=(\S*)")
"""``key=value`` in an event's print format (``sched_process_fork: comm=sh pid=1 child_comm=sh child_pid=2``): a comm
holding spaces or ``=`` may add stray keys, but the fields after it, printed later, win (the last of a key is kept)."""


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One line of an instance's trace_pipe: who (the task that was running), when, which event, and its fields."""

    comm: str
    """The acting task's command name, as the trace recorded it. Untrusted: show it through safe.printable."""
    tid: int
    tgid: int | None
    """The acting task's process id (with ``record-tgid``); None when the trace did not say."""
    cpu: int
    time: float
    """Seconds on the instance's trace clock (``local`` by default: seconds since boot, per CPU; ``mono``:
    CLOCK_MONOTONIC, what time.monotonic() reads)."""
    event: str
    """The event as the trace prints it: ``signal_generate``; a system call's entry and its return both as
    ``sys_mq_open`` (a return has the one field ``ret``: :attr:`returned`)."""
    fields: dict[str, str]
    """The event's fields by name, as text: ``sig``, ``comm``, ``pid``, ``res`` for signal_generate; ``u_name``,
    ``oflag``… for a system call's entry, ``ret`` for its return; ``child_pid`` for sched_process_fork and
    ``group_dead`` for sched_process_exit (numbers in the kernel's own base: pointers and
    return values in hex)."""

    @property
    def pid(self) -> int:
        """The acting process: its tgid when recorded, else the thread id."""
        return self.tgid if self.tgid is not None and self.tgid > 0 else self.tid

    @property
    def returned(self) -> int | None:
        """For a system call's return record, its return value as a signed number (``-2``: -ENOENT); else None."""
        ret = self.fields.get("ret")
        if ret is None:
            return None
        value = int(ret, 16)
        return value - (1 << 64) if value >= 1 << 63 else value


def parse_line(line: str) -> TraceRecord | None:
    """A trace_pipe line, or None for a line of no known shape (a lost-events notice, a line cut short)."""
    match = _LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    body = match["body"] if match["body"] is not None else match["arguments"]
    fields: dict[str, str]
    if match["ret"] is not None:
        fields = {"ret": match["ret"]}
    elif match["event"] in _SHAPES:
        shaped = _SHAPES[match["event"]].match(body)
        if shaped is None and match["event"] in ("task_rename", "task_newtask"):
            # A name with a newline in it cuts the line (the trace prints comm as it is): the task is named
            # something unknown now. Its pid, when printed, comes first.
            pid = re.match(r"pid=(-?\d+) ", body)
            fields = {"pid": pid.group(1)} if pid else {}
        elif shaped is None:
            return None
        else:
            fields = {key: value for key, value in shaped.groupdict().items() if value is not None}
    else:
        fields = dict(_ARGUMENT.findall(body)) or dict(_ASSIGNMENT.findall(body))
    tgid = match["tgid"]
    return TraceRecord(match["comm"], int(match["tid"]), int(tgid) if tgid and tgid.lstrip("-").isdigit() else None,
                       int(match["cpu"]), float(match["time"]), match["event"], fields)


def tracing_dir() -> str | None:
    """The mounted tracing directory (with an ``instances`` directory), or None when tracefs is not mounted."""
    for directory in TRACING_DIRS:
        if os.path.isdir(os.path.join(directory, "instances")):
            return directory
    return None


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def instance_name(pid: int | None = None) -> str:
    """``ipcmon-<pid>-<start ticks>``: unique to one process for its lifetime, and tells a stale one apart."""
    pid = os.getpid() if pid is None else pid
    return f"{PREFIX}{pid}-{_start_ticks(pid) or 0}"


def stale_instances(tracing: str) -> list[str]:
    """Names of ipcmon instances whose process is gone (or whose pid now names another process)."""
    try:
        names = os.listdir(os.path.join(tracing, "instances"))
    except OSError:
        return []
    stale = []
    for name in names:
        parts = name.removeprefix(PREFIX).split("-")
        if not name.startswith(PREFIX) or len(parts) not in (2, 3) or not all(part.isdigit() for part in parts):
            continue
        if _start_ticks(int(parts[0])) != parts[1]:
            stale.append(name)
    return stale


def remove_stale(tracing: str) -> list[str]:
    """Remove the instances :func:`stale_instances` names; returns those removed (a refusal keeps one, silently)."""
    removed = []
    for name in stale_instances(tracing):
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(tracing, "instances", name))
            removed.append(name)
    return removed


class TraceInstance:
    """ipcmon's own tracefs instance with some events enabled, read without blocking; a context manager that
    removes it.

    Raises FileNotFoundError when tracefs is not mounted (say :data:`MOUNT_HINT`), PermissionError when not
    root, and OSError(ENOENT) naming the event when the kernel has no such event (no CONFIG_FTRACE_SYSCALLS).
    clock: the instance's trace_clock (``mono`` stamps records on CLOCK_MONOTONIC); None keeps the kernel's
    default (``local``)."""

    def __init__(self, events: Iterable[str], tracing: str | None = None, *, clock: str | None = None) -> None:
        tracing = tracing or tracing_dir()
        if tracing is None:
            raise FileNotFoundError(errno.ENOENT, f"tracefs is not mounted (as root: {MOUNT_HINT})")
        remove_stale(tracing)
        # A second instance of one process (a recorder and a watch in one dashboard) is ``…-TICKS-1``, and so on.
        base = os.path.join(tracing, "instances", instance_name())
        for serial in range(64):
            self.path = base if serial == 0 else f"{base}-{serial}"
            try:
                os.mkdir(self.path, 0o700)
                break
            except FileExistsError:
                if serial == 63:
                    raise
        self._pipe = -1
        self._partial = b""
        try:
            self._write("options/record-tgid", "1")
            if clock is not None:
                self._write("trace_clock", clock)
            for event in events:
                try:
                    self._write(f"events/{event}/enable", "1")
                except FileNotFoundError:
                    raise FileNotFoundError(errno.ENOENT, f"this kernel has no trace event {event}") from None
            self._pipe = os.open(os.path.join(self.path, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def _write(self, relative: str, value: str) -> None:
        with open(os.path.join(self.path, relative), "w") as file:
            file.write(value)

    def fileno(self) -> int:
        return self._pipe

    def read(self, timeout: float | None = 0.0) -> list[TraceRecord]:
        """The records in the buffer now, waiting up to timeout seconds for the first (None: until one comes)."""
        ready = readable([self._pipe], timeout)
        if not ready:
            return []
        chunks = []
        # At most READ_CHUNKS reads a call: on a busy machine the buffer fills as fast as it is read, and a caller
        # that drains it to the end would never come back (to its other sources, or to a stop).
        for _ in range(READ_CHUNKS):
            try:
                chunk = os.read(self._pipe, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = self._partial + b"".join(chunks)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        records = (parse_line(line.decode("utf-8", "surrogateescape")) for line in lines)
        return [record for record in records if record is not None]

    def lost(self) -> int:
        """Events the kernel dropped because the buffer was full (the ``overrun`` of every CPU's stats)."""
        total = 0
        try:
            cpus = os.listdir(os.path.join(self.path, "per_cpu"))
        except OSError:
            return 0
        for cpu in cpus:
            with contextlib.suppress(OSError), open(os.path.join(self.path, "per_cpu", cpu, "stats")) as stats:
                for line in stats:
                    if line.startswith("overrun:"):
                        total += int(line.split()[1])
        return total

    def close(self) -> None:
        """Close the pipe and remove the instance (its events go with it)."""
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.path)

    def __enter__(self) -> TraceInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
