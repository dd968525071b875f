"""report.html: the report as one page that opens offline, written beside report.md.

Sections in reading order: what ran, notes (problems reading the runs, contention), the history (when several
runs hold the same cases: the steps of each case over the runs, their causes and figures, see
:mod:`harness.report.history`), at a glance, every result row (sortable; filters by variant, pattern, N, dtype,
status and a search box), every row that did not succeed with its whole message, the figures (SVG), the scaling
fits and each run's environment. The page kit (escaping, tables, the policy that forbids any network) is
:mod:`harness.report.html_page`.

The report's figures come from the process that draws them: ``attnbench report`` writes report.html at once with
the figures marked as coming, and the background process that draws the plots writes it again with them.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from harness.base.files import write_atomic
from harness.core.names import BASELINE
from harness.report.document import PLOT_CAPTIONS, PLOT_READING_ORDER, ReportTables
from harness.report.history import History, build_history, history_verdict
from harness.report.html_page import Column, esc, figure_html, html_table, page
from harness.report.markdown import fmt_value
from harness.report.rows import approximate_variants, variant_order
from harness.report.summary import at_a_glance
from harness.store.columns import CASE_COLUMNS, CASE_PARAMS, case_text
from harness.store.reader import RunData

__all__ = ["HTML_NAME", "HISTORY_RULE", "report_html", "write_report_html"]

HTML_NAME = "report.html"
#: The step rule the history view reports against (``attnbench history``'s default).
HISTORY_RULE = 0.05
_CASE_TITLES = {"device": "device", "dtype": "dtype", "batch": "B", "heads": "H", "kv_heads": "KV heads",
                "seq_len": "N", "q_len": "queries", "head_dim": "D", "pattern_label": "pattern", "inputs": "inputs",
                "seed": "seed", "mode": "mode", "model": "model", "lengths": "lengths", "layout": "layout",
                "threads": "threads", "cpu_timer": "CPU timer"}
#: Case columns every results table shows (and filters), whether or not they vary.
_ALWAYS = ("dtype", "seq_len", "pattern_label")
_FILTERED = ("dtype", "seq_len", "pattern_label", "device")
_DEFAULT_FROM = {p.name: p.default_from for p in CASE_PARAMS if p.default_from}


def _mib(x: object) -> str:
    return fmt_value(float(x) / 2**20)


def _times(x: object) -> str:
    return f"{float(x):.2f}x"


def _pct(x: object) -> str:
    return f"{100 * (float(x) - 1):+.1f}%"


def _varying(frame: pd.DataFrame, cols: tuple[str, ...]) -> list[str]:
    """The case columns worth a column: those always shown, and those that vary and do not just repeat their
    default's column (``q_len`` equal to ``seq_len``, ``kv_heads`` to ``heads``)."""
    out = []
    for c in cols:
        if c not in frame.columns:
            continue
        base = _DEFAULT_FROM.get(c)
        same = base in frame.columns and frame[c].astype(str).equals(frame[base].astype(str))
        if c in _ALWAYS or (frame[c].astype(str).nunique() > 1 and not same):
            out.append(c)
    return out


# ---------------------------------------------------------------------------------------------- sections
def _sources(data: RunData) -> str:
    """What was read: every path, or the first and last of many."""
    src = [str(s) for s in data.sources]
    return ", ".join(src) if len(src) <= 4 else f"{len(src)} runs, {src[0]} .. {src[-1]}"


def _header(data: RunData, frame: pd.DataFrame, approx: set[str]) -> str:
    counts = frame["status"].value_counts()
    variants = variant_order(frame["variant"])
    exact = [v for v in variants if v not in approx]
    devices = sorted({f"{n} ({d})" for n, d in zip(frame["device_name"].astype(str), frame["device"].astype(str))})
    runs = list(dict.fromkeys(frame["run"].astype(str)))
    kinds = (f"exact: {esc(', '.join(exact))}" + (f"; approximate: {esc(', '.join(sorted(approx)))} (never ranked "
             "with the exact ones)" if approx else ""))
    return (f"<h1>attnbench report</h1><p><b>{len(frame)} rows</b> "
            f"({esc(', '.join(f'{s} {int(c)}' for s, c in counts.items()))}) from {len(runs)} run(s) on "
            f"{esc(', '.join(devices))}. Variants {kinds}.</p>"
            f"<p class=\"note\">Generated {esc(_dt.datetime.now().strftime('%Y-%m-%d %H:%M'))} from "
            f"{esc(_sources(data))}. Beside this file: report.md, results.csv, "
            "summary.csv, scaling.csv and plots/.</p>")


