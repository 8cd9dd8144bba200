"""Table cells and rows for the dashboard: sortable inert cells, the row record, its filter, and the row cache.

No widgets here: the cell text and the filter can be tested without a terminal. A DataTable parses ``str``
cells as markup, so every cell is a ``rich.text.Text`` whose text went through :func:`ipcmon.safe.printable`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.style import Style
from rich.text import Text

from ipcmon.demos import OBJECT_PREFIX
from ipcmon.health import STATE_LEVELS
from ipcmon.model import Holder, PipeEnd, Place, Process, Snapshot
from ipcmon.safe import printable, shorten
from ipcmon.text import PlaceSelector, parse_ns
from ipcmon.ui.view.actors import Attributions

DEMO_PREFIX = OBJECT_PREFIX
"""Objects the demos create are named with this prefix (issue 5)."""

MAX_CELL = 400
"""Longest cell text kept; the table cuts cells to its column widths, which follow the terminal (issue 12)."""
MASK_WIDTH = 22
"""Widest signal mask shown in the Signals table."""


class Cell(Text):
    """A table cell: printable text plus the value its column sorts by."""

    __slots__ = ("sort_key",)

    def __init__(self, text: str, sort_key: tuple[object, ...], style: Style | str = "") -> None:
        super().__init__(text, style=style, no_wrap=True, overflow="ellipsis", end="")
        self.sort_key = sort_key

    def same(self, other: Cell) -> bool:
        """Same text, colour and sort value (Text's own == ignores the style)."""
        return self.plain == other.plain and str(self.style) == str(other.style) and self.sort_key == other.sort_key


def text_cell(text: str, style: Style | str = "", *, width: int = MAX_CELL) -> Cell:
    """A cell sorted by its text; the text is made printable here whatever the caller did."""
    shown = shorten(printable(text), width)
    return Cell(shown, (0, shown.lower()), style)


def number_cell(value: int | float | None, shown: str | None = None, style: Style | str = "") -> Cell:
    """A cell sorted by a number; unknown (None) sorts after every number."""
    if value is None:
        return Cell(shown if shown is not None else "?", (1, 0), style)
    return Cell(shown if shown is not None else str(value), (0, value), style)


@dataclass(frozen=True, slots=True)
class Palette:
    """Styles for states; the app builds one from the current theme so colours follow theme changes."""

    bad: str = "bold red"
    warn: str = "yellow"
    good: str = "green"
    muted: str = "dim"
    accent: str = "bold magenta"


def state_style(state: str, palette: Palette, fine: str = "") -> str:
    """A state word's colour: its hazard level in health.STATE_LEVELS (orphaned warn; deleted, removed, full
    bad), else ``fine``."""
    level = STATE_LEVELS.get(state)
    return str(getattr(palette, level)) if level is not None else fine


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its key, header label, and the most cells it takes (None: as wide as what it holds)."""

    key: str
    label: str
    width: int | None = None
    keep: int | None = None
    """Cells it keeps when the table is too narrow for everything (None: the table's default, or its label; see
    :func:`fit_widths`)."""
    cut_middle: bool = False
    """A cell too long for the column loses its middle (``/ipcmon-d…-seg-1042``), not its end: names that share a
    long prefix stay told apart (the Events view's OBJECT)."""
    hide_below: int | None = None
    """Left out of a table narrower than this many cells, to leave its room to the others (None: always shown;
    the Events view's SOURCE, which its detail pane shows as well)."""


def cut_middle(text: Text, width: int) -> Text:
    """``text`` in ``width`` cells with its middle replaced by an ellipsis (its styles kept); unchanged when it fits.
    The end keeps the larger half: that is where names made by one program differ (a counter, a pid)."""
    if text.cell_len <= width:
        return text
    if width <= 1:
        return Text("…"[:width], end="")
    keep = width - 1
    head, tail = keep // 2, keep - keep // 2
    start = text.copy()
    start.truncate(head, overflow="crop")
    end = text[len(text) - tail:] if tail else Text("")
    while end.cell_len > tail:  # wide characters: drop from the front of the end until it fits
        end = end[1:]
    return Text.assemble(start, "…", end, end="")


def fit_widths(
    natural: Sequence[int], minimum: Sequence[int], available: int, floors: Sequence[Sequence[int]] = ()
) -> list[int]:
    """Column widths (cells, padding excluded) that share ``available`` by what the columns hold.

    When every column fits, each gets its natural width (its widest cell or label). Otherwise the widest are
    cut to a common level, so a long column gives up room before a short one loses any, and none goes below
    its minimum. When even the minimums do not fit, they give way in turn to each of ``floors`` (lower widths,
    column by column: the labels whole, say), the same way: the largest minimums are cut first, to a common level,
    and none goes below that floor. When even the last floor does not fit, the columns get it and the table
    scrolls sideways.
    """
    if sum(natural) <= available:
        return list(natural)
    upper = natural
    for lower in (minimum, *floors):
        if sum(lower) <= available:
            return _cut_to_level(upper, lower, available)
        upper = lower
    return list(upper)


def _cut_to_level(upper: Sequence[int], lower: Sequence[int], available: int) -> list[int]:
    """``upper`` cut to the highest common level that fits ``available``, none below ``lower``; what rounding
    leaves goes a cell each to the cut columns, first ones first."""

    def at(level: int) -> list[int]:
        return [max(low, min(want, level)) for want, low in zip(upper, lower, strict=True)]

    low, high = 0, max(upper)
    while low < high:  # the highest level whose widths fit
        middle = (low + high + 1) // 2
        if sum(at(middle)) <= available:
            low = middle
        else:
            high = middle - 1
    widths = at(low)
    spare = available - sum(widths)
    for index, want in enumerate(upper):
        if spare and widths[index] < want:
            widths[index] += 1
            spare -= 1
    return widths


@dataclass(frozen=True, slots=True)
class Row:
    """One table row: stable key, cells in column order, and what the filter and actions need."""

    key: str
    cells: tuple[Cell, ...]
    record: object
    search: str
    """Lower-case text the free-text filter matches: names, pids, commands, command lines."""
    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Values for ``name:value`` filter tokens (pid, kind, mechanism, event, state…)."""
    pids: tuple[int, ...] = ()
    """Processes involved, in order (Enter and ``k`` act on them)."""
    path: str | None = None
    """What ``c`` copies."""
    place: Place | None = None
    """Where its object lives (issue 15): the CONTAINER column, and the ``container:`` and ``ns:`` filter tokens;
    None for an object with no place of its own (a pipe, a memfd) or when the scan did not read namespaces."""


@dataclass(slots=True)
class Context:
    """What rows need besides the record: the process table, demo membership, colours."""

    snapshot: Snapshot
    palette: Palette = field(default_factory=Palette)
    demo_pids: frozenset[int] = frozenset()
    processes: dict[int, Process] = field(default_factory=dict)
    who: Attributions | None = field(default=None, compare=False, repr=False)
    """Who sent each process its signals and who created each object (issue 16); None when the dashboard has no
    attribution source and no journal (the views then show nothing of it)."""
    asked: set[int] | None = field(default=None, compare=False, repr=False)
    """While RowCache builds a row: every pid :meth:`is_demo` was asked about (what the row's demo badge
    depends on), so a change of demo pids rebuilds only the rows it concerns."""

    def __post_init__(self) -> None:
        if not self.processes:
            self.processes = {process.pid: process for process in self.snapshot.processes}

    def is_demo(self, name: str | None, pids: Iterable[int]) -> bool:
        """A demo's object by its name (``/ipcmon-demo-…``, or ``ipcmon-demo-…`` for a memfd, which has no
        slash), or held by one of the running demos' processes."""
        if name and name.lstrip("/").startswith(DEMO_PREFIX[1:]):
            return True
        pids = tuple(pids)
        if self.asked is not None:
            self.asked.update(pids)
        return any(pid in self.demo_pids for pid in pids)

    def commands(self, pids: Iterable[int]) -> str:
        """comm and command line of each pid, for the filter."""
        parts = []
        for pid in pids:
            process = self.processes.get(pid)
            if process is not None:
                parts.append(process.comm)
                parts.extend(process.cmdline)
        return " ".join(parts)


class RowCache:
    """Rows of the previous refresh, reused while their record, the colours and their demo membership hold.

    Comparing two frozen records costs about a microsecond; building a row's cells costs tens, and a busy
    machine has thousands of pipes and segments that mostly stay the same from one scan to the next. The demos
    fork at almost every step, so the set of demo pids changes nearly every scan: each row remembers which pids
    its builder asked :meth:`Context.is_demo` about and which of those were demo pids, and only a row whose
    answer changed is rebuilt (issue 12: dropping every row on each change rebuilt 10,000 rows a scan).
    A palette change (a new theme, rare) drops them all.
    """

    def __init__(self) -> None:
        self._rows: dict[str, tuple[object, Row, frozenset[int], frozenset[int]]] = {}
        """key → (what the row was built from, the row, pids asked about, those that were demo pids)."""
        self._palette: Palette | None = None
        self.built = 0
        """Rows built so far (tests count them)."""

    def rows(
        self,
        ctx: Context,
        records: Iterable[Any],
        build: Callable[[Any, Context], Row],
        extra: Callable[[Any], object] | None = None,
        key_of: Callable[[Any], str] | None = None,
    ) -> Iterator[Row]:
        """A row per record: the cached one when ``(record, extra(record))`` is what it was built from and
        its demo membership is unchanged."""
        if ctx.palette != self._palette:
            self._rows.clear()
            self._palette = ctx.palette
        demo = ctx.demo_pids
        for record in records:
            key = key_of(record) if key_of is not None else record.object_key
            token = (record, extra(record)) if extra is not None else record
            cached = self._rows.get(key)
            if (
                cached is not None
                and (cached[0] is token or cached[0] == token)  # `is`: a recalled record
                and (not cached[2] or cached[2] & demo == cached[3])
            ):
                yield cached[1]
                continue
            row, asked = build_recording(build, record, ctx)
            self._rows[key] = (token, row, asked, asked & demo if asked else NO_PIDS)
            self.built += 1
            yield row

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the rows of objects that are gone (call after a refresh with the keys it produced)."""
        wanted = set(keep)
        for key in [key for key in self._rows if key not in wanted]:
            del self._rows[key]


NO_PIDS: frozenset[int] = frozenset()
"""The empty pid set, shared (rows and timeline lines by the thousand would each hold a new one)."""


def build_recording(build: Callable[[Any, Context], Row], record: Any, ctx: Context) -> tuple[Row, frozenset[int]]:
    """Build a row, and say which pids it asked :meth:`Context.is_demo` about (its badge depends on those)."""
    asked: set[int] = set()
    outer, ctx.asked = ctx.asked, asked
    try:
        row = build(record, ctx)
    finally:
        ctx.asked = outer
    return row, frozenset(asked) if asked else NO_PIDS


def matches(row: Row, query: str) -> bool:
    """Every token must match: ``pid:123``/``event:created`` against the row's fields, ``container:ID|NAME`` and
    ``ns:INODE`` against its place (as ``--container`` and ``--ns`` select: text.PlaceSelector), words anywhere; a
    token of alternatives, ``a|b``, matches when one of them does (``g`` in the Demos view filters so)."""
    for token in query.lower().split():
        alternatives = [word for word in token.split("|") if word]
        if alternatives and not any(_matches_token(row, word) for word in alternatives):
            return False
    return True


def _matches_token(row: Row, token: str) -> bool:
    name, sep, value = token.partition(":")
    if sep and name in PLACE_TOKENS:
        return _place_matches(row.place, name, value)
    if sep and name in row.fields:
        return value in row.fields[name]
    return token in row.search


PLACE_TOKENS = ("container", "ns")
"""Filter tokens that select by place (issue 15): ``container:web-1``, ``container:3f2a``, ``container:host``,
``ns:4026532281``."""


@functools.lru_cache(maxsize=64)
def _selector(name: str, value: str) -> PlaceSelector | None:
    if name == "ns":
        inode = parse_ns(value)
        return PlaceSelector(ns=inode) if inode is not None else None
    return PlaceSelector(container=value) if value else None


def _place_matches(place: Place | None, name: str, value: str) -> bool:
    selector = _selector(name, value)
    return selector is not None and selector.matches(place)


def unique_pids(pids: Iterable[int]) -> tuple[int, ...]:
    """Each pid once, in first-seen order."""
    return tuple(dict.fromkeys(pids))


def search_text(ctx: Context, pids: Sequence[int], *words: str | None) -> str:
    """A row's lower-case free-text filter target: its words, its pids, and their commands."""
    text = " ".join(word for word in words if word)
    return f"{text} {' '.join(map(str, pids))} {ctx.commands(pids)}".lower()


def name_cell(ctx: Context, name: str, pids: Iterable[int], style: str = "") -> Cell:
    """The name, with a demo badge in front when a demo made it or holds it (issue 5)."""
    cell = text_cell(name, style)
    if ctx.is_demo(name, pids):
        badged = Cell("◆ ", cell.sort_key, ctx.palette.accent)
        badged.append_text(cell)
        return badged
    return cell


def holder_pids(holders: Iterable[Holder] | Iterable[PipeEnd]) -> tuple[int, ...]:
    """The processes holding an object (by fd, mapping or pipe end), each once."""
    return unique_pids(holder.pid for holder in holders)


def fields_of(pids: Iterable[int], **values: str) -> dict[str, frozenset[str]]:
    """A row's ``name:value`` filter fields (lower-case), with ``pid`` from the pids."""
    fields = {name: _one(value.lower()) for name, value in values.items()}
    fields["pid"] = _pid_field(tuple(pids))
    return fields


@functools.lru_cache(maxsize=4096)
def _one(value: str) -> frozenset[str]:
    """A one-value field, shared: the same few mechanism and event names fill thousands of rows."""
    return frozenset({value})


@functools.lru_cache(maxsize=4096)
def _pid_field(pids: tuple[int, ...]) -> frozenset[str]:
    """The ``pid`` field, shared as :func:`_one`'s are: a full event history held 10,000 of them, most alike, each one
    more object for every full garbage collection to walk (issue 12: key latency)."""
    return frozenset(str(pid) for pid in pids)
