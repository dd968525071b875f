"""Build a run's report: tidy ``results.csv``, per-case ``summary.csv``, scaling table, plots and ``report.md``.

``write_report(run_dirs, out_dir)`` reads one or more runs, and writes into ``out_dir``:

- ``results.csv``: every row of every run given (public columns first);
- ``summary.csv``: per case and variant: status, median time, speedup over ``full`` on the same inputs, peak
  memory and its ratio to ``full``'s, error;
- ``scaling.csv``: per variant and facet, the fitted exponents of time and memory in seq_len and the crossover
  length where the variant first beats ``full``;
- ``plots/*.png`` (and ``plots/*.svg`` when asked): see :mod:`harness.report.plots`;
- ``report.md``: environment, tables and plots, readable on GitHub.

``report_main(argv)`` is the ``attnbench report RUN [RUN ...] [--out DIR]`` command.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from harness.base.files import write_atomic
from harness.core.names import BASELINE
from harness.report.figures import figure_names, write_figures
from harness.report.plots import (
    NO_VALUE,
    approximate_variants,
    facet_columns,
    facet_panels,
    facet_sort_key,
    variant_order,
)
from harness.report.scaling import QUADRATIC_MEM_EXPONENT, scaling_table
from harness.report.varlen_report import pad_or_pack_markdown
from harness.store.columns import CASE_COLUMNS, CASE_KEY, PUBLIC_COLUMNS
from harness.store.reader import RunData, latest_run, read_runs, sampled_seconds, tidy
from harness.store.records import csv_text

#: Image formats of the plots; report.md links the PNG.
PLOT_FORMATS: tuple[str, ...] = ("png",)
_SUMMARY_COLUMNS = (
    "time_ms_median", "time_ms_iqr", "time_ms_ci_low", "time_ms_ci_high", "n_runs", "contended", "cpu_share",
    "noisy", "speedup_vs_full", "speedup_ci_low", "speedup_ci_high", "peak_mem_bytes", "mem_ratio_vs_full",
    "err_rel_l2", "approx_err_rel_l2", "err_metric", "textbook_err_rel_l2", "err_ratio_vs_textbook",
    "grad_err_rel_l2", "reason",
)
#: Marks a contended row's time in report.md's tables.
CONTENDED_MARK = "†"
_PLOT_CAPTIONS = {
    "pad_or_pack": "Variable-length batches: time and peak memory per real token against the spread of the "
                   "documents' lengths (std / mean), packed (solid) and padded (dashed), per exact variant.",
    "time": "Median steady-state time of one call against sequence length, log-log. Dashed lines: approximations "
            "(their error is in the legend); hollow markers: rows timed while other work took the cores.",
    "speedup": "`full`'s time divided by the variant's on the same inputs, from paired rounds where recorded "
               "(above 1: faster than `full`).",
    "memory": "Peak memory above the inputs against sequence length, log-log.",
    "error": "Relative L2 error of the output against exact float64 attention with the same pattern; for "
             "approximations and sparse patterns, against dense attention (`approx_err_rel_l2`: what the shortcut "
             "costs). Dashed grey: textbook attention computed in the same dtype.",
    "accuracy_vs_cost": "Error against median time per case; the ringed points form the Pareto frontier (no other "
                        "variant is both faster and more accurate; errors within 2x textbook attention's, i.e. "
                        "round-off, count as equal).",
    "throughput": "Useful FLOPs (attended pairs only) per second.",
    "pct_of_peak": "Throughput as a percentage of the device's measured matmul peak.",
    "decode_time": "Rows with fewer queries than keys (decode): median time against the context length (keys in "
                   "the cache), a panel per parameter that varies among them.",
    "decode_gbps": "The same rows' achieved bandwidth: the least bytes a kernel must move (each tensor once; of K "
                   "and V the keys some query attends) over the median time; dash-dot: the device's measured copy "
                   "ceiling.",
    "roofline": "Achieved useful FLOP/s of the exact variants against arithmetic intensity (useful FLOP per byte "
                "moved), under the measured copy and matmul ceilings, which meet at the ridge point. "
                "Approximations are left out: their useful FLOPs are exact attention's, so they would sit above "
                "the ceiling.",
}
#: The order report.md shows the plots in (plots not listed follow, in :data:`harness.report.figures.FIGURES` order).
PLOT_READING_ORDER: tuple[str, ...] = ("time", "speedup", "memory", "error", "accuracy_vs_cost", "throughput",
                                       "pct_of_peak")


# ---------------------------------------------------------------------------------------------- tables
def with_baseline_ratios(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``speedup_vs_full`` and ``mem_ratio_vs_full``: ratios to ``full`` on the same case.

    The same case is the same :func:`harness.store.columns.case_key` (every case parameter, the mode included).
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


def _fmt(x: object, digits: int = 3) -> str:
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


_MD_ESCAPES = {"\\": "\\\\", "`": "\\`", "*": "\\*", "[": "\\[", "]": "\\]", "|": "\\|", "~": "\\~",
               "&": "&amp;", "<": "&lt;", ">": "&gt;"}


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
    text = _fmt(x).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
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
        cells = [(_fmt(v).replace("\n", " ") if r else md_text(v)) for v, r in zip(row, raw)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(row: pd.Series | dict, main: str, ratio: str | None, unit: str = "", scale: float = 1.0,
          ratio_fmt: str = "{:.2f}x") -> str:
    if row["status"] != "ok":
        return f"**{md_text(row['status'])}**"
    v = row.get(main, math.nan)
    if not (isinstance(v, float | int | np.floating) and math.isfinite(v)):
        return NO_VALUE
    text = f"{_fmt(float(v) / scale)}{unit}"
    if ratio is not None:
        r = row.get(ratio, math.nan)
        if isinstance(r, float | np.floating) and math.isfinite(r):
            text += f" ({ratio_fmt.format(float(r))}"
            lo, hi = row.get(f"{ratio[: -len('_vs_full')]}_ci_low"), row.get(f"{ratio[: -len('_vs_full')]}_ci_high")
            if ratio.endswith("_vs_full") and all(isinstance(x, float | np.floating) and math.isfinite(x)
                                                  for x in (lo, hi)):
                text += f" [{float(lo):.2f}, {float(hi):.2f}]"
            text += ")"
    flag = row.get("contended")
    if main == "time_ms_median" and isinstance(flag, bool | np.bool_) and bool(flag):
        text += f" {CONTENDED_MARK}"
    return text


def pivot_markdown(summary: pd.DataFrame, facets: list[str], kind: str) -> str:
    """Wide markdown tables (rows: seq_len, columns: variants) of one quantity, one table per facet.

    Args:
        summary: output of :func:`summary_table`.
        facets: facet columns.
        kind: ``time`` (ms, with speedup over full), ``memory`` (MiB, with ratio to full) or ``error``.

    Returns:
        Markdown text.
    """
    spec = {
        "time": ("time_ms_median", "speedup_vs_full", " ms", 1.0, "{:.2f}x"),
        "memory": ("peak_mem_bytes", "mem_ratio_vs_full", " MiB", 2**20, "{:.2f}x"),
        "error": ("err_metric", "err_ratio_vs_textbook", "", 1.0, "{:.2f}x textbook"),
    }[kind]
    variants = variant_order(summary["variant"])
    parts = []
    for key, sub in facet_panels(summary, facets):
        key = key if isinstance(key, tuple) else (key,)
        if facets:
            label = ", ".join(f"{c.replace('pattern_label', 'pattern')}={_fmt(v)}" for c, v in zip(facets, key))
            parts.append(f"**{md_text(label)}**\n")
        rows = []
        extra_cols = [c for c in ("batch", "heads") if c not in facets and sub[c].nunique() > 1]
        cells: dict[tuple, list[str]] = {}
        for x in sub.to_dict("records"):  # plain dicts: a wide frame's row-by-row filtering is slow
            cells.setdefault((x["seq_len"], x["variant"]), []).append(_cell(x, *spec))
        for n, at_n in sub.groupby("seq_len", sort=True):
            rec = {"seq_len": int(n)}
            for c in extra_cols:
                rec[c] = ", ".join(_fmt(v) for v in sorted(at_n[c].dropna().unique()))
            for v in variants:
                rec[v] = "; ".join(cells.get((n, v), []))
            rows.append(rec)
        table = pd.DataFrame(rows)
        table = table[[c for c in table.columns if c in ("seq_len", *extra_cols) or (table[c] != "").any()]]
        parts.append(markdown_table(table, markup=tuple(str(v) for v in variants)))
    return "\n".join(parts)


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
    text = f"{row['variant']} {_fmt(row['time_ms_median'])} ms"
    sp = row.get("speedup_vs_full", math.nan)
    if row["variant"] != BASELINE and isinstance(sp, float | np.floating) and math.isfinite(sp):
        sp = float(sp)
        text += (f" ({sp:.2g}x faster than {BASELINE})" if sp >= 1 else f" ({1 / sp:.2g}x slower than {BASELINE})")
    flag = row.get("contended")
    if isinstance(flag, bool | np.bool_) and bool(flag):
        text += f" {CONTENDED_MARK}"
    return text


def at_a_glance(summary: pd.DataFrame, facets: list[str], approx: set[str] | frozenset[str] = frozenset()
                ) -> pd.DataFrame:
    """Per panel, at the longest length with a successful exact row: the fastest and the leanest *exact* variant
    (with the speedup and memory ratio against ``full`` on the same inputs), the approximations apart with their
    error (they compute something else, so they are not ranked with the exact ones), and what did not run there.

    Args:
        summary: output of :func:`summary_table`.
        facets: facet columns (the panels of the plots).
        approx: the approximate variants (:func:`harness.report.plots.approximate_variants`).

    Returns:
        One row per panel, in the plots' panel order.
    """
    rows = []
    for key, sub in facet_panels(summary, facets):
        ok = sub[(sub["status"] == "ok") & sub["time_ms_median"].notna()]
        exact = ok[~ok["variant"].isin(approx)]
        if exact.empty:
            continue
        n = exact["seq_len"].max()
        at = exact[exact["seq_len"] == n]
        rec = {c.replace("pattern_label", "pattern"): _fmt(v) for c, v in zip(facets, key)}
        rec["N"] = int(n)
        rec["fastest exact"] = _speed_text(at.loc[at["time_ms_median"].idxmin()])
        mem = at[at["peak_mem_bytes"].notna()]
        if not mem.empty:
            lean = mem.loc[mem["peak_mem_bytes"].idxmin()]
            text = f"{lean['variant']} {_fmt(lean['peak_mem_bytes'] / 2**20)} MiB"
            ratio = lean.get("mem_ratio_vs_full", math.nan)
            if lean["variant"] != BASELINE and isinstance(ratio, float | np.floating) and math.isfinite(ratio):
                text += f" ({float(ratio):.2g}x {BASELINE}'s)"
            rec["least memory (exact)"] = text
        apx = ok[(ok["seq_len"] == n) & ok["variant"].isin(approx)].sort_values("time_ms_median")
        if len(apx):
            rec["approximations (error vs exact)"] = "; ".join(
                f"{_speed_text(r)}, err {float(r['err_metric']):.2g}" if math.isfinite(float(r["err_metric"]))
                else _speed_text(r) for _, r in apx.iterrows())
        failed = sub[(sub["seq_len"] == n) & (sub["status"] != "ok")]
        if len(failed):
            rec["did not run there"] = ", ".join(f"{v} ({s})" for v, s in zip(failed["variant"], failed["status"]))
        rows.append(rec)
    out = pd.DataFrame(rows)
    return out.fillna("") if len(out) else out


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
            vals = [str(_fmt(v)) for v in sub[c].dropna().unique() if str(v) != ""]
            if vals:
                info[c] = ", ".join(vals[:6]) + (" ..." if len(vals) > 6 else "")
        env = data.envs.get(run) or (data.envs.get(next(iter(data.envs))) if len(data.envs) == 1 else None)
        if env:
            info.update({f"env: {k}": v for k, v in _flatten(env).items() if k != "skipped"})
        parts.append(markdown_table(pd.DataFrame({"": list(info), "value": [str(v) for v in info.values()]})))
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- the report
def build_report(data: RunData, out_dir: str | Path, formats: tuple[str, ...] = PLOT_FORMATS,
                 draw_plots: bool = True) -> Path:
    """Write every report file for ``data`` into ``out_dir`` (see the module docstring).

    Args:
        data: rows and environments of the runs (from :func:`harness.store.reader.read_runs`).
        out_dir: where to write (created).
        formats: image formats of the plots (the first one is linked from report.md; empty: no plots).
        draw_plots: draw the plots here; False writes the tables and report.md (linking the plot files) and
            leaves the plots to :func:`write_plots` (``attnbench report`` runs it in a background process).

    Returns:
        The path of ``report.md``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = with_baseline_ratios(data.frame)
    facets = facet_columns(frame)

    write_atomic(out / "results.csv", csv_text(tidy(data.frame)))
    summary = summary_table(frame)
    summary.to_csv(out / "summary.csv", index=False)
    scaling = scaling_table(frame, facets)
    scaling.to_csv(out / "scaling.csv", index=False)

    if formats and draw_plots:
        plot_files = write_figures(frame, out / "plots", facets, formats)
    else:
        plot_files = {name: [out / "plots" / f"{name}.{fmt}" for fmt in formats] for name in figure_names(frame)
                      } if formats else {}

    md = _report_markdown(data, frame, summary, scaling, facets, plot_files, out)
    path = out / "report.md"
    path.write_text(md)
    return path