def _notes(data: RunData, frame: pd.DataFrame) -> str:
    out = []
    if data.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in data.problems)
        out.append(f'<p class="note bad">{len(data.problems)} problem(s) reading the runs (nothing was dropped '
                   f"silently):</p><ul>{items}</ul>")
    timed = frame[(frame["status"] == "ok") & frame["time_ms_median"].notna()]
    if "contended" in frame.columns:
        n = int(timed["contended"].astype(bool).sum())
        out.append(f'<p class="note{" bad" if n else ""}">Contention: {n} of {len(timed)} timed rows were timed '
                   "while other work took the cores (marked in the results table; compare calls them unsure).</p>")
    if BASELINE not in set(frame["variant"]):
        out.append(f'<p class="note">No {BASELINE} rows: speedups and memory ratios need {BASELINE} on the same '
                   "inputs.</p>")
    return "".join(out)


def _glance(tables: ReportTables, approx: set[str]) -> str:
    glance = at_a_glance(tables.summary, tables.facets, approx)
    if glance.empty:
        return ""
    cols = [Column(c, c, num=c == "N", wrap=c != "N") for c in glance.columns]
    return ('<h2 id="glance">At a glance</h2><p>Per panel, at the longest length measured: the fastest and the '
            f"leanest exact variant (with the ratio to {BASELINE} on the same inputs)"
            + (", and the approximations apart with their error." if approx else ".") + "</p>"
            + html_table(glance, cols, "glance", filters=False))


def _results(tables: ReportTables) -> str:
    s = tables.summary
    case_cols = _varying(s, tuple(CASE_COLUMNS))
    cols = ([Column("run", "run", filter=True)] if s["run"].nunique() > 1 else [])
    cols += [Column(c, _CASE_TITLES.get(c, c), num=c in ("batch", "heads", "kv_heads", "seq_len", "q_len",
                                                          "head_dim", "seed", "threads"), filter=c in _FILTERED)
             for c in case_cols]
    cols += [Column("variant", "variant", filter=True), Column("status", "status", filter=True, badge="status"),
             Column("time_ms_median", "time (ms)", num=True), Column("time_ms_iqr", "IQR (ms)", num=True),
             Column("speedup_vs_full", f"speedup vs {BASELINE}", num=True, fmt=_times),
             Column("peak_mem_bytes", "memory (MiB)", num=True, fmt=_mib),
             Column("mem_ratio_vs_full", f"memory vs {BASELINE}", num=True, fmt=_times),
             Column("err_metric", "error (rel. L2)", num=True),
             Column("contended", "contended", fmt=lambda x: "yes" if str(x) == "True" else ""),
             Column("reason", "note", clip=True)]
    return ('<h2 id="results">Results</h2><p>One row per run, case and variant. Click a header to sort; the menus '
            "and the search box filter the rows.</p>" + html_table(s, cols, "results"))


def _failures(frame: pd.DataFrame) -> str:
    bad = frame[frame["status"] != "ok"].copy()
    if bad.empty:
        return '<h2 id="failures">Not measured</h2><p class="note good">Every row succeeded.</p>'
    bad["case"] = [case_text(r) for r in bad.to_dict("records")]
    cols = ([Column("run", "run", filter=True)] if frame["run"].nunique() > 1 else []) + [
        Column("variant", "variant", filter=True), Column("status", "status", filter=True, badge="status"),
        Column("seq_len", "N", num=True, filter=True), Column("case", "case"),
        Column("reason", "reason (the whole message)", wrap=True)]
    return (f'<h2 id="failures">Not measured</h2><p>Every one of the {len(bad)} rows that did not succeed, with its '
            "message.</p>" + html_table(bad, cols, "failures"))


