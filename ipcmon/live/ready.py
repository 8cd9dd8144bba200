"""Waiting for descriptors to become readable, with poll(2): select(2) refuses a descriptor numbered 1024 or above,
and the Scanner keeps /proc files open between scans (procfs.OpenProcFiles), so a source opened later may get one.
"""

from __future__ import annotations

import math
import select
from collections.abc import Sequence


def readable(fds: Sequence[int], timeout: float | None) -> list[int]:
    """The descriptors of fds that are readable (or at end, or in error: a read says which) within timeout seconds
    (None: wait until one is), in the order given; empty on timeout. Raises OSError as poll(2) does (EINTR is
    retried by Python, PEP 475)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    ready = {fd for fd, _events in poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))}
    return [fd for fd in fds if fd in ready]
