"""pytest plugin: fail (or warn) the test that leaves POSIX shm segments, semaphores or queues behind.

Opt in with ``--ipc-leaks`` or ``ipc_leaks = true`` in the ini file. Before each test the names in the
shm directory and the mqueue mount are noted; after its teardown, any new name still present is that
test's leak. ``--ipc-leaks-mode=warn`` reports instead of failing; ``ipc_leaks_match`` limits the check
to names matching glob patterns (useful when other programs create objects on the same machine).
"""

from __future__ import annotations

import os
import shlex
import warnings
from collections.abc import Generator

import pytest

from ipcmon.collect.scan import find_mqueue_dir
from ipcmon.collect.shm import SHM_DIR, name_of
from ipcmon.leaks import matches

_BEFORE = pytest.StashKey[frozenset[str]]()


class IpcLeakWarning(UserWarning):
    """A test left POSIX IPC objects behind (``--ipc-leaks-mode=warn``)."""


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
    return frozenset(name if kind == "shm" else f"{kind}:{name}" for kind, name in found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    if _enabled(item.config):
        item.stash[_BEFORE] = current_names(item.config.getini("ipc_leaks_match"))
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when != "teardown" or _BEFORE not in item.stash:
        return report
    before: frozenset[str] = item.stash[_BEFORE]
    after = current_names(item.config.getini("ipc_leaks_match"))
    leaked = sorted(after - before)
    if not leaked:
        return report
    message = f"{item.nodeid} left {len(leaked)} POSIX IPC objects behind: {', '.join(map(repr, leaked))}"
    if _mode(item.config) == "warn":
        warnings.warn_explicit(IpcLeakWarning(message), category=IpcLeakWarning, filename=str(item.path),
                               lineno=item.location[1] or 0)
        return report
    report.outcome = "failed"
    patterns = item.config.getini("ipc_leaks_match")
    glob = shlex.quote(patterns[0]) if len(patterns) == 1 else "GLOB"
    # --min-age 0: the objects are seconds old, and clean leaves what changed in the last 10 s by default.
    report.longrepr = message + f"\n(remove them with: ipcmon clean --yes --min-age 0 --match {glob})"
    return report