def _figures(plot_files: Mapping[str, object], figures: Mapping[str, str] | None) -> str:
    if not plot_files:
        return ""
    if figures is None:
        return ('<h2 id="figures">Figures</h2><p class="note">The figures are being drawn by a background process, '
                "which writes this page again with them in a few seconds: reload it then (they are in plots/).</p>")
    order = {name: i for i, name in enumerate(PLOT_READING_ORDER)}
    parts = ['<h2 id="figures">Figures</h2>']
    for name in sorted(figures, key=lambda n: order.get(n, len(order))):
        parts.append(f"<h3>{esc(name.replace('_', ' '))}</h3>"
                     + figure_html(figures[name], name, PLOT_CAPTIONS.get(name, "")))
    return "".join(parts)


def _scaling(scaling: pd.DataFrame) -> str:
    if scaling.empty:
        return ""
    cols = [Column(c, c.replace("_", " ").replace("pattern label", "pattern"), num=pd.api.types.is_numeric_dtype(
        scaling[c]), filter=c in ("variant", "pattern_label"), wrap=c == "note") for c in scaling.columns]
    return ('<h2 id="scaling">Scaling</h2><p>Least-squares exponent k of time and peak memory in N (y ~ N^k) with '
            "its 95% interval, per variant and panel; see report.md for the rules.</p>"
            + html_table(scaling, cols, "scaling"))


def _environment(data: RunData) -> str:
    if not data.envs:
        return ""
    items = "".join(f"<details><summary>{esc(run)}</summary><pre>{esc(json.dumps(env, indent=1, default=str))}"
                    "</pre></details>" for run, env in sorted(data.envs.items()))
    return f'<h2 id="environment">Environment</h2>{items}'


# ---------------------------------------------------------------------------------------------- history
def _history_steps_table(hist: History) -> str:
    steps = hist.steps_frame()
    steps["interval"] = [f"[{_pct(lo)}, {_pct(hi)}]" for lo, hi in zip(steps["ratio_low"], steps["ratio_high"])]
    steps["levels"] = [f"{fmt_value(b)} ms -> {fmt_value(a)} ms" if m == "time" else f"{_mib(b)} MiB -> {_mib(a)} MiB"
                       for m, b, a in zip(steps["metric"], steps["before"], steps["after"])]
    cols = [Column("run", "run", filter=True), Column("commit", "commit"), Column("prev_run", "after run"),
            Column("cause", "cause", filter=True, badge="cause"), Column("metric", "metric", filter=True),
            Column("ratio", "change", num=True, fmt=_pct), Column("interval", "95% interval"),
            Column("yardstick_ratio", "yardstick", num=True, fmt=_pct), Column("variant", "variant", filter=True),
            Column("case", "case", filter=True), Column("levels", "level before -> after"),
            Column("changed", "what else changed", wrap=True)]
    return html_table(steps, cols, "steps")


def _history_series_table(hist: History) -> str:
    rows = []
    for (key, variant), sub in hist.series.groupby(["case_key", "variant"], sort=False):
        t = sub["time_ms_median"].dropna()
        y = sub["yardstick_ms"].dropna()
        rows.append({"case": sub["case"].iloc[0], "variant": variant, "runs": len(sub),
                     "first (ms)": t.iloc[0] if len(t) else None, "last (ms)": t.iloc[-1] if len(t) else None,
                     "last / first": t.iloc[-1] / t.iloc[0] if len(t) else None,
                     "yardstick last / first": y.iloc[-1] / y.iloc[0] if len(y) else None,
                     "steps": sum(s.case_key == key and s.variant == variant for s in hist.steps)})
    frame = pd.DataFrame(rows)
    cols = [Column("case", "case", filter=True), Column("variant", "variant", filter=True),
            Column("runs", "runs", num=True), Column("first (ms)", "first (ms)", num=True),
            Column("last (ms)", "last (ms)", num=True), Column("last / first", "last / first", num=True, fmt=_times),
            Column("yardstick last / first", "yardstick last / first", num=True, fmt=_times),
            Column("steps", "steps", num=True)]
    return html_table(frame, cols, "series")


