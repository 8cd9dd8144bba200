"""Shared fixtures: unique names for the kernel objects each test creates, child processes, and removal.

The helpers behind them live in tests/helpers.py; teardown kills every child by its pid and removes every
object the test registered, by exact name or id, however the test ended.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator

import pytest

from tests.helpers import Cleanup, Spawn, new_name


@pytest.fixture
def unique_name() -> Iterator[str]:
    """A POSIX IPC name no other test or process uses: /ipcmon-test-<pid>-<random>."""
    yield new_name()


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """spawn(code, pass_fds=(), comm=None) starts a Python child; all are killed by pid at teardown."""
    children = Spawn()
    yield children
    children.stop_all()


@pytest.fixture
def cleanup() -> Iterator[Cleanup]:
    """Register what the test creates (cleanup.shm(name), cleanup.sysv_msg(id)…); removed at teardown."""
    undo = Cleanup()
    yield undo
    undo.run()


@pytest.fixture(autouse=True, scope="session")
def action_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ipcmon's action log (ipcmon.actions) goes to a temporary file, not the real ~/.local/state/ipcmon."""
    path = str(tmp_path_factory.mktemp("audit") / "actions.log")
    with _environment("IPCMON_ACTION_LOG", path):
        yield path


@pytest.fixture(autouse=True)
def journal_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The journal (ipcmon.journal) that leaks and history read by default, and that the dashboard and watch write
    while no recorder runs: a path in a temporary directory of each test's own, where none exists when it starts,
    never /var/lib/ipcmon or ~/.local/state (a test that wants one passes --db or sets it). One per test: a journal
    an earlier test's watch wrote would add its creators to a later test's leaks."""
    path = str(tmp_path_factory.mktemp("journal") / "none.db")
    with _environment("IPCMON_JOURNAL", path):
        yield path


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """os.environ[name] = value for the block (the processes tests start inherit it), then as it was."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@pytest.fixture
def fds_above_1024() -> Iterator[None]:
    """Kept /proc files are numbered from 1024 up: a soft RLIMIT_NOFILE that allows some (raised within the hard
    limit as the front ends do, and put back)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.fail(f"the hard RLIMIT_NOFILE ({hard}) leaves no room for kept /proc files above 1024")
    if soft != resource.RLIM_INFINITY and soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
