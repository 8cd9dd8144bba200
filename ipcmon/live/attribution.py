"""Who did it (issue 16): fanotify on every shm tmpfs and a private tracefs instance, turned into Attribution records.

:class:`Attributor` runs the sources on a thread of its own, which only selects on their descriptors, reads what is
there and turns it into records, so the kernel side never waits on ipcmon (a slow reader loses events, counted in
``lost``, never stalls a process). Its sources:

- **fanotify** (root), one group with a filesystem mark per shm tmpfs (the host's ``/dev/shm``, each container's
  ``/proc/PID/root/dev/shm``): FAN_CREATE → ``created``, FAN_DELETE → ``removed``, FAN_MOVED_FROM/TO → one
  ``renamed`` (``/old → /new``); with ``opens``, FAN_OPEN → ``opened`` and FAN_CLOSE_* → ``closed``. Opens and
  closes are left out by default: every shm_open and sem_open makes two, and who created and who removed is what
  leaks ask. Entries ``sem.NAME`` are semaphores ``/NAME`` (collect.shm.name_of). The key (``shm:DEV:INODE``) comes
  from the entry's own file handle (FAN_REPORT_TARGET_FID, Linux 5.17), so a removed entry is keyed too; on an
  older kernel it is stat'ed at once (None when already gone). glibc's sem_open makes a semaphore under a temporary
  name and links it: the temporary name's create and delete are dropped.
- **tracefs** (root, tracefs mounted), one private instance: ``signal_generate`` → ``sent`` (sender, target, signal,
  result; the target's SigBlk/SigIgn read just after give ``blocked``/``ignored``; a signal the kernel raised has
  ``actor.kernel`` and the ``cause`` its code names); ``sys_enter``/``sys_exit`` of ``mq_open`` and ``mq_unlink``,
  paired by thread → ``created`` (a successful mq_open with O_CREAT that made the queue), ``opened`` (with
  ``opens``: one that did not), ``removed`` (a successful mq_unlink). Failed calls make no record.
  A queue mq_open returned is named by the descriptor it returned while the caller keeps it open
  (/proc/PID/fd/N: name and key exact). Else the name is read from the caller's memory (/proc/PID/mem at the
  call's ``u_name``) when the record is read, and trusted only when the mqueue directory confirms it (that entry
  appeared or went just then, or a made queue exists, a removed one was known): the caller may have freed and
  reused the buffer by then. The directory is watched with an inotify descriptor of this thread's own. An mq_open
  with O_CREAT but not O_EXCL made the queue only if that entry appeared just then; else it opened an existing one
  (without an mqueue mount to watch, it is always taken for an open). A call whose name cannot be read (the caller
  is gone) is tied to the one entry that appeared (or went) within 2 × SETTLE of it that no other call claimed or
  names; if there is not exactly one, the record's object is :data:`UNTIED` and its key None. Queues in another
  IPC namespace (a container's) are outside the watched mount: their names are only what the caller's memory
  says. (Event probes that copy the name in the kernel, ``e:`` dynamic events with ``ustring``, would be exact;
  the kernel this was built on refuses them.)

Every record is held SETTLE seconds before it is handed over (to pair renames and system calls, and drop glibc's
temporary names), then coalesced: a storm of the same act by the same actor within a second is counted into one
record (:mod:`ipcmon.live.coalesce`). Memory is bounded: at most READY_MAX records wait for :meth:`drain` (the
oldest are dropped beyond, counted in ``dropped``), held records at most STAGE_MAX, pending system calls at most
CALLS_MAX, and the coalescer's groups at most coalesce.GROUPS_MAX.

The Actor of every act is read from /proc as soon as the act is read (:mod:`ipcmon.live.actors`); a process that
already exited keeps its pid and the trace's comm, and None elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import os
import signal
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ipcmon.collect.procmem import Memory
from ipcmon.collect.shm import name_of
from ipcmon.live import fanotify, tracefs
from ipcmon.live.actors import ActorCache, signal_origin, target_masks
from ipcmon.live.coalesce import Coalescer
from ipcmon.live.ready import readable
from ipcmon.model import Action, Actor, Attribution, Event, Mechanism, SignalResult, file_key
from ipcmon.text import signal_name

SETTLE = 0.1
"""Seconds a record is held before it is handed over."""
READY_MAX = 10_000
STAGE_MAX = 4096
CALLS_MAX = 4096
CALL_SECONDS = 5.0
"""A system call's entry waits this long for its return (a lost return record drops it)."""
IDLE_WAKE = 1.0
"""Seconds the thread sleeps at most when nothing is due (to notice stop() without the wake pipe, as before)."""
UNTIED = "creator unknown"
"""The object of a queue record whose name could be neither read nor matched to an mqueue entry."""
MQUEUE_DIR = "/dev/mqueue"
NAME_MAX = 255
_KEYS_MAX = 65_536
_K = TypeVar("_K")
_V = TypeVar("_V")

