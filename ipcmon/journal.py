"""The journal (issue 16): who created, opened, removed or signalled what, and the lifecycle events, kept in SQLite.

``ipcmon record`` (``ipcmon.recorder``) writes it; ``leaks`` and ``history`` read it. stdlib ``sqlite3`` in WAL mode,
so readers never wait for the writer. The writer is a thread of its own fed through a bounded queue: adding a record
never blocks the kernel side (a full queue drops and counts, and says so). Retention is bounded by age and by size.
A full disk (SQLITE_FULL, ENOSPC) or a corrupt database (SQLITE_CORRUPT, SQLITE_NOTADB) is reported and recording
goes on in memory (bounded); a full disk is retried.

Every name stored (object names, comm, cmdline, container ids) is untrusted and stored raw, as the bytes the kernel
gave (os.fsencode: a surrogate escape is its byte again), so that it comes back exactly, invalid UTF-8 included.
Readers show them through ``safe.printable``.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import queue
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from ipcmon import paths
from ipcmon.model import Actor, Attribution, AttributionSource, Event
from ipcmon.model.places import Container, Place

DEFAULT_KEEP = 7 * 86400.0
"""Seconds a record is kept (``--keep``, default 7d)."""
DEFAULT_MAX_SIZE = 100 * 1024 * 1024
"""Bytes the database and its write-ahead log may take together (``--max-size``, default 100M)."""
MIN_MAX_SIZE = 256 * 1024
"""The smallest ``--max-size`` accepted: the empty schema and one batch need about this much."""
QUEUE_SIZE = 20_000
"""Records waiting for the writer beyond which new ones are dropped and counted (never waited for)."""
MEMORY_RECORDS = 50_000
"""Records kept in memory while the database cannot be written (full disk, corrupt): the newest."""
BATCH = 2000
"""Records written per transaction at most (fewer for a small ``--max-size``: one transaction's pages sit in the
write-ahead log until the checkpoint that follows it)."""
RETENTION_EVERY = 60.0
"""Seconds between two passes of the age retention (the size bound is checked after every transaction)."""
DATABASE_SHARE = 0.33
"""The share of ``--max-size`` the database itself may use; the rest is for the write-ahead log, which holds every
page a transaction changed until the checkpoint after it (a pruning may change them all) and the pages a batch adds
before they reach the database: up to about as much again (0.45 and 0.38 let the two pass a 256K bound under a
storm)."""
FULL_BELOW = 64 * 1024
"""Free bytes on the journal's file system below which readers are told it is full."""
RETRY_EVERY = 30.0
"""Seconds between two attempts to write again after a full disk or a locked database."""

SCHEMA_VERSION = 1

_SCHEMA_1 = (
    """CREATE TABLE attributions (
        id INTEGER PRIMARY KEY, time REAL NOT NULL, action TEXT NOT NULL, mechanism TEXT NOT NULL,
        object BLOB NOT NULL, key TEXT, source TEXT NOT NULL,
        pid INTEGER NOT NULL, comm BLOB, cmdline BLOB, uid INTEGER, start_ticks INTEGER, kernel INTEGER NOT NULL,
        actor_ipc INTEGER, actor_mnt INTEGER, actor_container BLOB, actor_place TEXT,
        place_ipc INTEGER, place_mnt INTEGER, place_container BLOB, place TEXT,
        signal INTEGER, target INTEGER, target_comm BLOB, result TEXT, blocked INTEGER, ignored INTEGER,
        count INTEGER NOT NULL)""",
    "CREATE INDEX attributions_time ON attributions(time)",
    "CREATE INDEX attributions_key ON attributions(key, time)",
    "CREATE INDEX attributions_object ON attributions(object, time)",
    "CREATE INDEX attributions_pid ON attributions(pid, time)",
    "CREATE INDEX attributions_target ON attributions(target, time) WHERE target IS NOT NULL",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY, time REAL NOT NULL, mechanism TEXT NOT NULL, event TEXT NOT NULL,
        object BLOB NOT NULL, key TEXT NOT NULL, pid INTEGER, comm BLOB, source TEXT NOT NULL, detail BLOB,
        place_ipc INTEGER, place_mnt INTEGER, place_container BLOB, place TEXT,
        actor_pid INTEGER, actor_comm BLOB, actor_cmdline BLOB, actor_uid INTEGER, actor_start_ticks INTEGER,
        actor_kernel INTEGER)""",
    "CREATE INDEX events_time ON events(time)",
    "CREATE INDEX events_key ON events(key, time)",
    "CREATE INDEX events_object ON events(object, time)",
    "CREATE INDEX events_pid ON events(pid, time)",
    "CREATE INDEX events_actor ON events(actor_pid, time)",
    """CREATE TABLE exits (
        id INTEGER PRIMARY KEY, time REAL NOT NULL, pid INTEGER NOT NULL, start_ticks INTEGER,
        comm BLOB, cmdline BLOB, UNIQUE (pid, start_ticks))""",
    "CREATE INDEX exits_time ON exits(time)",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, time REAL NOT NULL, text TEXT NOT NULL)",
    "CREATE INDEX notes_time ON notes(time)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_1,)
"""MIGRATIONS[n] takes a database from schema version n to n + 1 (version 0: empty). A new version appends one."""

ProblemKind = Literal["full", "corrupt", "locked", "denied", "newer", "missing", "other"]


class JournalError(Exception):
    """The journal cannot be opened or written; ``kind`` says why, ``str()`` says it in words (raw path inside)."""

    def __init__(self, kind: ProblemKind, text: str) -> None:
        super().__init__(text)
        self.kind: ProblemKind = kind


_FULL, _CORRUPT, _NOTADB = 13, 11, 26  # sqlite3.h primary result codes
_BUSY, _LOCKED, _READONLY, _CANTOPEN, _PERM, _IOERR = 5, 6, 8, 14, 3, 10


def classify(error: BaseException, path: str) -> JournalError:
    """What an sqlite3 or OS error means for the journal at path, said once (SQLite result codes, errno)."""
    if isinstance(error, JournalError):
        return error
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    message = str(error)
    if primary == _FULL or getattr(error, "errno", None) == 28 or "disk is full" in message:
        return JournalError("full", f"the disk holding the journal {path} is full")
    if primary in (_CORRUPT, _NOTADB):
        return JournalError("corrupt", f"the journal {path} is corrupt ({message}); move it aside to start a new one")
    if primary in (_BUSY, _LOCKED):
        return JournalError("locked", f"the journal {path} is locked by another process ({message})")
    if primary in (_READONLY, _PERM) or isinstance(error, PermissionError):
        return JournalError("denied", f"the journal {path} cannot be written or read: permission denied")
    if isinstance(error, FileNotFoundError):
        return JournalError("missing", f"no journal at {path}")
    if primary == _CANTOPEN:
        return JournalError("denied", f"the journal {path} cannot be opened ({message})")
    return JournalError("other", f"the journal {path}: {message}")


def default_path(environ: Mapping[str, str] | None = None) -> str:
    """``$IPCMON_JOURNAL``, else ``/var/lib/ipcmon/journal.db`` for root, else ``$XDG_STATE_HOME/ipcmon/journal.db``
    (``~/.local/state`` when unset or relative): ``paths.journal_path``."""
    return paths.journal_path(environ)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """'100M' → 104857600; '512K', '1G', '1048576' (bytes); 'MiB' and 'MB' read as M. Raises ValueError."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 100M, 1G)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


