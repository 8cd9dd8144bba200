"""Issue 13, "say unknown when it is unknown": the rule of health.qualify and pipe_flags, each right value a test.

Hand-built records for what a test cannot make on demand: a process whose very /proc/PID/stat is refused
(hidepid), many owners and modes at once. tests/reliability/test_not_root.py and tests/collect/test_pipe_ends.py
check the same rules against real processes.
"""

from __future__ import annotations

import pytest

from ipcmon import health
from ipcmon.model import MessageQueue, PipeEnd, Process, ShmSegment, Snapshot

READER = PipeEnd(10, "cat", 0)
WRITER = PipeEnd(11, "echo", 1)


def _segment(uid: int, mode: int, name: str = "/s") -> ShmSegment:
    return ShmSegment(name, "/dev/shm" + name, "shm", 4096, 4096, mode, uid, uid, None, None, None, None, 23,
                      hash(name) & 0xFFFF, "orphaned")


def _queue(uid: int, mode: int) -> MessageQueue:
    return MessageQueue("/q", "/dev/mqueue/q", 0, 0, 10, 128, None, None, None, uid, uid, None, mode, 7, 70)


def _hidden(*uids: int | None, unreadable: int = 0) -> Snapshot:
    processes = tuple(Process(100 + i, 1, "p", (), uid, None, 1, 0.0, hidden=True) for i, uid in enumerate(uids))
    return Snapshot(0.0, ("shm", "mqueue"), processes=processes, hidden_processes=len(uids) + unreadable)


@pytest.mark.parametrize(
    ("hidden_uid", "owner", "mode", "unknown"),
    [
        (0, 0, 0o600, True),  # root's private segment, a root process hidden: root's own may hold it
        (1000, 0, 0o600, False),  # root's private segment, only a user's process hidden: it could not open it
        (1000, 0, 0o644, True),  # readable by others
        (1000, 0, 0o640, True),  # readable by the group (the hidden process's groups are unknown)
        (1000, 0, 0o602, True),  # writable by others
        (0, 1000, 0o600, False),  # a user's private segment: root's privilege is not counted
        (1000, 1000, 0o600, True),  # its owner's own process is hidden (gpg-agent: not dumpable)
    ],
)
def test_a_hidden_process_might_hold_what_its_owner_or_the_mode_allows(
    hidden_uid: int, owner: int, mode: int, unknown: bool
) -> None:
    snapshot = health.qualify(Snapshot(0.0, ("shm", "mqueue"), shm=(_segment(owner, mode),),
                                       mqueues=(_queue(owner, mode),), processes=_hidden(hidden_uid).processes,
                                       hidden_processes=1))
    (segment,) = snapshot.shm
    (queue,) = snapshot.mqueues
    assert segment.state == ("orphaned?" if unknown else "orphaned")
    assert queue.maybe_held is unknown
    assert health.queue_state(queue) == ("orphaned?" if unknown else "orphaned")
    assert health.queue_orphaned(queue) is not unknown
    # An unknown is no hazard (nor a leak: leaks take state "orphaned" and queue_orphaned).
    assert bool(health.hazards(snapshot)) is not unknown


def test_a_process_not_even_its_owner_is_known_of_might_hold_anything() -> None:
    base = _hidden(unreadable=1)  # /proc/PID/stat refused: no record, counted
    assert health.unseen_uids(base) == {None}
    snapshot = health.qualify(Snapshot(0.0, ("shm",), shm=(_segment(1000, 0o600),), hidden_processes=1))
    assert snapshot.shm[0].state == "orphaned?"


def test_nothing_hidden_or_root_leaves_the_facts_alone() -> None:
    facts = Snapshot(0.0, ("shm",), shm=(_segment(0, 0o600),))
    assert health.qualify(facts) is facts
    shielded = Snapshot(0.0, ("shm",), shm=(_segment(0, 0o600),), processes=_hidden(0).processes,
                        hidden_processes=1)
    assert health.qualify(shielded, privileged=True).shm[0].state == "orphaned"


def test_held_deleted_and_unknown_owners_are_not_qualified_wrongly() -> None:
    held = ShmSegment("/h", "/dev/shm/h", "shm", 1, 1, 0o600, 0, 0, None, None, None, None, 23, 9, "held")
    unknown_owner = ShmSegment("/u", "/dev/shm/u", "shm", 1, 1, None, None, None, None, None, None, None, 23, 8,
                               "orphaned")
    snapshot = health.qualify(Snapshot(0.0, ("shm",), shm=(held, unknown_owner), processes=_hidden(1000).processes,
                                       hidden_processes=1))
    assert [segment.state for segment in snapshot.shm] == ["held", "orphaned?"]


@pytest.mark.parametrize(
    ("kernel_readers", "unseen", "flags"),
    [
        (False, True, ("no-reader",)),  # the kernel says no reader anywhere: fact, hidden processes or not
        (True, True, ()),  # the kernel knows of a reader we cannot see: no flag
        (None, True, ("no-reader?",)),  # not asked, and some process unreadable: unknown
        (None, False, ("no-reader",)),  # not asked, every process read: what is seen is all there is
    ],
)
def test_a_pipe_with_no_reader_in_sight(kernel_readers: bool | None, unseen: bool, flags: tuple[str, ...]) -> None:
    assert health.pipe_flags((), (WRITER,), 0, 65536, kernel_readers=kernel_readers, unseen=unseen) == flags
    writer_flags = tuple(flag.replace("reader", "writer") for flag in flags)
    assert health.pipe_flags((READER,), (), 0, 65536, kernel_writers=kernel_readers, unseen=unseen) == writer_flags


def test_unknown_pipe_flags_have_words_and_are_no_hazards() -> None:
    for flag in ("no-reader?", "no-writer?"):
        assert flag in health.PIPE_FLAG_WORDS and flag not in health.PIPE_HAZARDS
        assert health.PIPE_FLAG_WORDS[flag].endswith("unknown")


def test_the_overview_counts_unknowns_apart() -> None:
    from ipcmon.ui.widgets.overview import _shm_summary

    snapshot = health.qualify(Snapshot(0.0, ("shm",), shm=(_segment(0, 0o600, "/a"), _segment(1000, 0o600, "/b")),
                                       processes=_hidden(0).processes, hidden_processes=1))
    assert _shm_summary(snapshot).startswith("2 POSIX (0 held, 1 orphaned, 1 orphaned?, 0 deleted), 0 SysV\n")