def write_plots(data: RunData, out_dir: str | Path, formats: tuple[str, ...] = PLOT_FORMATS) -> list[Path]:
    """Draw and write the report's plots of ``data`` into ``out_dir/plots`` (the part of :func:`build_report`
    that takes most of its time).

    Returns:
        The files written.
    """
    frame = with_baseline_ratios(data.frame)
    files = write_figures(frame, Path(out_dir) / "plots", facet_columns(frame), formats)
    return [f for fs in files.values() for f in fs]


#: Columns :func:`what_ran` describes, with their names in the sentence.
_WHAT_RAN = (("device_name", "on"), ("dtype", ""), ("batch", "B="), ("heads", "H="), ("head_dim", "D="),
             ("seq_len", "N="), ("mode", "mode "), ("inputs", "inputs "), ("pattern_label", "patterns "))


def skipped_lines(data: RunData) -> list[str]:
    """What the runs' sweeps skipped with ``skip_unsupported`` (``env.json``'s ``skipped``), one line per variant."""
    out = []
    for run, env in sorted(data.envs.items()):
        lines = env.get("skipped") if isinstance(env, dict) else None
        if isinstance(lines, list):
            out += [f"{run}: {x}" if len(data.envs) > 1 else str(x) for x in lines]
    return out


def what_ran(frame: pd.DataFrame) -> str:
    """One sentence for the top of the report: rows and statuses, the device and the case parameters.

    Args:
        frame: normalized rows.

    Returns:
        e.g. ``60 rows (ok 60) on Intel Xeon (cpu), float32, B=1, H=8, D=64, N=256, 512, 1024, mode fwd, ...``.
    """
    counts = frame["status"].value_counts()
    head = f"**{len(frame)} rows** ({', '.join(f'{s} {int(c)}' for s, c in counts.items())})"
    parts = []
    for col, prefix in _WHAT_RAN:
        if col not in frame.columns:
            continue
        vals = [v for v in frame[col].dropna().unique() if str(v) != ""]
        if col == "seq_len":
            vals = sorted(vals)
        elif col == "pattern_label":
            vals = sorted(vals, key=lambda v: facet_sort_key(["pattern_label"], (v,)))
        if not vals or (col == "inputs" and vals == ["gaussian"]):
            continue
        text = ", ".join(_fmt(v) if not isinstance(v, float | np.floating) else str(int(v)) if float(v).is_integer()
                         else _fmt(v) for v in vals[:8]) + (f" and {len(vals) - 8} more" if len(vals) > 8 else "")
        if col == "device_name":
            devices = ", ".join(sorted({str(d) for d in frame["device"].dropna().unique()}))
            parts.append(f"on {md_text(text)} ({md_text(devices)})")
        else:
            parts.append(f"{prefix}{md_text(text)}")
    return f"{head} " + ", ".join(parts) + "."


