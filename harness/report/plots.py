"""The report's comparison figures against sequence length and of accuracy against cost, made to be read in
seconds: time, speedup, memory, error, accuracy against cost, throughput and share of the peak.

Every figure takes its series from the data: a newly registered variant appears with no code change. Panels are
faceted by the columns that vary in the data apart from seq_len (:mod:`harness.report.facets`).

- :func:`plot_vs_seq_len`: one line per variant of a value against seq_len (log2 x), a panel per facet. Failures of
  a drawn variant (``oom``, ``error``, ``numerics``, ``timeout``, ``crashed``) are a marker per status under the
  data at their seq_len; lines break there instead of bridging them. ``unsupported`` rows are not drawn (report.md
  lists them once, in "Not measured"). Contended rows are hollow in the figures whose value comes from a time.
- :func:`plot_pareto`: error against median time for each case, the Pareto frontier ringed.

A figure is a function of ``(frame, facets, styles)``; :mod:`harness.report.figures` lists the report's figures
(these, the decode and roofline figures of :mod:`harness.report.roofline_plots`, the pad-or-pack figure of
:mod:`harness.report.varlen_report`), which all draw with the toolkit of :mod:`harness.report.draw`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report.draw.axes import (
    at_least_decades,
    draw_failures,
    draw_points,
    fail_room,
    fit_ylim,
    fmt_len,
    log_ticks,
    no_values,
    set_len_axis,
)
from harness.report.draw.canvas import draw_footnote, draw_legend, new_figure, panel_grid
from harness.report.draw.style import FAILURE_GID, NOT_DRAWN_STATUSES, REFERENCE_COLOR, Style, variant_styles
from harness.report.draw.units import Unit, bytes_unit, flops_unit, time_unit
from harness.report.facets import facet_columns, facet_panels, panel_title
from harness.report.rows import NO_VALUE, contended_mask, variant_order

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn: report.md's tables need none of it
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

__all__ = ["accuracy_vs_cost_figure", "error_figure", "memory_figure", "pareto_front", "pct_of_peak_figure",
           "plot_pareto", "plot_vs_seq_len", "speedup_figure", "throughput_figure", "time_figure"]

_MAX_PARETO_LENGTHS = 6
_PARETO_REL_TOL = 0.02
#: Legend entries of guide lines, drawn once per figure: (handle, label).
_Extra = list[tuple["Line2D", str]]


# ---------------------------------------------------------------------------------------------- against seq_len
@dataclass(frozen=True)
class _LineData:
    """The rows of a line figure: ``rows`` are the variants drawn, with ``_y`` (the value in ``unit``) and
    ``_hollow`` (drawn hollow); ``good`` the rows with a value to draw."""

    rows: pd.DataFrame
    good: pd.DataFrame
    unit: Unit

    @property
    def drawn(self) -> set[str]:
        return set(self.good["variant"])


def _line_data(frame: pd.DataFrame, value: str | Callable[[pd.DataFrame], pd.Series], variants: list[str],
               unit: Callable[[pd.Series], Unit] | None, hollow_contended: bool, logy: bool) -> _LineData:
    df = frame[frame["variant"].isin(variants)].copy()
    raw = df[value] if isinstance(value, str) else value(df)
    df["_y"] = pd.to_numeric(raw, errors="coerce")
    shown_unit = unit(df.loc[df["status"] == "ok", "_y"]) if unit is not None else Unit("")
    df["_y"] = df["_y"] * shown_unit.factor
    df["_hollow"] = contended_mask(df) if hollow_contended else False
    good = df[(df["status"] == "ok") & np.isfinite(df["_y"]) & ((df["_y"] > 0) if logy else True)]
    return _LineData(df, good, shown_unit)


def _draw_lines(ax: Axes, sub: pd.DataFrame, data: _LineData, variants: list[str], styles: dict[str, Style]
                ) -> tuple[list[float], bool]:
    """Each variant's line and points in one panel; the values drawn, and whether a point is hollow."""
    ys: list[float] = []
    any_hollow = False
    for variant in variants:
        vs = sub[sub["variant"] == variant].sort_values("seq_len")
        good = data.good.loc[data.good.index.intersection(vs.index)]
        if good.empty:
            continue
        st = styles.get(variant, Style("0.5", "o", label=variant))
        med = good.groupby("seq_len")["_y"].median()
        hollow = good.groupby("seq_len")["_hollow"].any()
        # every length the variant has a row at, NaN where it has no value: the line breaks there instead of
        # bridging a failed or missing point
        line = med.reindex(sorted(set(vs["seq_len"].dropna())))
        base = st.baseline
        # the baseline is drawn wider and underneath, so a variant with identical values (an exact variant's
        # error, say) leaves it visible as a dark outline instead of hiding it
        ax.plot(line.index, line.values, color=st.color, ls=st.linestyle, lw=2.8 if base else 1.6,
                label=variant, zorder=2.5 if base else 3)
        draw_points(ax, med.index, med.values, hollow.to_numpy(), st, 6.5 if base else 5.5,
                    zorder=2.6 if base else 3.2)
        any_hollow |= bool(hollow.any())
        ys.extend(med.tolist())
    return ys, any_hollow