_IN_CREATE, _IN_DELETE, _IN_MOVED_FROM, _IN_MOVED_TO, _IN_Q_OVERFLOW = 0x100, 0x200, 0x40, 0x80, 0x4000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_INOTIFY_EVENT = struct.Struct("=iIII")


STOP_WAIT = 10.0
"""Seconds stop() waits for the source thread to finish its round (it wakes it first); one still busy after that
keeps what it holds rather than race a flush from the caller's thread (seen on a loaded CI run: a deque mutated
during iteration at the dashboard's exit)."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One attribution source and whether it runs."""

    name: str
    """``fanotify /dev/shm``, ``fanotify /proc/4242/root/dev/shm``, ``tracefs signals``, ``tracefs queues``."""
    active: bool
    reason: str = ""
    """Why it does not run, and what the user would gain, in words: ``not root: creators of segments are unknown
    (run as root)``, ``tracefs is not mounted: senders of signals are unknown (mount -t tracefs nodev
    /sys/kernel/tracing)``. Empty when active."""


@dataclass(frozen=True, slots=True)
class _ShmDir:
    path: str
    dev: int
    inode: int


@dataclass(slots=True)
class _Staged:
    due: float
    record: Attribution
    ident: tuple[int, int] | None = None
    """(dev, inode) of a shm entry, to pair renames and find glibc's temporary semaphore names."""
    file_name: str = ""
    how: str = ""
    """The act as the source saw it: ``created``, ``removed``, ``moved-from``… for a shm entry; for a queue call
    ``created``, ``created?`` (O_CREAT without O_EXCL: the mqueue entry says), ``opened`` or ``removed``."""
    dropped: bool = False
    confirmed: bool = False
    """A queue call's name and key were read from the descriptor it returned: no need to confirm them."""


@dataclass(slots=True)
class _Call:
    """An mq_open or mq_unlink seen entering, waiting for its return."""

    time: float
    wall: float
    syscall: str
    actor: Actor
    name: str | None
    oflag: int


@dataclass(slots=True)
class _Entry:
    """An mqueue directory entry that appeared or went, for tying a call whose name could not be read."""

    seen: float
    name: str
    created: bool
    claimed: bool = False