def contention_line(frame: pd.DataFrame) -> str:
    """One line for the top of the report: how many timed rows were contended (or that it was not recorded)."""
    timed = frame[(frame["status"] == "ok") & frame["time_ms_median"].notna()]
    if "contended" not in frame.columns:
        return (f"> Contention: not recorded for these runs ({len(timed)} timed rows); times from a busy machine "
                "cannot be told apart here.")
    n = int(timed["contended"].astype(bool).sum())
    if not n:
        return f"> Contention: none of the {len(timed)} timed rows was contended."
    return (f"> **Contention: {n} of {len(timed)} timed rows were contended** (the process got less CPU than it "
            f"asked for while timing): their times are marked {CONTENDED_MARK} in the tables, not fitted in the "
            "scaling table, and `attnbench compare` calls them unsure.")


def truth_line(frame: pd.DataFrame) -> str:
    """One line: what the truth cost (float64 baseline and same-dtype yardstick), per case and in all, beside the
    timed seconds; '' when the rows do not record it (``baseline_ms``)."""
    if "baseline_ms" not in frame.columns:
        return ""
    per_case = pd.to_numeric(frame["baseline_ms"], errors="coerce").groupby(frame[CASE_KEY]).max().dropna()
    if per_case.empty:
        return ""
    total = float(per_case.sum()) / 1e3
    worst = frame.loc[frame[CASE_KEY] == per_case.idxmax()].iloc[0]
    label = f"N={int(worst['seq_len'])} {worst.get('pattern_label', '')} {worst.get('mode', '')}".strip()
    timed = sampled_seconds(frame)
    timed_txt = f"; the timed samples took {timed:.1f} s" if timed > 0 else ""
    return (f"> Truth: the float64 baseline and the same-dtype yardstick took {total:.1f} s for {len(per_case)} "
            f"case(s) (most: {per_case.max() / 1e3:.2f} s, {md_text(label)}){timed_txt}. Per case: the "
            "`baseline_ms` column.")