def _draw_reference(ax: Axes, sub: pd.DataFrame, reference: tuple[str, str] | None, unit: Unit,
                    extra: _Extra) -> list[float]:
    """The reference column's median per seq_len as a dashed grey line; the values drawn."""
    from matplotlib.lines import Line2D

    if reference is None or reference[0] not in sub.columns:
        return []
    ref = pd.to_numeric(sub[reference[0]], errors="coerce") * unit.factor
    ref = ref[np.isfinite(ref) & (ref > 0)].groupby(sub["seq_len"]).median()
    if ref.empty:
        return []
    ax.plot(ref.index, ref.values, color=REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.6, zorder=4)
    if not any(lab == reference[1] for _, lab in extra):
        extra.append((Line2D([], [], color=REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.6), reference[1]))
    return ref.tolist()


def _guide_value(y: float | str, sub: pd.DataFrame, unit: Unit) -> float:
    """A guide line's height in a panel: ``y`` itself, or the panel's median of the column ``y`` in ``unit``."""
    if not isinstance(y, str):
        return float(y)
    if y not in sub.columns:
        return math.nan
    vals = pd.to_numeric(sub[y], errors="coerce")
    vals = vals[np.isfinite(vals) & (vals > 0)]
    return float(vals.median()) * unit.factor if len(vals) else math.nan


def _draw_guide(ax: Axes, sub: pd.DataFrame, hline: tuple[float | str, str] | None, unit: Unit,
                extra: _Extra) -> list[float]:
    """The horizontal guide line (dash-dot), where it has a height in this panel; its height."""
    from matplotlib.lines import Line2D

    y_line = _guide_value(hline[0], sub, unit) if hline is not None else math.nan
    if hline is None or not math.isfinite(y_line):
        return []
    ax.axhline(y_line, color="0.45", lw=1.0, ls="-.", zorder=1)
    if not any(lab == hline[1] for _, lab in extra):
        extra.append((Line2D([], [], color="0.45", ls="-.", lw=1.0), hline[1]))
    return [y_line]


def _frame_panel(ax: Axes, sub: pd.DataFrame, ys: list[float], fails: list[tuple[str, str, float]],
                 styles: dict[str, Style], logy: bool, xlabel: str) -> set[str]:
    """A panel's axes around its data: y scale and limits (room for the failures under the data), the failure
    markers, the seq_len axis; the failed statuses drawn."""
    if logy:
        ax.set_yscale("log")
    room = fail_room(len({v for v, _, _ in fails}))
    fit_ylim(ax, ys, logy, room, floor=None if logy else 0.0)
    if not ys:
        no_values(ax)
    failed = draw_failures(ax, fails, styles)
    set_len_axis(ax, sub["seq_len"].tolist(), xlabel)
    return failed


