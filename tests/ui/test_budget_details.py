"""Issue 14 in the detail panes, over real objects: a queue's detail says what it reserves of its creator's
RLIMIT_MSGQUEUE (a default 10 × 8,192 queue: 82,880 bytes, as ipc/mqueue.c charges it), and the process view says
how much shared memory a process has in RAM (RssShmem, Pss_Shmem), in all and mapping by mapping (smaps)."""

from __future__ import annotations

import os

import posix_ipc

from ipcmon.ui.screens.process import ProcessScreen
from ipcmon.ui.widgets.object_view import DetailPane
from tests.helpers import Cleanup, Spawn, new_name
from tests.ui.conftest import jump, live_app, started, view, wait_for


async def test_a_queue_detail_says_what_it_reserves(cleanup: Cleanup) -> None:
    name = cleanup.mqueue(new_name("q"))
    queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=10, max_message_size=8192)
    try:
        app = live_app(interval=0.5, kinds=("mqueue",), pids=frozenset({os.getpid()}))
        async with app.run_test(size=(120, 40)) as pilot:
            await started(pilot, app)
            await pilot.press("3")
            await wait_for(pilot, lambda: app.snapshot is not None and any(
                q.name == name for q in app.snapshot.mqueues), "the queue in a scan")
            snapshot = app.snapshot
            assert snapshot is not None
            key = next(q.object_key for q in snapshot.mqueues if q.name == name)
            await jump(pilot, app, "mqueue", key)
            detail = view(app, "mqueue").query_one(DetailPane).text.plain
            (line,) = [line for line in detail.splitlines() if "RLIMIT_MSGQUEUE" in line]
            assert line.split()[:5] == ["reserves", "82,880", "bytes", "of", "its"]
    finally:
        queue.close()


async def test_the_process_view_says_how_much_shared_memory_it_has_in_ram(spawn: Spawn, cleanup: Cleanup) -> None:
    name = cleanup.shm(new_name("rss"))
    child = spawn(
        f"""
        import mmap, posix_ipc
        shm = posix_ipc.SharedMemory({name!r}, posix_ipc.O_CREX, size=1 << 20)
        mapping = mmap.mmap(shm.fd, 1 << 20)
        mapping.write(b"x" * (1 << 20))   # every page resident
        say("ready")
        hold()
        """,
    )
    child.expect()
    app = live_app(interval=3600.0, kinds=("shm",), pids=frozenset({child.pid}))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        app.show_process(child.pid)
        await wait_for(pilot, lambda: isinstance(app.screen, ProcessScreen), "the process view")

        def shown() -> str:
            screen = app.screen
            return screen.text.plain if isinstance(screen, ProcessScreen) else ""  # before it is wrapped

        await wait_for(pilot, lambda: "shared mem" in shown(), "the shared memory line")
        (line,) = [line for line in shown().splitlines() if "shared mem" in line]
        # The only mapper of 1 MiB written in full: 1.0M resident, and all of it its own share.
        assert "1.0M resident, 1.0M proportional" in line
        # Mapping by mapping (smaps, read because the view is shown): the segment, its size, resident, proportional.
        (mapping,) = [line for line in shown().splitlines() if line.endswith(f"/dev/shm{name}")]
        assert mapping.split()[:3] == ["1.0M", "1.0M", "1.0M"]