def _report_markdown(data: RunData, frame: pd.DataFrame, summary: pd.DataFrame, scaling: pd.DataFrame,
                     facets: list[str], plot_files: dict[str, list[Path]], out: Path) -> str:
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    variants = variant_order(frame["variant"])
    approx = approximate_variants(frame)
    exact = [v for v in variants if v not in approx]
    kinds = (f"Exact variants: {', '.join(md_code(v) for v in exact)}; approximate: "
             f"{', '.join(md_code(v) for v in variants if v in approx)} (never ranked with the exact ones: their "
             "error is given beside them)." if approx else
             f"Variants (all exact): {', '.join(md_code(v) for v in exact)}.")
    lines = [
        "# attnbench report",
        "",
        what_ran(frame),
        "",
        kinds,
        "",
        f"Generated {now} from {', '.join(md_code(s) for s in data.sources)}. "
        + (f"Panels split by: {', '.join(c.replace('pattern_label', 'pattern') for c in facets)}. "
           if facets else "")
        + "Files: [results.csv](results.csv) (all rows), [summary.csv](summary.csv) (per case and variant), "
        "[scaling.csv](scaling.csv).",
        "",
    ]
    if data.problems:
        lines += [f"> **{len(data.problems)} problem(s) reading the runs** (nothing was dropped silently):", ">"]
        lines += [f"> - {md_text(x)}" for x in data.problems] + [""]
    if BASELINE not in set(frame["variant"]):
        lines += [f"> No `{BASELINE}` rows: speedups and memory ratios need `{BASELINE}` on the same inputs.", ""]
    lines += [contention_line(frame), ""]
    truth = truth_line(frame)
    if truth:
        lines += [truth, ""]
    noisy = frame["noisy"].astype(str).str.lower().isin(("true", "1", "1.0")).sum()
    if noisy:
        lines += [f"> {noisy} row(s) are marked noisy (IQR above 10% of the median): read their times with care.",
                  ""]
    glance = at_a_glance(summary, facets, approx)
    if not glance.empty:
        lines += ["## At a glance", "",
                  "Per panel, at the longest length measured: the fastest and the leanest exact variant (with the "
                  f"ratio to `{BASELINE}` on the same inputs)"
                  + (", and the approximations apart, each with its relative error against exact attention."
                     if approx else "."), "", markdown_table(glance), ""]
    lines += pad_or_pack_markdown(frame)  # variable-length batches only
    bad = not_measured_table(frame)
    lines += ["## Not measured", ""]
    lines += ([markdown_table(bad)] if not bad.empty else ["Every row succeeded."]) + [""]
    skipped = skipped_lines(data)
    if skipped:
        lines += ["Skipped before measuring, no row (`skip_unsupported=true`: the variant cannot run these cases "
                  "here):", ""] + [f"- {md_text(x)}" for x in skipped] + [""]
    if plot_files:
        lines += ["## Plots", ""]
    order = {name: i for i, name in enumerate(PLOT_READING_ORDER)}
    for name, files in sorted(plot_files.items(), key=lambda kv: order.get(kv[0], len(order))):
        png = next((f for f in files if f.suffix == ".png"), files[0])
        svg = next((f for f in files if f.suffix == ".svg"), None)
        rel = png.relative_to(out).as_posix()
        lines += [f"### {name.replace('_', ' ')}", "", _PLOT_CAPTIONS.get(name, ""), "", f"![{name}]({rel})", ""]
        if svg is not None:
            lines += [f"[SVG]({svg.relative_to(out).as_posix()})", ""]
    lines += [
        "## Scaling", "",
        "Least-squares slope of log(time) and log(peak memory) against log(seq_len) over the successful rows "
        "(`y ~ N^k`: 2 is quadratic, 1 linear), with its 95% interval in brackets (none from fewer than 3 "
        "lengths) and the range fitted; contended rows are not fitted. An exponent whose interval spans 0 is "
        "shown as `~0` with the fit beside it: noise, not a scaling law. `crossover`: the shortest length "
        f"at which the variant's median time is below `{BASELINE}`'s (blank: never, in the range measured). "
        f"**A memory exponent >= {QUADRATIC_MEM_EXPONENT} is flagged**: for a variant meant to need O(N) memory "
        "that is a finding.", "",
    ]
    lines += [scaling_markdown(scaling), ""]
    lines += ["## Tables", "",
              f"Cells: the value, and in brackets its ratio to `{BASELINE}` on the same inputs (time: speedup, "
              "above 1 is faster; memory: ratio, below 1 is leaner; error: ratio to textbook attention in the same "
              "dtype; a speedup's interval in square brackets where interleaved rounds recorded one). **Bold**: the "
              f"row's status where it did not succeed; {CONTENDED_MARK}: a contended row.", ""]
    for kind, title in (("time", "Median time"), ("memory", "Peak memory above inputs"),
                        ("error", "Relative L2 error")):
        lines += [f"### {title}", "", pivot_markdown(summary, facets, kind), ""]
    lines += ["## Environment", "", environment_markdown(data), ""]
    return "\n".join(lines)


