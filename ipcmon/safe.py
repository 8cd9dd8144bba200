"""Make system-provided strings inert for display: no escape sequences, no newlines, no raw bytes.

Segment and queue names, comm and cmdline are chosen by whoever created them. Printed raw they could
retitle the terminal (OSC), move the cursor (CSI), ring the bell or forge extra table rows. Every
printer and widget shows them through :func:`printable`; the Textual UI additionally wraps the result
in ``rich.text.Text`` so markup such as ``[@click=app.quit]`` is never parsed.
"""

from __future__ import annotations

import functools

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


def counted(count: int, singular: str, plural: str) -> str:
    """ "1 process", "3 processes": a number with its noun in the right number."""
    return f"{count} {singular if count == 1 else plural}"


def human_bytes(count: int | None) -> str:
    """1536 → 1.5K; None → '?'."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "K", "M", "G", "T", "P"):
        if value < 1024 or unit == "P":
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
        value /= 1024
    return f"{count}B"


def human_age(seconds: float | None) -> str:
    """72 → 1m12s; None → '?'."""
    if seconds is None:
        return "?"
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
