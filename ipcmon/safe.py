"""Make system-provided strings inert for display: no escape sequences, no newlines, no raw bytes.

Segment and queue names, comm and cmdline are chosen by whoever created them. Printed raw they could
retitle the terminal (OSC), move the cursor (CSI), ring the bell or forge extra table rows. Every
printer and widget shows them through :func:`printable`; the Textual UI additionally wraps the result
in ``rich.text.Text`` so markup such as ``[@click=app.quit]`` is never parsed. The text tables measure that
printable text in terminal cells (:func:`cell_width`): a wide character takes two, a combining one none.
"""

from __future__ import annotations

import functools
import unicodedata

_SURROGATE_LOW = 0xDC80
_SURROGATE_HIGH = 0xDCFF


@functools.lru_cache(maxsize=8192)
def printable(text: str) -> str:
    """Replace every non-printable character with a visible escape.

    Invalid UTF-8 bytes (carried as surrogate escapes) become ``\\xNN``; control and format characters
    (C0, C1, DEL, bidi overrides, zero-width marks, line separators) become ``\\xNN`` or ``\\uNNNN``.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
            continue
        code = ord(char)
        if _SURROGATE_LOW <= code <= _SURROGATE_HIGH:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def shorten(text: str, width: int) -> str:
    """Cut a (printable) string to width characters, marking the cut with an ellipsis."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


_NO_CELL = frozenset({"Mn", "Me", "Mc", "Cf"})
"""Unicode categories a terminal draws in no cell of their own: marks that combine with the character before them
(the accent of ``e`` + U+0301, a Devanagari vowel sign) and format characters (printable escapes those anyway)."""


def _char_cells(char: str) -> int:
    code = ord(char)
    if unicodedata.category(char) in _NO_CELL or 0x1160 <= code <= 0x11FF or 0xD7B0 <= code <= 0xD7FF:
        return 0  # the marks, and Hangul's medial vowels and final consonants, which join the syllable before
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1  # wide and fullwidth: CJK, emoji


@functools.lru_cache(maxsize=8192)
def cell_width(text: str) -> int:
    """The terminal cells a printable string takes: two for a wide character (``漢``), none for a combining one.

    Counted as rich.cells.cell_len counts them (tests/test_table_cells.py compares the two), from the standard
    library's Unicode database, so that a one-shot command needs no third-party module for its tables (it runs
    where only the standard library is readable, and loads Rich only for the dashboard: test_import_hygiene.py).
    """
    if text.isascii():
        return len(text)
    return sum(_char_cells(char) for char in text)


def pad_cells(text: str, width: int) -> str:
    """text followed by spaces up to width terminal cells (str.ljust counts code points, not cells)."""
    return text + " " * (width - cell_width(text))


def cut_cells(text: str, width: int) -> str:
    """A printable string cut to width terminal cells, the cut marked with an ellipsis (one cell); a wide character
    that would straddle the edge is left out, and the room it leaves padded, so the result takes exactly width
    cells. text itself when it fits."""
    if cell_width(text) <= width:
        return text
    room = max(width - 1, 0)
    kept: list[str] = []
    used = 0
    for char in text:
        cells = _char_cells(char)
        if used + cells > room:
            break
        kept.append(char)
        used += cells
    return "".join(kept) + " " * (room - used) + "…"


def counted(count: int, singular: str, plural: str) -> str:
    """ "1 process", "3 processes": a number with its noun in the right number."""
    return f"{count} {singular if count == 1 else plural}"