def plot_vs_seq_len(
    frame: pd.DataFrame,
    value: str | Callable[[pd.DataFrame], pd.Series],
    ylabel: str,
    title: str,
    *,
    facets: list[str] | None = None,
    styles: dict[str, Style] | None = None,
    logy: bool = True,
    unit: Callable[[pd.Series], Unit] | None = None,
    hollow_contended: bool = False,
    reference: tuple[str, str] | None = None,
    hline: tuple[float | str, str] | None = None,
    variants: list[str] | None = None,
    no_value_label: str = NO_VALUE,
    panel_ylabel: Callable[[pd.DataFrame], str | None] | None = None,
    note: str = "",
    xlabel: str = "sequence length N (tokens)",
) -> Figure:
    """One line per variant of ``value`` against seq_len (log2 x), a panel per facet.

    Args:
        frame: normalized result rows (all statuses).
        value: the column to plot, or a function of the frame giving the values.
        ylabel / title: axis label and figure title; ``{unit}`` in ``ylabel`` becomes the unit's name.
        facets: columns to split panels by (default: :func:`harness.report.facets.facet_columns`).
        styles: variant -> :class:`harness.report.draw.style.Style` (default:
            :func:`harness.report.draw.style.variant_styles` of the frame).
        logy: log y axis.
        unit: picks the display unit from the values (:func:`harness.report.draw.units.time_unit`,
            :func:`~harness.report.draw.units.bytes_unit`, :func:`~harness.report.draw.units.flops_unit`); None:
            values as they are.
        hollow_contended: draw the points of contended rows hollow (figures whose value comes from a time).
        reference: ``(column, label)`` drawn as a dashed grey line (median per seq_len), e.g. the textbook error
            in the same dtype.
        hline: ``(y, label)`` of a horizontal guide line (e.g. speedup 1 = as fast as ``full``); ``y`` may name a
            column, drawn at its median in each panel, in the figure's unit (a measured ceiling).
        variants: the variants to draw (default: all in the frame).
        no_value_label: what the footnote calls a variant with rows but no value.
        panel_ylabel: a panel's own y label, from its rows (None: ``ylabel``).
        note: a sentence for the footnote (what the figure leaves out on purpose, say).
        xlabel: the x axis's label (seq_len's meaning: ``context length`` in decode figures).

    Returns:
        The figure (not saved); its legend lists the variants drawn and the failure markers drawn.
    """
    facets = facet_columns(frame) if facets is None else facets
    styles = variant_styles(frame) if styles is None else styles
    variants = variant_order(frame["variant"]) if variants is None else variant_order(variants)
    data = _line_data(frame, value, variants, unit, hollow_contended, logy)
    drawn = data.drawn
    panels = [p for p in facet_panels(data.rows, facets) if not p[1]["status"].isin(NOT_DRAWN_STATUSES).all()] or \
        facet_panels(data.rows, facets)  # a panel where nothing ran is said once (footnote, report.md), not drawn empty
    fig, axes = new_figure(*panel_grid(len(panels)))
    failed: set[str] = set()
    any_hollow = False
    extra: _Extra = []
    for ax, (key, sub) in zip(axes, panels):
        fails = [(r.variant, r.status, r.seq_len) for r in sub.itertuples()
                 if r.status != "ok" and r.status not in NOT_DRAWN_STATUSES and r.variant in drawn]
        ys, hollow = _draw_lines(ax, sub, data, variants, styles)
        any_hollow |= hollow
        ys += _draw_reference(ax, sub, reference, data.unit, extra)
        ys += _draw_guide(ax, sub, hline, data.unit, extra)
        failed |= _frame_panel(ax, sub, ys, fails, styles, logy, xlabel)
        own = panel_ylabel(sub) if panel_ylabel is not None else None
        ax.set_ylabel(own or ylabel.format(unit=data.unit.name))
        ax.set_title(panel_title(data.rows, facets, key, sub), fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=12)
    draw_legend(fig, styles, sorted(drawn), failed, any_hollow, extra)
    draw_footnote(fig, data.rows, drawn, "no value" if no_value_label == NO_VALUE else no_value_label, note)
    return fig


# ---------------------------------------------------------------------------------------------- accuracy vs cost
def pareto_front(points: pd.DataFrame, x: str, y: str, rel_tol: float = 0.0, floor: float = 0.0) -> pd.DataFrame:
    """Rows not dominated by another row (one that is no worse in both ``x`` and ``y`` and better in one).

    Args:
        points: rows with finite ``x`` (cost) and ``y`` (error); lower is better in both.
        rel_tol: a slower row joins the frontier only when its ``y`` is lower by more than this fraction (errors
            that differ by round-off tie, and the faster row wins).
        floor: ``y`` values below it count as equal to it (all within round-off of exact).

    Returns:
        The frontier rows, sorted by ``x``.
    """
    pts = points.sort_values([x, y])
    keep, best = [], math.inf
    for idx, val in zip(pts.index, pts[y]):
        val = max(float(val), floor)
        if val < best * (1.0 - rel_tol):
            keep.append(idx)
            best = val
    return pts.loc[keep]


