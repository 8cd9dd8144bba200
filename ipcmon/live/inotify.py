"""The inotify source: a watchdog observer on the shm directory and the mqueue mount, for entries made and removed.

It watches for entries created, deleted or renamed only, so ipcmon's own reads (open/close-nowrite of queue
files) cause no events (inotify(7)). Its handler never lets an exception escape: one bad event goes to
``on_error`` and the observer keeps going (Toolong's watcher). Callbacks run on the observer's thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from watchdog.events import (
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

ChangeCallback = Callable[[str, bool], None]
"""Called with (path, created): created True for a new or renamed-to entry, False for a removed or renamed-from one."""
ErrorCallback = Callable[[BaseException], None]


class _Handler(FileSystemEventHandler):
    def __init__(self, on_change: ChangeCallback, on_error: ErrorCallback) -> None:
        self._on_change = on_change
        self._on_error = on_error

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.is_directory:
                return
            if isinstance(event, FileMovedEvent):
                self._on_change(os.fsdecode(event.src_path), False)
                self._on_change(os.fsdecode(event.dest_path), True)
            elif isinstance(event, FileCreatedEvent):
                self._on_change(os.fsdecode(event.src_path), True)
            elif isinstance(event, FileDeletedEvent):
                self._on_change(os.fsdecode(event.src_path), False)
        except Exception as error:
            self._on_error(error)


class DirectoryWatch:
    """Entries created and removed in a few directories, watched non-recursively on one observer thread.

    ``start(directories)`` watches those that exist (an inotify limit or a refusal goes to ``on_error``) and
    starts the thread if any is watched; ``stop()`` ends it. The paths passed to ``on_change`` are built from
    the watched directory as given, so a caller tells directories apart by comparing strings.
    """

    def __init__(self, on_change: ChangeCallback, on_error: ErrorCallback) -> None:
        self._handler = _Handler(on_change, on_error)
        self._on_error = on_error
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self, directories: Iterable[str]) -> bool:
        """Watch these directories; True when at least one is watched (and the observer thread runs)."""
        if self._observer is not None:
            return True
        observer = Observer()
        watched = 0
        filters = [FileCreatedEvent, FileDeletedEvent, FileMovedEvent]
        for directory in directories:
            if not os.path.isdir(directory):
                continue
            try:
                observer.schedule(self._handler, directory, recursive=False, event_filter=filters)
                watched += 1
            except OSError as error:  # inotify limits reached (fs.inotify.max_user_watches), or not permitted
                self._on_error(error)
        if not watched:
            return False
        observer.daemon = True
        observer.start()
        self._observer = observer
        return True

    def stop(self) -> None:
        """Stop the observer thread and wait for it (at most 5 s); watching nothing is fine."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def backlog(self) -> int:
        """inotify events waiting in the observer's queue, not yet handed to ``on_change``; 0 when stopped."""
        observer = self._observer
        return observer.event_queue.qsize() if observer is not None else 0
