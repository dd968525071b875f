"""report.md's text, section by section in reading order: what ran, notes on the rows (problems reading the runs,
contention, what the truth cost), at a glance, pad or pack, not measured, the plots, the attention pictures,
scaling, the wide tables and the environment.

Every value from the data is escaped (:mod:`harness.report.markdown`); the plots are linked by their file names,
so report.md can be written before the plots are drawn.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.names import BASELINE
from harness.report.facets import facet_sort_key
from harness.report.markdown import CONTENDED_MARK, fmt_value, markdown_table, md_code, md_text
from harness.report.pictures import PICTURES_DIR, Picture, pictures_markdown
from harness.report.rows import approximate_variants, variant_order
from harness.report.scaling import QUADRATIC_MEM_EXPONENT
from harness.report.summary import at_a_glance, not_measured_table
from harness.report.tables import environment_markdown, pivot_markdown, scaling_markdown
from harness.report.varlen_report import pad_or_pack_markdown
from harness.store.columns import CASE_KEY
from harness.store.reader import RunData, sampled_seconds

__all__ = ["PLOT_CAPTIONS", "PLOT_READING_ORDER", "ReportTables", "contention_line", "report_markdown",
           "skipped_lines", "truth_line", "what_ran"]

#: The caption of each plot in report.md.
PLOT_CAPTIONS = {
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
#: Columns :func:`what_ran` describes, with their names in the sentence.
_WHAT_RAN = (("device_name", "on"), ("dtype", ""), ("batch", "B="), ("heads", "H="), ("head_dim", "D="),
             ("seq_len", "N="), ("mode", "mode "), ("inputs", "inputs "), ("pattern_label", "patterns "))


# ---------------------------------------------------------------------------------------------- one-line notes
def skipped_lines(data: RunData) -> list[str]:
    """What the runs' sweeps skipped with ``skip_unsupported`` (``env.json``'s ``skipped``), one line per variant."""
    out = []
    for run, env in sorted(data.envs.items()):
        lines = env.get("skipped") if isinstance(env, dict) else None
        if isinstance(lines, list):
            out += [f"{run}: {x}" if len(data.envs) > 1 else str(x) for x in lines]
    return out


def _values_text(frame: pd.DataFrame, col: str) -> str | None:
    """The distinct values of ``col`` for :func:`what_ran` (at most 8 shown); None when it says nothing."""
    vals = [v for v in frame[col].dropna().unique() if str(v) != ""]
    if col == "seq_len":
        vals = sorted(vals)
    elif col == "pattern_label":
        vals = sorted(vals, key=lambda v: facet_sort_key(["pattern_label"], (v,)))
    if not vals or (col == "inputs" and vals == ["gaussian"]):
        return None
    return ", ".join(fmt_value(v) if not isinstance(v, float | np.floating) else str(int(v)) if float(v).is_integer()
                     else fmt_value(v) for v in vals[:8]) + (f" and {len(vals) - 8} more" if len(vals) > 8 else "")


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
        text = _values_text(frame, col) if col in frame.columns else None
        if text is None:
            continue
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


# ---------------------------------------------------------------------------------------------- sections
def _header(data: RunData, frame: pd.DataFrame, facets: list[str], approx: set[str]) -> list[str]:
    """The title, what ran, which variants are exact, when and from what, the files."""
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    variants = variant_order(frame["variant"])
    exact = [v for v in variants if v not in approx]
    kinds = (f"Exact variants: {', '.join(md_code(v) for v in exact)}; approximate: "
             f"{', '.join(md_code(v) for v in variants if v in approx)} (never ranked with the exact ones: their "
             "error is given beside them)." if approx else
             f"Variants (all exact): {', '.join(md_code(v) for v in exact)}.")
    return [
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


def _notes(data: RunData, frame: pd.DataFrame) -> list[str]:
    """Quoted notes on the rows: problems reading the runs, no baseline, contention, the truth's cost, noise."""
    lines = []
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
    return lines


def _glance(summary: pd.DataFrame, facets: list[str], approx: set[str]) -> list[str]:
    glance = at_a_glance(summary, facets, approx)
    if glance.empty:
        return []
    return ["## At a glance", "",
            "Per panel, at the longest length measured: the fastest and the leanest exact variant (with the "
            f"ratio to `{BASELINE}` on the same inputs)"
            + (", and the approximations apart, each with its relative error against exact attention."
               if approx else "."), "", markdown_table(glance), ""]