# --- records --------------------------------------------------------------------------------------------------


EXIT_WINDOW = 60.0
"""Seconds after an act within which an exit recorded with no start time (its actor gone before it could be read)
is that actor's: a pid is not reused that fast on a machine with a sane pid_max (JournalReader.exited)."""


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """A process that acted on IPC and then disappeared from the recorder's scans."""

    time: float
    """When the recorder saw it gone (Unix epoch): at most one scan interval after it exited."""
    pid: int
    start_ticks: int | None
    """Its start time in clock ticks since boot (with pid, who it was); None when unknown."""
    comm: str | None = None
    """Raw: untrusted."""
    cmdline: tuple[str, ...] | None = None
    """Raw: untrusted."""


@dataclass(frozen=True, slots=True)
class Note:
    """Something the recorder said about the journal itself (a storm dropped, a full disk): time and words."""

    time: float
    text: str


Record = Attribution | Event | ProcessExit | Note


def _encode(text: str) -> bytes:
    """The raw bytes a name was read as (os.fsencode: ``\\udcff`` is the byte 0xff); a lone surrogate that stands for
    no byte (none comes from the kernel) is kept as UTF-8 with surrogatepass."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> str:
    """The name again (os.fsdecode): each byte that is not UTF-8 as its surrogate escape. Exact for every name read
    from the kernel; a stray surrogate _encode had to pass through comes back as the escapes of its three bytes."""
    return data.decode("utf-8", "surrogateescape")


def _raw(text: str | None) -> bytes | None:
    return None if text is None else _encode(text)


def _text(blob: bytes | None) -> str | None:
    return None if blob is None else _decode(bytes(blob))


def _args(cmdline: Sequence[str] | None) -> bytes | None:
    """Each argument NUL-terminated, as /proc/PID/cmdline has them: () and ('',) stay apart."""
    return None if cmdline is None else b"".join(_encode(arg) + b"\0" for arg in cmdline)


def _cmdline(blob: bytes | None) -> tuple[str, ...] | None:
    if blob is None:
        return None
    return tuple(_decode(arg) for arg in bytes(blob).split(b"\0")[:-1])


def _place_json(place: Place | None) -> str | None:
    return None if place is None else json.dumps(dataclasses.asdict(place))


def _place(text: str | None) -> Place | None:
    if not text:
        return None
    data = json.loads(text)
    container = data.get("container")
    return Place(data.get("ipc"), data.get("mnt"), Container(**container) if container else None,
                 data.get("unit"), bool(data.get("host")))


def _place_columns(place: Place | None) -> tuple[int | None, int | None, bytes | None, str | None]:
    if place is None:
        return None, None, None, None
    container = _raw(place.container.id) if place.container is not None else None
    return place.ipc, place.mnt, container, _place_json(place)


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


_ATTRIBUTION_COLUMNS = (
    "time, action, mechanism, object, key, source, pid, comm, cmdline, uid, start_ticks, kernel, actor_ipc, actor_mnt, "
    "actor_container, actor_place, place_ipc, place_mnt, place_container, place, signal, target, target_comm, result, "
    "blocked, ignored, count"
)
_EVENT_COLUMNS = (
    "time, mechanism, event, object, key, pid, comm, source, detail, place_ipc, place_mnt, place_container, place, "
    "actor_pid, actor_comm, actor_cmdline, actor_uid, actor_start_ticks, actor_kernel"
)


def _attribution_row(record: Attribution) -> tuple[object, ...]:
    actor = record.actor
    return (
        record.time, record.action, record.mechanism, _raw(record.object), record.key, record.source,
        actor.pid, _raw(actor.comm), _args(actor.cmdline), actor.uid, actor.start_ticks, int(actor.kernel),
        *_place_columns(actor.place), *_place_columns(record.place),
        record.signal, record.target, _raw(record.target_comm), record.result,
        None if record.blocked is None else int(record.blocked),
        None if record.ignored is None else int(record.ignored), record.count,
    )


def _event_row(event: Event) -> tuple[object, ...]:
    actor = event.actor
    return (
        event.time, event.mechanism, event.event, _raw(event.object), event.key, event.pid, _raw(event.comm),
        event.source, _raw(event.detail), *_place_columns(event.place),
        *((actor.pid, _raw(actor.comm), _args(actor.cmdline), actor.uid, actor.start_ticks, int(actor.kernel))
          if actor is not None else (None,) * 6),
    )


def _attribution_of(row: sqlite3.Row) -> Attribution:
    actor = Actor(row["pid"], _text(row["comm"]), _cmdline(row["cmdline"]), row["uid"], row["start_ticks"],
                  _place(row["actor_place"]), bool(row["kernel"]))
    return Attribution(row["time"], row["action"], row["mechanism"], _text(row["object"]) or "", actor,
                       row["source"], row["key"], _place(row["place"]), row["signal"], row["target"],
                       _text(row["target_comm"]), row["result"], _bool(row["blocked"]), _bool(row["ignored"]),
                       row["count"])


def _event_of(row: sqlite3.Row) -> Event:
    actor = None
    if row["actor_pid"] is not None:
        actor = Actor(row["actor_pid"], _text(row["actor_comm"]), _cmdline(row["actor_cmdline"]), row["actor_uid"],
                      row["actor_start_ticks"], None, bool(row["actor_kernel"]))
    return Event(row["time"], row["mechanism"], row["event"], _text(row["object"]) or "", row["key"], row["pid"],
                 _text(row["comm"]), row["source"], _text(row["detail"]) or "", _place(row["place"]), actor)


def _exit_of(row: sqlite3.Row) -> ProcessExit:
    return ProcessExit(row["time"], row["pid"], row["start_ticks"], _text(row["comm"]), _cmdline(row["cmdline"]))


# --- opening --------------------------------------------------------------------------------------------------


def prepare_directory(path: str) -> None:
    """Create the journal's directory (mode 0700) if missing. An existing directory is left as it is: it may be
    /tmp or one the user chose."""
    directory = os.path.dirname(os.path.abspath(path))
    missing: list[str] = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for directory in reversed(missing):  # each one made here is 0700, whatever the umask (makedirs' are not)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)


def _create_file(path: str) -> None:
    """Create the database file 0600 before SQLite does (SQLite gives its -wal and -shm files the same mode)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _make_private(path: str) -> None:
    """Bring an existing journal of this user's down to 0600 (one made by hand, or by an older ipcmon)."""
    st = os.stat(path)
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        os.chmod(path, 0o600)


