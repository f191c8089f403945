"""Plain aligned text tables for the terminal: columns padded with spaces, no borders.

Cells are strings already (see `nbflow.cli.formatting`); a table only lays them out.
Widths count East Asian wide characters as two columns so names in any script line up.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

#: spaces between two columns.
GAP = "  "
#: marks a cell cut to its column's maximum width.
ELLIPSIS = "..."


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide and full-width characters count two, combining marks none."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def clip(text: str, max_width: int | None) -> str:
    """`text` on one line, cut to `max_width` columns with a trailing "..." when longer."""
    text = " ".join(text.split()) if ("\n" in text or "\r" in text or "\t" in text) else text
    if max_width is None or display_width(text) <= max_width:
        return text
    keep = max(max_width - len(ELLIPSIS), 0)
    out, width = [], 0
    for char in text:
        w = display_width(char)
        if width + w > keep:
            break
        out.append(char)
        width += w
    return "".join(out) + ELLIPSIS


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
                 right: Iterable[int] = (), max_widths: dict[int, int] | None = None) -> str:
    """`rows` under `headers`, each column as wide as its widest cell, without trailing spaces.

    right: indexes of right-aligned columns (numbers). max_widths: column index -> the most
    columns a cell may take before it is clipped. Every row must have one cell per header.
    """
    right_aligned = set(right)
    limits = max_widths or {}
    table = [[clip(str(h), None) for h in headers]]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"A table row has {len(row)} cells but there are {len(headers)} "
                             f"headers {list(headers)}: {list(row)!r}")
        table.append([clip(str(cell), limits.get(i)) for i, cell in enumerate(row)])
    widths = [max(display_width(line[i]) for line in table) for i in range(len(headers))]
    lines = []
    for line in table:
        cells = [_pad(cell, widths[i], i in right_aligned) for i, cell in enumerate(line)]
        lines.append(GAP.join(cells).rstrip())
    return "\n".join(lines)


def format_fields(fields: Sequence[tuple[str, str]]) -> str:
    """`label: value` lines with the values aligned, for one record (e.g. a flow run).

    A value of several lines (a traceback) continues under the first, indented alike.
    """
    if not fields:
        return ""
    width = max(display_width(label) for label, _ in fields) + 1
    indent = " " * (width + 1)
    lines = []
    for label, value in fields:
        first, *rest = value.splitlines() or [""]
        lines.append((_pad(f"{label}:", width, False) + " " + first).rstrip())
        lines.extend((indent + line).rstrip() for line in rest)
    return "\n".join(lines)
