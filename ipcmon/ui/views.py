"""The dashboard's views: what each one shows (the specs), the tabs, and moving between them (keys, jumps, focus)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.events import Resize
from textual.reactive import Reactive, reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import TabbedContent, TabPane
from textual.widgets._tabs import Underline

from ipcmon.ui.messages import Goto
from ipcmon.ui.refresh import RefreshingApp
from ipcmon.ui.view.rows import (
    MQUEUE_COLUMNS,
    PIPE_COLUMNS,
    SHM_COLUMNS,
    SIGNAL_COLUMNS,
    SIGNAL_OPTIONAL_COLUMNS,
    mqueue_rows,
    pipe_rows,
    shm_rows,
    signal_rows,
)
from ipcmon.ui.view.table import Row
from ipcmon.ui.widgets.object_view import ObjectView, ViewSpec
from ipcmon.ui.widgets.overview import Overview

VIEWS: tuple[tuple[str, str], ...] = (
    ("overview", "Overview"),
    ("shm", "Shared memory"),
    ("mqueue", "Message queues"),
    ("pipes", "Pipes & FIFOs"),
    ("signals", "Signals"),
    ("events", "Events"),
    ("demos", "Demos"),
)
"""(id, title) of every view, in key order: ``1`` shows the first."""

SHORT_TITLES: dict[str, tuple[str, str]] = {
    "overview": ("Overview", "Ovw"),
    "shm": ("Shm", "Shm"),
    "mqueue": ("Queues", "MQ"),
    "pipes": ("Pipes", "Pipe"),
    "signals": ("Signals", "Sig"),
    "events": ("Events", "Evt"),
    "demos": ("Demos", "Demo"),
}
"""Each view's tab label when the full titles do not fit, and when even those do not (issue 12: at 80 columns the
tab bar was cut off)."""
TAB_PADDING = 2
"""Cells a tab adds around its label."""


def tab_labels(width: int) -> list[str]:
    """The tab labels, key number first, in the widest form that fits ``width`` cells."""
    forms = [
        [title for _, title in VIEWS],
        [SHORT_TITLES[view][0] for view, _ in VIEWS],
        [SHORT_TITLES[view][1] for view, _ in VIEWS],
    ]
    for titles in forms:
        labels = [f"{number} {title}" for number, title in enumerate(titles, start=1)]
        if sum(len(label) + TAB_PADDING for label in labels) <= width:
            return labels
    return labels

OBJECT_SPECS = (
    # memfd and anonymous shared regions (scan kind memfd) are shared memory too: shm_rows lists them.
    ViewSpec("shm", "Shared memory", SHM_COLUMNS, shm_rows, ("shm", "memfd", "sysv"),
             note_words=("shm", "sysvipc", "could not be fully read"), sort_column="name",
             empty="no shared memory segments or semaphores", placed=True),
    ViewSpec("mqueue", "Message queues", MQUEUE_COLUMNS, mqueue_rows, ("mqueue", "sysv"),
             note_words=("mqueue", "sysvipc"), sort_column="name", empty="no message queues", placed=True),
    ViewSpec("pipes", "Pipes & FIFOs", PIPE_COLUMNS, pipe_rows, ("pipe",),
             note_words=("pipe",), sort_column="inode", empty="no pipes or FIFOs"),
    ViewSpec("signals", "Signals", SIGNAL_COLUMNS, signal_rows, ("signal",), sort_column="pending",
             sort_reverse=True, empty="no processes", filter_help="filter: pid, command, signal name; state:pending",
             optional=SIGNAL_OPTIONAL_COLUMNS, optional_at=3),  # LAST SENT after PENDING: who sent what is pending
)
"""The table views other than Events (whose rows come from the event log, see widgets/events_view.py)."""


class Views(TabbedContent):
    """The dashboard's views as tabs; they switch only on purpose (keys, clicks, jumps). Tab labels shorten to
    fit the width (tab_labels)."""

    def on_resize(self, event: Resize) -> None:
        for (view_id, _), label in zip(VIEWS, tab_labels(event.size.width), strict=True):
            tab = self.get_tab(view_id)
            if str(tab.label) != label:
                tab.label = label

    def place_underline(self) -> None:
        """Put the tab bar's underline under the active tab now.

        Without animations Textual's Tabs moves it after the next refresh (the tabs may not be laid out yet): a frame
        of its own after each view switch (issue 12, key latency). A switch does not move the tabs, so where the tab
        was laid out is where it is; Textual's own move then changes nothing.
        """
        if self.app.animation_level != "none" or not self.active:
            return  # Textual slides it
        tab = self.get_tab(self.active)
        if not tab.virtual_region:
            return  # not laid out yet: Textual places it after the first layout
        start, end = tab.virtual_region.shrink(tab.styles.gutter).column_span
        underline = self.query_one(Underline)
        underline.highlight_start = start
        underline.highlight_end = end

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        # TabbedContent also switches to the pane of any widget that gets the focus. A focus change still in
        # flight for the previous pane then switched back, and hiding the focused table moved the focus again:
        # two tabs flipped for ever. The dashboard moves the focus itself after each switch.
        event.stop()
        event.prevent_default()


class DashboardScreen(Screen[None]):
    """The dashboard's screen: Textual's, without a repaint of the whole screen at each focus change.

    Textual's ``Screen.focused`` repaints the whole screen when it changes, and a view switch moves the focus; with
    the switch's layout in the same frame the screen was then drawn twice (issue 12, key latency). The widgets whose
    look follows the focus are restyled and redrawn by Textual anyway (``Screen._update_focus_styles``).
    """

    focused: Reactive[Widget | None] = Reactive(None, repaint=False)


class NavigatingApp(RefreshingApp):
    """Which view is shown, and going to a view or an object's row (the dashboard's second layer)."""

    VIEWS: ClassVar[tuple[tuple[str, str], ...]] = VIEWS
    # repaint=False: what shows the view (the tabs, the views' display) redraws itself; a repaint of the App is one of
    # the whole screen, in the same frame as the switch's layout, so the screen was drawn twice (issue 12).
    active_view: reactive[str] = reactive("overview", repaint=False)

    def get_default_screen(self) -> Screen[None]:
        return DashboardScreen(id="_default")

    _table_views: dict[str, ObjectView] | None = None
    """The table views by id, found once (see table_views)."""

    def table_views(self) -> dict[str, ObjectView]:
        """The table views (2–6) by id; empty until they are mounted.

        Found by a query once: they are composed with the App and never replaced. A query matches selectors node by
        node, and Textual asks check_action about every binding several times a view switch (the footer's keys), each
        time asking for the current view: a query each was a tenth of a view switch (issue 12, key latency).
        """
        if self._table_views is None:
            found = {view.spec.id: view for view in self.query(ObjectView)}
            if not found:
                return found  # not mounted yet (or another screen on top): looked for again next time
            self._table_views = found
        return self._table_views

    def current_view(self) -> ObjectView | None:
        """The table view shown; None for the Overview and Demos, and while another screen (a dialog, the process
        view) is on top, as a query of the App (which looks only at the screen on top) found none."""
        if not self.screen_stack:
            return None
        view = self.table_views().get(self.active_view)
        return view if view is not None and view.screen is self.screen else None

    def current_row(self) -> Row | None:
        view = self.current_view()
        return view.table.current_row if view is not None else None

    def show_view(self, view_id: str) -> None:
        views = self.query_one("#views", Views)
        views.active = view_id
        views.place_underline()
        self.active_view = view_id
        # Move the focus now: focusing a widget makes its pane the active tab, so a focus change still in
        # flight for the old pane would switch back to it unless a newer one for this pane follows it.
        self._focus_view(view_id)

    def action_show_view(self, view_id: str) -> None:
        self.show_view(view_id)

    def jump_to(self, view_id: str, key: str) -> None:
        """Switch to a view and put the cursor on an object's row."""
        self.show_view(view_id)
        for view in self.query(ObjectView):
            if view.spec.id == view_id:
                if view.select_key(key):
                    view.table.focus()
                else:
                    self.notify("That object is gone (or not in this view).", severity="warning", markup=False)

    @on(Goto)
    def _goto(self, message: Goto) -> None:
        if message.key is None:
            self.show_view(message.view)
        else:
            self.jump_to(message.view, message.key)

    @on(Views.TabActivated, "#views")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if not self.screen_stack:
            return  # shutting down
        # The tab active now, not the event's: a late event for an earlier switch must not win.
        self.active_view = event.control.active or "overview"
        view = self.current_view()
        if view is not None:
            view.refresh_rows()
        elif self.active_view == "overview":
            for overview in self.query(Overview):
                overview.refresh_view()
        self._focus_view(self.active_view)

    def _focus_view(self, view_id: str) -> None:
        """Focus the main widget of a view, unless the focus is in that view already."""
        if not self.screen_stack or len(self.screen_stack) > 1:
            return
        pane = self.query_one(f"#views TabPane#{view_id}")
        focused = self.focused
        if focused is not None and pane in focused.ancestors:
            return
        for widget in pane.query("ObjectTable, TimelineTable, #demo-list"):
            self.screen.set_focus(widget)
            return

    def recolour(self) -> None:
        for overview in self.query(Overview):
            overview.refresh_view()
        view = self.current_view()
        if view is not None:
            view.refresh_rows(force=True)