class _EntryWatch:
    """inotify(7) on one directory, for entries made and removed: a descriptor the source thread selects on."""

    def __init__(self, path: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        if libc.inotify_add_watch(fd, os.fsencode(path), _IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO) < 0:
            code = ctypes.get_errno()
            os.close(fd)
            raise OSError(code, os.strerror(code), path)
        self.fd = fd
        self.overflows = 0

    def read(self) -> list[tuple[str, bool]]:
        """(entry name, created) for each entry made or removed since the last read."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        changes = []
        offset = 0
        while offset + _INOTIFY_EVENT.size <= len(data):
            _wd, mask, _cookie, length = _INOTIFY_EVENT.unpack_from(data, offset)
            raw = data[offset + _INOTIFY_EVENT.size : offset + _INOTIFY_EVENT.size + length]
            offset += _INOTIFY_EVENT.size + length
            if mask & _IN_Q_OVERFLOW:
                self.overflows += 1
            elif mask & (_IN_CREATE | _IN_MOVED_TO | _IN_DELETE | _IN_MOVED_FROM):
                changes.append((os.fsdecode(raw.split(b"\0", 1)[0]), bool(mask & (_IN_CREATE | _IN_MOVED_TO))))
        return changes

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_FAN_ORDER: tuple[tuple[int, str], ...] = (
    (fanotify.FAN_CREATE, "created"),
    (fanotify.FAN_MOVED_TO, "moved-to"),
    (fanotify.FAN_OPEN, "opened"),
    (fanotify.FAN_CLOSE_WRITE | fanotify.FAN_CLOSE_NOWRITE, "closed"),
    (fanotify.FAN_MOVED_FROM, "moved-from"),
    (fanotify.FAN_DELETE, "removed"),
)
"""The bits of one merged fanotify record in the order they must have happened to one entry: it arrives (created,
renamed to), is used, and leaves (renamed away, removed)."""


def _queue_name(raw: bytes | None) -> str | None:
    """A queue's POSIX name from the bytes at mq_open's u_name (glibc passes the name without its leading /)."""
    if not raw or len(raw) > NAME_MAX:
        return None
    name = os.fsdecode(raw.removeprefix(b"/"))
    return "/" + name if name and "/" not in name else None


class Attributor:
    """Runs the attribution sources on a thread of its own and hands over what they saw (the module docstring says
    what each source gives and how storms are coalesced).

    ``start()`` opens every source it can (a source that cannot run is kept in ``status()`` with its reason; none
    raises); ``drain()`` returns the attributions made since the last drain, oldest first (thread-safe, never
    blocks); ``stop()`` closes every source (the tracefs instance is removed), hands over what was held, and joins
    the thread; it is safe to call twice. ``lost`` counts events the kernel dropped (FAN_Q_OVERFLOW, trace
    overruns, inotify overflows): the caller's poll scan repairs the state.
    """

    def __init__(
        self,
        shm_dirs: Sequence[str],
        *,
        signals: bool = True,
        queues: bool = True,
        on_wake: Callable[[], None] | None = None,
        opens: bool = False,
        mqueue_dir: str = MQUEUE_DIR,
    ) -> None:
        """shm_dirs: the shm tmpfs directories to mark (the host's and each container's ``/proc/PID/root/dev/shm``);
        on_wake: called on the source thread whenever attributions are ready to drain (to wake a UI); opens: also
        report opens and closes (frequent: off by default); mqueue_dir: the mqueue mount whose entries confirm and
        name queue calls (the caller's own IPC namespace's)."""
        self._shm_paths = list(shm_dirs)
        self._signals = signals
        self._queues = queues
        self._on_wake = on_wake
        self._opens = opens
        self._mqueue_dir = mqueue_dir
        self._lock = threading.Lock()
        self._statuses: dict[str, SourceStatus] = {}
        self._fan: fanotify.Fanotify | None = None
        self._fan_error: str | None = None
        self._shm: dict[bytes, dict[int, _ShmDir]] = {}
        """Marked shm directories by their filesystem's fsid, then by their own inode."""
        self._trace: tracefs.TraceInstance | None = None
        self._watch: _EntryWatch | None = None
        self._mqueue_dev: int | None = None
        self._wake_read = self._wake_write = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._started = False
        self._ready: deque[Attribution] = deque()
        self._staged: deque[_Staged] = deque()
        self._by_inode: dict[tuple[int, int], list[_Staged]] = {}
        self._temporary: OrderedDict[tuple[int, int, str], float] = OrderedDict()
        self._calls: dict[int, _Call] = {}
        self._entries: deque[_Entry] = deque(maxlen=STAGE_MAX)
        self._queue_keys: OrderedDict[str, str] = OrderedDict()
        self._shm_keys: OrderedDict[tuple[int, str], str] = OrderedDict()
        self._comms: OrderedDict[int, str] = OrderedDict()
        """Each task's command name from task_newtask and task_rename, by tid, as of the record being read."""
        self._actors = ActorCache(time.monotonic)
        self._coalescer = Coalescer(self._emit)
        self._emitted = False
        self._woke = 0.0
        """When (monotonic) the thread last woke up (_next_due)."""
        self._overflows = 0
        """FAN_Q_OVERFLOW events, and the mqueue watch's inotify overflows once it is closed."""
        self._trace_lost = 0
        self.dropped = 0
        """Records dropped because READY_MAX were waiting for drain()."""
        self.errors = 0
        """Events the thread could not turn into records (an unexpected error; the thread goes on)."""
        self.last_error: str | None = None

    # -- the caller's side --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open every source that can run and start the thread; a second call does nothing."""
        if self._started:
            return
        self._started = True
        for path in self._shm_paths:
            self._mark(path)
        self._open_trace()
        self._run_thread()

    def _run_thread(self) -> None:
        """Start the thread once some source is open (a shm directory may be the first, marked later)."""
        if self._thread is not None or self._stopping or (self._fan is None and self._trace is None):
            return
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="ipcmon-attribution", daemon=True)
        self._thread.start()

    def watch_shm_dir(self, path: str) -> None:
        """Mark one more shm tmpfs (a container that appeared); a refusal goes to status()."""
        if path in self._shm_paths:
            return
        self._shm_paths.append(path)
        if self._started and not self._stopping:
            self._mark(path)
            self._run_thread()

    def _mark(self, path: str) -> None:
        name = f"fanotify {path}"
        if self._fan is None and self._fan_error is None:
            self._open_fanotify()
        if self._fan is None:
            self._set_status(SourceStatus(name, False, (self._fan_error or "{path}: fanotify is not open").format(
                path=path)))
            return
        try:
            st = os.stat(path)
            fsid = fanotify.fsid_of(path)
            self._fan.mark_filesystem(path, self._fan_mask())
        except PermissionError:
            self._set_status(SourceStatus(name, False, _NOT_ROOT_SHM.format(path=path)))
            return
        except OSError as error:
            self._set_status(SourceStatus(name, False, f"{path} cannot be marked ({os.strerror(error.errno or 0)}): "
                                                       f"who creates and removes its segments stays unknown"))
            return
        with self._lock:
            self._shm.setdefault(fsid, {}).setdefault(st.st_ino, _ShmDir(path, st.st_dev, st.st_ino))
        self._set_status(SourceStatus(name, True))

    def drain(self) -> list[Attribution]:
        """The attributions made since the last drain, oldest first."""
        with self._lock:
            records = list(self._ready)
            self._ready.clear()
        return records

    def status(self) -> list[SourceStatus]:
        """One entry per source asked for: each shm directory, ``tracefs signals``, ``tracefs queues``."""
        with self._lock:
            return list(self._statuses.values())

    @property
    def lost(self) -> int:
        """Events the kernel dropped: fanotify queue overflows, trace buffer overruns (and trace lines that could not
        be read as a whole record: tracefs.TraceText), mqueue inotify overflows."""
        trace = self._trace
        if trace is not None:
            self._trace_lost = max(self._trace_lost, trace.lost())
        watch = self._watch
        return self._overflows + self._trace_lost + (watch.overflows if watch is not None else 0)

    def stop(self) -> None:
        """Close every source, remove the trace instance, hand over what was held, join the thread; safe twice."""
        if self._stopping:
            return
        self._stopping = True
        thread, self._thread = self._thread, None
        if thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_write, b"x")
            thread.join(timeout=STOP_WAIT)
        # A thread still busy (a storm on a loaded machine) owns what is staged: flushing here too would race it.
        alive = thread is not None and thread.is_alive()
        with contextlib.suppress(Exception):
            _ = self.lost  # the last overrun count, before the instance goes
        if self._watch is not None:
            self._overflows += self._watch.overflows  # kept in lost once the watch is closed
        for source in (self._fan, self._trace, self._watch):
            if source is not None:
                source.close()
        self._fan = self._trace = self._watch = None
        for fd in (self._wake_read, self._wake_write):
            if fd >= 0:
                os.close(fd)
        self._wake_read = self._wake_write = -1
        if thread is not None and not alive:
            self._flush(time.monotonic(), release_all=True, final=True)

    # -- opening the sources --------------------------------------------------------------------------------------

    def _set_status(self, status: SourceStatus) -> None:
        with self._lock:
            self._statuses[status.name] = status

    def _fan_mask(self) -> int:
        mask = fanotify.FAN_CREATE | fanotify.FAN_DELETE | fanotify.FAN_MOVED_FROM | fanotify.FAN_MOVED_TO
        if self._opens:
            mask |= fanotify.FAN_OPEN | fanotify.FAN_CLOSE_WRITE | fanotify.FAN_CLOSE_NOWRITE
        return mask

    def _open_fanotify(self) -> None:
        try:
            self._fan = fanotify.Fanotify(target=True)
        except PermissionError:
            self._fan_error = _NOT_ROOT_SHM
        except OSError as error:
            why = "this kernel has no fanotify" if error.errno == errno.ENOSYS else os.strerror(error.errno or 0)
            self._fan_error = f"{why}: who creates and removes segments and semaphores in {{path}} stays unknown"

    def _open_trace(self) -> None:
        wanted = [name for name, asked in (("tracefs signals", self._signals), ("tracefs queues", self._queues))
                  if asked]
        if not wanted:
            return
        reason = None
        if os.geteuid() != 0:
            reason = "not root: {gain} (run as root)"
        elif tracefs.tracing_dir() is None:
            reason = f"tracefs is not mounted: {{gain}} (as root: {tracefs.MOUNT_HINT})"
        if reason is not None:
            for name in wanted:
                self._set_status(SourceStatus(name, False, reason.format(gain=_GAINS[name])))
            return
        signal_events = [tracefs.SIGNAL_GENERATE] if self._signals else []
        queue_events = ([tracefs.MQ_OPEN, tracefs.MQ_OPEN_EXIT, tracefs.MQ_UNLINK, tracefs.MQ_UNLINK_EXIT]
                        if self._queues else [])
        names = [tracefs.TASK_NEWTASK, tracefs.TASK_RENAME]  # without them, the comm is saved_cmdlines' at read time
        bases = [signal_events + queue_events]
        if signal_events and queue_events:
            bases.append(signal_events)  # a kernel without syscall events (no CONFIG_FTRACE_SYSCALLS)
        attempts = [base + extra for base in bases for extra in (names, [])]
        failure = ""
        for events in attempts:
            try:
                self._trace = tracefs.TraceInstance(events, clock="mono")
            except OSError as error:
                failure = f"{error.strerror or error}"
                continue
            for name, part in (("tracefs signals", signal_events), ("tracefs queues", queue_events)):
                if name not in wanted:
                    continue
                if all(event in events for event in part):
                    self._set_status(SourceStatus(name, True))
                else:
                    self._set_status(SourceStatus(name, False, f"{failure}: {_GAINS[name]}"))
            break
        else:
            for name in wanted:
                self._set_status(SourceStatus(name, False, f"{failure}: {_GAINS[name]}"))
            return
        with contextlib.suppress(OSError):
            self._mqueue_dev = os.stat(self._mqueue_dir).st_dev
        if queue_events and self._trace is not None and os.path.isdir(self._mqueue_dir):
            try:
                self._watch = _EntryWatch(self._mqueue_dir)
            except OSError:
                self._watch = None  # names are still read from callers' memory; only the matching is lost
            self._seed_queue_keys()

    def _seed_queue_keys(self) -> None:
        try:
            names = os.listdir(self._mqueue_dir)
        except OSError:
            return
        for entry in names[:_KEYS_MAX]:
            self._remember_queue("/" + entry)

    # -- the thread -----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            fan, trace, watch = self._fan, self._trace, self._watch
            fds = [self._wake_read, *(source.fd for source in (fan, watch) if source is not None)]
            if trace is not None:
                fds.append(trace.fileno())
            timeout = self._next_due(time.monotonic())
            try:
                ready = readable(fds, timeout)
            except OSError as error:  # EBADF: a source closed under it; counted, and tried again shortly
                self.errors += 1
                self.last_error = repr(error)
                time.sleep(SETTLE)
                continue
            if self._stopping:
                break
            now = self._woke = time.monotonic()
            for fd in ready:
                self._guarded(self._read_source, fd, now)
            self._guarded(self._flush, time.monotonic())

    def _next_due(self, now: float) -> float:
        """Seconds until the thread has work no source announces (at most IDLE_WAKE): the first held record's
        release, the end of a coalescing window with counted acts, the expiry of a system call waiting for its
        return, of an mqueue entry or of a temporary semaphore name (what _flush does when it is due); never sooner
        than SETTLE / 2 after the last wake-up, so that acts coming faster are released together, as late as before.
        Waking on those alone, not every SETTLE / 2 while anything is held or a window is open: on a machine where
        acts come every few hundred milliseconds (fork's task_newtask, SIGCHLD), a wake-up every 50 ms cost more than
        reading the acts."""
        due = now + IDLE_WAKE
        if self._staged:
            due = min(due, self._staged[0].due)  # staged in order: each at now + SETTLE as it is read
        window = self._coalescer.next_close()
        if window is not None:
            due = min(due, window)
        if self._calls:
            due = min(due, min(call.time for call in self._calls.values()) + CALL_SECONDS)
        if self._entries:
            due = min(due, self._entries[0].seen + 4 * SETTLE)
        if self._temporary:
            due = min(due, next(iter(self._temporary.values())) + 2 * SETTLE)
        return max(0.0, due - now, self._woke + SETTLE / 2 - now)

    def _guarded(self, step: Callable[[float], None] | Callable[[int, float], None], *args: float) -> None:
        try:
            step(*args)  # type: ignore[arg-type]
        except Exception as error:  # one bad event must not end the thread (STYLE.md 9)
            self.errors += 1
            self.last_error = repr(error)

    def _read_source(self, fd: int, now: float) -> None:
        if self._fan is not None and fd == self._fan.fd:
            for _ in range(16):  # a few reads per wake-up: a storm fills the 64 KiB buffer many times over
                events = self._fan.read(0)
                if not events:
                    break
                for event in events:
                    self._fan_event(event, now)
        elif self._trace is not None and fd == self._trace.fileno():
            for record in self._trace.read(0):
                self._trace_record(record, now)
        elif self._watch is not None and fd == self._watch.fd:
            for name, created in self._watch.read():
                self._queue_entry("/" + name, created, now)
        elif fd == self._wake_read:
            with contextlib.suppress(OSError):
                os.read(self._wake_read, 64)

    # -- fanotify ----------------------------------------------------------------------------------------------

    def _fan_event(self, event: fanotify.FanEvent, now: float) -> None:
        if event.overflow:
            self._overflows += 1
            return
        if event.mask & fanotify.FAN_ONDIR or event.name is None or event.directory is None:
            return
        with self._lock:
            directories = self._shm.get(fanotify.fsid(event.directory), {})
        inode = fanotify.tmpfs_inode(event.directory)
        directory = (directories.get(inode) if inode is not None
                     else next(iter(directories.values())) if len(directories) == 1 else None)
        if directory is None:
            return  # a subdirectory of a marked tmpfs (no POSIX name has a /), or another filesystem
        mechanism, name = name_of(event.name)
        inode = fanotify.tmpfs_inode(event.handle)
        wall = time.time()
        actor = self._actors.get(event.pid, fallback=self._comms.get(event.pid))  # gone: its last name, if traced
        for bit, action in _FAN_ORDER:
            if event.mask & bit:
                key = self._shm_key(directory, mechanism, event.name, inode, action)
                record = Attribution(wall, "created", mechanism, name, actor, "fanotify", key)
                self._stage_shm(record, action, directory, inode, event.name, now)

    def _shm_key(self, directory: _ShmDir, mechanism: Mechanism, file_name: str, inode: int | None,
                 action: str) -> str | None:
        if inode is not None:
            return file_key(mechanism, directory.dev, inode)
        # A kernel before 5.17 gives no handle on entry events: stat a new entry now, remember it for its removal.
        remembered = (directory.dev, file_name)
        if action in ("removed", "moved-from"):
            return self._shm_keys.pop(remembered, None)
        try:
            st = os.stat(os.path.join(directory.path, file_name), follow_symlinks=False)
        except OSError:
            return self._shm_keys.get(remembered)
        key = file_key(mechanism, st.st_dev, st.st_ino)
        _remember(self._shm_keys, remembered, key)
        return key

    def _stage_shm(self, record: Attribution, action: str, directory: _ShmDir, inode: int | None, file_name: str,
                   now: float) -> None:
        ident = (directory.dev, inode) if inode is not None else None
        if action in ("opened", "closed"):
            if self._opens:
                self._stage(_Staged(now + SETTLE, dataclasses.replace(record, action=_as_action(action)), ident,
                                    file_name, how=action))
            return
        if ident is not None and action == "removed" and (*ident, file_name) in self._temporary:
            del self._temporary[(*ident, file_name)]
            return
        staged_same = self._by_inode.get(ident, []) if ident is not None else []
        pid = record.actor.pid
        if action == "created" and record.mechanism == "sem" and ident is not None:
            # glibc's sem_open: create sem.XXXXXX, link it to sem.NAME, unlink sem.XXXXXX (one inode, one pid).
            for other in staged_same:
                if (other.file_name != file_name and other.record.actor.pid == pid and not other.dropped
                        and other.how == "created"):
                    other.dropped = True
                    removals = [item for item in staged_same
                                if item.file_name == other.file_name and item.how == "removed"]
                    for item in removals:
                        item.dropped = True
                    if not removals:
                        _remember(self._temporary, (*ident, other.file_name), now)
        if action in ("moved-from", "moved-to"):
            leaving = action == "moved-from"
            for other in staged_same:
                if other.how in ("moved-from", "moved-to") and other.how != action and not other.dropped:
                    old, new = (record.object, other.record.object) if leaving else (other.record.object,
                                                                                      record.object)
                    key = other.record.key if leaving else record.key
                    other.record = dataclasses.replace(other.record, object=f"{old} → {new}", key=key)
                    other.how = "renamed"
                    return
            self._stage(_Staged(now + SETTLE, dataclasses.replace(record, action="renamed"), ident, file_name,
                                how=action))
            return
        self._stage(_Staged(now + SETTLE, dataclasses.replace(record, action=_as_action(action)), ident, file_name,
                            how=action))

    def _stage(self, staged: _Staged) -> None:
        if len(self._staged) >= STAGE_MAX:
            self._flush(time.monotonic(), release_all=True)
        self._staged.append(staged)
        if staged.ident is not None:
            self._by_inode.setdefault(staged.ident, []).append(staged)

    # -- tracefs ---------------------------------------------------------------------------------------------

    def _trace_record(self, record: tracefs.TraceRecord, now: float) -> None:
        offset = time.time() - time.monotonic()  # the instance's clock is CLOCK_MONOTONIC
        if record.event == "task_newtask" or record.event == "task_rename":
            tid = record.fields.get("pid", str(record.tid))  # task_rename without pid= (6.14+): the task renamed
            comm = record.fields.get("comm", record.fields.get("newcomm"))
            if not tid.lstrip("-").isdigit():
                return
            if comm is not None:
                _remember(self._comms, int(tid), comm)
            else:  # a record the trace could not give whole (tracefs.TraceText): /proc's name, or the trace's
                self._comms.pop(int(tid), None)
        elif record.event == "signal_generate" and "pid" in record.fields:  # no target: counted in lost
            self._signal(record, record.time + offset, now)
        elif record.event in ("sys_mq_open", "sys_mq_unlink"):
            if record.returned is None:
                self._call_entered(record, record.time + offset, now)
            else:
                self._call_returned(record, record.returned, now)

    def _signal(self, record: tracefs.TraceRecord, wall: float, now: float) -> None:
        fields = record.fields
        sig, code, target_tid = int(fields["sig"]), int(fields["code"]), int(fields["pid"])
        result: SignalResult | None = tracefs.RESULTS.get(int(fields["res"]))  # type: ignore[assignment]
        target, blocked, ignored = target_masks(target_tid, sig, group=fields.get("grp") == "1")
        target = target if target is not None else target_tid
        kernel, cause = signal_origin(sig, code, record.pid == target)
        actor = self._actor(record, kernel=kernel)
        comm = fields["comm"]
        attribution = Attribution(wall, "sent", "signal", f"{target} {comm}", actor, "tracefs", f"signal:{target}",
                                  signal=sig, target=target, target_comm=comm, result=result, blocked=blocked,
                                  ignored=ignored if result != "ignored" or sig == signal.SIGCONT else True,
                                  cause=cause)
        self._stage(_Staged(now + SETTLE, attribution))

    def _actor(self, record: tracefs.TraceRecord, *, kernel: bool = False) -> Actor:
        """The record's process, named as its task was named when it acted: from task_newtask and task_rename when
        the task was born or renamed since the instance began, else /proc's name while it lives, else the name the
        trace printed (saved_cmdlines': a task that renamed itself and acted before its next context switch is
        printed under its old name)."""
        return self._actors.get(record.pid, self._comms.get(record.tid), fallback=record.comm, kernel=kernel)

    def _call_entered(self, record: tracefs.TraceRecord, wall: float, now: float) -> None:
        if len(self._calls) >= CALLS_MAX:
            self._expire_calls(now, everything=True)
        name = None
        address = record.fields.get("u_name")
        if address is not None:
            with Memory(record.pid) as memory:
                name = _queue_name(memory.read_string(int(address, 16), NAME_MAX + 2))
        oflag = int(record.fields.get("oflag", "0"), 16)
        actor = self._actor(record)
        self._calls[record.tid] = _Call(now, wall, record.event, actor, name, oflag)

    def _call_returned(self, record: tracefs.TraceRecord, returned: int, now: float) -> None:
        call = self._calls.pop(record.tid, None)
        if call is None or call.syscall != record.event or returned < 0:
            return  # a failed call changed nothing; a return whose entry was lost is not guessed at
        if call.syscall == "sys_mq_unlink":
            action: str = "removed"
        elif not call.oflag & os.O_CREAT:
            if not self._opens:
                return
            action = "opened"
        else:
            action = "created" if call.oflag & os.O_EXCL else "created?"
        held = self._descriptor_queue(call.actor.pid, returned) if call.syscall == "sys_mq_open" else None
        if held is not None:
            name, key = held
            record_ = Attribution(call.wall, "created", "mqueue", name, call.actor, "tracefs", key)
        else:
            record_ = Attribution(call.wall, "created", "mqueue", call.name or UNTIED, call.actor, "tracefs")
        self._stage(_Staged(now + SETTLE, record_, how=action, confirmed=held is not None))

    def _descriptor_queue(self, pid: int, fd: int) -> tuple[str, str] | None:
        """(name, key) of the queue mq_open returned as descriptor fd, while the caller still has it open: exact,
        where the name in its memory may be gone. None when closed (or reused for a file not on the mqueue mount)."""
        if self._mqueue_dev is None:
            return None
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return None
        name = target.removesuffix(" (deleted)")
        if st.st_dev != self._mqueue_dev or not name.startswith("/") or "/" in name[1:]:
            return None
        return name, file_key("mqueue", st.st_dev, st.st_ino)

    def _expire_calls(self, now: float, *, everything: bool = False) -> None:
        stale = [tid for tid, call in self._calls.items() if everything or now - call.time > CALL_SECONDS]
        for tid in stale:
            del self._calls[tid]

    def _queue_entry(self, name: str, created: bool, now: float) -> None:
        if created:
            self._remember_queue(name)
        self._entries.append(_Entry(now, name, created))

    def _remember_queue(self, name: str) -> None:
        try:
            st = os.stat(os.path.join(self._mqueue_dir, name.lstrip("/")))
        except OSError:
            return
        _remember(self._queue_keys, name, file_key("mqueue", st.st_dev, st.st_ino))

    def _resolve_queue(self, staged: _Staged) -> Attribution | None:
        """A queue call, SETTLE after it returned: its name, whether it created, its key (module docstring)."""
        record, how = staged.record, staged.how
        created = how != "removed"
        name = record.object if record.object != UNTIED else None
        entries = [entry for entry in self._entries
                   if not entry.claimed and entry.created == created and abs(entry.seen - (staged.due - SETTLE))
                   <= 2 * SETTLE]
        match: _Entry | None = None
        if name is not None:
            match = next((entry for entry in entries if entry.name == name), None)
            if match is None and not staged.confirmed and not self._plausible(name, created):
                name = None  # the caller's buffer was freed and reused before it could be read: bytes, not its name
        if name is None:
            # Entries another call names (held, or not yet returned) are that call's, not candidates for this one.
            reserved = {other.record.object for other in self._staged if other.record.mechanism == "mqueue"}
            reserved.update(call.name for call in self._calls.values() if call.name is not None)
            entries = [entry for entry in entries if entry.name not in reserved]
        if name is None and len(entries) == 1:
            match = entries[0]
            name = match.name
        if match is not None:
            match.claimed = True
        action: Action
        if how == "created?":
            action = "created" if match is not None else "opened"
            if action == "opened" and not self._opens:
                return None
        else:
            action = _as_action(how)
        if name is None:
            return dataclasses.replace(record, action=action, object=UNTIED)
        key = record.key or self._queue_keys.get(name)
        if action == "removed":
            self._queue_keys.pop(name, None)
        elif key is None:
            self._remember_queue(name)
            key = self._queue_keys.get(name)
        return dataclasses.replace(record, action=action, object=name, key=key)

    def _plausible(self, name: str, created: bool) -> bool:
        """Whether a name read from a caller's memory can be its queue's, with no mqueue entry event to confirm it:
        a made queue exists now, a removed one was known."""
        if created:
            return os.path.exists(os.path.join(self._mqueue_dir, name.lstrip("/")))
        return name in self._queue_keys

    # -- handing over -----------------------------------------------------------------------------------------

    def _flush(self, now: float, *, release_all: bool = False, final: bool = False) -> None:
        """Hand the records held SETTLE (release_all: every one) over to the coalescer, and close its ended windows
        (final: all of them)."""
        while self._staged and (release_all or self._staged[0].due <= now):
            staged = self._staged.popleft()
            if staged.ident is not None:
                same = self._by_inode.get(staged.ident)
                if same is not None:
                    with contextlib.suppress(ValueError):
                        same.remove(staged)
                    if not same:
                        del self._by_inode[staged.ident]
            if staged.dropped:
                continue
            record: Attribution | None = staged.record
            if record is not None and record.mechanism == "mqueue":
                record = self._resolve_queue(staged)
            if record is not None:
                self._coalescer.add(record, now)
        if final:
            self._coalescer.close_all()
        else:
            self._coalescer.expire(now)
            self._expire_calls(now)
            while self._entries and now - self._entries[0].seen > 4 * SETTLE:
                self._entries.popleft()
            while self._temporary and now - next(iter(self._temporary.values())) > 2 * SETTLE:
                self._temporary.popitem(last=False)
        if self._emitted:
            self._emitted = False
            if self._on_wake is not None:
                self._on_wake()

    def _emit(self, record: Attribution) -> None:
        with self._lock:
            if len(self._ready) >= READY_MAX:
                self._ready.popleft()
                self.dropped += 1
            self._ready.append(record)
        self._emitted = True