def _history(hist: History | None, figures: Mapping[str, str]) -> str:
    if hist is None:
        return ""
    verdict = history_verdict(hist, HISTORY_RULE)
    yard = "recorded" if hist.has_yardstick() else "not recorded, so no step can be put down to the machine"
    parts = ['<h2 id="history">History</h2>',
             f"<p>{len(hist.runs)} runs in time order ({esc(hist.runs[0].name)} .. {esc(hist.runs[-1].name)}); "
             f"{len(hist.judged)} series (case and variant) with enough runs to judge; the machine yardstick "
             f"{yard}. A step is a change of level in a piecewise-constant fit over the runs (attnbench history, "
             "docs/reports.md); it is the machine's when the machine yardstick moved as much over the same runs.</p>",
             f'<p class="note{" bad" if verdict.code == 1 else " good" if verdict.code == 0 else ""}">'
             f"At step:{HISTORY_RULE * 100:g}%: {esc(verdict.reason)}.</p>"]
    if hist.steps:
        parts += ["<h3>Steps</h3>", _history_steps_table(hist)]
    for key, svg in figures.items():
        case = hist.series.loc[hist.series["case_key"] == key, "case"].iloc[0]
        parts.append(f"<h3>{esc(case)}</h3>" + figure_html(
            svg, f"history of {case}", "Each variant's time over the runs relative to its first level, fitted "
            "levels as thin lines; red: a step of the code, dashed grey: the machine's (the yardstick below)."))
    parts += ["<h3>Every series</h3>", _history_series_table(hist)]
    return "".join(parts)


def _history_of(data: RunData) -> History | None:
    """The history of the runs when there are several and some case was measured in more than one."""
    frame = data.frame
    if frame["run"].nunique() < 2:
        return None
    hist = build_history(frame, data.envs)
    if hist.series.empty or hist.series.groupby(["case_key", "variant"]).size().max() < 2:
        return None
    return hist


# ---------------------------------------------------------------------------------------------- page
def report_html(data: RunData, tables: ReportTables, figures: Mapping[str, str] | None = None,
                history_figures: bool = True) -> str:
    """The text of report.html.

    Args:
        data: the runs.
        tables: the rows, tables and plot files of the report (as for report.md).
        figures: plot name -> SVG text; None while the plots are still being drawn.
        history_figures: draw the history's figures (when there is a history with steps).

    Returns:
        The HTML document.
    """
    frame = tables.frame
    approx = approximate_variants(frame)
    hist = _history_of(data)
    hist_svgs: dict[str, str] = {}
    if hist is not None and hist.steps and history_figures:
        from harness.report.draw.style import variant_styles
        from harness.report.history_plots import step_figure_svgs

        hist_svgs = step_figure_svgs(hist, variant_styles(frame))
    sections = [("history", "History"), ("glance", "At a glance"), ("results", "Results"),
                ("failures", "Not measured"), ("figures", "Figures"), ("scaling", "Scaling"),
                ("environment", "Environment")]
    body = [_header(data, frame, approx), _notes(data, frame), _history(hist, hist_svgs), _glance(tables, approx),
            _results(tables), _failures(frame), _figures(tables.plot_files, figures), _scaling(tables.scaling),
            _environment(data)]
    html_body = "".join(body)
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in sections if f'id="{i}"' in html_body)
    return page("attnbench report", body[0] + f"<nav>{nav}</nav>" + "".join(body[1:]))


def write_report_html(data: RunData, tables: ReportTables, out: str | Path,
                      figures: Mapping[str, str] | None = None) -> Path:
    """Write ``out/report.html`` (see :func:`report_html`); returns its path."""
    path = Path(out) / HTML_NAME
    write_atomic(path, report_html(data, tables, figures, history_figures=figures is not None))
    return path
