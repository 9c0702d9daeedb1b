"""Terminal tables that fit: the width to fit (``COLUMNS``, else the terminal's, else 120) and the long
format a wide table falls back to (one row per key x column; the last column wrapped if still too wide).

Only the rendering changes: the numbers, their order and their text are those of the wide table."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

DEFAULT_WIDTH = 120


def terminal_width() -> int:
    """``COLUMNS`` when set, else the terminal's width, else :data:`DEFAULT_WIDTH` (a pipe, a file)."""
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


def widest_line(text: str) -> int:
    return max((len(line) for line in text.split("\n")), default=0)


def wrap(text: str, width: int | None) -> str:
    """A paragraph wrapped to ``width`` (None: as it is)."""
    return text if width is None or len(text) <= width else textwrap.fill(text, width)


def long_table(heads: Sequence[str], rows: Sequence[Sequence[str]], keys: int, *, column: str = "metric",
               value: str = "value", width: int | None = None) -> str:
    """A wide table (``keys`` leading key columns, then one column per metric) as one row per key x metric:
    ``key... | metric | value``; the value column is wrapped to fit ``width`` where it would not."""
    from tabulate import tabulate

    out_heads = [*heads[:keys], column, value]
    out_rows = [[*row[:keys], head, cell] for row in rows for head, cell in zip(heads[keys:], row[keys:], strict=True)
                if cell not in ("", "–")]
    if not out_rows:
        return ""
    text = tabulate(out_rows, headers=out_heads, disable_numparse=True)
    if width is not None and widest_line(text) > width:
        used = sum(max(len(str(r[i])) for r in [out_heads, *out_rows]) + 2 for i in range(keys + 1))
        room = max(24, width - used)
        text = tabulate(out_rows, headers=out_heads, disable_numparse=True,
                        maxcolwidths=[None] * (keys + 1) + [room])
    return text
