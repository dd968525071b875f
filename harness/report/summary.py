"""The report's figures per case: ratios to ``full`` on the same inputs, the summary table (``summary.csv``), the
rows that did not succeed, and the at-a-glance ranking of the exact variants.

The same case is the same :func:`harness.store.columns.case_key` (every case parameter, the mode included), so a
ratio never compares two different workloads.
"""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

from harness.core.names import BASELINE
from harness.report.facets import facet_panels
from harness.report.markdown import CONTENDED_MARK, fmt_value
from harness.store.columns import CASE_COLUMNS, CASE_KEY

__all__ = ["at_a_glance", "not_measured_table", "summary_table", "with_baseline_ratios"]

_SUMMARY_COLUMNS = (
    "time_ms_median", "time_ms_iqr", "time_ms_ci_low", "time_ms_ci_high", "n_runs", "contended", "cpu_share",
    "noisy", "speedup_vs_full", "speedup_ci_low", "speedup_ci_high", "peak_mem_bytes", "mem_ratio_vs_full",
    "err_rel_l2", "approx_err_rel_l2", "err_metric", "textbook_err_rel_l2", "err_ratio_vs_textbook",
    "grad_err_rel_l2", "reason",
)


def with_baseline_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``speedup_vs_full`` and ``mem_ratio_vs_full``: ratios to ``full`` on the same case.

    ``full`` is looked up in the same run first, then (for runs that lack it) on the same device name in the
    other runs given. A ``speedup_vs_full`` the row recorded itself (paired per-round figures of interleaved
    timing) is kept; the ratio of medians fills the rest. Ratios are NaN where the row or ``full`` did not
    succeed. A ``mem_ratio_vs_full`` recorded with the row is kept likewise. Calling it again changes nothing.

    Args:
        frame: normalized rows.

    Returns:
        A copy with the two columns added.
    """
    df = frame.copy()
    key = [CASE_KEY]
    base = df[(df["variant"] == BASELINE) & (df["status"] == "ok")]
    by_run = base.groupby(key + ["run"], dropna=False)[["time_ms_median", "peak_mem_bytes"]].median()
    by_dev = base.groupby(key + ["device_name"], dropna=False)[["time_ms_median", "peak_mem_bytes"]].median()
    t_run = df[key + ["run"]].join(by_run.add_suffix("_full"), on=key + ["run"])
    t_dev = df[key + ["device_name"]].join(by_dev.add_suffix("_full"), on=key + ["device_name"])
    t_base = t_run["time_ms_median_full"].fillna(t_dev["time_ms_median_full"])
    m_base = t_run["peak_mem_bytes_full"].fillna(t_dev["peak_mem_bytes_full"])
    ok = df["status"] == "ok"
    computed = (t_base / df["time_ms_median"]).where(ok)
    if "speedup_vs_full" in df.columns:
        recorded = pd.to_numeric(df["speedup_vs_full"], errors="coerce")
        computed = recorded.where(recorded.notna() & ok, computed)
    df["speedup_vs_full"] = computed
    mem = (df["peak_mem_bytes"] / m_base).where(ok & (m_base > 0))
    if "mem_ratio_vs_full" in df.columns:
        recorded = pd.to_numeric(df["mem_ratio_vs_full"], errors="coerce")
        mem = recorded.where(recorded.notna() & ok, mem)
    df["mem_ratio_vs_full"] = mem
    return df


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case and variant: status, median time (and IQR), speedup over ``full``, peak memory, its ratio, error.

    Args:
        frame: normalized rows (see :func:`harness.store.reader.normalize`).

    Returns:
        One row per (run, case, variant), sorted by case then variant (``full`` first).
    """
    df = with_baseline_ratios(frame)  # idempotent: ratios already there are kept
    lead = ["run", "device_name"] + list(CASE_COLUMNS) + ["variant", "status"]
    cols = lead + [c for c in _SUMMARY_COLUMNS if c in df.columns]
    out = df[cols].copy()
    out["_v"] = out["variant"].map(lambda v: (v != BASELINE, v))
    out = out.sort_values(["run"] + [c for c in CASE_COLUMNS if c != "seq_len"] + ["seq_len", "_v"],
                          na_position="first", kind="stable")
    return out.drop(columns="_v").reset_index(drop=True)


