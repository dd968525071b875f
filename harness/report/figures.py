"""The report's figures: which ones a run has, drawn and written (in parallel processes where there are cores).

:data:`FIGURE_MAKERS` is the list: name -> a function of ``(frame, facets, styles)`` returning a matplotlib figure,
from :mod:`harness.report.plots` (time, speedup, memory, error, accuracy against cost, throughput, share of the peak),
:mod:`harness.report.roofline_plots` (decode and roofline) and :mod:`harness.report.varlen_report` (pad or pack). Every
figure draws each variant in the report's one :class:`harness.report.draw.style.Style`. Add a figure with one entry
here (and, when it is conditional, a test in :func:`figure_names`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.report import roofline_plots
from harness.report.draw.canvas import figure_svg, save_figure
from harness.report.draw.style import Style, variant_styles
from harness.report.facets import FACET_CANDIDATES, facet_columns
from harness.report.plots import (
    accuracy_vs_cost_figure,
    error_figure,
    memory_figure,
    pct_of_peak_figure,
    speedup_figure,
    throughput_figure,
    time_figure,
)
from harness.report.varlen_report import VARLEN_COLUMNS, has_varlen, pad_or_pack_figure
from harness.store.columns import CASE_COLUMNS, CASE_KEY

if TYPE_CHECKING:  # imported where a figure is drawn (report.md's tables need no matplotlib)
    from matplotlib.figure import Figure

__all__ = ["FIGURES", "FIGURE_MAKERS", "draw_figures", "figure_names", "make_figure", "make_figures",
           "write_figures"]

#: The report's figures, the most expensive first (so parallel workers finish together): name -> function of
#: ``(frame, facets, styles)``. Add a figure here (and, when it is conditional, in :func:`figure_names`).
FIGURE_MAKERS: dict[str, Callable[[pd.DataFrame, list[str], dict[str, Style]], Figure]] = {
    "accuracy_vs_cost": accuracy_vs_cost_figure,
    "time": time_figure,
    "memory": memory_figure,
    "error": error_figure,
    "speedup": speedup_figure,
    "throughput": throughput_figure,
    "pct_of_peak": pct_of_peak_figure,
    "pad_or_pack": pad_or_pack_figure,  # variable-length batches only (harness/report/varlen_report.py)
    **roofline_plots.FIGURE_MAKERS,  # decode rows and the roofline (harness/report/roofline_plots.py)
}
FIGURES: tuple[str, ...] = tuple(FIGURE_MAKERS)
#: Columns the figures read (besides facets and panel titles).
_PLOTTED = ("run", "variant", "status", "seq_len", "time_ms_median", "peak_mem_bytes", "err_metric", "err_rel_l2",
            "approx_err_rel_l2",
            "textbook_err_rel_l2", "speedup_vs_full", "tflops", "pct_of_peak", "contended", "exact",
            CASE_KEY, *VARLEN_COLUMNS, *CASE_COLUMNS) + roofline_plots.COLUMNS


def figure_names(frame: pd.DataFrame) -> list[str]:
    """The figures a report of ``frame`` has: all of :data:`FIGURES`, ``pct_of_peak`` only where recorded, the decode
    and roofline figures (:mod:`harness.report.roofline_plots`) only where there is data for them."""
    has_peak = "pct_of_peak" in frame.columns and frame["pct_of_peak"].notna().any()
    extra = set(roofline_plots.figure_names(frame))
    return [n for n in FIGURES if (n != "pct_of_peak" or has_peak)
            and (n not in roofline_plots.FIGURES or n in extra) and (n != "pad_or_pack" or has_varlen(frame))]


def _slim(frame: pd.DataFrame, facets: list[str]) -> pd.DataFrame:
    """Only the columns the figures read: every filter copies the frame, and a run's rows are wide."""
    return frame[[c for c in frame.columns if c in _PLOTTED or c in facets or c in FACET_CANDIDATES]]


def make_figure(name: str, frame: pd.DataFrame, facets: list[str], styles: dict[str, Style]) -> Figure:
    """One report figure by name (see :data:`FIGURES`)."""
    if name not in FIGURE_MAKERS:
        raise ValueError(f"figure {name!r} is not a report figure (allowed: {', '.join(FIGURES)})")
    return FIGURE_MAKERS[name](frame, facets, styles)


