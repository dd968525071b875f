"""Panels: which columns split a report's figures and tables into panels, the panels' order and their titles.

A panel is one value of every facet column; the figures draw one axes per panel and report.md's wide tables have
one table per panel, in the same order (:func:`facet_sort_key`: pattern kinds dense to sparse, numbers as numbers).
No matplotlib here: report.md's tables use these too.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

from harness.store.columns import CASE_COLUMNS, CASE_KEY, CASE_PARAMS, value_text

__all__ = ["FACET_CANDIDATES", "facet_columns", "facet_panels", "facet_sort_key", "facet_title", "panel_title"]

#: Columns that may split panels: every case parameter but seq_len (from :data:`harness.store.columns.CASE_COLUMNS`,
#: so a new case parameter splits panels with no change here), and the device's name beside the device.
FACET_CANDIDATES: tuple[str, ...] = tuple(
    c for col in CASE_COLUMNS if col != "seq_len" for c in ((col, "device_name") if col == "device" else (col,)))
_FACET_NAMES = {"pattern_label": "pattern", "device_name": "device name"}
#: Columns a panel's title may add besides the facets (the device's name is said by the device).
_TITLE_EXTRAS = tuple(c for c in FACET_CANDIDATES if c != "device_name")
#: A parameter whose default is another's value (``q_len`` -> ``seq_len``, ``kv_heads`` -> ``heads``).
_DEFAULT_FROM = {p.name: p.default_from for p in CASE_PARAMS if p.default_from}
#: Panel order of pattern kinds: dense first, then sparser (a kind not listed sorts after them, by name).
_PATTERN_ORDER = ("full", "causal", "window", "window_sym", "block_sparse", "block_sparse_causal")


def facet_columns(frame: pd.DataFrame) -> list[str]:
    """The columns to facet panels by: those that vary in the data, other than seq_len and what seq_len fixes.

    A column that changes only together with seq_len (e.g. batch in a ``batch x seq_len = const`` grid) is not a
    facet: splitting by it would leave one point per panel. ``run`` is a facet only when runs repeat a case.

    Args:
        frame: normalized result rows.

    Returns:
        Column names, in a fixed order.
    """
    candidates = [c for c in FACET_CANDIDATES if c in frame.columns]
    df = frame.replace({c: {"": np.nan} for c in candidates})
    out: list[str] = []
    for col in candidates:
        if df[col].nunique() < 2:
            continue
        # a column fixed by seq_len and the facets already chosen (batch in a batch x seq_len = const grid, the
        # device name of a device) would add panels with nothing new in them
        key = out + ["seq_len"]
        if df.dropna(subset=[col]).groupby(key, dropna=False)[col].nunique().max() <= 1:
            continue
        out.append(col)
    if "run" in frame.columns and frame["run"].nunique() > 1:
        key = [CASE_KEY, "variant"] if CASE_KEY in frame.columns else ["variant", "seq_len"]
        if frame.groupby(key, dropna=False)["run"].nunique().max() > 1:
            out.append("run")
    return out


def facet_title(facets: list[str], values: tuple, width: int = 46) -> str:
    """Panel title such as ``heads=8, pattern=causal``, wrapped to ``width`` characters per line."""
    parts = []
    for col, val in zip(facets, values):
        if isinstance(val, float) and val.is_integer():
            val = int(val)
        parts.append(f"{_FACET_NAMES.get(col, col)}={val}")
    return "\n".join(textwrap.wrap(", ".join(parts), width, break_long_words=False)) if parts else ""


def panel_title(frame: pd.DataFrame, facets: list[str], key: tuple, sub: pd.DataFrame, width: int = 46) -> str:
    """The facet values, plus columns that vary across the data but are fixed within this panel (the dtype of a
    device's panel, say), so a panel's title says everything that sets it apart."""
    cols, vals = list(facets), list(key)
    for c in _TITLE_EXTRAS:
        if c in facets or c not in frame.columns or frame[c].nunique() < 2:
            continue
        if sub[c].nunique() == 1 and not _at_default(sub, c):
            cols.append(c)
            vals.append(sub[c].iloc[0])
    return facet_title(cols, tuple(vals), width)


def _at_default(sub: pd.DataFrame, col: str) -> bool:
    """A parameter that only repeats another in these rows (``q_len`` = ``seq_len``, ``kv_heads`` = ``heads``)."""
    src = _DEFAULT_FROM.get(col)
    if src is None or src not in sub.columns:
        return False
    return bool((sub[col].map(value_text) == sub[src].map(value_text)).all())


def _sort_value(col: str, value: object) -> tuple:
    if col in ("pattern", "pattern_label"):
        kind = str(value).split("(")[0]
        return (0, _PATTERN_ORDER.index(kind) if kind in _PATTERN_ORDER else len(_PATTERN_ORDER), str(value))
    if isinstance(value, float) and math.isnan(value):
        return (1, 0, "")
    return (0, value if isinstance(value, int | float | np.integer | np.floating) else 0, str(value))


def facet_sort_key(facets: list[str], key: tuple) -> tuple:
    """Sort key of a panel (its facet values): pattern kinds dense to sparse, numbers as numbers, the rest by name.
    The plots and report.md's tables order their panels by it."""
    return tuple(_sort_value(c, v) for c, v in zip(facets, key))


def facet_panels(frame: pd.DataFrame, facets: list[str]) -> list[tuple[tuple, pd.DataFrame]]:
    """``(facet values, rows)`` of each panel, in :func:`facet_sort_key` order (one panel when no facets)."""
    if not facets:
        return [((), frame)]
    out = []
    for key, sub in frame.groupby(facets, dropna=False, sort=True):
        out.append((key if isinstance(key, tuple) else (key,), sub))
    out.sort(key=lambda p: facet_sort_key(facets, p[0]))
    return out
