"""The rules that had several copies before health.py, text.py and model.py held them once: the right value is a test.

Pure functions of hand-built records; the kernel-backed tests check that the collectors feed them real values.
"""

from __future__ import annotations

import signal
from typing import get_args

import pytest

from ipcmon import health, text
from ipcmon.live.events import diff
from ipcmon.model import (
    EventName,
    Holder,
    Mechanism,
    MessageQueue,
    Pipe,
    PipeEnd,
    ProcessSignals,
    ShmSegment,
    Snapshot,
    Sysv,
    SysvMsg,
    SysvSem,
    SysvShm,
    ThreadSignals,
    file_key,
    key_mechanism,
    pipe_ref,
    sysv_label,
)
from ipcmon.ui.view.alerts import find_alerts

READER = PipeEnd(10, "cat", 0)
WRITER = PipeEnd(11, "echo", 1)
FD_HOLDER = Holder(10, "cat", 3, False, "rw")
MAP_HOLDER = Holder(11, "echo", None, True, "rw", shared=True, prot="rw-s", mapped_bytes=8192)


def _queue(**changes: object) -> MessageQueue:
    fields: dict[str, object] = dict(
        name="/q", path="/dev/mqueue/q", qsize_bytes=0, messages=0, max_messages=10, message_size=128,
        notify=None, signo=None, notify_pid=None, uid=0, gid=0, owner="root", mode=0o600, dev=7, inode=70,
    )
    fields.update(changes)
    return MessageQueue(**fields)  # type: ignore[arg-type]


def _sysv_shm(nattch: int, removed: bool = False) -> SysvShm:
    return SysvShm(key=0x1234, id=5, mode=0o600, size=4096, nattch=nattch, cpid=1, lpid=2, uid=0, gid=0, owner="root",
                   atime=0, dtime=0, ctime=0, rss=None, removed=removed)


def test_keys_and_labels_are_written_once() -> None:
    assert file_key("shm", 25, 1234) == "shm:25:1234"
    assert key_mechanism("fifo:15:99") == "fifo"
    assert key_mechanism("pid:42") is None
    assert pipe_ref("pipe", 99, None) == "pipe:[99]"
    assert pipe_ref("fifo", 99, "/tmp/f") == "fifo:/tmp/f"
    assert sysv_label(-1, 3) == "key 0xffffffff id 3"  # /proc/sysvipc prints the key signed
    pipe = Pipe(99, 15, "pipe", None, 0, 65536, (READER,), (WRITER,))
    fifo = Pipe(98, 15, "fifo", "/tmp/f", 0, 65536, (READER,), (WRITER,))
    assert (pipe.label, pipe.ref, pipe.object_key) == ("pipe:[99]", "pipe:[99]", "pipe:15:99")
    assert (fifo.label, fifo.ref) == ("/tmp/f", "fifo:/tmp/f")
    assert _sysv_shm(1).label == "key 0x00001234 id 5"
    assert SysvMsg(0x10, 6, 0o600, 0, 0, 0, 0, 0, 0, None, 0, 0, 0).label == "key 0x00000010 id 6"
    assert SysvSem(0x10, 7, 0o600, 2, 0, 0, None, 0, 0).label == "key 0x00000010 id 7"
    assert ProcessSignals(42, "sleep", (), (), (), ()).label == "42 sleep"


@pytest.mark.parametrize(("linked", "held", "state"), [
    (True, True, "held"), (True, False, "orphaned"), (False, True, "deleted"), (False, False, "deleted"),
])
def test_shm_state(linked: bool, held: bool, state: str) -> None:
    assert health.shm_state(linked=linked, held=held) == state


def test_queue_states_in_order_deleted_full_held_orphaned() -> None:
    assert health.queue_state(_queue(deleted=True, messages=10)) == "deleted"
    assert health.queue_state(_queue(messages=10, holders=(FD_HOLDER,))) == "full"
    assert health.queue_state(_queue(holders=(FD_HOLDER,))) == "held"
    assert health.queue_state(_queue()) == "orphaned"
    assert not health.queue_orphaned(_queue(deleted=True))
    assert not health.queue_full(_queue(messages=None))  # unknown is not full


def test_sysv_shm_states() -> None:
    assert health.sysv_shm_state(_sysv_shm(1)) == "attached"
    assert health.sysv_shm_state(_sysv_shm(0)) == "orphaned"
    assert health.sysv_shm_state(_sysv_shm(1, removed=True)) == "removed"
    assert health.sysv_shm_orphaned(_sysv_shm(0))
    assert not health.sysv_shm_orphaned(_sysv_shm(0, removed=True))


def test_pipe_flags_in_their_order() -> None:
    both = PipeEnd(10, "cat", 5)
    assert health.pipe_flags((), (), 0, 65536) == ("no-reader", "no-writer")
    assert health.pipe_flags((READER,), (WRITER,), 65536, 65536) == ("full",)
    assert health.pipe_flags((READER,), (both,), None, 65536) == ("both-ends",)  # unknown fill is not full
    assert set(health.PIPE_HAZARDS) <= set(health.PIPE_FLAG_WORDS)
    assert "no-writer" not in health.PIPE_HAZARDS  # the normal end of a pipe's life


