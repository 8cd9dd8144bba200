"""`ipcmon watch` names who created an object when it reports its end (issue 16): the journal's creator of a segment
that was there before watch started, its own `created` event's actor for one it saw made; nothing without a journal,
one note for a broken one; the journal asked once per batch and each answer kept. Real children, real segments, a
real journal file, a real `ipcmon watch` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import posix_ipc
import pytest

from ipcmon.cli.lifecycle import format_event
from ipcmon.journal import Journal, ProcessExit
from ipcmon.model import Actor, Event, file_key
from ipcmon.who import CreatorFacts, StreamCreators, clock_at
from tests.helpers import DEADLINE, REPO, Child, Cleanup, Spawn, new_name
from tests.journal.common import actor_of, created
from tests.lifecycle.test_watch import _read_until, _unread

_MAKER = """
import posix_ipc
memory = posix_ipc.SharedMemory({name!r}, posix_ipc.O_CREX, size=4096)
address = map_fd(memory.fd, 4096) if {holds!r} else None
memory.close_fd()
say("ready")
hold()
"""
"""A child that creates a segment (and, with holds, maps it: else it holds nothing of it), then waits to be killed."""


def _made_by_child(spawn: Spawn, name: str, comm: str, *, holds: bool = False) -> tuple[Child, Actor, str]:
    """A real child that created the segment name: the child, its Actor (read while it lives) and the segment's key."""
    child = spawn(_MAKER.format(name=name, holds=holds), comm=comm)
    child.expect()
    st = os.stat(f"/dev/shm/{name.lstrip('/')}")
    return child, actor_of(child.pid), file_key("shm", st.st_dev, st.st_ino)


def _journal(path: Path, *records: Any) -> None:
    """A journal at path holding these records, written and closed (as a recorder that ran before would leave it)."""
    journal = Journal(str(path))
    journal.start()
    journal.add_all(records)
    journal.stop()


_SAID: dict[int, list[str]] = {}
"""What each watch (by pid) printed on stderr up to its 'watching' line."""


