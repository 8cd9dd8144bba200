"""Shared fixtures: unique names for the kernel objects each test creates, and their removal."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest


@pytest.fixture
def unique_name() -> Iterator[str]:
    """A POSIX IPC name no other test or process uses: /ipcmon-test-<pid>-<random>."""
    yield f"/ipcmon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
