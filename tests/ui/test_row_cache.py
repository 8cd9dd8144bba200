"""RowCache over a real scan (issue 12): a change of demo pids rebuilds only the rows whose badge it changes.

The demos fork at almost every step, so the set of demo pids changed nearly every scan and the cache used to
drop every row of every view each time.
"""

from __future__ import annotations

import os

import posix_ipc

from ipcmon.collect import ScanConfig
from ipcmon.collect.scan import scan
from ipcmon.ui.view.rows import shm_rows
from ipcmon.ui.view.table import Context, Palette, RowCache
from tests.helpers import Cleanup, Spawn
from tests.ui.conftest import ui_name


def test_a_change_of_demo_pids_rebuilds_only_the_rows_it_concerns(cleanup: Cleanup, spawn: Spawn) -> None:
    held_name, orphan_name = ui_name("held"), ui_name("orphan")
    held = posix_ipc.SharedMemory(cleanup.shm(held_name), posix_ipc.O_CREX, size=4096)  # this process holds it
    posix_ipc.SharedMemory(cleanup.shm(orphan_name), posix_ipc.O_CREX, size=4096).close_fd()
    bystander = spawn("say('ready'); hold()")  # a process that holds no segment
    bystander.expect("ready")
    try:
        snapshot = scan(ScanConfig(kinds=("shm",)))
    finally:
        held.close_fd()
    mine = {s.name: s for s in snapshot.shm if s.name in (held_name, orphan_name)}
    assert set(mine) == {held_name, orphan_name}
    assert os.getpid() in {h.pid for h in mine[held_name].holders} and not mine[orphan_name].holders
    held_by_me = [s for s in snapshot.shm if os.getpid() in {h.pid for h in s.holders}]

    cache = RowCache()
    rows = {row.key: row for row in shm_rows(Context(snapshot), cache)}
    assert cache.built == len(rows) >= 2

    # A demo process that holds nothing: no row changes, none is rebuilt.
    list(shm_rows(Context(snapshot, demo_pids=frozenset({bystander.pid})), cache))
    assert cache.built == len(rows)

    # This process becomes a demo's: only the rows of what it holds are rebuilt, and they get the badge.
    now = {row.key: row for row in shm_rows(Context(snapshot, demo_pids=frozenset({os.getpid()})), cache)}
    assert cache.built == len(rows) + len(held_by_me)
    assert now[mine[held_name].object_key].cells[0].plain.startswith("◆ ")
    assert now[mine[orphan_name].object_key] is rows[mine[orphan_name].object_key]
    assert not rows[mine[held_name].object_key].cells[0].plain.startswith("◆ ")

    # And back: the badge goes, the rest stays.
    again = {row.key: row for row in shm_rows(Context(snapshot, demo_pids=frozenset({bystander.pid})), cache)}
    assert cache.built == len(rows) + 2 * len(held_by_me)
    assert not again[mine[held_name].object_key].cells[0].plain.startswith("◆ ")

    # New colours (a theme change) rebuild every row.
    list(shm_rows(Context(snapshot, Palette(good="blue"), frozenset({bystander.pid})), cache))
    assert cache.built == 2 * len(rows) + 2 * len(held_by_me)


CREATES_SYSV = """
    import sysv_ipc
    segment = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=4096)
    segment.detach()  # sysv_ipc attaches on creation: as after a bare shmget, nobody is attached
    say(f"ready {segment.id}")
    hold()
"""


def test_a_demos_sysv_segment_is_marked_before_anyone_attaches(spawn: Spawn) -> None:
    # The sysv demo's segment showed no ◆ right after shmget (nattch 0, no holder) while its events had one.
    import sysv_ipc

    creator = spawn(CREATES_SYSV)
    shmid = int(creator.expect()[0])
    try:
        snapshot = scan(ScanConfig(kinds=("sysv",)))
        [row] = [row for row in shm_rows(Context(snapshot, demo_pids=frozenset({creator.pid})), RowCache())
                 if row.key.startswith("sysv") and f"id {shmid}" in row.cells[0].plain]
        assert "nattch 0" in row.cells[6].plain
        assert row.cells[0].plain.startswith("◆"), row.cells[0].plain
        [plain] = [row for row in shm_rows(Context(snapshot), RowCache()) if f"id {shmid}" in row.cells[0].plain]
        assert not plain.cells[0].plain.startswith("◆")
    finally:
        sysv_ipc.remove_shared_memory(shmid)
