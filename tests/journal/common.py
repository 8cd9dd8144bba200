"""What the journal tests share: records built from real processes, and a journal in a temporary directory."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ipcmon.journal import Journal, process_start_ticks
from ipcmon.model import Actor, Attribution, Mechanism


def actor_of(pid: int) -> Actor:
    """The Actor a source would make of a live process: its comm, cmdline, uid and start ticks read from /proc."""
    comm = Path(f"/proc/{pid}/comm").read_bytes().rstrip(b"\n")
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    ticks = process_start_ticks(pid)
    assert ticks is not None, f"pid {pid} is gone"
    return Actor(pid, os.fsdecode(comm), tuple(os.fsdecode(arg) for arg in cmdline), os.stat(f"/proc/{pid}").st_uid,
                 ticks)


def created(name: str, actor: Actor, *, key: str | None = None, mechanism: Mechanism = "shm",
            when: float | None = None) -> Attribution:
    return Attribution(time.time() if when is None else when, "created", mechanism, name, actor, "fanotify", key)


def started(path: Path | str, **options: Any) -> tuple[Journal, list[str]]:
    """A Journal at path, started, and the list its problems are said to (instead of stderr)."""
    said: list[str] = []
    journal = Journal(str(path), on_problem=said.append, **options)
    journal.start()
    return journal, said


def written(path: Path | str, *records: Attribution) -> Path:
    """A journal at path holding these records, written and closed (what a recorder that ran before leaves)."""
    journal = Journal(str(path))
    journal.start()
    journal.add_all(records)
    journal.stop()
    return Path(path)


def creation_of(name: str, pid: int, mechanism: Mechanism = "shm") -> Attribution:
    """The creation of the live object name (in /dev/shm, /dev/mqueue) by the live process pid, as fanotify or
    tracefs would have recorded it: its key from the object's device and inode, the actor from /proc."""
    from ipcmon.model import file_key

    directory, entry = ("/dev/mqueue", name.lstrip("/")) if mechanism == "mqueue" else \
        ("/dev/shm", ("sem." if mechanism == "sem" else "") + name.lstrip("/"))
    st = os.stat(f"{directory}/{entry}")
    return created(name, actor_of(pid), key=file_key(mechanism, st.st_dev, st.st_ino), mechanism=mechanism)