def test_hazards_words_and_levels() -> None:
    orphan = ShmSegment("/o", "/dev/shm/o", "shm", 8192, 8192, 0o600, 0, 0, "root", "root", None, None, 23, 1,
                        "orphaned")
    full_pipe = Pipe(99, 15, "pipe", None, 65536, 65536, (READER,), (WRITER,), ("full",))
    pending = ProcessSignals(42, "sleep", ("SIGUSR1",), (), (), (), (ThreadSignals(43, "t", ("SIGUSR2",), ()),))
    snapshot = Snapshot(0.0, ("shm",), shm=(orphan,), mqueues=(_queue(messages=10),), pipes=(full_pipe,),
                        signals=(pending,), sysv=Sysv(shm=(_sysv_shm(0),)))
    found = [(hazard.level, hazard.mechanism, hazard.object, hazard.problem.split(":")[0])
             for hazard in health.hazards(snapshot)]
    # health.rank: bad before warn, then more bytes at stake first (64K buffered, 8K allocated, a 4K SysV
    # segment, then the empty queue), then memory before queues before pipes, then by name and problem.
    assert found == [
        ("bad", "pipe", "pipe:[99]", "full"),
        ("bad", "shm", "/o", "orphaned"),
        ("bad", "sysv-shm", "key 0x00001234 id 5", "orphaned"),
        ("bad", "mqueue", "/q", "full"),
        ("bad", "mqueue", "/q", "orphaned"),
        ("warn", "signal", "42 sleep", "pending"),
    ]
    assert [alert.view for alert in find_alerts(snapshot)] == ["pipes", "shm", "shm", "mqueue", "mqueue", "signals"]
    assert [alert.glyph for alert in find_alerts(snapshot)] == ["✖"] * 5 + ["▲"]
    assert len(set(health.LEVEL_GLYPHS.values())) == len(health.LEVEL_GLYPHS) == len(get_args(health.Level))
    assert health.pending_count(pending) == 2
    assert health.signals_of_note(pending)


def test_sizes_ages_and_modes() -> None:
    assert [text.human_bytes(n) for n in (None, 0, 1023, 1536, 10 * 1024, 5 * 1024**3)] == [
        "?", "0B", "1023B", "1.5K", "10K", "5.0G"]
    assert [text.human_age(s) for s in (None, -5, 59, 72, 7200, 90000)] == ["?", "0s", "59s", "1m12s", "2h00m", "1d01h"]
    assert text.mode_text(0o640) == "rw-r-----"
    assert text.mode_text(None) == "?"
    assert text.optional(None) == "?"
    assert text.fill_cell(0.8) == "80%"
    assert text.flags_cell(()) == "-"


def test_signal_names() -> None:
    assert text.signal_name(signal.SIGUSR1) == "SIGUSR1"
    assert text.signal_name(signal.SIGRTMIN) == "SIGRTMIN"
    assert text.signal_name(signal.SIGRTMIN + 3) == "SIGRTMIN+3"
    assert text.signal_name(signal.SIGRTMAX) == "SIGRTMAX"
    assert text.signal_names(("SIGUSR1", "SIGTERM")) == "SIGUSR1,SIGTERM"
    assert text.signal_names(()) == "-"
    both = ProcessSignals(42, "sleep", ("SIGUSR1",), (), (), (), (ThreadSignals(43, "t", ("SIGUSR2",), ()),))
    assert text.pending_cell(both) == "SIGUSR1 (thread: SIGUSR2)"


def test_holders_read_the_same_everywhere() -> None:
    assert text.holders_cell((FD_HOLDER, MAP_HOLDER)) == "10 cat fd3 rw, 11 echo map rw-s 8.0K"
    assert text.holders_cell(()) == "-"
    assert text.holder_detail(FD_HOLDER) == "fd 3 rw"
    assert text.holder_detail(MAP_HOLDER) == "mapped rw-s 8.0K"
    assert text.holder_tail(FD_HOLDER) == "fd 3  rw"
    assert text.holder_tail(MAP_HOLDER) == "mapped rw-s shared 8.0K"
    assert text.last_holders((MAP_HOLDER, FD_HOLDER, FD_HOLDER)) == "last holder 10 cat, 11 echo"
    assert text.ends_cell((READER, WRITER)) == "10 cat fd0, 11 echo fd1"
    assert text.holders_cell((Holder(1, "\x1b]2;x\x07", 3, False, "r"),)) == "1 \\x1b]2;x\\x07 fd3 r"


def test_queue_cells() -> None:
    assert text.notify_cell(_queue()) == "-"
    assert text.notify_cell(_queue(notify=0, notify_pid=42, signo=10)) == "SIGUSR1 to pid 42"
    assert text.notify_cell(_queue(notify=0, notify_pid=42, signo=signal.SIGRTMIN + 3)) == "SIGRTMIN+3 to pid 42"
    assert text.notify_cell(_queue(notify=2, notify_pid=42, signo=0)) == "thread to pid 42"
    assert text.notify_cell(_queue(notify=1, notify_pid=42, signo=0)) == "none to pid 42"
    assert text.queue_name_cell(_queue(deleted=True)) == "/q (deleted)"


def test_every_event_the_diff_makes_is_in_the_vocabulary() -> None:
    from tests.ui.canned import canned_snapshot, later_snapshot

    events = diff(canned_snapshot(), later_snapshot()) + diff(later_snapshot(), canned_snapshot())
    assert events
    assert {event.mechanism for event in events} <= set(get_args(Mechanism))
    assert {event.event for event in events} <= set(get_args(EventName))
