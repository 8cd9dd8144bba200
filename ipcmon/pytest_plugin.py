"""pytest plugin: fail (or warn) the test that leaves POSIX shm segments, semaphores or queues behind.

Opt in with ``--ipc-leaks`` or ``ipc_leaks = true`` in the ini file. Before each test the names in the shm directory
and the mqueue mount are noted; after its teardown, a new name still present appeared during the test. It is that
test's leak only when the test's own process or one of its descendants created it (issue 16):

- segments and semaphores: fanotify(7) on the shm tmpfs says which process created each entry (root);
- queues: the Attributor's tracefs mq_open records (root, tracefs mounted), :mod:`ipcmon.live.attribution`;
- descendants: the kernel's fork records, even of children that have exited (:mod:`ipcmon.live.lineage`).

So an unrelated process creating a segment while a test sleeps does not fail it, and under pytest-xdist each worker
judges its own tests. An object whose creator cannot be tied to the test (not root, tracefs not mounted, events lost)
is an :class:`IpcUnknownCreatorWarning` ("appeared during this test, creator unknown"), never a failure.
``--ipc-leaks-mode=warn`` reports leaks instead of failing; ``ipc_leaks_match`` limits the check to names matching
glob patterns.

A test pays for the attribution only when something appeared: then the queues' records are waited for (they are
held SETTLE, 0.1 s, by the Attributor); segments' creators are read at once.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
import warnings
from collections.abc import Generator, Iterable
from dataclasses import dataclass

import pytest

from ipcmon.collect.scan import find_mqueue_dir
from ipcmon.collect.shm import SHM_DIR, name_of
from ipcmon.leaks import matches
from ipcmon.live import fanotify
from ipcmon.live.attribution import Attributor
from ipcmon.live.lineage import Lineage

_BEFORE = pytest.StashKey[frozenset[str]]()
_BLAME = pytest.StashKey["Blame"]()

QUEUE_WAIT = 5.0
"""Seconds to wait, at most, for the creators of the queues that appeared during a test: the Attributor holds a
record 0.1 s (a storm's counted record comes at the end of its 1 s window, ipcmon.live.coalesce), but it reads every
process's queue calls and may lag behind on a busy machine. Only a test during which a queue appeared waits."""


READS_MAX = 1024
"""fanotify reads of 64 KiB at most per look, so that another program's storm of segments cannot keep a test
reading (what is left is read at the next look, in order)."""


class IpcLeakWarning(UserWarning):
    """A test left POSIX IPC objects behind (``--ipc-leaks-mode=warn``)."""


class IpcUnknownCreatorWarning(IpcLeakWarning):
    """POSIX IPC objects appeared during a test and are still there, but their creator cannot be tied to the test
    (no fanotify or tracefs: not root; events lost): a warning, never a failure."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipcmon", "POSIX IPC leak checks (ipcmon)")
    group.addoption("--ipc-leaks", action="store_true", default=None,
                    help="fail tests that leave shm segments, semaphores or message queues behind")
    group.addoption("--ipc-leaks-mode", choices=("fail", "warn"), default=None,
                    help="fail the leaking test (default) or only warn")
    parser.addini("ipc_leaks", "check every test for POSIX IPC leaks", type="bool", default=False)
    parser.addini("ipc_leaks_mode", "fail or warn", default="fail")
    parser.addini("ipc_leaks_match", "only names matching these globs (e.g. /myapp-*)", type="linelist",
                  default=[])


def _enabled(config: pytest.Config) -> bool:
    option = config.getoption("--ipc-leaks")
    return bool(option) if option is not None else bool(config.getini("ipc_leaks"))


def _mode(config: pytest.Config) -> str:
    return str(config.getoption("--ipc-leaks-mode") or config.getini("ipc_leaks_mode"))


def _spelling(kind: str, name: str) -> str:
    return name if kind == "shm" else f"{kind}:{name}"


def current_names(patterns: list[str]) -> frozenset[str]:
    """POSIX names present now: ``/name`` for shm, ``sem:/name`` for a semaphore (the name sem_open(3) was given;
    its file is ``sem.name``), ``mqueue:/name`` for a queue. Patterns match the name without its ``sem:`` or
    ``mqueue:``, with or without the slash, or a semaphore's file name (``ipcmon.leaks.spellings``)."""
    found: set[tuple[str, str]] = set()
    for directory, kind in ((SHM_DIR, "shm"), (find_mqueue_dir(), "mqueue")):
        if directory is None:
            continue
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            found.add(name_of(entry) if kind == "shm" else ("mqueue", "/" + entry))
    if patterns:
        found = {(kind, name) for kind, name in found if any(matches(kind, name, pattern) for pattern in patterns)}
    return frozenset(_spelling(kind, name) for kind, name in found)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The new names of one test, sorted by whose they are."""

    leaked: list[str]
    """Created by the test's process or a descendant."""
    unknown: list[str]
    """Whose creator cannot be tied to the test."""
    reasons: list[str]
    """Why not, in words (``not root: …``), once each."""


class Blame:
    """Who created what, for one pytest process (a worker under xdist): fanotify on the shm tmpfs, the Attributor's
    tracefs queue records, and the Lineage of this process. Opened at the first checked test; :meth:`close` removes
    what it opened. Every source that cannot run says why in :attr:`reasons`."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}
        self._fan: fanotify.Fanotify | None = None
        self._shm_dir: tuple[bytes, int] | None = None
        self._fan_lost = False
        self._shm_creators: dict[str, int] = {}
        not_root = "not root: no fanotify (it needs CAP_SYS_ADMIN), creators of segments and semaphores are unknown"
        try:
            fan = fanotify.Fanotify()
        except PermissionError:
            self.reasons["shm"] = not_root
        except OSError as error:
            self.reasons["shm"] = f"no fanotify ({error.strerror or error}): creators of segments are unknown"
        else:
            try:
                fan.mark_filesystem(SHM_DIR, fanotify.FAN_CREATE | fanotify.FAN_MOVED_TO)
                self._shm_dir = (fanotify.fsid_of(SHM_DIR), os.stat(SHM_DIR).st_ino)
                self._fan = fan
            except PermissionError:  # an ordinary user may open a group (Linux 5.13) but not mark a filesystem
                fan.close()
                self.reasons["shm"] = not_root
            except OSError as error:
                fan.close()
                self.reasons["shm"] = f"{SHM_DIR} cannot be watched ({error.strerror or error})"
        self._ready = threading.Event()
        self._queue_creators: dict[str, int] = {}
        self._queue_patterns: list[tuple[str, int]] = []
        mqueue_dir = find_mqueue_dir()
        self._attributor: Attributor | None = None
        if mqueue_dir is None:
            self.reasons["mqueue"] = "no mqueue mount: creators of queues are unknown"
        else:
            attributor = Attributor([], signals=False, queues=True, on_wake=self._ready.set, mqueue_dir=mqueue_dir)
            attributor.start()
            status = next((status for status in attributor.status() if status.name == "tracefs queues"), None)
            if status is not None and status.active:
                self._attributor = attributor
            else:
                attributor.stop()
                self.reasons["mqueue"] = status.reason if status is not None else "creators of queues are unknown"
        # Without a source of creators there is nothing to tie to descendants: no trace instance for nothing.
        self.lineage = Lineage(fork_records=self._fan is not None or self._attributor is not None)
        if self.lineage.reason:
            self.reasons["lineage"] = self.lineage.reason

    def begin(self) -> None:
        """Before a test: forget every creation seen so far and the descendants that exited."""
        self._read_shm()
        self._shm_creators.clear()
        self._fan_lost = False
        if self._attributor is not None:
            self._attributor.drain()
        self._queue_creators.clear()
        self._queue_patterns.clear()
        self.lineage.forget_exited()

    def _read_shm(self) -> None:
        fan, directory = self._fan, self._shm_dir
        if fan is None or directory is None:
            return
        for _ in range(READS_MAX):
            events = fan.read(0)
            if not events:
                break
            for event in events:
                if event.overflow:
                    self._fan_lost = True
                    continue
                if event.name is None or event.directory is None or fanotify.fsid(event.directory) != directory[0]:
                    continue
                inode = fanotify.tmpfs_inode(event.directory)
                if inode is not None and inode != directory[1]:
                    continue  # a subdirectory: no POSIX name
                self._shm_creators[_spelling(*name_of(event.name))] = event.pid

    def _read_queues(self, names: set[str]) -> None:
        """Take the Attributor's queue records, waiting (QUEUE_WAIT at most) until every one of names has one."""
        attributor = self._attributor
        if attributor is None:
            return
        deadline = time.monotonic() + QUEUE_WAIT
        while True:
            self._ready.clear()
            for record in attributor.drain():
                if record.mechanism != "mqueue" or record.action != "created":
                    continue
                if record.count > 1 and record.object.endswith("*"):
                    self._queue_patterns.append((record.object[:-1], record.actor.pid))
                else:
                    self._queue_creators["mqueue:" + record.object] = record.actor.pid
            missing = {name for name in names if name not in self._queue_creators}
            remaining = deadline - time.monotonic()
            if not missing or remaining <= 0:
                return
            self._ready.wait(min(remaining, 0.05))

    def _queue_creator(self, name: str) -> int | None:
        """The creator of a queue: its own record's, else a storm's counted record (``/job-*``) by a descendant
        whose pattern the name fits. A storm by another process proves nothing: the name may be one of its, or this
        test's whose record is late."""
        pid = self._queue_creators.get(name)
        if pid is not None:
            return pid
        bare = name.removeprefix("mqueue:")
        return next((pid for prefix, pid in reversed(self._queue_patterns)
                     if bare.startswith(prefix) and self.lineage.descends(pid)), None)

    def judge(self, appeared: Iterable[str]) -> Verdict:
        """Sort the names that appeared during the test (and are still there) by whose they are."""
        names = sorted(appeared)
        leaked: list[str] = []
        unknown: list[str] = []
        reasons: dict[str, None] = {}
        if not names:
            return Verdict(leaked, unknown, [])
        self._read_shm()
        queues = {name for name in names if name.startswith("mqueue:")}
        if queues:
            self._read_queues(queues)
        for name in names:
            kind = "mqueue" if name in queues else "shm"
            if kind == "shm":
                pid = self._shm_creators.get(name)
                lost = self._fan_lost
                watched = self._fan is not None
            else:
                pid = self._queue_creator(name)
                lost = pid is None and self._attributor is not None and self._attributor.lost > 0  # read per CPU
                watched = self._attributor is not None
            if not watched:
                unknown.append(name)
                reasons[self.reasons[kind]] = None
                continue
            if pid is None:
                unknown.append(name)
                seen = "events were lost" if lost else "its creation was not seen"
                reasons[f"{name}: {seen}"] = None
                continue
            ours = self.lineage.descends(pid)
            if ours:
                leaked.append(name)
            elif ours is None:
                unknown.append(name)
                why = self.reasons.get("lineage", "fork records were lost")
                reasons[f"{name} was created by pid {pid}, not known to descend from this test: {why}"] = None
        return Verdict(leaked, unknown, list(reasons))

    def close(self) -> None:
        if self._fan is not None:
            self._fan.close()
            self._fan = None
        if self._attributor is not None:
            self._attributor.stop()
            self._attributor = None
        self.lineage.close()


def _blame(config: pytest.Config) -> Blame:
    """This process's Blame, opened at its first checked test (so an xdist controller, which runs none, opens none)."""
    blame = config.stash.get(_BLAME, None)
    if blame is None:
        blame = config.stash[_BLAME] = Blame()
        config.add_cleanup(blame.close)
    return blame


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    if _enabled(item.config):
        _blame(item.config).begin()
        item.stash[_BEFORE] = current_names(item.config.getini("ipc_leaks_match"))
    return (yield)


def _warn(item: pytest.Item, warning: Warning) -> None:
    warnings.warn_explicit(warning, category=type(warning), filename=str(item.path), lineno=item.location[1] or 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when != "teardown" or _BEFORE not in item.stash:
        return report
    before: frozenset[str] = item.stash[_BEFORE]
    after = current_names(item.config.getini("ipc_leaks_match"))
    verdict = _blame(item.config).judge(after - before)
    if verdict.unknown:
        _warn(item, IpcUnknownCreatorWarning(
            f"{item.nodeid}: {len(verdict.unknown)} POSIX IPC objects appeared during this test, creator unknown: "
            f"{', '.join(map(repr, verdict.unknown))} ({'; '.join(verdict.reasons)}; for exact blame run pytest as "
            f"root, with tracefs mounted)"))
    leaked = verdict.leaked
    if not leaked:
        return report
    message = f"{item.nodeid} left {len(leaked)} POSIX IPC objects behind: {', '.join(map(repr, leaked))}"
    if _mode(item.config) == "warn":
        _warn(item, IpcLeakWarning(message))
        return report
    report.outcome = "failed"
    patterns = item.config.getini("ipc_leaks_match")
    glob = shlex.quote(patterns[0]) if len(patterns) == 1 else "GLOB"
    # --min-age 0: the objects are seconds old, and clean leaves what changed in the last 10 s by default.
    report.longrepr = message + f"\n(remove them with: ipcmon clean --yes --min-age 0 --match {glob})"
    return report
