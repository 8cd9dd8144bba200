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
