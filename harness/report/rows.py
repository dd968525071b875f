"""How the report reads a run's rows, in its tables and its figures alike: the order variants are listed in
(``full`` first), which variants are approximations, which rows were contended, and what a row without the value
shown says.

No matplotlib here: report.md's tables use these too.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.core.names import BASELINE

__all__ = ["APPROX_ERR_THRESHOLD", "NO_VALUE", "approximate_variants", "contended_mask", "variant_order"]

#: ``ok`` rows that lack the value shown (a speedup with no ``full`` to compare, say).
NO_VALUE = "ok, no value"
#: An approximation: a variant whose rows say ``exact=False`` or, in runs without that column, whose median
#: ``err_rel_l2`` exceeds this (exact kernels are within ~1e-2 even in bf16; approximations are off by 10-100%).
APPROX_ERR_THRESHOLD = 0.05


def variant_order(variants) -> list[str]:
    """Variant names with ``full`` first, then by name."""
    return sorted({str(v) for v in variants}, key=lambda v: (v != BASELINE, v))


def _truthy(value: object) -> bool | None:
    """A flag as the CSV may hold it (``True``, ``1.0``, ``"yes"``...); None when blank or unreadable."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes"):
        return True
    if text in ("false", "0", "0.0", "no"):
        return False
    return None


def approximate_variants(frame: pd.DataFrame) -> set[str]:
    """The variants of ``frame`` that are approximations.

    A variant whose rows carry ``exact`` (the sweep writes the variant's declaration) is approximate when any says
    False. Rows without it (older runs, pytest-benchmark files) fall back to the error: approximate when the median
    ``err_rel_l2`` of its ``ok`` rows exceeds :data:`APPROX_ERR_THRESHOLD`.

    Args:
        frame: normalized result rows.

    Returns:
        Variant names.
    """
    out: set[str] = set()
    has_exact = "exact" in frame.columns
    for variant, sub in frame.groupby("variant", sort=False):
        declared = [x for x in (sub["exact"].map(_truthy) if has_exact else []) if x is not None]
        if declared:
            if not all(declared):
                out.add(str(variant))
            continue
        ok = sub[sub["status"] == "ok"]
        err = pd.to_numeric(ok["err_rel_l2"], errors="coerce").dropna() if "err_rel_l2" in ok else pd.Series([])
        if len(err) and float(err.median()) > APPROX_ERR_THRESHOLD:
            out.add(str(variant))
    return out


def contended_mask(df: pd.DataFrame) -> pd.Series:
    """Per row: timed while other work took the cores (the ``contended`` column; False where it is missing)."""
    if "contended" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["contended"].map(lambda x: bool(_truthy(x))).astype(bool)
