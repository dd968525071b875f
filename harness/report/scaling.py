"""How time and memory grow with seq_len: log-log exponents with an interval, and where a variant first beats ``full``.

For each variant and facet (everything but seq_len held fixed), the successful rows give points
``(log N, log y)``; the least-squares slope is the exponent ``k`` in ``y ~ N^k`` (2.0 for a quadratic cost, 1.0
for a linear one), with a 95% confidence interval from the fit's residuals (Student's t, ``n - 2`` degrees of
freedom: none with two points). The fitted range and the number of points are kept with it, because an exponent
fitted on two short lengths says little.

Rows marked ``contended`` (the process did not get the CPU it asked for while timing) are not fitted; the table
counts them. Where batch (or heads) changes with seq_len inside one fit (a ``batch x seq_len = const`` grid), the
values are divided by it, so the exponent is per sequence (per head), and the table says so; any other case
parameter that changes with seq_len leaves the fit empty rather than mixing two things.

The crossover is the smallest seq_len at which the variant's median time is below ``full``'s on the same case.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.core.names import BASELINE
from harness.store.columns import CASE_COLUMNS, CASE_KEY, CASE_PARAMS

__all__ = ["CI_LEVEL", "LINEAR_FACTORS", "QUADRATIC_MEM_EXPONENT", "ZERO_SLOPE", "Fit", "crossover_seq_len",
           "fit_exponent", "scaling_table"]

_DEFAULT_FROM = {p.name: p.default_from for p in CASE_PARAMS if p.default_from}

#: A memory exponent at or above this reads as quadratic-like growth (flagged in the report).
QUADRATIC_MEM_EXPONENT = 1.5
#: Confidence level of the exponent's interval.
CI_LEVEL = 0.95
#: A fitted slope smaller than this in magnitude is a float64 rounding residue of an exact 0 (constant data).
ZERO_SLOPE = 1e-9
#: Case parameters that scale the cost linearly: when one changes with seq_len inside a fit, values are divided
#: by it (per sequence, per head).
LINEAR_FACTORS = ("batch", "heads")


@dataclass
class Fit:
    """A log-log least-squares fit ``y ~ c * N^exponent``.

    Args:
        exponent: fitted slope (NaN with fewer than two distinct lengths).
        ci_low / ci_high: its 95% confidence interval (NaN with fewer than three points).
        n_points: points used.
        seq_len_min / seq_len_max: the range fitted on.
        r2: coefficient of determination of the log-log line (NaN when undefined).
    """

    exponent: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    n_points: int = 0
    seq_len_min: float = math.nan
    seq_len_max: float = math.nan
    r2: float = math.nan

    @property
    def resolved(self) -> bool:
        """Whether the data pin the exponent's sign: an interval that excludes 0, or an exact fit."""
        if not math.isfinite(self.exponent):
            return False
        if math.isfinite(self.ci_low) and math.isfinite(self.ci_high):
            return self.ci_low > 0 or self.ci_high < 0 or (self.ci_low == self.ci_high == self.exponent)
        return False


@functools.lru_cache(maxsize=64)
def _t_quantile(df: int) -> float:
    from scipy.stats import t  # imported here: only a fit with at least three points needs it

    return float(t.ppf(0.5 + CI_LEVEL / 2, df))


