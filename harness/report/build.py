"""Build a run's report: tidy ``results.csv``, per-case ``summary.csv``, scaling table, plots and ``report.md``.

``write_report(run_dirs, out_dir)`` reads one or more runs, and writes into ``out_dir``:

- ``results.csv``: every row of every run given (public columns first);
- ``summary.csv``: per case and variant: status, median time, speedup over ``full`` on the same inputs, peak
  memory and its ratio to ``full``'s, error (:mod:`harness.report.summary`);
- ``scaling.csv``: per variant and facet, the fitted exponents of time and memory in seq_len and the crossover
  length where the variant first beats ``full`` (:mod:`harness.report.scaling`);
- ``plots/*.png`` (and ``plots/*.svg`` when asked): see :mod:`harness.report.figures`;
- ``report.md``: environment, tables and plots, readable on GitHub (:mod:`harness.report.document`);
- ``report.html``: the same as one page that opens offline, with sortable and filterable tables, the figures
  inline and, for several runs, the history (:mod:`harness.report.html_report`);
- ``plots/attention/*.png``: the mask of each pattern and the worst cases' error maps, drawn by ``attnbench show``
  in a child process (:mod:`harness.report.pictures`);

``report_main(argv)`` is the ``attnbench report RUN [RUN ...] [--out DIR]`` command: it writes the tables and
report.md and leaves the plots to a background process (:mod:`harness.report.background`) unless told to wait; that
process writes report.html again with the figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.base.files import write_atomic
from harness.report.background import PENDING_MARKER, start_plots_in_background
from harness.report.document import ReportTables, report_markdown
from harness.report.facets import facet_columns
from harness.report.figures import draw_figures, figure_names
from harness.report.html_report import write_report_html
from harness.report.pictures import draw_pictures, picture_plan
from harness.report.scaling import scaling_table
from harness.report.summary import summary_table, with_baseline_ratios
from harness.store.reader import RunData, latest_run, read_runs, tidy
from harness.store.records import csv_text

__all__ = ["PLOT_FORMATS", "build_report", "default_out_dir", "report_main", "report_with_background_plots",
           "write_plots", "write_report"]

#: Image formats of the plots; report.md links the PNG.
PLOT_FORMATS: tuple[str, ...] = ("png",)


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

    svgs: dict[str, str] | None = None
    pictures = picture_plan(frame) if formats else []
    if formats and draw_plots:
        plot_files, svgs = draw_figures(frame, out / "plots", facets, formats, inline_svg=True)
    else:
        plot_files = {name: [out / "plots" / f"{name}.{fmt}" for fmt in formats] for name in figure_names(frame)
                      } if formats else {}

    tables = ReportTables(frame, summary, scaling, facets, plot_files, pictures)
    md = report_markdown(data, tables, out)
    path = out / "report.md"
    path.write_text(md)
    write_report_html(data, tables, out, svgs)
    if formats and draw_plots:
        draw_pictures(pictures, out / "plots")
    return path


def write_plots(data: RunData, out_dir: str | Path, formats: tuple[str, ...] = PLOT_FORMATS) -> list[Path]:
    """Draw and write the report's plots of ``data`` into ``out_dir/plots`` (the part of :func:`build_report`
    that takes most of its time), report.html again with the figures in it, then the attention pictures into
    ``out_dir/plots/attention``.

    Returns:
        The plot files written (the pictures' child says what it drew in ``plots/attention/show.log``).
    """
    frame = with_baseline_ratios(data.frame)
    facets = facet_columns(frame)
    files, svgs = draw_figures(frame, Path(out_dir) / "plots", facets, formats, inline_svg=True)
    pictures = picture_plan(frame)
    tables = ReportTables(frame, summary_table(frame), scaling_table(frame, facets), facets, files, pictures)
    write_report_html(data, tables, out_dir, svgs)
    draw_pictures(pictures, Path(out_dir) / "plots")
    return [f for fs in files.values() for f in fs]


def write_report(run_dirs: list[str | Path] | tuple[str | Path, ...] | str | Path, out_dir: str | Path,
                 formats: tuple[str, ...] = PLOT_FORMATS) -> Path:
    """Read the runs and write the report into ``out_dir``, plots included.

    Args:
        run_dirs: run directories, folders of runs, results CSVs or pytest-benchmark JSON files (see
            :func:`harness.store.reader.read_runs`).
        out_dir: output directory (created).
        formats: plot image formats (default PNG; empty: no plots).

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
    pid = start_plots_in_background(runs, out, svg)
    if pid is None:
        write_plots(data, out, formats)
    return path, pid


def _parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--plots-only", action="store_true", help=argparse.SUPPRESS)  # the background child
    return parser


def _plots_only(data: RunData, out: Path, formats: tuple[str, ...]) -> int:
    """The background child: draw the plots, then remove the ``.pending`` marker whatever happened."""
    try:
        files = write_plots(data, out, formats)
    finally:
        (out / "plots" / PENDING_MARKER).unlink(missing_ok=True)
    print(f"plots: {len(files)} file(s) in {out / 'plots'}")
    return 0


def report_main(argv: list[str] | None = None) -> int:
    """``attnbench report [RUN ...] [--out DIR] [--wait] [--svg] [--no-plots]``: write the report, print where.

    With no RUN, the latest run under ``results/`` is reported. Problems met while reading (a damaged record, a
    truncated CSV) are printed as warnings, one line each. The tables and report.md are written first and the
    command returns; the plots (PNG; SVG too with ``--svg``) are drawn by a background process, in
    ``OUT/plots`` a few seconds later (``--wait`` draws them before returning).

    Returns:
        0 on success, 2 on bad arguments or unreadable runs.
    """
    try:
        args = _parser().parse_args(argv)
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
        return _plots_only(data, out, formats)
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
