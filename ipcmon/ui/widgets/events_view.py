"""The Events view: the lifecycle timeline, newest first, filterable by mechanism, event and pid.

Its table is a :class:`~ipcmon.ui.widgets.timeline_table.TimelineTable` fed from the App's event log itself:
each refresh takes in the events added since the last one and lets go of those that fell off the log, so its
cost follows the new events, not the history (issue 12). It takes them in even while hidden (a few rows a
scan), so switching to it never has a backlog to build.
"""

from __future__ import annotations

from textual import on

from ipcmon.live.events import EventLog
from ipcmon.model import Snapshot
from ipcmon.ui.messages import OpenRow
from ipcmon.ui.view.timeline import EVENT_COLUMNS
from ipcmon.ui.widgets.object_view import ObjectView, ViewSpec
from ipcmon.ui.widgets.tables import ObjectTable
from ipcmon.ui.widgets.timeline_table import TimelineTable

EVENTS_SPEC = ViewSpec(
    id="events",
    title="Events",
    columns=EVENT_COLUMNS,
    rows=None,  # the timeline follows the bound event log
    kinds=("shm", "memfd", "mqueue", "pipe", "signal", "sysv"),
    sort_column="time",
    sort_reverse=True,
    follow_top=True,
    empty="no events yet: they appear as objects are created, attached, detached and destroyed",
    filter_help="filter: mechanism:shm event:created pid:123 source:inotify, or any words",
)


class EventsView(ObjectView):
    """The Events view: the bound event log as a timeline, newest first, each event a line."""

    def __init__(self) -> None:
        super().__init__(EVENTS_SPEC)

    def make_table(self) -> ObjectTable | TimelineTable:
        return TimelineTable(self.spec.columns)

    @property
    def timeline(self) -> TimelineTable:
        return self.query_one(TimelineTable)

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        # Every scan, shown or not: the new events are few, and a backlog would be built all at once later.
        self._stale = True
        if snapshot is not None:
            self.refresh_rows()

    def refresh_rows(self, *, force: bool = False) -> None:
        """Take in the log's new events and the current context; the detail pane follows the cursor."""
        snapshot = self.snapshot
        if snapshot is None or not (self._stale or force) or not self.is_mounted:
            return
        timeline = self.timeline
        log = self.events
        if isinstance(log, EventLog):
            timeline.follow(log, self.context)
        else:
            timeline.set_context(self.context)
        if not self.active:
            return  # still stale: the notes and the detail pane catch up when the view is shown
        self._stale = False
        self._show_notes(snapshot)
        timeline.set_class(timeline.row_count == 0, "-empty")
        self.show_detail()

    @on(TimelineTable.Highlighted)
    def _line_highlighted(self, event: TimelineTable.Highlighted) -> None:
        event.stop()
        if self.active:
            self.show_detail()

    @on(TimelineTable.Selected)
    def _line_selected(self, event: TimelineTable.Selected) -> None:
        event.stop()
        row = self.timeline.current_row
        if row is not None:
            self.post_message(OpenRow(row))