def fit_exponent(seq_len: list[float] | np.ndarray | pd.Series, values: list[float] | np.ndarray | pd.Series) -> Fit:
    """Least-squares slope of ``log(values)`` against ``log(seq_len)``, ignoring non-positive or missing points.

    Args:
        seq_len: sequence lengths.
        values: the measured quantity at each length (time, memory...).

    Returns:
        A :class:`Fit`; its exponent is NaN when fewer than two distinct lengths remain, its interval NaN with
        fewer than three points. A slope below :data:`ZERO_SLOPE` in magnitude is returned as exactly 0.
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
    sxx = float(((lx - lx.mean()) ** 2).sum())
    slope = float(((lx - lx.mean()) * (ly - ly.mean())).sum() / sxx)
    intercept = float(ly.mean() - slope * lx.mean())
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    ss_res = float(((ly - (slope * lx + intercept)) ** 2).sum())
    if abs(slope) < ZERO_SLOPE:
        slope = 0.0
    fit.exponent = slope
    fit.r2 = 1.0 - ss_res / ss_tot if ss_tot > 1e-24 else math.nan
    if x.size >= 3:
        half = _t_quantile(x.size - 2) * math.sqrt(ss_res / (x.size - 2) / sxx)
        if half < ZERO_SLOPE:
            half = 0.0
        fit.ci_low, fit.ci_high = slope - half, slope + half
    return fit


def crossover_seq_len(frame: pd.DataFrame, variant: str, baseline: str = BASELINE) -> float:
    """The smallest seq_len at which ``variant``'s median time is below ``baseline``'s on the same case.

    Args:
        frame: rows of one facet (everything but seq_len fixed), all variants.
        variant: the variant to compare.
        baseline: the variant it must beat.

    Returns:
        That seq_len, or NaN when it never does (or there is nothing to compare).
    """
    ok = frame[(frame["status"] == "ok") & frame["time_ms_median"].notna()]
    key = CASE_KEY if CASE_KEY in ok.columns else "seq_len"
    mine = ok[ok["variant"] == variant].groupby(key)[["seq_len", "time_ms_median"]].median()
    base = ok[ok["variant"] == baseline].groupby(key)["time_ms_median"].median()
    both = mine.join(base.rename("b"), how="inner").dropna()
    wins = both[both["time_ms_median"] < both["b"]]
    return float(wins["seq_len"].min()) if len(wins) else math.nan


def _contended(rows: pd.DataFrame) -> pd.Series:
    if "contended" not in rows.columns:
        return pd.Series(False, index=rows.index)
    return rows["contended"].fillna(False).astype(bool)


def scaling_table(frame: pd.DataFrame, facet_columns: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Fitted time and memory exponents with intervals, and the crossover with ``full``, per variant and facet.

    Args:
        frame: normalized result rows (see :func:`harness.store.reader.normalize`).
        facet_columns: the columns that vary apart from seq_len (each combination is fitted separately).

    Returns:
        One row per (facet, variant), numbers in numeric columns: the facet values, ``variant``, for ``time`` and
        ``mem``: ``*_exponent``, ``*_exponent_ci_low``, ``*_exponent_ci_high``, ``*_r2``, ``*_fit_points``,
        ``*_fit_seq_len_min``, ``*_fit_seq_len_max``; ``fit_per`` (``call``, or ``sequence`` / ``head`` where
        batch / heads changed with seq_len and the values were divided by it); ``crossover_seq_len`` (blank where
        it never beats ``full``, or it is ``full``); ``rows``, ``rows_contended`` (not fitted) and ``rows_<status>``
        for every status present; ``note``.
    """
    facets = list(facet_columns)
    statuses = sorted(frame["status"].dropna().unique(), key=lambda s: (s != "ok", s)) if len(frame) else []
    rows = []
    groups = frame.groupby(facets, dropna=False, sort=True) if facets else [((), frame)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        base: dict = dict(zip(facets, key))
        for variant in sorted(sub["variant"].unique(), key=lambda v: (v != BASELINE, v)):
            vs = sub[sub["variant"] == variant]
            rows.append({**base, **_fit_row(vs, facets, statuses),
                         "crossover_seq_len": crossover_seq_len(sub, variant) if variant != BASELINE else math.nan})
            rows[-1]["variant"] = variant
    cols = facets + ["variant"]
    for q in ("time", "mem"):
        cols += [f"{q}_exponent", f"{q}_exponent_ci_low", f"{q}_exponent_ci_high", f"{q}_r2", f"{q}_fit_points",
                 f"{q}_fit_seq_len_min", f"{q}_fit_seq_len_max"]
    cols += ["fit_per", "crossover_seq_len", "rows", "rows_contended"] + [f"rows_{s}" for s in statuses] + ["note"]
    out = pd.DataFrame(rows, columns=cols)
    for c in ["crossover_seq_len", "time_fit_seq_len_min", "time_fit_seq_len_max", "mem_fit_seq_len_min",
              "mem_fit_seq_len_max"]:
        out[c] = pd.to_numeric(out[c], errors="coerce").round().astype("Int64")  # lengths: integers, blank if none
    for c in ["time_fit_points", "mem_fit_points", "rows", "rows_contended"] + [f"rows_{s}" for s in statuses]:
        out[c] = out[c].fillna(0).astype(int)
    return out


def _follows_its_default(ok: pd.DataFrame, col: str) -> bool:
    """True when ``col`` holds its default, another column's value, in every row (``q_len`` equal to seq_len,
    ``kv_heads`` to heads): it changes only because that column does, and is not a parameter of its own."""
    src = _DEFAULT_FROM.get(col)
    return src is not None and src in ok.columns and bool((ok[col] == ok[src]).all())


def _fit_row(vs: pd.DataFrame, facets: list[str], statuses: list[str]) -> dict:
    """The fit columns of one (facet, variant)."""
    contended = _contended(vs)
    ok = vs[(vs["status"] == "ok") & ~contended]
    notes: list[str] = []
    per = "call"
    scale = pd.Series(1.0, index=ok.index)
    changing = [c for c in CASE_COLUMNS if c not in facets and c != "seq_len" and c in ok.columns
                and ok[c].nunique(dropna=False) > 1 and not _follows_its_default(ok, c)]
    mixed = [c for c in changing if c not in LINEAR_FACTORS]
    for c in changing:
        if c in LINEAR_FACTORS:
            scale = scale * pd.to_numeric(ok[c], errors="coerce")
            per = {"batch": "sequence", "heads": "head"}[c] if per == "call" else f"{per} and {c}"
    if [c for c in changing if c in LINEAR_FACTORS]:
        notes.append(f"{' and '.join(c for c in changing if c in LINEAR_FACTORS)} changes with seq_len: time and "
                     f"memory fitted per {per} (divided by it)")
    if mixed:
        notes.append(f"{', '.join(mixed)} changes with seq_len: not fitted (the exponent would mix both)")
        t = m = Fit()
    else:
        t = fit_exponent(ok["seq_len"], ok["time_ms_median"] / scale)
        m = fit_exponent(ok["seq_len"], ok["peak_mem_bytes"] / scale)
    if math.isfinite(m.exponent) and m.exponent >= QUADRATIC_MEM_EXPONENT:
        notes.append(f"memory grows like N^{m.exponent:.1f} (quadratic-like, >= {QUADRATIC_MEM_EXPONENT})")
    if 0 < t.n_points < 3 or 0 < m.n_points < 3:
        notes.append("fewer than 3 lengths fitted: no interval")
    for name, f in (("time", t), ("memory", m)):
        if f.n_points >= 3 and math.isfinite(f.exponent) and not f.resolved:
            notes.append(f"{name} exponent not resolved (its interval spans 0)")
        elif f.resolved and f.exponent < 0:
            notes.append(f"{name} falls as N grows (fixed costs dominate, or the rows were disturbed)")
    n_cont = int((contended & (vs["status"] == "ok")).sum())
    if n_cont:
        notes.append(f"{n_cont} contended row(s) not fitted")
    row: dict = {"fit_per": per, "rows": len(vs), "rows_contended": n_cont, "note": "; ".join(notes)}
    for q, f in (("time", t), ("mem", m)):
        row.update({f"{q}_exponent": f.exponent, f"{q}_exponent_ci_low": f.ci_low,
                    f"{q}_exponent_ci_high": f.ci_high, f"{q}_r2": f.r2, f"{q}_fit_points": f.n_points,
                    f"{q}_fit_seq_len_min": f.seq_len_min, f"{q}_fit_seq_len_max": f.seq_len_max})
    counts = vs["status"].value_counts()
    row.update({f"rows_{s}": int(counts.get(s, 0)) for s in statuses})
    return row