def _pareto_panels(frame: pd.DataFrame, facets: list[str], max_lengths: int
                   ) -> tuple[list[tuple[tuple, float, pd.DataFrame]], set[float]]:
    """``(facet values, seq_len, rows)`` of each case to draw (at most ``max_lengths`` lengths per facet, spread
    over the range, the longest always included), and the lengths left out."""
    panels = []
    hidden: set[float] = set()
    for key, sub in facet_panels(frame, facets):
        lengths = sorted(sub["seq_len"].dropna().unique())
        if len(lengths) > max_lengths:
            pick = np.unique(np.round(np.linspace(0, len(lengths) - 1, max_lengths)).astype(int))
            hidden |= set(lengths) - {lengths[i] for i in pick}
            lengths = [lengths[i] for i in pick]
        for n in lengths:
            at = sub[sub["seq_len"] == n]
            if at["status"].isin(NOT_DRAWN_STATUSES).all():  # nothing ran: said once, not as an empty panel
                continue
            panels.append((key, n, at))
    return panels, hidden


def _pareto_cells(panels: list[tuple[tuple, float, pd.DataFrame]], max_lengths: int
                  ) -> tuple[int, int, list[int]]:
    """``(rows, columns, cell of each panel)``: one row per facet and one column per length where the lengths
    fit, so columns line up by length (a facet without some length leaves that cell empty); otherwise the panels
    flow row by row."""
    keys = list(dict.fromkeys(p[0] for p in panels))
    union = sorted({p[1] for p in panels})
    if 0 < len(union) <= max_lengths:
        ncols = len(union)
        return len(keys), ncols, [keys.index(k) * ncols + union.index(n) for k, n, _ in panels]
    per_facet = max([sum(1 for p in panels if p[0] == k) for k in keys] or [1])
    ncols = max(1, min(per_facet, max_lengths))
    return max(1, math.ceil(len(panels) / ncols)), ncols, list(range(len(panels)))


def _draw_frontier(ax: Axes, t: pd.Series, err: pd.Series, ref: float) -> None:
    """The Pareto frontier of one case: a dashed step line through its points, each ringed. Errors within 2x
    textbook attention's in the same dtype are all round-off (FlashAttention's test), and errors 2% apart are the
    same error: they tie, and the faster one is on the frontier."""
    tie = 2 * ref if math.isfinite(ref) else 0.0
    front = pareto_front(pd.DataFrame({"t": t, "e": err}), "t", "e", rel_tol=_PARETO_REL_TOL, floor=tie)
    ax.step(front["t"], front["e"], where="post", color="0.3", lw=1.0, ls="--", zorder=2)
    ax.plot(front["t"], front["e"], marker="o", markersize=12.5, linestyle="none", markerfacecolor="none",
            markeredgecolor="black", markeredgewidth=1.1, zorder=5)
    ax.set_xscale("log")
    lo, hi = t.min() / 1.6, t.max() * 1.6
    ax.set_xlim(lo, hi)
    log_ticks(ax.xaxis, lo, hi)


def _failed_rows(sub: pd.DataFrame) -> pd.DataFrame:
    """The rows of a case that failed (``unsupported`` ones are left to the footnote and report.md)."""
    return sub[(sub["status"] != "ok") & ~sub["status"].isin(NOT_DRAWN_STATUSES)]


def _name_failures(ax: Axes, bad: pd.DataFrame) -> None:
    """A line at the panel's bottom naming the rows that failed (they have no time to place them by)."""
    if len(bad):
        text = "failed: " + ", ".join(f"{v} ({s})" for v, s in sorted(zip(bad["variant"], bad["status"])))
        ax.text(0.02, 0.02, "\n".join(textwrap.wrap(text, 44)), transform=ax.transAxes, fontsize=8,
                color="0.25", va="bottom", ha="left", gid=FAILURE_GID)


@dataclass(frozen=True)
class _ParetoData:
    """What every panel of the accuracy figure shares: the rows with a time and an error, their time unit, the
    error column, the variants' styles."""

    good: pd.DataFrame
    unit: Unit
    error: str
    styles: dict[str, Style]