def not_measured_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that did not succeed, one line per variant and status: the lengths hit, a count and the reason
    (the most frequent message, with how many other messages there were)."""
    bad = frame[frame["status"] != "ok"]
    if bad.empty:
        return pd.DataFrame(columns=["variant", "status", "seq_len", "count", "reason"])
    rows = []
    for (variant, status), sub in bad.groupby(["variant", "status"], dropna=False):
        lens = ", ".join(str(int(n)) for n in sorted(sub["seq_len"].dropna().unique()))
        reasons = sub["reason"].astype(str).value_counts()
        reason = textwrap.shorten(str(reasons.index[0]), 160, placeholder=" …") if len(reasons) else ""
        if len(reasons) > 1:
            reason += f" (and {len(reasons) - 1} other message(s): see summary.csv)"
        rows.append(dict(variant=variant, status=status, seq_len=lens, count=len(sub), reason=reason))
    out = pd.DataFrame(rows)
    out["_v"] = out["variant"].map(lambda v: (v != BASELINE, v))
    return out.sort_values(["_v", "status"]).drop(columns="_v").reset_index(drop=True)


def _speed_text(row: pd.Series | dict) -> str:
    text = f"{row['variant']} {fmt_value(row['time_ms_median'])} ms"
    sp = row.get("speedup_vs_full", math.nan)
    if row["variant"] != BASELINE and isinstance(sp, float | np.floating) and math.isfinite(sp):
        sp = float(sp)
        text += (f" ({sp:.2g}x faster than {BASELINE})" if sp >= 1 else f" ({1 / sp:.2g}x slower than {BASELINE})")
    flag = row.get("contended")
    if isinstance(flag, bool | np.bool_) and bool(flag):
        text += f" {CONTENDED_MARK}"
    return text


def _lean_text(at: pd.DataFrame) -> str | None:
    """The exact variant with the least peak memory among ``at`` (one length of a panel), with its ratio to
    ``full``'s; None when no row recorded memory."""
    mem = at[at["peak_mem_bytes"].notna()]
    if mem.empty:
        return None
    lean = mem.loc[mem["peak_mem_bytes"].idxmin()]
    text = f"{lean['variant']} {fmt_value(lean['peak_mem_bytes'] / 2**20)} MiB"
    ratio = lean.get("mem_ratio_vs_full", math.nan)
    if lean["variant"] != BASELINE and isinstance(ratio, float | np.floating) and math.isfinite(ratio):
        text += f" ({float(ratio):.2g}x {BASELINE}'s)"
    return text


def _glance_row(facets: list[str], key: tuple, sub: pd.DataFrame, approx: set[str] | frozenset[str]
                ) -> dict | None:
    """One panel's row of :func:`at_a_glance`; None when no exact variant succeeded there."""
    ok = sub[(sub["status"] == "ok") & sub["time_ms_median"].notna()]
    exact = ok[~ok["variant"].isin(approx)]
    if exact.empty:
        return None
    n = exact["seq_len"].max()
    at = exact[exact["seq_len"] == n]
    rec = {c.replace("pattern_label", "pattern"): fmt_value(v) for c, v in zip(facets, key)}
    rec["N"] = int(n)
    rec["fastest exact"] = _speed_text(at.loc[at["time_ms_median"].idxmin()])
    lean = _lean_text(at)
    if lean is not None:
        rec["least memory (exact)"] = lean
    apx = ok[(ok["seq_len"] == n) & ok["variant"].isin(approx)].sort_values("time_ms_median")
    if len(apx):
        rec["approximations (error vs exact)"] = "; ".join(
            f"{_speed_text(r)}, err {float(r['err_metric']):.2g}" if math.isfinite(float(r["err_metric"]))
            else _speed_text(r) for _, r in apx.iterrows())
    failed = sub[(sub["seq_len"] == n) & (sub["status"] != "ok")]
    if len(failed):
        rec["did not run there"] = ", ".join(f"{v} ({s})" for v, s in zip(failed["variant"], failed["status"]))
    return rec


def at_a_glance(summary: pd.DataFrame, facets: list[str], approx: set[str] | frozenset[str] = frozenset()
                ) -> pd.DataFrame:
    """Per panel, at the longest length with a successful exact row: the fastest and the leanest *exact* variant
    (with the speedup and memory ratio against ``full`` on the same inputs), the approximations apart with their
    error (they compute something else, so they are not ranked with the exact ones), and what did not run there.

    Args:
        summary: output of :func:`summary_table`.
        facets: facet columns (the panels of the plots).
        approx: the approximate variants (:func:`harness.report.rows.approximate_variants`).

    Returns:
        One row per panel, in the plots' panel order.
    """
    rows = [row for key, sub in facet_panels(summary, facets)
            if (row := _glance_row(facets, key, sub, approx)) is not None]
    out = pd.DataFrame(rows)
    return out.fillna("") if len(out) else out
