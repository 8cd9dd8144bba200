"""Shared fixtures: unique names for the kernel objects each test creates, child processes, and removal.

The helpers behind them live in tests/helpers.py; teardown kills every child by its pid and removes every
object the test registered, by exact name or id, however the test ended.
"""

from __future__ import annotations

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
