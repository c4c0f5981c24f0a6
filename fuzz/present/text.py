"""How kfuzz writes things for people: ratios as percentages, numbers,
durations and tables (plain text, Markdown, HTML).

One place for each format, so that the run summary, the corpus commands, replay, JUnit, the
report and the pytest plugin all say the same thing the same way. Imports nothing of the
engine: the commands that start without torch use it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any


def percent(ratio: Any) -> str:
    """A ratio as a percentage with four significant digits ("0.5%", "33.33%").

    Args:
        ratio: a number, or None.

    Returns:
        The percentage, or "-" for None.

    Raises:
        TypeError, ValueError: when `ratio` is not None and not a number.
    """
    return "-" if ratio is None else f"{100 * float(ratio):.4g}%"


def number(value: Any, spec: str) -> str:
    """A metric formatted with a format spec (".3g"), for a table cell.

    Args:
        value: a number, a numeric string ("inf" as stored), None, or anything else.
        spec: a format spec for floats.

    Returns:
        The formatted number; "-" for None; str(value) for what is not a number.
    """
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return "-" if value is None else str(value)


def seconds(value: float) -> str:
    """A duration as "0.25 s", "1.5 s", "60 s": all significant digits below a second, one
    decimal at most above.

    Args:
        value: seconds, >= 0.

    Returns:
        The duration with its unit.
    """
    text = f"{value:g}" if value < 1 else f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text} s"


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Plain-text, left-aligned columns under `headers`, two spaces apart.

    Args:
        rows: the rows' cells (str() is applied).
        headers: the column names.

    Returns:
        The lines, trailing spaces stripped, without a final newline.
    """
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table.

    Args:
        headers: the column names.
        rows: the rows' cells; "|" is escaped and newlines become spaces.

    Returns:
        The table's lines, without a final newline.
    """

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table, every cell escaped.

    Args:
        headers: the column names.
        rows: the rows' cells.

    Returns:
        One <table> element with a <thead> and a <tbody>.
    """
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