def _watch(db: Path, *options: str) -> subprocess.Popen[str]:
    """`ipcmon watch --db db --no-journal --kind shm --interval 0.2`, started: its 'watching' line read (and what it
    said before it kept in _SAID)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ipcmon", "watch", "--db", str(db), "--no-journal", "--kind", "shm", "--interval",
         "0.2", *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    said = _SAID[process.pid] = []

    def watching(text: str) -> bool:
        said.append(text)
        return text.startswith("watching")

    try:
        _read_until(process, watching, timeout=3 * DEADLINE, stderr=True)
    except BaseException:
        _stop(process)
        raise
    return process


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Stop a watch this test started (by its pid): what it printed on stdout since last read, and on stderr (all of
    it but the lines read past its 'watching' line)."""
    output = errors = ""
    slots = [(process.pid, stream.fileno()) for stream in (process.stdout, process.stderr) if stream is not None]
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output, errors = process.communicate(timeout=3 * DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    unread = [_unread.pop(slot, b"").decode() for slot in slots]
    said = "".join(_SAID.pop(process.pid, []))
    return unread[0] + (output or ""), said + (unread[1] if len(unread) > 1 else "") + (errors or "")


def _unlinked(db: Path, name: str, as_json: bool) -> tuple[str, str]:
    """Start a watch on db, unlink the segment name, and return watch's ``destroyed`` line of it and all it said on
    stderr (the watch stopped, whatever happened)."""
    watch = _watch(db, *(["--json"] if as_json else []))
    try:
        posix_ipc.unlink_shared_memory(name)
        line = _line_of(watch, name, "destroyed", as_json)
    finally:
        _, errors = _stop(watch)
    assert watch.returncode == 0 and "Traceback" not in errors, errors
    return line, errors


def _line_of(process: subprocess.Popen[str], name: str, event: str, as_json: bool) -> str:
    """The first line watch prints of this event of the segment name."""
    if as_json:
        return _read_until(process, lambda text: f'"object": "{name}"' in text and f'"event": "{event}"' in text,
                           timeout=3 * DEADLINE)
    return _read_until(process, lambda text: f"  {name}  " in text and f"  {event} " in text, timeout=3 * DEADLINE)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_segment_made_before_watch_started_is_named_by_the_journal_when_it_is_destroyed(
        spawn: Spawn, cleanup: Cleanup, tmp_path: Path, as_json: bool) -> None:
    name = cleanup.shm(new_name("wmk"))
    child, actor, key = _made_by_child(spawn, name, "ipcm-wmk")
    db = tmp_path / "journal.db"
    child.stop()  # it exits without unlinking: an orphan whose creator is gone
    exited_at = time.time()
    _journal(db, created(name, actor, key=key, when=exited_at - 5), ProcessExit(exited_at, actor.pid,
                                                                                 actor.start_ticks, actor.comm))
    line, errors = _unlinked(db, name, as_json)
    assert "note:" not in errors and "ipcmon watch:" not in errors, errors  # a readable journal is said nothing of
    if as_json:
        creator = json.loads(line)["created_by"]
        assert creator is not None, (line, errors)
        assert (creator["pid"], creator["comm"], creator["start_ticks"]) == (actor.pid, "ipcm-wmk", actor.start_ticks)
        assert creator["exited"] is True and creator["exited_at"] == pytest.approx(exited_at, abs=0.01)
        assert creator["source"] == "fanotify" and creator["time"] == pytest.approx(exited_at - 5, abs=0.01)
        return
    clock = clock_at(exited_at)
    assert f"(created by {actor.pid} ipcm-wmk " in line, (line, errors)
    assert line.rstrip("\n").endswith(f"; that process exited at {clock})"), line


def test_an_orphan_and_its_end_name_the_creator_the_journal_knows(spawn: Spawn, cleanup: Cleanup,
                                                                  tmp_path: Path) -> None:
    # The creator holds its segment when watch starts; its exit orphans it (a poll's event), then the test unlinks it
    # (inotify's): both lines name it, and the second says that it exited.
    name = cleanup.shm(new_name("worph"))
    holder, actor, key = _made_by_child(spawn, name, "ipcm-worph", holds=True)
    db = tmp_path / "journal.db"
    _journal(db, created(name, actor, key=key))
    watch = _watch(db)
    try:
        time.sleep(0.6)  # a poll or more: the holder is known
        holder.stop()
        orphaned = _line_of(watch, name, "orphaned", False)
        posix_ipc.unlink_shared_memory(name)
        destroyed = _line_of(watch, name, "destroyed", False)
    finally:
        _stop(watch)
    for line in (orphaned, destroyed):
        assert f"(created by {actor.pid} ipcm-worph " in line, line
    # No exit in this journal: gone is known (its pid and start time), when is not.
    assert destroyed.rstrip("\n").endswith("; that process exited (when is unknown))"), destroyed


def test_a_semaphore_and_a_queue_made_before_watch_started_are_named_too(spawn: Spawn, cleanup: Cleanup,
                                                                        tmp_path: Path) -> None:
    semaphore = cleanup.semaphore(new_name("wsem"))
    queue = cleanup.mqueue(new_name("wq"))
    child = spawn(f"""
        import posix_ipc
        posix_ipc.Semaphore({semaphore!r}, posix_ipc.O_CREX).close()
        posix_ipc.MessageQueue({queue!r}, posix_ipc.O_CREX).close()
        say("ready")
        hold()
        """, comm="ipcm-wsemq")
    child.expect()
    actor = actor_of(child.pid)
    sem_st = os.stat(f"/dev/shm/sem.{semaphore.lstrip('/')}")
    queue_st = os.stat(f"/dev/mqueue/{queue.lstrip('/')}")
    db = tmp_path / "journal.db"
    _journal(db, created(semaphore, actor, key=file_key("sem", sem_st.st_dev, sem_st.st_ino), mechanism="sem"),
             created(queue, actor, key=file_key("mqueue", queue_st.st_dev, queue_st.st_ino), mechanism="mqueue"))
    child.stop()
    watch = _watch(db, "--json", "--kind", "shm,mqueue")
    try:
        posix_ipc.unlink_semaphore(semaphore)
        posix_ipc.unlink_message_queue(queue)
        ended: dict[str, Any] = {}
        while len(ended) < 2:  # in whichever order the two sources report them
            event = json.loads(_read_until(watch, lambda text: '"event": "destroyed"' in text and any(
                f'"object": "{name}"' in text for name in (semaphore, queue)), timeout=3 * DEADLINE))
            ended[event["mechanism"]] = event
    finally:
        _stop(watch)
    named = {mechanism: (event["object"], event["created_by"] and event["created_by"]["pid"])
             for mechanism, event in ended.items()}
    assert named == {"sem": (semaphore, child.pid), "mqueue": (queue, child.pid)}, ended


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_without_a_journal_no_creator_is_named(spawn: Spawn, cleanup: Cleanup, tmp_path: Path,
                                               as_json: bool) -> None:
    name = cleanup.shm(new_name("wnone"))
    child, _, _ = _made_by_child(spawn, name, "ipcm-wnone")
    child.stop()
    db = tmp_path / "none.db"
    line, errors = _unlinked(db, name, as_json)
    assert "note:" not in errors, errors  # a missing journal is nothing
    assert not db.exists()  # read only: --no-journal wrote none, and reading made none
    if as_json:
        event = json.loads(line)
        assert "created_by" in event and event["created_by"] is None, line
    else:
        assert "(created by" not in line and "creator" not in line, line


def test_a_broken_journal_is_one_note_and_the_events_go_on(spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> None:
    name = cleanup.shm(new_name("wbad"))
    child, _, _ = _made_by_child(spawn, name, "ipcm-wbad")
    child.stop()
    db = tmp_path / "journal.db"
    db.write_bytes(b"not a database, " * 512)
    line, errors = _unlinked(db, name, True)
    assert json.loads(line)["created_by"] is None
    notes = [text for text in errors.splitlines() if text.startswith("note:")]
    assert len(notes) == 1 and str(db) in notes[0] and notes[0].endswith(": creators unknown"), errors
    assert db.read_bytes() == b"not a database, " * 512  # left untouched


def test_a_creation_watch_saw_names_its_actor_not_the_journal(spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> None:
    # The journal names another creator of that name (a record no source tied to a key, as a queue's may be): the
    # creation this watch saw, with its actor (fanotify), is the one the destroyed line names; the journal is asked
    # only about what was there before watch started.
    if os.geteuid() != 0:
        pytest.fail("actors need root (fanotify), as CI is")
    name = cleanup.shm(new_name("wsaw"))
    db = tmp_path / "journal.db"
    decoy = Actor(1, "ipcm-decoy", ("ipcm-decoy",), 0, None)
    _journal(db, created(name, decoy, when=time.time() - 60))
    watch = _watch(db, "--json")
    try:
        child, actor, _ = _made_by_child(spawn, name, "ipcm-wsaw")
        made = json.loads(_line_of(watch, name, "created", True))
        posix_ipc.unlink_shared_memory(name)
        ended = json.loads(_line_of(watch, name, "destroyed", True))
    finally:
        _stop(watch)
    assert made["actor"]["pid"] == child.pid and made["created_by"] is None, made  # the creation's own: actor
    creator = ended["created_by"]
    assert creator is not None and (creator["pid"], creator["comm"]) == (child.pid, "ipcm-wsaw"), ended
    assert creator["exited"] is False and creator["source"] == "fanotify", ended  # the child runs still
    assert creator["start_ticks"] == actor.start_ticks


def test_the_journal_is_asked_once_per_batch_and_each_answer_kept(spawn: Spawn, cleanup: Cleanup,
                                                                  tmp_path: Path) -> None:
    names = [cleanup.shm(new_name(f"wb{index}")) for index in range(3)]
    made = [_made_by_child(spawn, name, f"ipcm-wb{index}") for index, name in enumerate(names)]
    db = tmp_path / "journal.db"
    _journal(db, *(created(name, actor, key=key) for name, (_, actor, key) in zip(names, made, strict=True)))
    now = time.time()

    def event(index: int, what: Any, mechanism: Any = "shm") -> Event:
        return Event(now, mechanism, what, names[index], made[index][2])

    creators = StreamCreators(str(db))
    try:
        creators.begin(key for _, _, key in made)
        assert creators.reading and creators.note == ""
        first = creators.of([event(0, "orphaned"), event(1, "attached"), event(1, "unlinked-while-held"),
                             event(2, "orphaned"), event(0, "resized")])
        assert creators.queries == 1
        assert [None if facts is None else facts.actor.pid for facts in first] == \
            [made[0][1].pid, None, made[1][1].pid, made[2][1].pid, None]
        assert all(facts is None or facts.exited is False for facts in first)  # the children run still
        made[0][0].stop()
        again = creators.of([event(0, "destroyed"), event(2, "destroyed")])
        assert creators.queries == 1  # kept: no second question
        assert again[0] is not None and again[0].exited is True  # asked again whether it runs: it exited since
        # Destroyed is an object's last event: forgotten. A new object on its inode was made while the stream ran,
        # and its creation was not seen named: nobody is said, and the journal is not asked.
        assert creators.of([event(0, "orphaned")]) == [None] and creators.queries == 1
        # Made while the stream ran, named by its own created event: that actor, no question.
        seen = Event(now, "shm", "created", names[0], made[0][2], actor=made[1][1], source="fanotify")
        named = creators.of([seen, event(0, "unlinked-while-held")])
        assert named[0] is None and named[1] is not None and named[1].actor == made[1][1], named
        assert named[1].source == "fanotify" and named[1].exited is False and creators.queries == 1
        # Not an ending, or no POSIX object: never asked.
        assert creators.of([event(1, "created"), event(2, "detached"), event(1, "destroyed", "memfd")]) == \
            [None, None, None] and creators.queries == 1
    finally:
        creators.close()
    assert not creators.reading


def test_what_a_stream_keeps_is_bounded(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    _journal(db)
    creators = StreamCreators(str(db), kept=8)
    try:
        events = [Event(time.time(), "shm", "orphaned", f"/ipcmon-test-none-{index}", f"shm:0:{index}")
                  for index in range(40)]
        creators.begin(event.key for event in events)
        assert creators.of(events) == [None] * len(events)  # the journal knows none of them
        assert creators.queries == 1
        assert len(creators._answers) == 8  # the newest 8 answers, not one per object ever seen
        creators.of(events[-8:])
        assert creators.queries == 1
        creators.of(events[:1])
        assert creators.queries == 2  # the oldest was let go
    finally:
        creators.close()


def test_a_hostile_creator_reads_inert() -> None:
    # A comm and a command line are the creator's to choose: terminal escapes and markup come out as text.
    actor = Actor(4242, "x\x1b]2;pwned\x07", ("x\x1b]2;pwned\x07", "[@click=app.quit]\n"), 0, None)
    event = Event(time.time(), "shm", "destroyed", "/seg", "shm:1:2")
    line = format_event(event, CreatorFacts(actor, time.time(), True, time.time()))
    assert "\x1b" not in line and "\x07" not in line and "\n" not in line, line
    assert "(created by 4242 x\\x1b]2;pwned\\x07 [@click=app.quit]\\x0a at " in line, line


def test_with_pid_a_segment_the_process_opens_later_names_its_creator_when_it_ends(
        spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> None:
    # The segment is there before watch starts, but not the selected process's yet: watch --pid's first scan does
    # not show it. The process maps it later and lets go; its orphaning and its end name the journal's creator.
    name = cleanup.shm(new_name("wpid"))
    maker, actor, key = _made_by_child(spawn, name, "ipcm-wpidmk")
    maker.stop()
    db = tmp_path / "journal.db"
    _journal(db, created(name, actor, key=key))
    opener = spawn(f"""
        import posix_ipc
        say("ready")
        for command in commands():
            if command == "map":
                memory = posix_ipc.SharedMemory({name!r})
                address = map_fd(memory.fd, 4096)
                memory.close_fd()
                say("mapped")
        """, comm="ipcm-wpidop")
    opener.expect()
    watch = _watch(db, "--pid", str(opener.pid))
    try:
        opener.tell("map")
        opener.expect("mapped")
        _line_of(watch, name, "attached", False)
        opener.stop()
        orphaned = _line_of(watch, name, "orphaned", False)
        posix_ipc.unlink_shared_memory(name)
        destroyed = _line_of(watch, name, "destroyed", False)
    finally:
        _, errors = _stop(watch)
    assert "Traceback" not in errors, errors
    for line in (orphaned, destroyed):
        assert f"(created by {actor.pid} ipcm-wpidmk " in line, (line, errors)
