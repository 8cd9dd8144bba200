"""The text tables align by terminal cells, not code points (report.format_table, safe.cell_width): a segment
named with wide characters (``漢``: two cells each) or combining ones (``e`` + U+0301: the accent takes none) keeps
its row in line with the others in `ipcmon leaks` and `ipcmon snapshot`, and a long one is cut at MAX_CELL cells.
The width is counted as Rich counts it (rich.cells.cell_len, what the dashboard draws by)."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

import posix_ipc
from rich.cells import cell_len

from ipcmon import report
from ipcmon.safe import cell_width, cut_cells
from tests.helpers import REPO, Cleanup, new_name

WIDE = "-漢字漢字漢字"
COMBINING = "-e\u0301e\u0301e\u0301"


def ipcmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipcmon", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=60)


def _orphans(cleanup: Cleanup) -> tuple[str, list[str]]:
    """Three orphaned segments under one fresh prefix: a plain name, a wide one, a combining one."""
    prefix = new_name("cells")
    names = [prefix + "-plain", prefix + WIDE, prefix + COMBINING]
    for name in names:
        posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=4096).close_fd()
    return prefix, names


def _column_after(line: str, name: str) -> int:
    """The cell at which the column after name starts on line (name's own cell, its width and the padding)."""
    start = line.index(name) + len(name)
    rest = line[start:]
    return cell_len(line[:start]) + len(rest) - len(rest.lstrip(" "))


def test_leaks_and_snapshot_rows_line_up_whatever_the_names_characters(cleanup: Cleanup) -> None:
    prefix, names = _orphans(cleanup)
    assert [cell_len(name) - len(name) for name in names] == [0, 6, -3]  # what the rows must make up for

    leaks = ipcmon("leaks", "--match", prefix + "*")
    assert leaks.returncode == 1, leaks.stderr
    header, *lines = leaks.stdout.splitlines()
    rows = {name: line for name in names for line in lines if f" {name} " in line}
    assert set(rows) == set(names), leaks.stdout
    assert {_column_after(row, name) for name, row in rows.items()} == {header.index("SIZE")}
    assert len({cell_len(row[:row.index(name)]) for name, row in rows.items()}) == 1  # NAME starts together too

    snapshot = ipcmon("snapshot", "--kind", "shm")
    assert snapshot.returncode == 0, snapshot.stderr
    table = snapshot.stdout.split("== POSIX shared memory and semaphores", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    header = table[0]
    rows = {name: line for name in names for line in table if line.startswith(name + " ")}
    assert set(rows) == set(names), snapshot.stdout
    assert {_column_after(row, name) for name, row in rows.items()} == {header.index("KIND")}


def test_a_long_wide_cell_is_cut_at_max_cell_cells() -> None:
    wide = "漢" * report.MAX_CELL  # twice MAX_CELL cells
    lines = report.format_table(("NAME", "NEXT"), [(wide, "x"), ("plain", "y"), ("e\u0301" * report.MAX_CELL, "z")])
    header, *rows = lines
    assert [cell_len(row[:-1]) for row in rows] == [header.index("NEXT")] * 3
    cut = rows[0].split("  ")[0]
    assert cut.endswith("…") and cell_len(cut.rstrip()) <= report.MAX_CELL
    assert rows[2].startswith("e\u0301" * report.MAX_CELL + "  ")  # MAX_CELL cells: not cut


# Scripts a name may be written in, and the glyphs ipcmon prints itself (▲ ✖ …): Latin with its accents, the
# combining diacriticals, Devanagari (spacing vowel signs take no cell), Hangul jamo and syllables, punctuation,
# box drawing and geometric shapes, dingbats, CJK punctuation and ideographs, fullwidth forms, emoji.
RANGES = ((0x20, 0x7F), (0xA0, 0x250), (0x300, 0x370), (0x900, 0x980), (0x1100, 0x1200), (0x2000, 0x2070),
          (0x2500, 0x2600), (0x2700, 0x27C0), (0x3000, 0x3040), (0x4E00, 0xA000), (0xAC00, 0xD7A4), (0xFF01, 0xFF61),
          (0x1F300, 0x1F3FB), (0x1F400, 0x1F650))


def test_cell_width_counts_as_rich_does() -> None:
    checked = [chr(code) for start, end in RANGES for code in range(start, end)
               if chr(code).isprintable() and unicodedata.category(chr(code)) != "Cn"]
    assert len(checked) > 30_000
    assert [char for char in checked if cell_width(char) != cell_len(char)] == []
    for text in ("/x" + WIDE, "/x" + COMBINING, "✖ bad", "▲ warn", "한국어", "क्षि", "😀 ok"):
        assert cell_width(text) == cell_len(text), text


def test_cut_cells_takes_exactly_the_cells_it_is_given() -> None:
    assert cut_cells("abc", 3) == "abc"
    assert cut_cells("abcd", 3) == "ab…"
    assert cut_cells("漢字漢字", 4) == "漢 …"  # the second 漢 would straddle the edge: a space instead
    assert cut_cells("漢字漢字", 5) == "漢字…"
    accented = "e\u0301" * 5
    assert cut_cells(accented, 5) == accented and cut_cells(accented, 3) == "e\u0301e\u0301…"
    for width in range(1, 12):
        assert cell_width(cut_cells("/x-漢字漢字漢字", width)) == min(width, cell_width("/x-漢字漢字漢字"))