def write_report(run_dirs: list[str | Path] | tuple[str | Path, ...] | str | Path, out_dir: str | Path,
                 formats: tuple[str, ...] = PLOT_FORMATS) -> Path:
    """Read the runs and write the report into ``out_dir``.

    Args:
        run_dirs: run directories, folders of runs, results CSVs or pytest-benchmark JSON files (see
            :func:`harness.store.reader.read_runs`).
        out_dir: output directory (created).
        formats: plot image formats (default PNG and SVG).

    Returns:
        The path of ``report.md``.

    Raises:
        ValueError: a run is missing or holds no results.
    """
    data = read_runs(run_dirs)
    if data.frame.empty:
        raise ValueError(f"runs {[str(p) for p in data.sources]} hold no rows (allowed: runs with results)")
    return build_report(data, out_dir, formats)


def default_out_dir(runs: list[str]) -> Path:
    """``RUN/report`` for one run directory (or folder of runs), ``<csv stem>_report`` next to a CSV, else
    ``report_<names>`` beside the first run."""
    first = Path(runs[0])
    if len(runs) == 1:
        return first / "report" if first.is_dir() else first.with_name(f"{first.stem}_report")
    names = "+".join(Path(r).name if Path(r).is_dir() else Path(r).stem for r in runs)
    return first.resolve().parent / f"report_{names[:80]}"