def make_figures(frame: pd.DataFrame, facets: list[str] | None = None) -> dict[str, Figure]:
    """All report figures for ``frame`` (normalized rows, with ``speedup_vs_full`` from the summary).

    Args:
        frame: rows of all runs; a ``speedup_vs_full`` column is used for the speedup figure when present.
        facets: facet columns (default: :func:`facet_columns`).

    Returns:
        figure name -> figure: ``time``, ``memory``, ``error``, ``speedup``, ``throughput``, ``accuracy_vs_cost``
        and, when any row has ``pct_of_peak``, ``pct_of_peak``.
    """
    facets = facet_columns(frame) if facets is None else facets
    styles = variant_styles(frame)
    slim = _slim(frame, facets)
    return {name: make_figure(name, slim, facets, styles) for name in figure_names(frame)}


@dataclass(frozen=True)
class _Job:
    """What every worker of :func:`write_figures` draws from (picklable, for spawned workers)."""

    frame: pd.DataFrame
    facets: list[str]
    styles: dict[str, Style]
    out_dir: Path
    formats: tuple[str, ...]
    inline_svg: bool = False


_job: _Job | None = None  # what a forked worker of write_figures draws from (inherited, not pickled)


def _write_one(name: str, job: _Job | None = None) -> tuple[str, list[Path], str | None]:
    job = job if job is not None else _job
    assert job is not None, "a forked worker started without its job"
    fig = make_figure(name, job.frame, job.facets, job.styles)
    try:
        files = save_figure(fig, job.out_dir, name, job.formats)
        return name, files, figure_svg(fig) if job.inline_svg else None
    finally:
        fig.clear()


def _default_workers() -> int:
    """The CPU cores this process may use, at most 4."""
    import os

    avail = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(avail, 4)


def _write_in_workers(names: list[str], job: _Job, workers: int) -> dict[str, tuple[str, list[Path], str | None]]:
    """Draw and write ``names`` in ``workers`` processes: forked, or spawned when torch is loaded in this process
    (a process forked after OpenMP started may hang). Empty when the processes could not start (a sandbox, a
    broken pool): the caller draws them itself."""
    import multiprocessing as mp
    import sys
    from concurrent.futures import ProcessPoolExecutor

    global _job
    spawn = "torch" in sys.modules or sys.platform != "linux"
    ctx = mp.get_context("spawn" if spawn else "fork")
    _job = job
    try:
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_write_one, n, job if spawn else None) for n in names]
            return {r[0]: r for r in (f.result() for f in futures)}
    except (OSError, RuntimeError):
        return {}
    finally:
        _job = None


def write_figures(frame: pd.DataFrame, out_dir: str | Path, facets: list[str] | None = None,
                  formats: tuple[str, ...] = ("png",), workers: int | None = None) -> dict[str, list[Path]]:
    """Build and save every report figure, in parallel processes where the machine has more than one core.

    Each worker builds and writes whole figures (drawing a figure is single-threaded matplotlib work, most of a
    report's time). Workers are forked, or spawned when torch is loaded in this process (a process forked after
    OpenMP started may hang); one worker, or a failure to start them, means the figures are written here.

    Args:
        frame: normalized rows, with ``speedup_vs_full`` (see :func:`harness.report.summary.with_baseline_ratios`).
        out_dir: the folder of the image files (created).
        facets: facet columns (default: :func:`harness.report.facets.facet_columns`).
        formats: image formats (``png``, ``svg``).
        workers: processes (default: the CPU cores available, at most 4).

    Returns:
        figure name -> the files written, in :data:`FIGURES` order.
    """
    return draw_figures(frame, out_dir, facets, formats, workers)[0]


def draw_figures(frame: pd.DataFrame, out_dir: str | Path, facets: list[str] | None = None,
                 formats: tuple[str, ...] = ("png",), workers: int | None = None, inline_svg: bool = False
                 ) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """:func:`write_figures`, and with ``inline_svg`` each figure's SVG text for report.html
    (:func:`harness.report.draw.canvas.figure_svg`), made by the worker that drew it.

    Returns:
        ``(figure name -> files written, figure name -> SVG text)``; the second is empty without ``inline_svg``.
    """
    facets = facet_columns(frame) if facets is None else facets
    names = figure_names(frame)
    job = _Job(_slim(frame, facets), facets, variant_styles(frame), Path(out_dir), tuple(formats), inline_svg)
    workers = max(1, min(_default_workers() if workers is None else workers, len(names)))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    done = _write_in_workers(names, job, workers) if workers > 1 else {}
    for name in names:
        if name not in done:
            done[name] = _write_one(name, job)
    files = {name: done[name][1] for name in names}
    svgs = {name: done[name][2] for name in names if done[name][2] is not None}
    return files, svgs