def _draw_case(ax: Axes, sub: pd.DataFrame, data: _ParetoData) -> set[str]:
    """One case's panel: each variant's point, the textbook reference, the frontier, the failures named, the axes.

    Returns:
        What the legend must explain: ``hollow`` (a contended point), ``reference``, ``frontier``.
    """
    good = data.good.loc[data.good.index.intersection(sub.index)]
    t = good["time_ms_median"].astype(float) * data.unit.factor
    err = good[data.error].astype(float)
    hollow = contended_mask(good)
    for v, idx in good.groupby("variant", sort=False).groups.items():
        st = data.styles.get(v, Style("0.5", "o", label=v))
        draw_points(ax, t[idx], err[idx], hollow[idx], st, 7, zorder=4)
    shown = {"hollow"} if hollow.any() else set()
    # the textbook error in the same dtype is the round-off yardstick where the panel's errors are against the
    # pattern itself; on sparse patterns they are against dense attention (what the pattern drops) instead
    ref = _textbook_reference(sub).dropna()
    ref = float(ref.median()) if len(ref) else math.nan
    ys = err.tolist()
    if math.isfinite(ref):
        ax.axhline(ref, color=REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.2, zorder=1)
        ys.append(ref)
        shown.add("reference")
    if len(good):
        _draw_frontier(ax, t, err, ref)
        shown.add("frontier")
    ax.set_yscale("log")
    bad = _failed_rows(sub)
    fit_ylim(ax, at_least_decades(ys, 3), True, 0.1 if len(bad) else 0.0)
    if good.empty:
        no_values(ax)
        ax.set_xticks([])
    _name_failures(ax, bad)
    ax.set_xlabel(f"median time ({data.unit.name}, log)")
    ax.set_ylabel("rel. L2 error (log)" if math.isfinite(ref) or good.empty else "rel. L2 error vs dense (log)")
    return shown


def _pareto_legend(fig: Figure, styles: dict[str, Style], drawn: set[str], shown: set[str]) -> None:
    """The legend: the variants drawn, the frontier and the reference line where drawn, hollow where drawn."""
    from matplotlib.lines import Line2D

    extra = []
    if "frontier" in shown:
        extra.append((Line2D([], [], color="0.3", ls="--", marker="o", markersize=10, markerfacecolor="none",
                             markeredgecolor="black"), "Pareto frontier\n(errors within 2x textbook's tie)"))
    if "reference" in shown:
        extra.append((Line2D([], [], color=REFERENCE_COLOR, ls=(0, (4, 3)), lw=1.2),
                      "textbook attention,\nsame dtype"))
    draw_legend(fig, styles, sorted(drawn), set(), "hollow" in shown, extra)


