"""How time and memory grow with seq_len: log-log least-squares exponents, and where a variant first beats ``full``.

For each variant and facet (everything but seq_len held fixed), the successful rows give points
``(log N, log y)``; the least-squares slope is the exponent ``k`` in ``y ~ N^k`` (2.0 for a quadratic cost, 1.0
for a linear one). The fitted range and the number of points are kept with it, because an exponent fitted on
two short lengths says little. The crossover is the smallest seq_len at which the variant's median time is
below ``full``'s on the same inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The variant every speedup and memory ratio is relative to.
BASELINE = "full"
#: A memory exponent at or above this reads as quadratic-like growth (flagged in the report).
QUADRATIC_MEM_EXPONENT = 1.5


@dataclass
class Fit:
    """A log-log least-squares fit ``y ~ c * N^exponent``.

    Args:
        exponent: fitted slope (NaN with fewer than two distinct lengths).
        n_points: points used.
        seq_len_min / seq_len_max: the range fitted on.
        r2: coefficient of determination of the log-log line (NaN when undefined).
    """

    exponent: float = math.nan
    n_points: int = 0
    seq_len_min: float = math.nan
    seq_len_max: float = math.nan
    r2: float = math.nan


def fit_exponent(seq_len: list[float] | np.ndarray | pd.Series, values: list[float] | np.ndarray | pd.Series) -> Fit:
    """Least-squares slope of ``log(values)`` against ``log(seq_len)``, ignoring non-positive or missing points.

    Args:
        seq_len: sequence lengths.
        values: the measured quantity at each length (time, memory...).

    Returns:
        A :class:`Fit`; its exponent is NaN when fewer than two distinct lengths remain.
    """
    x = np.asarray(seq_len, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"seq_len and values must have the same length (got {x.size} and {y.size})")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[keep], y[keep]
    fit = Fit(n_points=int(x.size))
    if x.size == 0:
        return fit
    fit.seq_len_min, fit.seq_len_max = float(x.min()), float(x.max())
    if np.unique(x).size < 2:
        return fit
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    fit.exponent = float(slope)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    ss_res = float(((ly - (slope * lx + intercept)) ** 2).sum())
    fit.r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return fit


def crossover_seq_len(frame: pd.DataFrame, variant: str, baseline: str = BASELINE) -> float:
    """The smallest seq_len at which ``variant``'s median time is below ``baseline``'s on the same inputs.

    Args:
        frame: rows of one facet (everything but seq_len fixed), all variants.
        variant: the variant to compare.
        baseline: the variant it must beat.

    Returns:
        That seq_len, or NaN when it never does (or there is nothing to compare).
    """
    ok = frame[(frame["status"] == "ok") & frame["time_ms_median"].notna()]
    mine = ok[ok["variant"] == variant].groupby("seq_len")["time_ms_median"].median()
    base = ok[ok["variant"] == baseline].groupby("seq_len")["time_ms_median"].median()
    both = pd.concat([mine.rename("v"), base.rename("b")], axis=1).dropna().sort_index()
    wins = both[both["v"] < both["b"]]
    return float(wins.index.min()) if len(wins) else math.nan


def scaling_table(frame: pd.DataFrame, facet_columns: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Fitted time and memory exponents, and the crossover with ``full``, per variant and facet.

    Args:
        frame: normalized result rows (see :func:`harness.results_io.normalize`).
        facet_columns: the columns that vary apart from seq_len (each combination is fitted separately).

    Returns:
        One row per (facet, variant): the facet values, ``variant``, ``time_exponent``, ``time_fit_points``,
        ``time_fit_range``, ``time_r2``, ``mem_exponent``, ``mem_fit_points``, ``mem_fit_range``, ``mem_r2``,
        ``crossover_seq_len`` (NaN where it never beats ``full``, or it is ``full``), ``statuses`` (counts of
        each status) and ``note`` (e.g. memory growing quadratic-like).
    """
    facets = list(facet_columns)
    rows = []
    groups = frame.groupby(facets, dropna=False, sort=True) if facets else [((), frame)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        base: dict = dict(zip(facets, key))
        for variant in sorted(sub["variant"].unique(), key=lambda v: (v != BASELINE, v)):
            vs = sub[sub["variant"] == variant]
            ok = vs[vs["status"] == "ok"]
            t = fit_exponent(ok["seq_len"], ok["time_ms_median"])
            m = fit_exponent(ok["seq_len"], ok["peak_mem_bytes"])
            counts = vs["status"].value_counts()
            row = dict(base)
            row.update(
                variant=variant,
                time_exponent=t.exponent, time_fit_points=t.n_points, time_fit_range=_range(t), time_r2=t.r2,
                mem_exponent=m.exponent, mem_fit_points=m.n_points, mem_fit_range=_range(m), mem_r2=m.r2,
                crossover_seq_len=crossover_seq_len(sub, variant) if variant != BASELINE else math.nan,
                statuses=", ".join(f"{s}={int(c)}" for s, c in sorted(counts.items())),
                note=_note(t, m, vs),
            )
            rows.append(row)
    cols = facets + ["variant", "time_exponent", "time_fit_points", "time_fit_range", "time_r2", "mem_exponent",
                     "mem_fit_points", "mem_fit_range", "mem_r2", "crossover_seq_len", "statuses", "note"]
    out = pd.DataFrame(rows, columns=cols)
    out["crossover_seq_len"] = out["crossover_seq_len"].astype("Int64")  # a length: integer, blank where none
    return out


def _range(fit: Fit) -> str:
    if not math.isfinite(fit.seq_len_min):
        return ""
    return f"{int(fit.seq_len_min)}-{int(fit.seq_len_max)}"


def _note(t: Fit, m: Fit, rows: pd.DataFrame) -> str:
    notes = []
    if math.isfinite(m.exponent) and m.exponent >= QUADRATIC_MEM_EXPONENT:
        notes.append(f"memory grows like N^{m.exponent:.1f} (quadratic-like, >= {QUADRATIC_MEM_EXPONENT})")
    if 0 < t.n_points < 3 or 0 < m.n_points < 3:
        notes.append("fewer than 3 lengths fitted")
    for col in ("batch", "heads"):
        ok = rows[rows["status"] == "ok"]
        if col in ok.columns and ok[col].nunique() > 1:
            notes.append(f"{col} changes with seq_len (exponent mixes both)")
    return "; ".join(notes)

