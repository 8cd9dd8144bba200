"""Who did it, in the dashboard (issue 16): the last senders of each signal, and who created a segment.

Rendering from hand-built records (the cell text, the mark, inert names), and the real thing: a process sends SIGUSR1
to a sleeper that blocks it while the dashboard runs (tracefs, root), and a journal names the creator of a real
orphan segment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text

from ipcmon.journal import Journal
from ipcmon.live import tracefs
from ipcmon.live.attribution import sent_event
from ipcmon.model import Actor, Attribution, Event
from ipcmon.ui.screens.signal import SignalPicker
from ipcmon.ui.view import actors
from ipcmon.ui.view.actors import Attributions, SentLog
from ipcmon.ui.view.describe import describe_process, describe_record
from ipcmon.ui.view.rows import signal_rows
from ipcmon.ui.view.table import Context, RowCache, matches
from ipcmon.ui.view.timeline import EVENT_COLUMNS, event_probe, event_row
from ipcmon.ui.widgets.object_view import DetailPane
from ipcmon.ui.widgets.tables import ObjectTable
from ipcmon.ui.widgets.timeline_table import TimelineTable
from ipcmon.who import COMMAND_MAX, CreatorFacts, clock_at, creator_text, sent_from_event, sent_text
from tests.helpers import BLOCKS_SIGUSR1, Cleanup, Spawn, new_name
from tests.journal.common import creation_of, written
from tests.ui import canned
from tests.ui.conftest import canned_app, jump, live_app, record_notifications, started, view, wait_for
from tests.ui.test_snapshots import ready

pytestmark = pytest.mark.timeout(300)

HOSTILE = "[@click=app.quit]x\x1b]2;pwn\x07"


def _sent(target: int, signo: int, result: str = "delivered", *, pid: int = 4321, comm: str = "bash",
          blocked: bool | None = False, kernel: bool = False, cause: str | None = None,
          when: float = canned.TAKEN_AT) -> Attribution:
    return Attribution(when, "sent", "signal", f"{target} worker", Actor(pid, comm, (comm,), 0, 100, kernel=kernel),
                       "tracefs", f"signal:{target}", signal=signo, target=target, target_comm="worker",
                       result=result, blocked=blocked, cause=cause)  # type: ignore[arg-type]


def _last_sent(table: ObjectTable | TimelineTable, key: str) -> str:
    """The LAST SENT cell of a row as shown (after PENDING)."""
    assert [column.key for column in table.spec][:4] == ["pid", "comm", "pending", "sent"]
    return str(table.get_row(key)[3].plain)


def _who(*records: Attribution) -> Attributions:
    who = Attributions(live=True)
    who.add(sent_event(record) for record in records)
    return who


def test_a_sent_event_reads_back_with_its_sender_outcome_and_cause(utc: None) -> None:
    blocked = sent_from_event(sent_event(_sent(4400, 10, blocked=True, comm="a: b → c")))
    assert blocked is not None
    assert (blocked.signal, blocked.target, blocked.outcome, blocked.mark) == ("SIGUSR1", 4400, "blocked, pending",
                                                                                "blocked")
    clock = clock_at(canned.TAKEN_AT)
    assert sent_text(blocked) == f"SIGUSR1 from 4321 a: b → c at {clock}: blocked, pending"
    kernel = sent_from_event(sent_event(_sent(4400, 17, "ignored", pid=77, comm="python3", kernel=True,
                                              cause="child exited")))
    assert kernel is not None and kernel.mark == "ignored"
    assert sent_text(kernel) == f"SIGCHLD from kernel (child exited) at {clock}: ignored"
    delivered = sent_from_event(sent_event(_sent(4400, 15)))
    assert delivered is not None and delivered.mark is None and delivered.outcome == "delivered"


def test_the_signals_table_marks_a_blocked_signal_with_a_glyph_and_a_word() -> None:
    snapshot = canned.canned_snapshot()
    who = _who(_sent(4400, 15, when=canned.TAKEN_AT - 5), _sent(4400, 10, blocked=True, comm=HOSTILE),
               _sent(4242, 15, pid=1, comm="systemd"))
    rows = {row.key: row for row in signal_rows(Context(snapshot, who=who), RowCache())}
    worker, producer, writer = rows["signal:4400"], rows["signal:4242"], rows["signal:4310"]
    # The blocked one is shown before the newer... (it is the newest here too) and marked by glyph and word.
    assert worker.cells[-1].plain == r"▲ SIGUSR1 ← 4321 [@click=app.quit]x\x1b]2;pwn\x07, blocked +1"
    assert "\x1b" not in worker.cells[-1].plain
    assert producer.cells[-1].plain == "SIGTERM ← 1 systemd: delivered"
    assert writer.cells[-1].plain == "-"
    assert matches(worker, "sent:blocked") and not matches(producer, "sent:blocked")
    assert matches(producer, "systemd")
    # Without a source or a journal, nothing new: the table's cells are what they were.
    plain = {row.key: row for row in signal_rows(Context(snapshot), RowCache())}
    assert len(plain["signal:4400"].cells) == len(worker.cells) - 1


def test_the_process_view_lists_the_last_senders_newest_first(utc: None) -> None:
    snapshot = canned.canned_snapshot()
    who = _who(_sent(4400, 15, when=canned.TAKEN_AT - 5), _sent(4400, 10, blocked=True, comm=HOSTILE),
               _sent(4400, 17, "ignored", pid=4242, comm="producer", kernel=True, cause="child exited",
                     when=canned.TAKEN_AT - 1))
    text = describe_process(4400, Context(snapshot, who=who)).plain
    section = text[text.index("Signals sent to it (3)"):].splitlines()
    clock = clock_at(canned.TAKEN_AT)
    assert section[1].strip() == rf"▲ SIGUSR1 from 4321 [@click=app.quit]x\x1b]2;pwn\x07 at {clock}: " \
                                 "blocked, pending"
    assert section[2].strip().startswith("▲ SIGCHLD from kernel (child exited) at ")
    assert section[3].strip().startswith("SIGTERM from 4321 bash at ")
    assert "Signals sent to it" not in describe_process(4400, Context(snapshot)).plain


def test_the_store_is_bounded_and_counts_an_act_once() -> None:
    log = SentLog()
    record = sent_from_event(sent_event(_sent(1, 10)))
    assert record is not None
    log.add(record)
    log.add(record)  # seen live and again from the journal
    assert len(log.to(1)) == 1
    for index in range(actors.PER_TARGET * 3):
        sent = sent_from_event(sent_event(_sent(1, 10, when=canned.TAKEN_AT + index + 1)))
        assert sent is not None
        log.add(sent)
    assert len(log.to(1)) == actors.PER_TARGET and log.to(1)[0].time == canned.TAKEN_AT + actors.PER_TARGET * 3
    for target in range(actors.TARGETS_MAX + 10):
        sent = sent_from_event(sent_event(_sent(target + 2, 15)))
        assert sent is not None
        log.add(sent)
    assert len(log) == actors.TARGETS_MAX


def test_creator_text_says_who_and_whether_it_runs(utc: None) -> None:
    actor = Actor(4242, "python3", ("python3", "train.py"), 0, 100)
    facts = CreatorFacts(actor, canned.TAKEN_AT, True, canned.TAKEN_AT + 153)
    clock, later = clock_at(canned.TAKEN_AT), clock_at(canned.TAKEN_AT + 153)
    assert clock.endswith(time.strftime("%H:%M:%S", time.gmtime(canned.TAKEN_AT)))
    assert creator_text(facts) == f"created by 4242 python3 train.py at {clock}; that process exited at {later}"
    renamed = Actor(77, "trainer", ("/usr/bin/python3", "-c", "x" * 200), 0, 100)
    assert creator_text(CreatorFacts(renamed, canned.TAKEN_AT, None)) == (
        f"created by 77 trainer /usr/bin/python3 -c {'x' * (COMMAND_MAX - 21)}… at {clock}")
    assert creator_text(facts, unlinked=True).endswith(f"exited at {later} without unlinking")
    assert creator_text(CreatorFacts(actor, canned.TAKEN_AT, False)).endswith("; that process is still running")
    assert creator_text(CreatorFacts(Actor(7, "sh"), canned.TAKEN_AT, None)) == f"created by 7 sh at {clock}"
    assert creator_text(None) == "creator unknown"


def test_kind_signal_in_the_events_filter_keeps_sent_events() -> None:
    ctx = Context(canned.canned_snapshot())
    sent = event_probe(sent_event(_sent(4400, 10, blocked=True)), "e1", ctx)
    assert matches(sent, "kind:signal") and matches(sent, "kind:signal event:sent")
    assert not matches(sent, "kind:shm")


def test_a_missing_locked_or_corrupt_journal_is_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"not a database at all" * 100)
    for path in (tmp_path / "none.db", bad):
        app = canned_app(journal=str(path))
        assert app.who.reader is None and not app.who.known
    # A journal that breaks after it was opened: its answers are nothing, never an exception.
    journal = Journal(str(tmp_path / "j.db"))
    journal.start()
    journal.stop()
    app = canned_app(journal=str(tmp_path / "j.db"))
    assert app.who.reader is not None
    app.who.reader.close()
    assert app.who.sent_to(4400) == ()
    assert app.who.creator("shm:1:2", "/x", "shm", ()) is None
    assert app.who.journal_problem


async def test_the_signals_view_and_the_picker_show_the_journals_senders(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(str(path))
    journal.start()
    journal.add(_sent(4400, 10, blocked=True, comm=HOSTILE))
    journal.stop()
    app = canned_app(journal=str(path))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("5")
        table = view(app, "signals").table
        await wait_for(pilot, lambda: table.shows_optional and table.row_count, "the LAST SENT column")
        assert _last_sent(table, "signal:4400").startswith("▲ SIGUSR1 ← 4321 [@click=app.quit]x")
        # k refuses a canned pid (no such process here): the picker is given what k would give it.
        await app.push_screen(SignalPicker(Text("process 4400 worker"), received=app.last_received(4400)))
        await wait_for(pilot, lambda: isinstance(app.screen, SignalPicker), "the signal picker")
        received = str(app.screen.query_one("#signal-received").render())
        assert "SIGUSR1 from 4321 [@click=app.quit]x" in received and "blocked, pending" in received
        await pilot.press("escape")


# --- the real kernel -----------------------------------------------------------------------------------------


def _need_tracefs() -> None:
    if os.geteuid() != 0 or tracefs.tracing_dir() is None:
        pytest.fail("the dashboard names senders through tracefs: root and tracefs mounted, as CI is")


def _exported(messages: list[str]) -> dict[str, Any]:
    """The JSON of the one export these messages announce."""
    (said,) = [message for message in messages if message.startswith("Exported the snapshot to ")]
    data: dict[str, Any] = json.loads(Path(said.removeprefix("Exported the snapshot to ")).read_text())
    return data


async def test_a_blocked_sigusr1_shows_its_sender_in_the_signals_view(spawn: Spawn, tmp_path: Path) -> None:
    _need_tracefs()
    sleeper = spawn(BLOCKS_SIGUSR1, comm="ipcmon-ui-zz")
    sleeper.expect()
    app = live_app(interval=0.5, kinds=("signal",), pids=frozenset({sleeper.pid}), export_dir=str(tmp_path),
                   journal=str(tmp_path / "no-journal.db"))
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        assert app.who.live, app.feed.sources  # type: ignore[attr-defined]
        await pilot.press("5")
        table = view(app, "signals").table
        key = f"signal:{sleeper.pid}"
        await wait_for(pilot, lambda: key in table.shown_keys, "the sleeper's row")
        code = ("import ctypes, os, sys\nctypes.CDLL(None).prctl(15, b'ipcmon-ui-snd', 0, 0, 0)\n"
                "os.kill(int(sys.argv[1]), 10)\nprint(os.getpid())\n")
        sender = int(subprocess.run([sys.executable, "-c", code, str(sleeper.pid)], capture_output=True, text=True,
                                    check=True).stdout)
        await wait_for(pilot, lambda: "blocked" in _last_sent(table, key), "the sender in LAST SENT")
        assert _last_sent(table, key) == f"▲ SIGUSR1 ← {sender} ipcmon-ui-snd, blocked"
        await jump(pilot, app, "signals", key)
        detail = view(app, "signals").query_one(DetailPane).text.plain
        assert f"▲ SIGUSR1 from {sender} ipcmon-ui-snd at " in detail
        assert detail.split(f"SIGUSR1 from {sender} ipcmon-ui-snd at ", 1)[1].split("\n")[0].endswith(
            ": blocked, pending")
        await pilot.press("e")  # the export says what the dashboard saw, as snapshot --json says the journal's
        await wait_for(pilot, lambda: any(m.startswith("Exported") for m in messages), "the export")
    [entry] = [entry for entry in _exported(messages)["signals"] if entry["pid"] == sleeper.pid]
    assert [(got["signal"], got["sender"]["pid"], got["outcome"]) for got in entry["received"]] == [
        ("SIGUSR1", sender, "blocked, pending")]


async def test_the_journal_names_the_creator_of_a_real_orphan_segment(spawn: Spawn, cleanup: Cleanup,
                                                                      tmp_path: Path) -> None:
    name = new_name()
    cleanup.shm(name)
    creator = spawn(f"""
        import posix_ipc
        posix_ipc.SharedMemory({name!r}, posix_ipc.O_CREX, size=4096).close_fd()
        say("ready")
        hold()
        """, comm="ipcmon-ui-mk")
    creator.expect()
    record = creation_of(name, creator.pid)
    path = written(tmp_path / "journal.db", record)
    creator.stop()  # it exits without unlinking: an orphan whose creator is gone
    app = live_app(interval=0.5, kinds=("shm",), journal=str(path), export_dir=str(tmp_path))
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        key = record.key or ""
        await wait_for(pilot, lambda: key in view(app, "shm").table.shown_keys, "the orphan's row")
        await jump(pilot, app, "shm", key)
        detail = view(app, "shm").query_one(DetailPane).text.plain
        assert f"created by  {creator.pid} ipcmon-ui-mk " in detail, detail  # the label, padded as the others
        line = detail[detail.index("created by"):].split("\n")[0]
        assert line.endswith("; that process exited (when is unknown)"), line  # it left no exit in this journal
        await pilot.press("e")
        await wait_for(pilot, lambda: any(m.startswith("Exported") for m in messages), "the export")
    exported = _exported(messages)
    [segment] = [segment for segment in exported["shm"] if segment["name"] == name]
    assert segment["created_by"]["pid"] == creator.pid and segment["created_by"]["exited"] is True
    assert exported["journal"] == str(path)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_signals_view_with_senders(snap_compare: Callable[..., bool], tmp_path: Path, size: tuple[int, int],
                                   utc: None) -> None:
    """The Signals view and its detail pane with a journal's senders: a blocked SIGUSR1 from a hostile comm to the
    canned worker, a SIGTERM to the producer."""
    path = tmp_path / "journal.db"
    journal = Journal(str(path))
    journal.start()
    journal.add(_sent(4400, 10, blocked=True, comm=HOSTILE))
    journal.add(_sent(4242, 15, pid=1, comm="systemd", when=canned.TAKEN_AT - 20))
    journal.stop()
    app = canned_app(journal=str(path))
    assert snap_compare(app, terminal_size=size, run_before=ready(app, "5"))


def test_a_send_seen_live_and_in_the_journal_is_listed_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = Journal(str(path))
    journal.start()
    journal.add(_sent(4400, 10, blocked=True))
    journal.add(_sent(4400, 15, when=canned.TAKEN_AT - 30))
    journal.add(_sent(4400, 15, when=canned.TAKEN_AT - 600))  # before the process started: another process's
    journal.stop()
    app = canned_app(journal=str(path))
    app.who.add([sent_event(_sent(4400, 10, blocked=True, when=canned.TAKEN_AT + 0.01))])  # a recorder's clock
    sents = app.who.sent_to(4400, canned.TAKEN_AT - 300)
    assert [(sent.signal, sent.outcome) for sent in sents] == [("SIGUSR1", "blocked, pending"),
                                                              ("SIGTERM", "delivered")]
    app.who.close()


async def test_the_export_names_the_creator_the_dashboard_saw_with_its_source(spawn: Spawn, cleanup: Cleanup,
                                                                             tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("the dashboard names creators through fanotify: root, as CI is")
    name = new_name()
    cleanup.shm(name)
    app = live_app(interval=0.5, kinds=("shm",), journal=str(tmp_path / "no-journal.db"), export_dir=str(tmp_path))
    messages = record_notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        creator = spawn(f"""
            import posix_ipc
            posix_ipc.SharedMemory({name!r}, posix_ipc.O_CREX, size=4096).close_fd()
            say("ready")
            hold()
            """, comm="ipcmon-ui-mk2")
        creator.expect()
        await wait_for(pilot, lambda: any(e.event == "created" and e.object == name and e.actor is not None
                                          for e in app.event_log), "the creation, with who did it")
        await wait_for(pilot, lambda: any(s.name == name for s in (app.snapshot.shm if app.snapshot else ())),
                       "the segment in the snapshot")
        await pilot.press("e")
        await wait_for(pilot, lambda: any(m.startswith("Exported") for m in messages), "the export")
    [segment] = [segment for segment in _exported(messages)["shm"] if segment["name"] == name]
    creator_json = segment["created_by"]
    assert (creator_json["pid"], creator_json["comm"], creator_json["source"], creator_json["exited"]) == (
        creator.pid, "ipcmon-ui-mk2", "fanotify", False)


def test_the_events_view_names_who_created_an_object_in_its_row_and_detail() -> None:
    ctx = Context(canned.canned_snapshot())
    maker = Actor(4242, "train\x1b[2J", ("python3", "train.py", "--fast"), 0, 77)
    made = Event(canned.TAKEN_AT, "shm", "created", "/x", "shm:9:1", source="fanotify", detail="4096 bytes",
                 actor=maker)
    row = event_row(made, "e1", 0, ctx)
    by_column = {column.key: cell for column, cell in zip(EVENT_COLUMNS, row.cells, strict=True)}
    assert (by_column["pid"].plain, by_column["comm"].plain) == ("4242", r"train\x1b[2J")  # made printable
    assert matches(event_probe(made, "e1", ctx), "pid:4242")
    text = describe_record(made, ctx, []).plain
    assert r"by          4242 train\x1b[2J python3 train.py --fast" in text, text
    kernel = replace(made, actor=Actor(4242, "python3", None, 0, None, kernel=True))
    assert "by          the kernel (in 4242 python3)" in describe_record(kernel, ctx, []).plain
    about = replace(made, pid=4300, comm="holder")  # an event about a process names that process in the columns
    cells = event_row(about, "e2", 0, ctx).cells
    assert (cells[4].plain, cells[5].plain) == ("4300", "holder")
    # A signal the kernel raised (a timer's SIGALRM in the idle task, pid 0): no pid, the kernel, not "0 <idle>".
    timer = sent_event(_sent(4400, 14, "delivered", pid=0, comm="<idle>", kernel=True, cause="a timer expired"))
    cells = event_row(timer, "e3", 0, ctx).cells
    assert (cells[4].plain, cells[5].plain) == ("-", "kernel")
    assert "kernel (a timer expired, in 0 <idle>)" in cells[-1].plain
    # One process's: the sender (the OBJECT is its target).
    sent = sent_event(_sent(4400, 10, "delivered", pid=4242, comm="kill"))
    cells = event_row(sent, "e4", 0, ctx).cells
    assert (cells[3].plain.split()[0], cells[4].plain, cells[5].plain) == ("4400", "4242", "kill")
    # pid:N finds it by its sender and by its target, as watch --pid keeps the signals sent by or to N.
    assert matches(event_probe(sent, "e4", ctx), "pid:4242") and matches(event_probe(sent, "e4", ctx), "pid:4400")
