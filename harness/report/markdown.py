"""Markdown for report.md: numbers shortened alike everywhere, text from the data made inert, GitHub tables.

Everything report.md shows from the data (variant names, statuses, messages, run names, environment values,
paths) goes through :func:`md_text` or :func:`md_code`: a variant named ``<script>`` or a message holding
``![img](http://...)`` shows as text and loads nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["CONTENDED_MARK", "fmt_value", "markdown_table", "md_code", "md_text"]

#: Marks a contended row's time in report.md's tables.
CONTENDED_MARK = "†"
_MD_ESCAPES = {"\\": "\\\\", "`": "\\`", "*": "\\*", "[": "\\[", "]": "\\]", "|": "\\|", "~": "\\~",
               "&": "&amp;", "<": "&lt;", ">": "&gt;"}


def fmt_value(x: object, digits: int = 3) -> str:
    """A value as the tables show it: ``digits`` significant digits, ``1,234`` from a thousand, ``1.2e-03`` under
    0.01, ``0`` for zero, blank for NaN and None; anything not a float as ``str``."""
    if x is None or x is pd.NA or (isinstance(x, float | np.floating) and not math.isfinite(x)):
        return ""
    if isinstance(x, float | np.floating):
        x = float(x)
        if x == 0:
            return "0"
        if abs(x) >= 1000 or abs(x) < 0.01:
            return f"{x:.{digits - 1}e}" if abs(x) < 0.01 else f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def md_text(x: object) -> str:
    """Text from the data (a variant name, a message, a run name) made inert in markdown and HTML.

    ``<``, ``>`` and ``&`` become entities (no tag, comment or autolink survives), the characters that open
    links, images, code or emphasis and the table separator are backslash-escaped (``![img](http://...)`` shows
    as text and loads nothing), and line breaks become spaces (a row cannot end a table or start a block).

    Args:
        x: any value; numbers are shortened as in the tables.

    Returns:
        Markdown that renders as the text itself.
    """
    text = fmt_value(x).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return "".join(_MD_ESCAPES.get(ch, ch) for ch in text)


def md_code(x: object) -> str:
    """``x`` as inline code (shown verbatim, markup inert); text holding a backtick or a line break, which would
    end the code span, falls back to :func:`md_text`."""
    text = str(x)
    if "`" in text or "\n" in text or "\r" in text:
        return md_text(text)
    return "`" + text.replace("|", "\\|") + "`"


def markdown_table(frame: pd.DataFrame, markup: tuple[str, ...] = ()) -> str:
    """A GitHub markdown table of ``frame`` (numbers shortened, NaN blank, every cell escaped by :func:`md_text`).

    Args:
        frame: the rows.
        markup: columns whose cells are already markdown, built here from escaped parts (bold statuses, flags).

    Returns:
        The table, one line per row.
    """
    if frame.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(md_text(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    raw = [c in markup for c in cols]
    for row in frame.itertuples(index=False):
        cells = [(fmt_value(v).replace("\n", " ") if r else md_text(v)) for v, r in zip(row, raw)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