def _migrate(connection: sqlite3.Connection, path: str) -> None:
    """Create or upgrade the schema (MIGRATIONS), in one transaction; a newer schema is refused for writing."""
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    version = row[0] if row else 0
    if version > SCHEMA_VERSION:
        raise JournalError("newer", f"the journal {path} has schema {version}, newer than this ipcmon's "
                           f"{SCHEMA_VERSION}: upgrade ipcmon or use another --db")
    if version == SCHEMA_VERSION:
        return
    with connection:
        for step in MIGRATIONS[version:]:
            for statement in step:
                connection.execute(statement)
        connection.execute("DELETE FROM schema_version")
        connection.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))


def open_for_writing(path: str, max_size: int = DEFAULT_MAX_SIZE) -> sqlite3.Connection:
    """A connection to the journal at path, created (directory 0700 when made here, file 0600) and migrated, in WAL
    mode with incremental vacuum. Raises JournalError."""
    try:
        prepare_directory(path)
        _create_file(path)
        connection = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as error:
        raise classify(error, path) from error
    try:
        # Before any change (WAL mode rewrites the header): another program's database is left as it is.
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "schema_version" not in tables:
            raise JournalError("other", f"{path} is an SQLite database but no ipcmon journal: left untouched (use "
                               "another --db)")
        _make_private(path)
        empty = connection.execute("PRAGMA page_count").fetchone()[0] == 0
        if empty:
            # Only before the first table: so that deleting rows can give pages back (the size bound).
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise JournalError("other", f"the journal {path} cannot use WAL mode (journal_mode is {mode})")
        connection.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at each checkpoint, never corrupted
        wal_limit = max(max(max_size, MIN_MAX_SIZE) // 8, 64 * 1024)  # Journal.wal_limit
        page = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.execute(f"PRAGMA journal_size_limit = {int(wal_limit)}")
        connection.execute(f"PRAGMA wal_autocheckpoint = {max(int(wal_limit // page // 2), 8)}")
        _migrate(connection, path)
    except (OSError, sqlite3.Error) as error:
        connection.close()
        raise classify(error, path) from error
    except JournalError:
        connection.close()
        raise
    return connection


# --- writing --------------------------------------------------------------------------------------------------


class _Stop:
    """Sentinel: the writer thread ends after writing what came before it."""


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class Journal:
    """The writing side: records go through a bounded queue to a thread that writes them in transactions.

    ``add`` never blocks: when the queue is full the record is dropped and counted (``dropped``), and a note says how
    many were lost and of what, on stderr (``on_problem``) and in the journal. When the database cannot be written
    (full disk, corrupt, locked) the problem goes to ``on_problem`` once, the records are kept in memory (the newest
    ``MEMORY_RECORDS``) and, but for a corrupt database, writing is retried every ``RETRY_EVERY`` seconds.
    """

    def __init__(
        self,
        path: str,
        *,
        keep: float = DEFAULT_KEEP,
        max_size: int = DEFAULT_MAX_SIZE,
        queue_size: int = QUEUE_SIZE,
        memory_records: int = MEMORY_RECORDS,
        retry_every: float = RETRY_EVERY,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.keep = keep
        self.max_size = max(max_size, MIN_MAX_SIZE)
        self.retry_every = retry_every
        self.wal_limit = max(self.max_size // 8, 64 * 1024)
        """Bytes the write-ahead log may keep between transactions; the database gets the rest of max_size."""
        self.batch = min(max(self.max_size // 4096, 100), BATCH)
        """Records per transaction: about 300 bytes of pages each, so that one transaction fits in the log's share."""
        self._queue: queue.Queue[Record | _Stop | _Flush] = queue.Queue(queue_size)
        self.memory: collections.deque[Record] = collections.deque(maxlen=memory_records)
        """Records not written because the database cannot be (oldest dropped beyond its bound)."""
        self.problem: JournalError | None = None
        """Why the journal is in memory now; None while it is written."""
        self.dropped = 0
        """Records dropped because the writer was behind (queue full), since start."""
        self.written = 0
        self.pruned = 0
        self._pruned_unsaid: collections.Counter[str] = collections.Counter()
        """What prunings removed since the last note about them (at most one note per PRUNE_NOTE_EVERY)."""
        self._pruned_said_at = 0.0
        self._pruned_since: float | None = None
        """Rows removed by retention (age or size), since start."""
        self._dropped_kinds: collections.Counter[str] = collections.Counter()
        self._dropped_since: float | None = None
        self._memory_lost = 0
        self._problem_since: float | None = None
        self._on_problem = on_problem or (lambda text: sys.stderr.write(f"ipcmon record: {text}\n"))
        self._connection: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._life = threading.Lock()
        """Held by start() and stop(): one at a time, whatever threads call them."""
        self._stopped = False
        self._last_retention = 0.0
        self._last_retry = 0.0

    # -- the caller's side --

    def start(self) -> None:
        """Open the database (or go on in memory, saying why) and start the writer thread."""
        with self._life:  # a stop() from another thread waits: it would close the connection under _retain
            if self._stopped:
                return  # stopped before this start (on another thread) began: nothing to open
            self._open()
            if self._connection is not None:
                self._retain(time.time())
            self._thread = threading.Thread(target=self._run, name="ipcmon-journal", daemon=True)
            self._thread.start()

    def add(self, record: Record) -> bool:
        """Queue one record for writing; False when the queue was full and it was dropped (counted). Never blocks."""
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            with self._lock:
                self.dropped += 1
                self._dropped_kinds[_kind_of(record)] += 1
                if self._dropped_since is None:
                    self._dropped_since = time.time()
            return False

    def add_all(self, records: Iterable[Record]) -> None:
        for record in records:
            self.add(record)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every record queued so far is written (or kept in memory); False on timeout or when stopped."""
        if self._thread is None or not self._thread.is_alive():
            return False
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then close the database and end the writer thread (after a start() under way in
        another thread has finished: closing a connection another thread is using crashed the process, seen in CI)."""
        with self._life:
            self._stopped = True
            thread = self._thread
            if thread is not None and thread.is_alive():
                try:
                    self._queue.put(_Stop(), timeout=timeout)
                except queue.Full:
                    pass
                thread.join(timeout)
            self._thread = None
            if self._connection is not None and (thread is None or not thread.is_alive()):
                self._close()

    # -- the writer thread --

    def _open(self) -> None:
        try:
            self._connection = open_for_writing(self.path, self.max_size)
        except JournalError as error:
            self._fail(error)

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if self._pruned_unsaid:
                self._note_pruning(connection)
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        connection.close()

    def _fail(self, error: JournalError) -> None:
        """Go on in memory, and say so the first time (and each time the reason changes)."""
        if self.problem is None or self.problem.kind != error.kind:
            retry = "" if error.kind == "corrupt" else f"; trying again every {self.retry_every:g}s"
            self._on_problem(f"{error}: recording goes on in memory (the newest {self.memory.maxlen:,} records)"
                             + retry)
        if self.problem is None:
            self._problem_since = time.time()
        self.problem = error
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error:
                pass
            self._connection = None

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                first = None
            batch: list[Record] = []
            markers: list[_Flush] = []
            stop = False
            item = first
            while item is not None:
                if isinstance(item, _Stop):
                    stop = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    batch.append(item)
                if stop or len(batch) >= self.batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            try:
                self._write(batch, time.time())
            except Exception as error:  # one bad batch must not end recording; said and kept
                self._on_problem(f"journal writer: {type(error).__name__}: {error}")
            for marker in markers:
                marker.done.set()
            if stop:
                self._write_dropped(time.time())
                self._close()
                return

    def _write(self, batch: list[Record], now: float) -> None:
        self._write_dropped(now)
        if self.problem is not None:
            self._keep_in_memory(batch)
            if self.problem.kind == "corrupt" or now - self._last_retry < self.retry_every:
                return
            self._last_retry = now
            self._recover(now)
            if self.problem is not None:
                return
            batch = []  # _recover wrote the memory, which holds this batch
        if not batch:
            self._retain(now)
            return
        try:
            self._insert(batch)
        except (OSError, sqlite3.Error) as error:
            self._fail(classify(error, self.path))
            self._keep_in_memory(batch)
            return
        self._retain(now)

    def _keep_in_memory(self, batch: list[Record]) -> None:
        lost = max(len(self.memory) + len(batch) - (self.memory.maxlen or 0), 0)
        self._memory_lost += lost
        self.memory.extend(batch)

    def _recover(self, now: float) -> None:
        """Try the database again; on success write what memory held and a note on the gap."""
        if self._connection is None:
            self._open()
            if self._connection is None:
                return
        kept = list(self.memory)
        problem = self.problem
        note = Note(now, f"the journal could not be written from {_clock(self._problem_since or now)} to "
                         f"{_clock(now)} ({problem}); {len(kept):,} records kept in memory were written"
                         + (f", {self._memory_lost:,} older ones were lost" if self._memory_lost else ""))
        try:
            self._insert([*kept, note])
        except (OSError, sqlite3.Error) as error:
            self._fail(classify(error, self.path))
            return
        self.memory.clear()
        self._memory_lost = 0
        self.problem = None
        self._problem_since = None
        self._on_problem(f"the journal {self.path} is written again: {note.text}")

    def _write_dropped(self, now: float) -> None:
        with self._lock:
            if not self._dropped_kinds:
                return
            kinds, self._dropped_kinds = self._dropped_kinds, collections.Counter()
            since, self._dropped_since = self._dropped_since or now, None
        words = ", ".join(f"{count:,} {kind}" for kind, count in kinds.most_common())
        text = (f"{sum(kinds.values()):,} records dropped between {_clock(since)} and {_clock(now)}: the journal's "
                f"writer fell behind ({words})")
        self._on_problem(text)
        if self.problem is None:
            try:
                self._insert([Note(now, text)])
                return
            except (OSError, sqlite3.Error) as error:
                self._fail(classify(error, self.path))
        self._keep_in_memory([Note(now, text)])

    def _insert(self, batch: Sequence[Record]) -> None:
        connection = self._connection
        assert connection is not None
        attributions = [_attribution_row(r) for r in batch if isinstance(r, Attribution)]
        events = [_event_row(r) for r in batch if isinstance(r, Event)]
        exits = [(r.time, r.pid, r.start_ticks, _raw(r.comm), _args(r.cmdline)) for r in batch
                 if isinstance(r, ProcessExit)]
        notes = [(r.time, r.text) for r in batch if isinstance(r, Note)]
        connection.execute("BEGIN IMMEDIATE")
        try:
            if attributions:
                connection.executemany(f"INSERT INTO attributions ({_ATTRIBUTION_COLUMNS}) VALUES "
                                       f"({', '.join('?' * 27)})", attributions)
            if events:
                connection.executemany(f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 19)})",
                                       events)
            if exits:
                connection.executemany("INSERT OR IGNORE INTO exits (time, pid, start_ticks, comm, cmdline) "
                                       "VALUES (?, ?, ?, ?, ?)", exits)
            if notes:
                connection.executemany("INSERT INTO notes (time, text) VALUES (?, ?)", notes)
            connection.execute("COMMIT")
        except BaseException:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        self.written += len(batch)

    # -- retention --

    def _retain(self, now: float) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            if now - self._last_retention >= RETENTION_EVERY:
                self._last_retention = now
                self._delete_before(connection, now - self.keep)
            self._bound_size(connection)
        except (OSError, sqlite3.Error) as error:
            self._fail(classify(error, self.path))

    def _delete_before(self, connection: sqlite3.Connection, cutoff: float) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for table in ("attributions", "events", "exits", "notes"):
                self.pruned += connection.execute(f"DELETE FROM {table} WHERE time < ?", (cutoff,)).rowcount
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.executescript("PRAGMA incremental_vacuum;")  # execute() frees one page
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def size(self) -> int:
        """Bytes the database file and its write-ahead log take now (0 for a missing file)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(self.path + suffix).st_size
            except OSError:
                pass
        return total

    def _wal_size(self) -> int:
        try:
            return os.stat(self.path + "-wal").st_size
        except OSError:
            return 0

    def _bound_size(self, connection: sqlite3.Connection) -> None:
        """Keep the database under DATABASE_SHARE of max_size: delete the oldest records until the pages in use fit
        in 60 % of that (so that a storm prunes once in a while, not after every transaction), then give the free
        pages back to the file system. The rest of max_size is the write-ahead log's: a pruning rewrites up to every
        page of the database there before the checkpoint that empties it.

        Lifecycle events go first (a create/unlink storm is mostly events, and who did what is the journal's point),
        then attributions and exits, notes last; each pruning is a note (PRUNED_NOTE) that readers report."""
        budget = int(self.max_size * DATABASE_SHARE)
        page = connection.execute("PRAGMA page_size").fetchone()[0]
        removed: collections.Counter[str] = collections.Counter()
        for _ in range(20):
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            free = connection.execute("PRAGMA freelist_count").fetchone()[0]
            used = (pages - free) * page
            if used <= budget:
                if removed:
                    self._pruned_unsaid.update(removed)
                    self._pruned_since = self._pruned_since or time.time()
                    if time.monotonic() - self._pruned_said_at >= PRUNE_NOTE_EVERY:
                        self._note_pruning(connection)
                if pages * page > budget:
                    connection.executescript("PRAGMA incremental_vacuum;")  # execute() frees one page
                    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                elif self._wal_size() > self.wal_limit:
                    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return
            counts = {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                      for table in ("attributions", "events", "exits", "notes")}
            if not any(counts.values()):
                return
            skip = max(int(sum(counts.values()) * min(1.0, 1.0 - (budget * 0.6) / used)), 1)
            connection.execute("BEGIN IMMEDIATE")
            try:
                for tables in _PRUNING_ORDER:
                    rows = sum(counts[table] for table in tables)
                    if skip <= 0 or rows == 0:
                        continue
                    union = " UNION ALL ".join(f"SELECT time FROM {table}" for table in tables)
                    row = connection.execute(f"SELECT time FROM ({union}) ORDER BY time LIMIT 1 OFFSET ?",
                                             (min(skip, rows) - 1,)).fetchone()
                    for table in tables:
                        gone = connection.execute(f"DELETE FROM {table} WHERE time <= ?", (row[0],)).rowcount
                        removed[table] += gone
                        self.pruned += gone
                    skip -= min(skip, rows)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the deletion's pages, before the vacuum's
            connection.executescript("PRAGMA incremental_vacuum;")  # execute() frees one page
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _note_pruning(self, connection: sqlite3.Connection) -> None:
        """Write what the prunings removed since the last such note as one note (readers say it:
        JournalReader.warnings), and say it (on_problem)."""
        words = ", ".join(f"{count:,} {_TABLE_WORDS[table]}" for table, count in self._pruned_unsaid.items() if count)
        since = f" since {_clock(self._pruned_since)}" if self._pruned_since is not None else ""
        text = f"{PRUNED_NOTE} ({self.max_size // (1 << 20) or 1}M){since}: {words}"
        self._pruned_unsaid.clear()
        self._pruned_since = None
        self._pruned_said_at = time.monotonic()
        self._on_problem(text)
        connection.execute("INSERT INTO notes (time, text) VALUES (?, ?)", (time.time(), text))


_PRUNING_ORDER = (("events",), ("attributions", "exits"), ("notes",))
"""What a pruning for size removes first: lifecycle events, then who did what and the exits, notes last."""
_TABLE_WORDS = {"events": "lifecycle events", "attributions": "attributions (who did what)",
                "exits": "process exits", "notes": "notes"}
PRUNED_NOTE = "the oldest records were removed to keep the journal under its size limit"
PRUNE_NOTE_EVERY = 60.0
"""Seconds between two notes about prunings: a storm prunes after many a batch, and is said once a minute, with
what it removed since (and at close, what is left to say)."""
"""How a pruning's note begins; JournalReader.warnings finds them by it."""


def _kind_of(record: Record) -> str:
    if isinstance(record, Attribution):
        return f"{record.mechanism} {record.action}"
    if isinstance(record, Event):
        return f"{record.mechanism} {record.event}"
    if isinstance(record, ProcessExit):
        return "process exits"
    return "notes"


def _clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


# --- reading --------------------------------------------------------------------------------------------------


def _object_names(text: str) -> tuple[tuple[str, ...], str | None]:
    """The names an object may be stored under for what a person typed, and its mechanism when the spelling says:
    ``/foo`` and ``foo`` → ``/foo``; ``sem.foo``, ``/sem.foo``, ``sem:/foo`` → semaphore ``/foo``; ``mqueue:/q`` →
    queue ``/q`` (the spellings of ``leaks --match``)."""
    if text.startswith("sem:"):
        return ("/" + text[4:].removeprefix("/"),), "sem"
    if text.startswith("mqueue:"):
        return ("/" + text[7:].removeprefix("/"),), "mqueue"
    bare = text.removeprefix("/")
    if bare.startswith("sem.") and len(bare) > 4:
        return ("/" + bare[4:],), "sem"
    return ("/" + bare,), None


@dataclass(frozen=True, slots=True)
class Creator:
    """Who created an object, as the journal has it, and what became of that process."""

    attribution: Attribution
    exited: bool | None
    """True: the process is gone (``exited_at`` when the recorder saw it go); False: it runs still (same pid and
    start time); None: unknown (no start time recorded)."""
    exited_at: float | None = None


_IN_MAX = 500
_T = TypeVar("_T")
"""Values bound in one ``IN (…)`` at most (SQLite's limit is 32,766 since 3.32; a query plan stays small)."""


def _chunks(values: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _from_created_event(event: Event) -> Attribution:
    """A ``created`` lifecycle event that names its actor (a fanotify or tracefs event), as the attribution it
    stands for."""
    assert event.actor is not None
    source: AttributionSource = "tracefs" if event.source == "tracefs" else "fanotify"
    return Attribution(event.time, "created", event.mechanism, event.object, event.actor, source, event.key,
                       event.place)


class JournalReader:
    """The reading side: a read-only connection (WAL: never waits for the writer). Raises JournalError."""

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.exists(path):
            raise JournalError("missing", f"no journal at {path}")
        try:
            self._connection = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True, timeout=2.0,
                                               check_same_thread=False)
            self._connection.row_factory = sqlite3.Row
            row = self._connection.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError as error:
            self._close_quietly()
            if "no such table" in str(error):
                raise JournalError("corrupt", f"{path} is no ipcmon journal (no schema_version table)") from error
            raise classify(error, path) from error
        except (OSError, sqlite3.Error) as error:
            self._close_quietly()
            raise classify(error, path) from error
        self.version = row[0] if row else 0
        if self.version > SCHEMA_VERSION:
            self._close_quietly()
            raise JournalError("newer", f"the journal {path} has schema {self.version}, newer than this ipcmon's "
                               f"{SCHEMA_VERSION}: upgrade ipcmon to read it")

    def _close_quietly(self) -> None:
        connection = getattr(self, "_connection", None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _rows(self, sql: str, parameters: Sequence[object]) -> list[sqlite3.Row]:
        try:
            return self._connection.execute(sql, parameters).fetchall()
        except (OSError, sqlite3.Error) as error:
            raise classify(error, self.path) from error

    # -- objects --

    def attributions_for_object(self, *, key: str | None = None, name: str | None = None,
                                mechanism: str | None = None, limit: int = 100) -> list[Attribution]:
        """The newest ``limit`` attributions of an object, oldest first: by its key (``shm:DEV:INODE``), or by its
        name as typed (``/foo``, ``foo``, ``sem.foo``: see ``history``) and, when given, its mechanism."""
        where, parameters = self._object_where(key, name, mechanism)
        rows = self._rows(f"SELECT * FROM attributions WHERE {where} ORDER BY time DESC, id DESC LIMIT ?",
                          [*parameters, limit])
        return [_attribution_of(row) for row in reversed(rows)]

    def events_for_object(self, *, key: str | None = None, name: str | None = None, mechanism: str | None = None,
                          limit: int = 1000) -> list[Event]:
        """The newest ``limit`` lifecycle events of an object, oldest first (as ``attributions_for_object``)."""
        where, parameters = self._object_where(key, name, mechanism)
        rows = self._rows(f"SELECT * FROM events WHERE {where} ORDER BY time DESC, id DESC LIMIT ?",
                          [*parameters, limit])
        return [_event_of(row) for row in reversed(rows)]

    @staticmethod
    def _object_where(key: str | None, name: str | None, mechanism: str | None) -> tuple[str, list[object]]:
        clauses: list[str] = []
        parameters: list[object] = []
        if key is not None:
            clauses.append("key = ?")
            parameters.append(key)
        if name is not None:
            names, spelled = _object_names(name)
            mechanism = mechanism or spelled
            clauses.append(f"object IN ({', '.join('?' * len(names))})")
            parameters.extend(_raw(n) for n in names)
        if not clauses:
            raise ValueError("an object is named by its key or its name")
        where = "(" + " OR ".join(clauses) + ")"
        if mechanism is not None:
            where += " AND mechanism = ?"
            parameters.append(mechanism)
        return where, parameters

    def creator(self, *, key: str | None, name: str | None, mechanism: str | None) -> Creator | None:
        """Who created the object, by its key first, else by name and mechanism (the newest creation of that name
        not followed by a removal of it, among the records a source could tie to no key: one tied to another key was
        another object of the same name), and whether that process exited; None when the journal does not know."""
        return self.creators([(key, name, mechanism)])[0]

    def creators(self, objects: Sequence[tuple[str | None, str | None, str | None]]) -> list[Creator | None]:
        """creator() of each (key, name, mechanism), in order: a few queries for them all (a snapshot's thousands
        of segments), not a few per object. Raises JournalError."""
        found: list[Attribution | None] = [None] * len(objects)
        keyed = {key: index for index, (key, _, _) in enumerate(objects) if key is not None}
        for chunk in _chunks(list(keyed), _IN_MAX):
            for row in self._rows("SELECT * FROM attributions WHERE action = 'created' AND key IN "
                                  f"({', '.join('?' * len(chunk))}) ORDER BY time, id", chunk):
                found[keyed[row["key"]]] = _attribution_of(row)  # the newest last: it wins
        unknown = [key for key, index in keyed.items() if found[index] is None]
        for chunk in _chunks(unknown, _IN_MAX):
            for row in self._rows("SELECT * FROM events WHERE event = 'created' AND actor_pid IS NOT NULL AND key IN "
                                  f"({', '.join('?' * len(chunk))}) ORDER BY time, id", chunk):
                found[keyed[row["key"]]] = _from_created_event(_event_of(row))
        wanted: dict[int, tuple[bytes, str | None]] = {}  # index → (the name as stored, its mechanism)
        for index, (_, name, mechanism) in enumerate(objects):
            if found[index] is None and name is not None:
                names, spelling = _object_names(name)
                wanted[index] = (_raw(names[0]) or b"", mechanism or spelling)
        for raws in _chunks(sorted({raw for raw, _ in wanted.values()}), _IN_MAX):
            rows: dict[bytes, list[sqlite3.Row]] = {}
            for row in self._rows("SELECT * FROM attributions WHERE action IN ('created', 'removed') AND object IN "
                                  f"({', '.join('?' * len(raws))}) ORDER BY time DESC, id DESC", raws):
                rows.setdefault(row["object"], []).append(row)
            for index, (raw, mechanism) in wanted.items():
                key = objects[index][0]
                newest = next((row for row in rows.get(raw, ()) if row["mechanism"] == mechanism
                               and row["key"] in (None, key)), None)
                if newest is not None and newest["action"] == "created":
                    found[index] = _attribution_of(newest)
        creators: list[Creator | None] = []
        for record in found:
            if record is None:
                creators.append(None)
                continue
            exited, exited_at = self.exited(record.actor.pid, record.actor.start_ticks, since=record.time)
            creators.append(Creator(record, exited, exited_at))
        return creators

    def attributions_by_process(self, pid: int, start_ticks: int | None = None, limit: int = 1000) -> list[Attribution]:
        """What a process did, newest ``limit`` oldest first; with start_ticks only that process, not an earlier or
        later one that had the same pid."""
        sql = "SELECT * FROM attributions WHERE pid = ?"
        parameters: list[object] = [pid]
        if start_ticks is not None:
            sql += " AND start_ticks = ?"
            parameters.append(start_ticks)
        rows = self._rows(sql + " ORDER BY time DESC, id DESC LIMIT ?", [*parameters, limit])
        return [_attribution_of(row) for row in reversed(rows)]

    def signals_to_each(self, pids: Iterable[int], limit: int = 20) -> dict[int, list[Attribution]]:
        """signals_to() for many processes at once: pid → its last ``limit`` signals, oldest first (a pid that got
        none is left out). Raises JournalError."""
        received: dict[int, list[Attribution]] = {}
        for chunk in _chunks(sorted(set(pids)), _IN_MAX):
            rows = self._rows(
                "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY target ORDER BY time DESC, id DESC) AS nth "
                f"FROM attributions WHERE action = 'sent' AND target IN ({', '.join('?' * len(chunk))})) "
                "WHERE nth <= ? ORDER BY time, id", [*chunk, limit])
            for row in rows:
                received.setdefault(row["target"], []).append(_attribution_of(row))
        return received

    def signals_to(self, pid: int, limit: int = 20) -> list[Attribution]:
        """The last ``limit`` signals sent to pid (``sent`` attributions), oldest first."""
        rows = self._rows("SELECT * FROM attributions WHERE target = ? AND action = 'sent' "
                          "ORDER BY time DESC, id DESC LIMIT ?", [pid, limit])
        return [_attribution_of(row) for row in reversed(rows)]

    def events_of_process(self, pid: int, limit: int = 1000) -> list[Event]:
        """Lifecycle events naming pid (as the process involved or as the actor), newest ``limit`` oldest first."""
        rows = self._rows("SELECT * FROM events WHERE pid = ? OR actor_pid = ? ORDER BY time DESC, id DESC LIMIT ?",
                          [pid, pid, limit])
        return [_event_of(row) for row in reversed(rows)]

    def exits_of(self, pid: int) -> list[ProcessExit]:
        """Every recorded exit of a process with this pid, oldest first."""
        return [_exit_of(row) for row in self._rows("SELECT * FROM exits WHERE pid = ? ORDER BY time", [pid])]

    def exited(self, pid: int, start_ticks: int | None, since: float | None = None) -> tuple[bool | None, float | None]:
        """Whether the process (pid and start time) exited, and when the recorder saw it go: (True, time); (True,
        None) when it is gone but no exit was recorded; (False, None) when it runs still; (None, None) unknown.

        A process gone before it could be read (start_ticks None: a short-lived creator) has its exit recorded with
        no start time as soon as the recorder learns of its act; with since (the act's time), the first such exit
        of that pid within EXIT_WINDOW seconds after it is taken as its own."""
        if start_ticks is None and since is not None:
            row = self._rows("SELECT * FROM exits WHERE pid = ? AND start_ticks IS NULL AND time >= ? AND time <= ? "
                             "ORDER BY time LIMIT 1", [pid, since, since + EXIT_WINDOW])
            if row:
                return True, row[0]["time"]
        if start_ticks is not None:
            row = self._rows("SELECT * FROM exits WHERE pid = ? AND start_ticks = ?", [pid, start_ticks])
            if row:
                return True, row[0]["time"]
            now = process_start_ticks(pid)
            return (now != start_ticks), None
        return None, None

    def notes(self, since: float = 0.0) -> list[Note]:
        """What the recorder said about the journal (records dropped, a disk that was full), oldest first."""
        return [Note(row["time"], row["text"])
                for row in self._rows("SELECT time, text FROM notes WHERE time >= ? ORDER BY time", [since])]

    def warnings(self, since: float) -> list[str]:
        """What a reader should be told about the journal's gaps, in words: its disk is full now (the recorder then
        keeps its newest records in memory, so the latest acts are missing here), and how many notes the recorder
        wrote since ``since`` (records dropped, a full disk), with the last one."""
        said: list[str] = []
        try:
            fs = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            fs = None
        if fs is not None and (fs.f_bfree if os.geteuid() == 0 else fs.f_bavail) * fs.f_frsize < FULL_BELOW:
            said.append(f"the disk holding the journal {self.path} is full: what the recorder saw lately may be "
                        "missing (it keeps its newest records in memory until there is room)")
        pruned = self._rows("SELECT time FROM notes WHERE text LIKE ? ORDER BY time DESC LIMIT 1",
                            [PRUNED_NOTE + "%"])
        if pruned:
            oldest = self._rows("SELECT min(time) AS time FROM attributions", [])
            since_when = (f"nothing before {_clock(oldest[0]['time'])}" if oldest and oldest[0]["time"] is not None
                          else "nothing older")
            # Lifecycle events are pruned first (_PRUNING_ORDER): they may start well after who did what.
            events = self._rows("SELECT min(time) AS time FROM events", [])
            first_event = events[0]["time"] if events else None
            if first_event is not None and (not oldest or oldest[0]["time"] is None or first_event > oldest[0]["time"]):
                since_when += f" and no lifecycle events (attached, detached…) before {_clock(first_event)}"
            said.append(f"the journal {self.path} keeps {since_when}: its oldest records were removed to keep it "
                        f"under its size limit (the last time at {_clock(pruned[0]['time'])}; ipcmon record "
                        "--max-size gives it more room)")
        notes = [note for note in self.notes(since) if not note.text.startswith(PRUNED_NOTE)]
        if notes:
            said.append(f"{len(notes)} note{'s' if len(notes) > 1 else ''} in the journal since {_clock(since)}, "
                        f"the last at {_clock(notes[-1].time)}: {notes[-1].text}")
        return said


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def process_start_ticks(pid: int, proc: str = "/proc") -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot); None when there is no such process."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    try:
        return int(data[data.rfind(b")") + 2:].split()[19])  # fields after comm start at 3: 22 - 3 = 19
    except (ValueError, IndexError):
        return None


def open_reader(path: str | None = None) -> tuple[JournalReader | None, str]:
    """The journal at path (default_path() when None) for reading, or None and a note on why it cannot be read
    ('' when there is simply none). Never raises: reading the journal must never make a command fail."""
    where = path or default_path()
    try:
        return JournalReader(where), ""
    except JournalError as error:
        return None, "" if error.kind == "missing" else str(error)
    except Exception as error:  # a reader's promise: a broken journal is a note, never a failure
        return None, f"the journal {where} cannot be read ({type(error).__name__}: {error})"