#: Present in ``OUT/plots`` while a background process writes the plots (removed when it is done).
PENDING_MARKER = ".pending"


def _plots_in_background(runs: list[str], out: Path, svg: bool) -> int | None:
    """Start ``attnbench report RUN... --out OUT --plots-only --wait`` detached; its pid, or None if it could not
    start. Its output goes to ``OUT/plots/plots.log``; ``OUT/plots/.pending`` exists until it is done."""
    import subprocess

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    (plots / PENDING_MARKER).write_text("plots are being written by a background `attnbench report`\n")
    cmd = [sys.executable, "-m", "harness", "report", *runs, "--out", str(out), "--plots-only", "--wait"]
    try:
        with open(plots / "plots.log", "w") as log:
            proc = subprocess.Popen(cmd + (["--svg"] if svg else []), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:
        (plots / PENDING_MARKER).unlink(missing_ok=True)
        return None
    return proc.pid


def report_with_background_plots(runs: list[str | Path], out_dir: str | Path, svg: bool = False,
                                 data: RunData | None = None) -> tuple[Path, int | None]:
    """Write the tables and report.md now, and leave the plots to a background process (the fast path of
    ``attnbench report`` and of the report after a sweep).

    Args:
        runs: what to report (as :func:`harness.store.reader.read_runs` takes it).
        out_dir: the report folder.
        svg: also write the plots as SVG.
        data: the runs already read (default: read them here).

    Returns:
        ``(report.md, pid)``: the pid of the process drawing the plots into ``out_dir/plots`` (``plots/.pending``
        exists until it is done), or None when none could start and they were drawn here.

    Raises:
        ValueError: the runs hold no rows.
    """
    runs = [str(r) for r in runs]
    data = read_runs(runs) if data is None else data
    if data.frame.empty:
        raise ValueError(f"{', '.join(runs)} hold no rows (allowed: runs with results)")
    out = Path(out_dir)
    formats = PLOT_FORMATS + (("svg",) if svg else ())
    path = build_report(data, out, formats, draw_plots=False)
    pid = _plots_in_background(runs, out, svg)
    if pid is None:
        write_plots(data, out, formats)
    return path, pid


def report_main(argv: list[str] | None = None) -> int:
    """``attnbench report [RUN ...] [--out DIR] [--wait] [--svg] [--no-plots]``: write the report, print where.

    With no RUN, the latest run under ``results/`` is reported. Problems met while reading (a damaged record, a
    truncated CSV) are printed as warnings, one line each. The tables and report.md are written first and the
    command returns; the plots (PNG; SVG too with ``--svg``) are drawn by a background process, in
    ``OUT/plots`` a few seconds later (``--wait`` draws them before returning).

    Returns:
        0 on success, 2 on bad arguments or unreadable runs.
    """
    parser = argparse.ArgumentParser(
        prog="attnbench report",
        description="Tables, plots and report.md from one or more runs (default: the latest run under results/). "
                    "The plots are drawn in the background unless --wait is given.")
    parser.add_argument("runs", nargs="*", metavar="RUN",
                        help="a run directory, a folder of runs, a results CSV or a pytest-benchmark JSON file")
    parser.add_argument("--out", default=None, help="output directory (default: RUN/report for one run)")
    parser.add_argument("--results-dir", default="results", metavar="DIR",
                        help="where to look for the latest run when no RUN is given (default: results)")
    parser.add_argument("--wait", action="store_true", help="draw the plots before returning (not in the background)")
    parser.add_argument("--svg", action="store_true", help="also write the plots as SVG (PNG is always written)")
    parser.add_argument("--no-plots", action="store_true", help="tables and report.md only")
    parser.add_argument("--plots-only", action="store_true", help=argparse.SUPPRESS)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        runs = args.runs or [str(latest_run(args.results_dir))]
        out = Path(args.out) if args.out else default_out_dir(runs)
        data = read_runs(runs)
        if data.frame.empty:
            raise ValueError(f"{', '.join(runs)} hold no rows (allowed: runs with results)")
    except ValueError as exc:
        print(f"attnbench report: error: {exc}", file=sys.stderr)
        return 2
    formats = () if args.no_plots else PLOT_FORMATS + (("svg",) if args.svg else ())
    if args.plots_only:
        try:
            files = write_plots(data, out, formats)
        finally:
            (out / "plots" / PENDING_MARKER).unlink(missing_ok=True)
        print(f"plots: {len(files)} file(s) in {out / 'plots'}")
        return 0
    for problem in data.problems:
        print(f"attnbench report: warning: {problem}", file=sys.stderr)
    if formats and not args.wait:
        path, pid = report_with_background_plots(runs, out, args.svg, data)
        print(f"report: {path}")
        if pid is not None:
            print(f"plots: being drawn in the background (pid {pid}) into {out / 'plots'}; ready when "
                  f"{out / 'plots' / PENDING_MARKER} is gone (--wait draws them before returning)")
        return 0
    print(f"report: {build_report(data, out, formats)}")
    return 0


__all__ = ["PUBLIC_COLUMNS", "build_report", "markdown_table", "report_main", "report_with_background_plots",
           "summary_table", "write_plots", "write_report"]
