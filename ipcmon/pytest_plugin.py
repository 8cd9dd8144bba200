"""pytest plugin: fail (or warn) the test that leaves POSIX shm segments, semaphores or queues behind.

Opt in with ``--ipc-leaks`` or ``ipc_leaks = true`` in the ini file. Before each test the names in the
shm directory and the mqueue mount are noted; after its teardown, any new name still present is that
test's leak. ``--ipc-leaks-mode=warn`` reports instead of failing; ``ipc_leaks_match`` limits the check
to names matching glob patterns (useful when other programs create objects on the same machine).
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Generator

import pytest

from ipcmon.collect.scan import find_mqueue_dir
from ipcmon.collect.shm import SHM_DIR

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
    """POSIX names present now: ``/name`` for shm and semaphores (``/sem.name``), ``mqueue:/name`` for queues."""
    names: set[str] = set()
    for directory, prefix in ((SHM_DIR, "/"), (find_mqueue_dir(), "mqueue:/")):
        if directory is None:
            continue
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        names.update(prefix + entry for entry in entries)
    if patterns:
        names = {
            name for name in names
            if any(fnmatch.fnmatchcase(name.removeprefix("mqueue:"), pattern) for pattern in patterns)
        }
    return frozenset(names)


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
    report.longrepr = message + "\n(remove them with: ipcmon clean --yes --match GLOB)"
    return report
