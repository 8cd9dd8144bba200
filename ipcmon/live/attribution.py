"""Who did it (issue 16): fanotify on every shm tmpfs and a private tracefs instance, turned into Attribution records.

INTERFACE ONLY, to be built: the lead fixed this surface so that the journal (``ipcmon.journal``, ``ipcmon record``)
and the front ends can be written against it while the sources are built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ipcmon.model import Attribution


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


class Attributor:
    """Runs the attribution sources on a thread of its own and hands over what they saw.

    ``start()`` opens every source it can (a source that cannot run is kept in ``status()`` with its reason; none
    raises); ``drain()`` returns the attributions made since the last drain, oldest first (thread-safe, never
    blocks); ``stop()`` closes every source (the tracefs instance is removed) and joins the thread. ``lost`` counts
    events the kernel dropped (FAN_Q_OVERFLOW, trace overruns): the caller's poll scan repairs the state.
    """

    def __init__(
        self,
        shm_dirs: Sequence[str],
        *,
        signals: bool = True,
        queues: bool = True,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        """shm_dirs: the shm tmpfs directories to mark (the host's and each container's ``/proc/PID/root/dev/shm``);
        on_wake: called on the source thread whenever attributions are ready to drain (to wake a UI)."""
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def watch_shm_dir(self, path: str) -> None:
        """Mark one more shm tmpfs (a container that appeared); a refusal goes to status()."""
        raise NotImplementedError

    def drain(self) -> list[Attribution]:
        raise NotImplementedError

    def status(self) -> list[SourceStatus]:
        raise NotImplementedError

    @property
    def lost(self) -> int:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError
