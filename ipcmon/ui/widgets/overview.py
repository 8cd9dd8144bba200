"""The Overview: counts and bytes per mechanism with sparklines of their totals, the budgets, the leaks and hazards."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.color import Color as RichColor
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.app import RenderResult as WidgetRender
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.events import Resize
from textual.reactive import reactive
from textual.renderables._blend_colors import blend_colors
from textual.widgets import DataTable, Sparkline, Static

from ipcmon.health import (
    CAPACITY_KEYS,
    PIPE_HAZARDS,
    budget_label,
    budget_level,
    budget_threshold,
    mount_level,
    pending_count,
)
from ipcmon.model import KINDS, Place, Snapshot
from ipcmon.safe import counted, printable
from ipcmon.text import fill_cell, human_bytes, place_cell
from ipcmon.ui.messages import Goto, OpenProcess
from ipcmon.ui.state import empty_context
from ipcmon.ui.view.alerts import Alert, alert_row, find_alerts
from ipcmon.ui.view.table import Column, Context, RowCache
from ipcmon.ui.widgets.object_view import DISMISS_KEY, Notes
from ipcmon.ui.widgets.tables import ObjectTable

HISTORY = 120
"""Points kept per sparkline (two minutes at the default interval)."""
FULL_CARDS_HEIGHT = (30, 20)
"""Below this many lines (two rows of cards, one row when wide) the Overview shows each card as a line or two,
without sparkline (issue 12: at 80×24 the leaks and hazards must stay on screen)."""
WIDE = 160
"""From this many columns the four cards sit side by side."""

ALERT_COLUMNS = (
    Column("severity", "LEVEL"),
    Column("mechanism", "MECHANISM"),
    Column("object", "OBJECT", cut_middle=True),
    Column("problem", "PROBLEM"),
)


@dataclass(frozen=True, slots=True)
class Metric:
    """One card: a title, a one-line summary of the snapshot, and the number its sparkline tracks."""

    id: str
    title: str
    kinds: tuple[str, ...]
    """Scan kinds it summarises: "not scanned (--kind)" when none of them was."""
    summary: Callable[[Snapshot], str]
    value: Callable[[Snapshot], float] | None
    """The number its sparkline tracks; None for a card of two lines and no sparkline (Budgets)."""
    unit: str = ""


def _shm_summary(s: Snapshot) -> str:
    held = sum(x.state == "held" for x in s.shm)
    orphaned = sum(x.state == "orphaned" for x in s.shm)
    unknown = sum(x.state == "orphaned?" for x in s.shm)  # perhaps held by a process the scan could not read
    deleted = sum(x.state == "deleted" for x in s.shm)
    # memfd and anonymous shared regions, and unknowns, are counted only when there are some: a machine without
    # them reads as before.
    regions = f", {len(s.regions)} memfd/anonymous" if s.regions else ""
    maybe = f", {unknown} orphaned?" if unknown else ""
    return (
        f"{len(s.shm)} POSIX ({held} held, {orphaned} orphaned{maybe}, {deleted} deleted), {len(s.sysv.shm)} SysV"
        f"{regions}\n"
        f"{human_bytes(_shm_bytes(s))} allocated, {human_bytes(sum(x.pinned_bytes for x in s.shm))} pinned"
    )


def _shm_bytes(s: Snapshot) -> int:
    return (sum(x.allocated for x in s.shm) + sum(x.rss or 0 for x in s.sysv.shm)
            + sum(x.allocated or 0 for x in s.regions))


def _queue_summary(s: Snapshot) -> str:
    full = sum((q.fill or 0) >= 1 for q in s.mqueues)
    messages = sum(q.messages or 0 for q in s.mqueues)
    queued = sum(q.qsize_bytes or 0 for q in s.mqueues)
    return (
        f"{len(s.mqueues)} POSIX ({full} full), {len(s.sysv.msg)} SysV\n"
        f"{counted(messages, 'message', 'messages')}, {human_bytes(queued)} queued"
    )


def _pipe_summary(s: Snapshot) -> str:
    fifos = sum(p.kind == "fifo" for p in s.pipes)
    hazards = sum(any(flag in PIPE_HAZARDS for flag in p.flags) for p in s.pipes)  # as the alerts list them
    buffered = sum(p.buffered or 0 for p in s.pipes)
    pipes = counted(len(s.pipes) - fifos, "pipe", "pipes")
    return f"{pipes}, {counted(fifos, 'FIFO', 'FIFOs')}, {hazards} with hazards\n{human_bytes(buffered)} buffered"


def _signal_summary(s: Snapshot) -> str:
    pending = [p for p in s.signals if pending_count(p)]
    blocked = sum(bool(p.blocked) for p in s.signals)
    return (f"{counted(len(pending), 'process', 'processes')} with signals pending, {blocked} blocking some\n"
            f"{wait_summary(s)}")


def wait_summary(s: Snapshot) -> str:
    """``5 processes waiting on IPC: 2 stuck (2 deadlocked)``; stuck are the deadlocked and blocked ones."""
    waiting = len(s.stuck) or sum(p.waiting is not None for p in s.processes)
    deadlocked = sum(entry.state == "deadlocked" for entry in s.stuck)
    stuck = deadlocked + sum(entry.state == "blocked" for entry in s.stuck)
    words = f"{counted(waiting, 'process', 'processes')} waiting on IPC: {stuck} stuck"
    return words + (f" ({deadlocked} deadlocked)" if deadlocked else "")


def _budget_summary(s: Snapshot) -> str:
    """``/dev/shm 94% of 64M, 4.0M free`` (the mount's own fill, its hazard in the alerts) and ``2 of 8 budgets past
    90%; fullest: RLIMIT_MSGQUEUE uid 0 91%`` (the budgets that fill, not per-object caps, past
    health.budget_threshold, and the fullest); ``budgets not read`` when the scan did not read them."""
    capacity = s.capacity
    if capacity is None:
        return "budgets not read"
    mount = capacity.shm_mounts[0] if capacity.shm_mounts else None
    shm = (f"{printable(mount.path)} {fill_cell(mount.fill)} of {human_bytes(mount.size)}, "
           f"{human_bytes(mount.available)} free") if mount is not None else "no shm mount found"
    pools = [budget for budget in capacity.budgets if not budget.per_object]  # caps on one object never fill
    past = sum(budget_level(budget) is not None for budget in pools)
    line = f"{past} of {counted(len(pools), 'budget', 'budgets')} past {budget_threshold():.0%}"
    known = [budget for budget in pools if budget.fill is not None]
    if known:
        fullest = max(known, key=lambda budget: budget.fill or 0.0)
        line += f"; fullest: {printable(budget_label(fullest))} {fill_cell(fullest.fill)}"
    others = capacity.shm_mounts[1:]  # containers' /dev/shm (issue 15): each a budget that fills
    if others:
        full = sum(mount_level(other) is not None for other in others)
        fuller = max(others, key=lambda other: other.fill or 0.0)
        shm += (f"; {counted(len(others), 'other shm mount', 'other shm mounts')}, {full} past "
                f"{budget_threshold():.0%}, fullest {place_cell(fuller.place)} {fill_cell(fuller.fill)} of "
                f"{human_bytes(fuller.size)}")
    return f"{shm}\n{line}"


PLACES_SHOWN = (3, 8)
"""Places the per-container breakdown lists (compact, full); more are counted on one more line."""


@dataclass(slots=True)
class PlaceTotals:
    """One place's share of the snapshot, for the Overview's per-container breakdown."""

    place: Place
    objects: int = 0
    """POSIX segments and semaphores, queues and SysV objects that live there."""
    bytes: int = 0
    """Memory they take: allocated bytes of POSIX segments, resident bytes of SysV segments."""
    mount: str = ""
    """Its /dev/shm tmpfs fill, ``/dev/shm 95% of 64M`` (the mount whose place it is); '' when none is its own."""


def place_totals(snapshot: Snapshot) -> list[PlaceTotals]:
    """Each place with objects or an shm mount, the host first then by bytes, most first; empty unless some
    object, mount or namespace is in a container (issue 15: the breakdown is for machines that run containers)."""
    if not any(namespace.place.container is not None for namespace in snapshot.namespaces):
        return []
    totals: dict[object, PlaceTotals] = {}

    def entry_of(place: Place) -> PlaceTotals:
        # One entry per host, container or other IPC namespace: a SysV object's place has no mount namespace, and
        # a container's shm and its SysV segments are still the container's.
        who = "host" if place.host else place.container.id if place.container is not None else place.ipc
        return totals.setdefault(who, PlaceTotals(place))

    def add(place: Place | None, size: int = 0) -> None:
        if place is not None:
            entry = entry_of(place)
            entry.objects += 1
            entry.bytes += size

    for segment in snapshot.shm:
        add(segment.place, segment.allocated)
    for queue in snapshot.mqueues:
        add(queue.place)
    for shm in snapshot.sysv.shm:
        add(shm.place, shm.rss or 0)
    for msg in snapshot.sysv.msg:
        add(msg.place)
    for sem in snapshot.sysv.sem:
        add(sem.place)
    for mount in snapshot.capacity.shm_mounts if snapshot.capacity is not None else ():
        if mount.place is not None:
            fill = f"{fill_cell(mount.fill)} of {human_bytes(mount.size)}"
            entry_of(mount.place).mount = f"{printable(mount.path)} {fill}"
    return sorted(totals.values(), key=lambda entry: (not entry.place.host, -entry.bytes, place_cell(entry.place)))


def places_text(snapshot: Snapshot, compact: bool) -> Text:
    """The breakdown, a line per place: ``web-1 (docker 3f2a9c1d0b7e)  4 objects, 1.2M  /dev/shm 95% of 64M``;
    empty when place_totals is."""
    entries = place_totals(snapshot)
    text = Text(end="")
    if not entries:
        return text
    text.append(f"Where: {counted(len(entries), 'place', 'places')}\n", style="bold")
    shown = PLACES_SHOWN[not compact]
    for entry in entries[:shown]:
        container = entry.place.container
        text.append(f"  {place_cell(entry.place)}", style="bold")
        if container is not None:  # its short id too when it is named
            text.append(f" ({container.runtime}{' ' + printable(container.short_id) if container.name else ''})")
        text.append(f"  {counted(entry.objects, 'object', 'objects')}, {human_bytes(entry.bytes)}")
        if entry.mount:
            text.append(f"  {entry.mount}")
        text.append("\n")
    if len(entries) > shown:
        text.append(f"  +{len(entries) - shown} more (ipcmon snapshot lists every namespace)\n")
    text.rstrip()
    return text


METRICS = (
    Metric("shm", "Shared memory", ("shm", "memfd"), _shm_summary, lambda s: float(_shm_bytes(s)), "bytes allocated"),
    Metric("mqueue", "Message queues", ("mqueue",), _queue_summary,
           lambda s: float(sum(q.messages or 0 for q in s.mqueues) + sum(m.qnum for m in s.sysv.msg)), "messages"),
    Metric("pipes", "Pipes & FIFOs", ("pipe",), _pipe_summary,
           lambda s: float(sum(p.buffered or 0 for p in s.pipes)), "bytes buffered"),
    Metric("signals", "Signals", ("signal",), _signal_summary,
           lambda s: float(sum(pending_count(p) for p in s.signals)), "signals pending"),
    # Budgets are read whatever --kind says; two lines and no sparkline, in a row of their own (on_resize): a third
    # row of full cards left the alerts no room at 120×40.
    Metric("budgets", "Budgets", KINDS, _budget_summary, None),
)


BARS = "▁▂▃▄▅▆▇█"
"""A bar's eighths, as Textual's Sparkline draws them."""


@dataclass(frozen=True, slots=True)
class TrendBars:
    """Textual's sparkline renderable (textual.renderables.sparkline), drawn the same: the same buckets, bars and
    colours, in a fraction of the time.

    Textual's made a Fraction per bucket, summed each bucket once per line, blended a colour and made a Style per bar,
    and gave each bar a segment of its own. With the lesson demos running the four sparklines change at every scan,
    and they were a fifth of the dashboard's drawing time (issue 12, the demos' cost). Here each bucket is summed
    once, a colour is blended once per distinct height, and neighbouring bars of one colour share a segment.
    """

    data: Sequence[float]
    width: int
    height: int
    low: RichColor
    high: RichColor
    summary: Callable[[Sequence[float]], float]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width, height, data = self.width or options.max_width, self.height or 1, self.data
        count = len(data)
        # Textual's buckets: int(Fraction(count, width) * index) is count * index // width; empty ones are dropped.
        buckets = [data[count * index // width:count * (index + 1) // width] for index in range(width)]
        values = [self.summary(bucket) for bucket in buckets if bucket]
        minimum, maximum = min(data), max(data)
        extent = maximum - minimum or 1
        # The bucket of each column, stepped as Textual steps it (a float, so the same rounding).
        ratios = []
        position, step = 0.0, len(values) / width
        for _ in range(width):
            ratios.append((values[int(position)] - minimum) / extent)
            position += step
        levels = len(BARS) * height - 1
        styles: dict[float, Style] = {}
        for line in reversed(range(height)):
            low, high = line * len(BARS), (line + 1) * len(BARS)
            run: list[str] = []
            run_style: Style | None = None
            for ratio in ratios:
                level = int(ratio * levels)
                style: Style | None = None
                if level < low:
                    bar = " "
                else:
                    bar = "█" if level >= high else BARS[level % len(BARS)]
                    style = styles.get(ratio)
                    if style is None:
                        style = styles[ratio] = Style.from_color(blend_colors(self.low, self.high, ratio))
                if run and style is not run_style:
                    yield Segment("".join(run), run_style)
                    run = []
                run.append(bar)
                run_style = style
            if run:
                yield Segment("".join(run), run_style)
            if line > 0:
                yield Segment.line()


class Trend(Sparkline):
    """Textual's Sparkline drawn by :class:`TrendBars` (Textual's own for fewer than two points)."""

    def render(self) -> WidgetRender:
        data = self.data or []
        if len(data) < 2 or self.min_color is not None or self.max_color is not None:
            return super().render()
        _, base = self.background_colors
        low = base + self.get_component_styles("sparkline--min-color").color
        high = base + self.get_component_styles("sparkline--max-color").color
        return TrendBars(data, self.size.width, self.size.height, low.rich_color, high.rich_color,
                         self.summary_function)


class MetricCard(Vertical):
    """One mechanism's card: its summary, a sparkline of its total and the peak; or that it was not scanned.

    Compact (the Overview's ``-compact`` class), it is one line or two: the title and the summary.
    """

    def __init__(self, metric: Metric) -> None:
        super().__init__(id=f"card-{metric.id}", classes="card")
        self.metric = metric
        self.border_title = metric.title

    def compose(self) -> ComposeResult:
        # Kept, not queried at each scan: a query matches selectors node by node (issue 12, idle cost).
        self._summary = Static("", classes="summary")
        self._line = Static("", classes="line")
        yield self._summary
        yield self._line
        if self.metric.value is not None:
            self._sparkline = Trend([], summary_function=max)
            self._caption = Static("", classes="caption")
            yield self._sparkline
            yield self._caption

    def show(self, snapshot: Snapshot, history: deque[float]) -> None:
        scanned = any(kind in snapshot.kinds for kind in self.metric.kinds)
        self.set_class(not scanned, "-unscanned")
        if scanned:
            summary = self.metric.summary(snapshot)
        else:
            summary = f"not scanned: ipcmon was started with --kind {','.join(snapshot.kinds)}"
        update_if_changed(self._summary, Text(summary), keep_height=True)
        line = Text(f"{self.metric.title}: ", style="bold")
        line.append(summary.replace("\n", "; "), style="" if scanned else "dim")
        update_if_changed(self._line, line)
        if not scanned or self.metric.value is None:
            return
        data = list(history)
        if redraws(self._sparkline.data or (), data):
            self._sparkline.data = data
        peak = max(history, default=0.0)
        shown = human_bytes(int(peak)) if "bytes" in self.metric.unit else f"{peak:g}"
        # No scan count here: a caption that changed every scan would re-lay out the screen every scan.
        update_if_changed(self._caption, Text(f"{self.metric.unit}, peak {shown}"))


class Overview(Vertical):
    """Bound to the app's snapshot; always kept current (it is small and its sparklines need every point).

    Enter on an alert posts :class:`~ipcmon.ui.messages.Goto` with the object's view and key, or
    :class:`~ipcmon.ui.messages.OpenProcess` for a deadlock (its first member) or a blocked process.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(DISMISS_KEY, "dismiss_note", "Hide note", show=False),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True, repaint=False)
    context: reactive[Context] = reactive(empty_context, always_update=True, repaint=False)
    active_view: reactive[str] = reactive("overview", repaint=False)

    def __init__(self) -> None:
        super().__init__(id="view-overview")
        self.history: dict[str, deque[float]] = {metric.id: deque(maxlen=HISTORY) for metric in METRICS}
        self.alerts: dict[str, Alert] = {}
        self.cache = RowCache()
        self._taken: Snapshot | None = None
        """The last snapshot taken in (its point is in the history)."""

    def compose(self) -> ComposeResult:
        # The widgets a refresh updates are kept, not queried at each scan (issue 12, idle cost).
        self._notes = Notes()
        self._cards = [MetricCard(metric) for metric in METRICS]
        self._places = Static("", id="places")
        self._alerts_title = Static("", id="alerts-title")
        # follow_top: a more serious alert arriving above keeps the cursor on the top row, so Enter takes the user
        # to the most serious one (the cursor stayed on its alert, now second, and Enter went there).
        self._alerts = ObjectTable(ALERT_COLUMNS, sort_column="severity", follow_top=True, id="alerts")
        yield self._notes
        with Grid(id="cards"):
            yield from self._cards
        yield self._places
        yield self._alerts_title
        yield self._alerts

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        if snapshot is None or snapshot is self._taken:
            # The same scan again: the App shows it once more when only the senders of signals are new (refresh.py),
            # which the Overview does not show. It was refreshed for nothing, and its sparklines took the point twice.
            return
        self._taken = snapshot
        for metric in METRICS:
            if metric.value is not None:
                self.history[metric.id].append(metric.value(snapshot))
        # Hidden, it only keeps the history: updating its widgets would still re-lay out the screen.
        if self.active_view == "overview":
            self.refresh_view()

    def refresh_view(self) -> None:
        snapshot = self.snapshot
        if snapshot is None or not self.is_mounted:
            return
        self._notes.show(snapshot, snapshot.notes)
        for card in self._cards:
            card.show(snapshot, self.history[card.metric.id])
        places = places_text(snapshot, self.has_class("-compact"))
        self._places.set_class(bool(places.plain), "-shown")
        update_if_changed(self._places, places)
        ctx = self.context
        self.alerts = {alert.alert_key: alert for alert in find_alerts(snapshot)}
        table = self._alerts
        rows = list(self.cache.rows(ctx, self.alerts.values(), alert_row, key_of=lambda alert: alert.alert_key))
        self.cache.forget(self.alerts)
        table.sync(rows)
        bad = sum(alert.severity == "bad" for alert in self.alerts.values())
        title = Text(f"Leaks and hazards: {len(self.alerts)}", style="bold")
        if bad:
            title.append(f"  ({bad} serious)", style=ctx.palette.bad)
        if self.alerts:
            title.append("   Enter jumps to the object", style=ctx.palette.muted)
        else:
            # Every deadlock and blocked process is an alert (health._wait_hazards), so "none" is true of them too.
            title.append("   none: nothing orphaned, deleted, full, blocked or deadlocked", style=ctx.palette.good)
        update_if_changed(self._alerts_title, title)

    def on_resize(self, event: Resize) -> None:
        # Cards compress before the alerts go off screen; a wide terminal puts them side by side.
        wide = event.size.width >= WIDE
        compact = event.size.height < FULL_CARDS_HEIGHT[wide]
        self.set_class(compact, "-compact")
        columns = (2 if compact else 4) if wide else (1 if compact else 2)
        self.query_one("#cards", Grid).styles.grid_size_columns = columns
        # The Budgets card comes fifth: it takes a row of its own, whole, rather than leave half of one empty.
        self.query_one("#card-budgets", MetricCard).styles.column_span = columns

    def action_dismiss_note(self) -> None:
        self.query_one(Notes).dismiss_hidden()

    @on(DataTable.RowSelected, "#alerts")
    def _jump(self, event: DataTable.RowSelected) -> None:
        event.stop()
        alert = self.alerts.get(str(event.row_key.value))
        if alert is not None and alert.pid is not None:
            self.post_message(OpenProcess(alert.pid))  # a deadlock (its first member) or a blocked process
        elif alert is not None and alert.key.startswith(CAPACITY_KEYS):
            self.notify("A budget has no row to jump to: `ipcmon limits` lists every budget with its use and headroom.",
                        markup=False)
        elif alert is not None:
            self.post_message(Goto(alert.view, alert.key))


