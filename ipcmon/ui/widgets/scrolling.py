"""Scrollable widgets whose content grows or shrinks without laying the whole screen out again."""

from __future__ import annotations

from textual.widget import Widget


def resize_in_place(widget: Widget) -> bool:
    """Bring the widget's scrollbars and scroll limits to its (new) virtual size, when that is all a change of its
    content needs; False when the screen must be laid out again (Textual's way: ``refresh(layout=True)``).

    Textual lays the whole screen out whenever a widget's virtual size changes, and whenever a DataTable loses a
    row, even when the widget's own size stays. The Overview's alerts come and go as the lesson demos step, and that
    was a screen-wide layout at almost every scan, a third of the dashboard's drawing time (issue 12: the demos'
    cost). The widget's region stays the same when its size does not follow its content (no ``auto`` width or
    height) and no scrollbar comes or goes; then only its scrollbars (their thumbs) and the widget itself need to be
    drawn again, as after a scroll.
    """
    if not widget.is_mounted or not widget.is_scrollable or not widget.container_size:
        return False  # not laid out yet: the first layout sizes it
    if widget.styles.auto_dimensions:
        return False  # its size follows its content
    if getattr(widget, "_ipcmon_resizing", False):
        # Called again from within: showing or hiding a scrollbar below asks the widget for a layout, which asks
        # here. That one is Textual's to do: a vertical scrollbar can make room for a horizontal one and back, which
        # only Textual's layout settles (its guard against scrollbars that flip-flop); taken here, it recursed
        # without end.
        return False
    shown = (widget.show_horizontal_scrollbar, widget.show_vertical_scrollbar)
    widget._ipcmon_resizing = True  # type: ignore[attr-defined]
    try:
        widget._refresh_scrollbars()
    finally:
        widget._ipcmon_resizing = False  # type: ignore[attr-defined]
    if (widget.show_horizontal_scrollbar, widget.show_vertical_scrollbar) != shown:
        return False  # a scrollbar comes or goes: the content region changes
    widget._scroll_update(widget.virtual_size)
    return True