_NOT_ROOT_SHM = "not root: who creates and removes segments and semaphores in {path} stays unknown (run as root)"
_GAINS = {
    "tracefs signals": "who sends each signal stays unknown",
    "tracefs queues": "who creates and removes message queues stays unknown",
}


def _as_action(word: str) -> Action:
    actions: dict[str, Action] = {"created": "created", "opened": "opened", "closed": "closed",
                                  "removed": "removed", "renamed": "renamed"}
    return actions[word]


def _remember(table: OrderedDict[_K, _V], key: _K, value: _V) -> None:
    """Put key in a bounded table (the oldest goes beyond _KEYS_MAX)."""
    table[key] = value
    table.move_to_end(key)
    if len(table) > _KEYS_MAX:
        table.popitem(last=False)


def sent_outcome(record: Attribution) -> str:
    """What became of a sent signal, in the words every front end uses: ``delivered``, ``blocked, pending``,
    ``blocked, already pending``, ``ignored``, ``queue full``…, ``resumes it if stopped`` (SIGCONT), with
    `` (N times)`` for a storm counted as one."""
    outcome: str = record.result or "?"
    if record.result == "ignored" and record.signal == signal.SIGCONT:
        # SIGCONT resumes a stopped process whatever its disposition (kernel/signal.c prepare_signal); with the
        # default action the kernel then discards it, which the trace calls ignored: the process did not ignore it.
        outcome = "resumes it if stopped"
    elif record.result == "delivered" and record.blocked:
        outcome = "blocked, pending"
    elif record.result == "already pending" and record.blocked:
        outcome = "blocked, already pending"
    if record.count > 1:
        outcome += f" ({record.count} times)"
    return outcome


def sent_event(record: Attribution) -> Event:
    """A ``sent`` attribution as a watch event: key ``signal:TARGET``, pid and comm the sender's, and the detail in
    words, ``SIGTERM 4321 bash → 1234 python3: delivered``, ``SIGUSR1 … → …: blocked, pending``, ``SIGCHLD kernel
    (child exited, in 4321 python3) → 1234 bash: ignored``. Names are raw: print them through safe.printable."""
    actor = record.actor
    who = f"{actor.pid} {actor.comm or '?'}"
    if actor.kernel:
        who = f"kernel ({record.cause}, in {who})" if record.cause else f"kernel (in {who})"
    outcome = sent_outcome(record)
    name = signal_name(record.signal) if record.signal is not None else "signal"
    return Event(record.time, "signal", "sent", record.object, record.key or f"signal:{record.target}", actor.pid,
                 actor.comm, "tracefs", f"{name} {who} → {record.object}: {outcome}", record.place, actor)
