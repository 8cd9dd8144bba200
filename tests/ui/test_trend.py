"""The Overview's sparklines draw as Textual's Sparkline does, in fewer segments (issue 12, the demos' cost)."""

from __future__ import annotations

import random

import pytest
from rich.color import Color
from rich.console import Console
from rich.segment import Segment
from textual.renderables.sparkline import Sparkline as TextualBars

from ipcmon.ui.widgets.overview import TrendBars

LOW, HIGH = Color.from_rgb(20, 60, 90), Color.from_rgb(40, 160, 250)


def cells(renderable: object, width: int) -> list[list[tuple[str, object]]]:
    """Each line as (character, style) per cell: what a terminal shows, however it is cut in segments."""
    console = Console(width=width, color_system="truecolor")
    lines = Segment.split_lines(console.render(renderable, console.options.update(width=width)))  # type: ignore[arg-type]
    return [[(char, segment.style) for segment in line for char in segment.text] for line in lines]


def series(kind: str, count: int) -> list[float]:
    rng = random.Random(count)
    if kind == "random":
        return [rng.random() * 1e6 for _ in range(count)]
    if kind == "steps":  # counts that change now and then: most of a lesson demo's series
        return [float(index // 17 % 4) for index in range(count)]
    return [5.0] * count  # an idle machine's


@pytest.mark.parametrize("kind", ["random", "steps", "flat"])
@pytest.mark.parametrize(("count", "width", "height"), [(2, 10, 1), (37, 75, 2), (120, 75, 2), (120, 38, 2),
                                                      (120, 200, 3), (500, 33, 1)])
def test_the_bars_are_textuals(kind: str, count: int, width: int, height: int) -> None:
    data = series(kind, count)
    ours = TrendBars(data, width, height, LOW, HIGH, max)
    textual = TextualBars(data, width=width, height=height, min_color=LOW, max_color=HIGH, summary_function=max)
    assert cells(ours, width) == cells(textual, width)


def test_neighbouring_bars_of_one_colour_share_a_segment() -> None:
    console = Console(width=75)
    segments = list(console.render(TrendBars(series("steps", 120), 75, 2, LOW, HIGH, max)))
    assert len(segments) <= 2 * 8  # four steps a line, as against a segment per bar (150)
