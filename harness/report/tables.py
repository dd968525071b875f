"""report.md's wide tables: time, memory and error per panel (rows: seq_len, columns: variants), the scaling table
with its exponents and intervals, and each run's environment.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.core.names import BASELINE
from harness.report.facets import facet_panels, facet_sort_key
from harness.report.markdown import CONTENDED_MARK, fmt_value, markdown_table, md_code, md_text
from harness.report.rows import NO_VALUE, variant_order
from harness.report.scaling import QUADRATIC_MEM_EXPONENT
from harness.store.columns import CASE_COLUMNS
from harness.store.reader import RunData

__all__ = ["environment_markdown", "pivot_markdown", "scaling_markdown"]

#: What a pivot table of each kind shows: (value column, ratio column, unit, divisor, ratio format).
_PIVOTS = {
    "time": ("time_ms_median", "speedup_vs_full", " ms", 1.0, "{:.2f}x"),
    "memory": ("peak_mem_bytes", "mem_ratio_vs_full", " MiB", 2**20, "{:.2f}x"),
    "error": ("err_metric", "err_ratio_vs_textbook", "", 1.0, "{:.2f}x textbook"),
}


# ---------------------------------------------------------------------------------------------- pivots
def _finite(x: object) -> bool:
    return isinstance(x, float | np.floating) and math.isfinite(x)


def _cell(row: pd.Series | dict, main: str, ratio: str | None, unit: str = "", scale: float = 1.0,
          ratio_fmt: str = "{:.2f}x") -> str:
    """One cell: the value, its ratio (and the ratio's interval) in brackets, † when contended; the status in
    bold when the row did not succeed."""
    if row["status"] != "ok":
        return f"**{md_text(row['status'])}**"
    v = row.get(main, math.nan)
    if not (isinstance(v, float | int | np.floating) and math.isfinite(v)):
        return NO_VALUE
    text = f"{fmt_value(float(v) / scale)}{unit}"
    if ratio is not None:
        r = row.get(ratio, math.nan)
        if _finite(r):
            text += f" ({ratio_fmt.format(float(r))}"
            lo, hi = row.get(f"{ratio[: -len('_vs_full')]}_ci_low"), row.get(f"{ratio[: -len('_vs_full')]}_ci_high")
            if ratio.endswith("_vs_full") and all(_finite(x) for x in (lo, hi)):
                text += f" [{float(lo):.2f}, {float(hi):.2f}]"
            text += ")"
    flag = row.get("contended")
    if main == "time_ms_median" and isinstance(flag, bool | np.bool_) and bool(flag):
        text += f" {CONTENDED_MARK}"
    return text


def _pivot(sub: pd.DataFrame, facets: list[str], variants: list[str], kind: str) -> pd.DataFrame:
    """One panel's table: a row per seq_len (with batch and heads where they vary), a column per variant with a
    value."""
    rows = []
    extra_cols = [c for c in ("batch", "heads") if c not in facets and sub[c].nunique() > 1]
    cells: dict[tuple, list[str]] = {}
    for x in sub.to_dict("records"):  # plain dicts: a wide frame's row-by-row filtering is slow
        cells.setdefault((x["seq_len"], x["variant"]), []).append(_cell(x, *_PIVOTS[kind]))
    for n, at_n in sub.groupby("seq_len", sort=True):
        rec = {"seq_len": int(n)}
        for c in extra_cols:
            rec[c] = ", ".join(fmt_value(v) for v in sorted(at_n[c].dropna().unique()))
        for v in variants:
            rec[v] = "; ".join(cells.get((n, v), []))
        rows.append(rec)
    table = pd.DataFrame(rows)
    return table[[c for c in table.columns if c in ("seq_len", *extra_cols) or (table[c] != "").any()]]


def pivot_markdown(summary: pd.DataFrame, facets: list[str], kind: str) -> str:
    """Wide markdown tables (rows: seq_len, columns: variants) of one quantity, one table per facet.

    Args:
        summary: output of :func:`harness.report.summary.summary_table`.
        facets: facet columns.
        kind: ``time`` (ms, with speedup over full), ``memory`` (MiB, with ratio to full) or ``error``.

    Returns:
        Markdown text.
    """
    if kind not in _PIVOTS:
        raise KeyError(kind)
    variants = variant_order(summary["variant"])
    parts = []
    for key, sub in facet_panels(summary, facets):
        key = key if isinstance(key, tuple) else (key,)
        if facets:
            label = ", ".join(f"{c.replace('pattern_label', 'pattern')}={fmt_value(v)}" for c, v in zip(facets, key))
            parts.append(f"**{md_text(label)}**\n")
        parts.append(markdown_table(_pivot(sub, facets, variants, kind), markup=tuple(str(v) for v in variants)))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- scaling
def _exponent_cell(row: pd.Series, q: str) -> str:
    k = row[f"{q}_exponent"]
    if not (isinstance(k, float | int | np.floating) and math.isfinite(k)):
        return ""
    lo, hi = row[f"{q}_exponent_ci_low"], row[f"{q}_exponent_ci_high"]
    text = _fixed(k)
    if math.isfinite(lo) and math.isfinite(hi):
        text += f" [{_fixed(lo)}, {_fixed(hi)}]"
        if lo <= 0 <= hi and not lo == hi == 0:
            text = f"~0 ({text})"
    if q == "mem" and k >= QUADRATIC_MEM_EXPONENT:
        text = f"**{text}** ⚠"
    return text


def _fixed(x: float) -> str:
    """An exponent with two decimals; a value that rounds to zero prints ``0`` (never ``-0.00`` or ``8.66e-16``)."""
    return "0" if abs(x) < 0.005 else f"{x:.2f}"


def scaling_markdown(scaling: pd.DataFrame) -> str:
    """The scaling table as markdown: exponents with their intervals, ranges and row counts as short text."""
    if scaling.empty:
        return "_(no rows)_\n"
    facets = [c for c in scaling.columns if c in (*CASE_COLUMNS, "device_name", "run")]
    order = sorted(range(len(scaling)), key=lambda i: (
        facet_sort_key(facets, tuple(scaling[c].iloc[i] for c in facets)),
        scaling["variant"].iloc[i] != BASELINE, str(scaling["variant"].iloc[i])))
    scaling = scaling.iloc[order].reset_index(drop=True)
    statuses = [c[len("rows_"):] for c in scaling.columns
                if c.startswith("rows_") and c != "rows_contended"]
    out = pd.DataFrame({c.replace("pattern_label", "pattern"): scaling[c] for c in facets})
    out["variant"] = scaling["variant"]
    for q, title in (("time", "time exponent"), ("mem", "memory exponent")):
        out[title] = [_exponent_cell(r, q) for _, r in scaling.iterrows()]
        out[f"{q} N fitted"] = [
            "" if pd.isna(r[f"{q}_fit_seq_len_min"]) else
            f"{int(r[f'{q}_fit_seq_len_min'])}–{int(r[f'{q}_fit_seq_len_max'])} ({int(r[f'{q}_fit_points'])})"
            for _, r in scaling.iterrows()]
    if (scaling["fit_per"] != "call").any():
        out["per"] = scaling["fit_per"]
    out["crossover"] = ["" if pd.isna(x) else str(int(x)) for x in scaling["crossover_seq_len"]]
    out["rows"] = [", ".join(f"{s} {int(r[f'rows_{s}'])}" for s in statuses if r[f"rows_{s}"])
                   + (f" (contended {int(r['rows_contended'])})" if r["rows_contended"] else "")
                   for _, r in scaling.iterrows()]
    out["note"] = scaling["note"]
    return markdown_table(out, markup=("time exponent", "memory exponent"))


# ---------------------------------------------------------------------------------------------- environment
def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        elif isinstance(v, list | tuple):
            out[name] = ", ".join(str(x) for x in v)
        else:
            out[name] = v
    return out


def environment_markdown(data: RunData) -> str:
    """Environment of each run: its ``env.json`` (flattened) and the per-row environment columns."""
    parts = []
    env_cols = [c for c in ("device", "device_name", "torch_version", "harness_version", "git_commit", "threads",
                            "timing_method", "memory_method") if c in data.frame.columns]
    for run, sub in data.frame.groupby("run", sort=True):
        parts.append(f"### Run {md_code(run)}\n")
        stamps = pd.to_datetime(sub["timestamp"], errors="coerce").dropna()
        counts = sub["status"].value_counts()
        info = {"rows": len(sub), "statuses": ", ".join(f"{s}: {int(c)}" for s, c in counts.items())}
        if len(stamps):
            info["measured"] = f"{stamps.min():%Y-%m-%d %H:%M} to {stamps.max():%Y-%m-%d %H:%M}"
        for c in env_cols:
            vals = [str(fmt_value(v)) for v in sub[c].dropna().unique() if str(v) != ""]
            if vals:
                info[c] = ", ".join(vals[:6]) + (" ..." if len(vals) > 6 else "")
        env = data.envs.get(run) or (data.envs.get(next(iter(data.envs))) if len(data.envs) == 1 else None)
        if env:
            info.update({f"env: {k}": v for k, v in _flatten(env).items() if k != "skipped"})
        parts.append(markdown_table(pd.DataFrame({"": list(info), "value": [str(v) for v in info.values()]})))
    return "\n".join(parts)