def redraws(shown: Sequence[float], data: Sequence[float]) -> bool:
    """Whether a sparkline showing ``shown`` looks different with ``data``.

    Textual's Sparkline scales between the series' minimum and maximum, so every constant series of two points
    or more is the same row of lowest bars: on an idle machine each scan appends the same value, and the four
    sparklines were redrawn (and the screen under them composed) every second for no visible change.
    """
    if list(shown) == list(data):
        return False
    return not (len(shown) > 1 and len(data) > 1 and len(set(shown)) == 1 and len(set(data)) == 1)


def update_if_changed(static: Static, text: Text, *, keep_height: bool = False) -> None:
    """Show the text unless it is already shown (most refreshes change nothing); lay the screen out again only when the
    widget's height may change.

    Static.update re-lays out the whole screen. A card's summary changes at every scan while demos run, and the screen
    was laid out at every scan for it (issue 12: the demos' cost). Its width is its container's, so its height is its
    number of lines at that width: when that stays, and for a hidden widget (a card's other form), only its own lines
    are drawn again.

    keep_height: the widget keeps the most lines it has needed at this width (a shorter text is followed by empty
    lines), so that it only grows. A card's summary wraps to one line more or less as its numbers change (a count of
    two digits, "(1 deadlocked)"): with the lesson demos running, the cards and the hazard list under them jumped by a
    line every few scans, and each jump laid the whole screen out again (issue 12, the demos' cost). A new width
    (a resize) starts again from the text's own height.
    """
    shown = (text.plain, list(text.spans))
    if getattr(static, "_ipcmon_shown", None) == shown:
        return
    static._ipcmon_shown = shown  # type: ignore[attr-defined]
    width = static.content_region.width
    lines = len(text.wrap(static.app.console, width)) if width else 0
    if keep_height and width:
        kept_width, tallest = getattr(static, "_ipcmon_tallest", (0, 0))
        if kept_width == width and lines < tallest:
            text = text.copy()
            text.append("\n" * (tallest - lines))
            lines = tallest
        static._ipcmon_tallest = (width, lines)  # type: ignore[attr-defined]
    same_height = bool(width) and lines == getattr(static, "_ipcmon_lines", None)
    static._ipcmon_lines = lines  # type: ignore[attr-defined]
    static.update(text, layout=static.display and not same_height)