def _not_measured(data: RunData, frame: pd.DataFrame) -> list[str]:
    """The rows that did not succeed, and what the sweeps skipped before measuring."""
    bad = not_measured_table(frame)
    lines = ["## Not measured", ""]
    lines += ([markdown_table(bad)] if not bad.empty else ["Every row succeeded."]) + [""]
    skipped = skipped_lines(data)
    if skipped:
        lines += ["Skipped before measuring, no row (`skip_unsupported=true`: the variant cannot run these cases "
                  "here):", ""] + [f"- {md_text(x)}" for x in skipped] + [""]
    return lines


def _plots(plot_files: dict[str, list[Path]], out: Path) -> list[str]:
    """Each plot with its caption, in :data:`PLOT_READING_ORDER`, linked by its path relative to ``out``."""
    lines = ["## Plots", ""] if plot_files else []
    order = {name: i for i, name in enumerate(PLOT_READING_ORDER)}
    for name, files in sorted(plot_files.items(), key=lambda kv: order.get(kv[0], len(order))):
        png = next((f for f in files if f.suffix == ".png"), files[0])
        svg = next((f for f in files if f.suffix == ".svg"), None)
        rel = png.relative_to(out).as_posix()
        lines += [f"### {name.replace('_', ' ')}", "", PLOT_CAPTIONS.get(name, ""), "", f"![{name}]({rel})", ""]
        if svg is not None:
            lines += [f"[SVG]({svg.relative_to(out).as_posix()})", ""]
    return lines


def _scaling(scaling: pd.DataFrame) -> list[str]:
    return [
        "## Scaling", "",
        "Least-squares slope of log(time) and log(peak memory) against log(seq_len) over the successful rows "
        "(`y ~ N^k`: 2 is quadratic, 1 linear), with its 95% interval in brackets (none from fewer than 3 "
        "lengths) and the range fitted; contended rows are not fitted. An exponent whose interval spans 0 is "
        "shown as `~0` with the fit beside it: noise, not a scaling law. `crossover`: the shortest length "
        f"at which the variant's median time is below `{BASELINE}`'s (blank: never, in the range measured). "
        f"**A memory exponent >= {QUADRATIC_MEM_EXPONENT} is flagged**: for a variant meant to need O(N) memory "
        "that is a finding.", "",
        scaling_markdown(scaling), "",
    ]


def _wide_tables(summary: pd.DataFrame, facets: list[str]) -> list[str]:
    lines = ["## Tables", "",
             f"Cells: the value, and in brackets its ratio to `{BASELINE}` on the same inputs (time: speedup, "
             "above 1 is faster; memory: ratio, below 1 is leaner; error: ratio to textbook attention in the same "
             "dtype; a speedup's interval in square brackets where interleaved rounds recorded one). **Bold**: the "
             f"row's status where it did not succeed; {CONTENDED_MARK}: a contended row.", ""]
    for kind, title in (("time", "Median time"), ("memory", "Peak memory above inputs"),
                        ("error", "Relative L2 error")):
        lines += [f"### {title}", "", pivot_markdown(summary, facets, kind), ""]
    return lines


@dataclass(frozen=True)
class ReportTables:
    """What report.md is written from besides the runs.

    Args:
        frame: the rows, with their ratios to ``full`` (:func:`harness.report.summary.with_baseline_ratios`).
        summary: :func:`harness.report.summary.summary_table` of them.
        scaling: :func:`harness.report.scaling.scaling_table` of them.
        facets: the columns that split panels.
        plot_files: plot name -> its files (linked, drawn or not yet).
        pictures: the attention pictures (:mod:`harness.report.pictures`; linked, drawn or not yet).
    """

    frame: pd.DataFrame
    summary: pd.DataFrame
    scaling: pd.DataFrame
    facets: list[str]
    plot_files: dict[str, list[Path]]
    pictures: list[Picture] = field(default_factory=list)


def report_markdown(data: RunData, tables: ReportTables, out: Path) -> str:
    """The text of report.md.

    Args:
        data: the runs (their sources, problems and environments).
        tables: the rows, tables, facets and plot files of the report.
        out: the report folder (the plots are linked relative to it).

    Returns:
        Markdown.
    """
    frame, facets = tables.frame, tables.facets
    approx = approximate_variants(frame)
    lines = _header(data, frame, facets, approx) + _notes(data, frame)
    lines += _glance(tables.summary, facets, approx)
    lines += pad_or_pack_markdown(frame)  # variable-length batches only
    lines += _not_measured(data, frame)
    lines += _plots(tables.plot_files, out)
    lines += pictures_markdown(tables.pictures, f"plots/{PICTURES_DIR}")
    lines += _scaling(tables.scaling)
    lines += _wide_tables(tables.summary, facets)
    lines += ["## Environment", "", environment_markdown(data), ""]
    return "\n".join(lines)