def plot_pareto(frame: pd.DataFrame, *, facets: list[str] | None = None, styles: dict[str, Style] | None = None,
                error: str = "err_metric", max_lengths: int = _MAX_PARETO_LENGTHS) -> Figure:
    """Accuracy against cost: error against median time for each case, the Pareto frontier marked.

    A panel per case (facet and seq_len); at most ``max_lengths`` lengths per facet are shown (spread over the
    range, the longest always included) to keep panels readable. Rows that failed have no time: a panel names
    them in a line at its bottom; ``unsupported`` rows are left to the footnote and report.md.

    Args:
        frame: normalized result rows.
        facets / styles: as in :func:`plot_vs_seq_len`.
        error: the error column (``err_metric``: ``approx_err_rel_l2`` where set, else ``err_rel_l2``).
        max_lengths: most seq_len panels per facet.

    Returns:
        The figure (not saved).
    """
    facets = facet_columns(frame) if facets is None else facets
    styles = variant_styles(frame) if styles is None else styles
    panels, hidden = _pareto_panels(frame, facets, max_lengths)
    ok = frame[frame["status"] == "ok"]
    t_all = pd.to_numeric(ok["time_ms_median"], errors="coerce")
    e_all = pd.to_numeric(ok[error], errors="coerce")
    good = ok[np.isfinite(t_all) & np.isfinite(e_all) & (t_all > 0) & (e_all > 0)]
    data = _ParetoData(good, time_unit(good["time_ms_median"]), error, styles)
    nrows, ncols, cells = _pareto_cells(panels, max_lengths)
    fig, axes = new_figure(nrows, ncols, w=3.5, h=3.1)
    shown: set[str] = set()
    for ax in axes:
        ax.set_visible(False)
    for cell, (key, n, sub) in zip(cells, panels):
        ax = axes[cell]
        ax.set_visible(True)
        shown |= _draw_case(ax, sub, data)
        title = panel_title(frame, facets, key, sub, width=34)
        ax.set_title(f"{title}\nN={fmt_len(n)}" if title else f"N={fmt_len(n)}", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    title = "Accuracy vs cost per case (lower-left is better; ringed: Pareto frontier)"
    if hidden:
        title += f"\nlengths not shown here (see the other plots): {', '.join(fmt_len(n) for n in sorted(hidden))}"
    fig.suptitle(title, fontsize=12)
    _pareto_legend(fig, styles, set(good["variant"]), shown)
    draw_footnote(fig, frame, set(good["variant"]), "no time and error")
    return fig


# ---------------------------------------------------------------------------------------------- the figures
def _speedup(df: pd.DataFrame) -> pd.Series:
    return df["speedup_vs_full"] if "speedup_vs_full" in df.columns else pd.Series(np.nan, index=df.index)


def _textbook_reference(frame: pd.DataFrame) -> pd.Series:
    """The textbook error in the same dtype on rows whose error is against their own pattern (NaN on rows whose
    ``err_metric`` is against dense attention: approximations and sparse patterns)."""
    ref = pd.to_numeric(frame.get("textbook_err_rel_l2", pd.Series(np.nan, index=frame.index)), errors="coerce")
    if "approx_err_rel_l2" in frame.columns:
        ref = ref.where(pd.to_numeric(frame["approx_err_rel_l2"], errors="coerce").isna())
    return ref.where(ref > 0)


def time_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    """Median time per call against seq_len."""
    return plot_vs_seq_len(frame, "time_ms_median", "median time ({unit})",
                           "Median time per call vs sequence length (log-log; lower is better)", facets=facets,
                           styles=styles, unit=time_unit, hollow_contended=True)


def memory_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    """Peak memory above the inputs against seq_len."""
    return plot_vs_seq_len(frame, "peak_mem_bytes", "peak memory above inputs ({unit})",
                           "Peak memory vs sequence length (log-log; lower is better)", facets=facets, styles=styles,
                           unit=bytes_unit)


def error_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    """Relative L2 error against seq_len, with textbook attention's in the same dtype as the yardstick."""
    return plot_vs_seq_len(frame.assign(_textbook=_textbook_reference(frame)), "err_metric",
                           "relative L2 error vs float64",
                           "Error against exact float64 attention (lower is better; sparse patterns and "
                           "approximations: against dense attention)", facets=facets, styles=styles,
                           reference=("_textbook", "textbook attention,\nsame dtype"),
                           panel_ylabel=lambda sub: None if _textbook_reference(sub).notna().any()
                           or sub["status"].ne("ok").all() else "relative L2 error vs dense float64")


def speedup_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    """``full``'s time over the variant's on the same inputs, against seq_len."""
    return plot_vs_seq_len(frame, _speedup, "speedup over full (×, log)",
                           "Speedup over full on the same inputs (above 1: faster than full)", facets=facets,
                           styles=styles, hollow_contended=True, hline=(1.0, "as fast as full"),
                           no_value_label="no full to compare")


def throughput_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    """Useful FLOP/s (attended pairs only) against seq_len."""
    return plot_vs_seq_len(frame, "tflops", "useful throughput ({unit})",
                           "Throughput vs sequence length (attended pairs only; higher is better)", facets=facets,
                           styles=styles, logy=False, unit=flops_unit, hollow_contended=True)


def pct_of_peak_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    """Throughput as a share of the measured matmul peak, exact variants only (an approximation skips the work its
    useful FLOPs count)."""
    exact = [v for v in variant_order(frame["variant"]) if not styles.get(v, Style("", "")).approx]
    left = [v for v in variant_order(frame["variant"]) if v not in exact]
    note = (f"Approximations not drawn ({', '.join(left)}): they skip the work their useful FLOPs count, so a share "
            "of the peak says nothing about them." if left else "")
    return plot_vs_seq_len(frame, "pct_of_peak", "% of measured matmul peak",
                           "Throughput as a share of the device's measured matmul peak (exact variants)",
                           facets=facets, styles=styles, logy=False, hollow_contended=True, variants=exact, note=note)


def accuracy_vs_cost_figure(frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    """Error against median time per case, the Pareto frontier ringed."""
    return plot_pareto(frame, facets=facets, styles=styles)
