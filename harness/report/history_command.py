"""``attnbench history RUNS... [--fail step:PCT%]``: the runs as a history, its steps, their causes, an exit code.

Writes into ``--out`` (default: ``history/`` in the folder that holds the runs): ``steps.csv`` (one row per step),
``series.csv`` (one row per case, variant and run, the yardstick beside it) and ``plots/step_NN_<case>.png`` (a
figure per stepped case), and prints the steps and the verdict. Exit status: 0 no step up beyond the threshold,
1 such a step not put down to the machine, 2 bad arguments or unreadable runs, 3 inconclusive (no series with
enough runs, or the steps beyond the threshold are the machine's: its yardstick moved as much over the same runs).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from harness.report.history import CAUSES, History, HistoryStep, Verdict, build_history, history_verdict
from harness.report.markdown import fmt_value
from harness.report.steps import MIN_POINTS, PENALTY_FACTOR
from harness.store.reader import is_run_dir, read_runs

__all__ = ["DEFAULT_RULE", "format_history", "history_main", "parse_step_rule"]

#: The rule when ``--fail`` is not given.
DEFAULT_RULE = "step:5%"
_RULE = re.compile(r"^step:(\d+(?:\.\d+)?)%$")
_ALLOWED_RULE = "step:PERCENT%, e.g. step:5%"
_MAX_LINES = 40


def parse_step_rule(text: str) -> float:
    """``step:5%`` -> 0.05.

    Raises:
        ValueError: naming the value and what is allowed.
    """
    m = _RULE.match(text.strip())
    if not m:
        raise ValueError(f"--fail={text!r} is not a valid rule (allowed: {_ALLOWED_RULE})")
    return float(m.group(1)) / 100


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attnbench history",
        description="Every (case, variant) as a series over the runs in time order, with the machine yardstick "
                    "beside it; finds where a time or memory stepped (a piecewise-constant fit with a penalty), by "
                    "how much, and whether the machine stepped too. Exit status: 0 no step up beyond the rule, 1 a "
                    "step up beyond it not put down to the machine, 2 bad arguments, 3 inconclusive.")
    p.add_argument("runs", nargs="*", metavar="RUN",
                   help="run directories or folders of runs (default: every run under --results-dir)")
    p.add_argument("--fail", default=DEFAULT_RULE, metavar="step:PCT%",
                   help="a step up (slower, or more memory) beyond PCT fails (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: history/ in the folder holding the runs)")
    p.add_argument("--last", type=int, default=None, metavar="N", help="only the last N runs (in time order)")
    p.add_argument("--results-dir", default="results", metavar="DIR", help="where runs are when no RUN is given")
    p.add_argument("--no-plots", action="store_true", help="steps.csv and series.csv only")
    return p


def _default_out(runs: list[str]) -> Path:
    first = Path(runs[0])
    return (first.parent if is_run_dir(first) or first.is_file() else first) / "history"


def _step_line(s: HistoryStep, width: int) -> str:
    """One step: cause, metric, size with its interval, variant, case, the levels, what else changed."""
    size = f"{100 * (s.ratio - 1):+.1f}% [{100 * (s.ratio_low - 1):+.1f}, {100 * (s.ratio_high - 1):+.1f}]"
    unit = " ms" if s.metric == "time" else " B"
    yard = f" (yardstick {100 * (s.yardstick_ratio - 1):+.1f}%)" if s.cause == "machine" else ""
    changed = f"; changed: {s.changed}" if s.changed else ""
    return (f"    {s.cause:<12} {s.metric:<6} {size:<24} {s.variant:<{width}}  {s.case}  "
            f"{fmt_value(s.before)}{unit} -> {fmt_value(s.after)}{unit}{yard}{changed}")


def _run_header(s: HistoryStep) -> str:
    commit = f" (commit {s.commit[:10]})" if s.commit else ""
    prev = f" ({s.prev_commit[:10]})" if s.prev_commit else ""
    return f"  at {s.run}{commit}, after {s.prev_run}{prev}:"


def format_history(hist: History, verdict: Verdict, threshold: float) -> str:
    """The command's report: the runs, the rule, the steps grouped by the run they start at (the change, in %,
    with its 95% interval), what was not judged, the verdict."""
    runs = hist.runs
    span = f"{runs[0].name} .. {runs[-1].name}" if runs else "none"
    yard = "recorded" if hist.has_yardstick() else "not recorded (no step can be put down to the machine)"
    lines = [f"attnbench history: {len(runs)} run(s) ({span}) in time order; {len(hist.judged)} series (case x "
             f"variant) judged, {len(hist.unjudged)} with fewer than {MIN_POINTS} runs not; machine yardstick {yard}",
             f"rule: a step is a change of level in a piecewise-constant fit of log(value) over the runs (PELT, "
             f"absolute deviations, penalty {PENALTY_FACTOR:g} x noise x ln(runs)); step:{threshold * 100:g}% fails "
             "a rise of the time or memory beyond it, its interval above 1, unless the machine yardstick moved as "
             "much over the same runs"]
    counts = {c: sum(s.cause == c for s in hist.steps) for c in CAUSES}
    lines.append(f"steps: {len(hist.steps)} ({', '.join(f'{c} {n}' for c, n in counts.items() if n) or 'none'})")
    shown = hist.steps[:_MAX_LINES]
    width = max((len(s.variant) for s in shown), default=0)
    for i, s in enumerate(shown):
        if i == 0 or (s.run, s.prev_run) != (shown[i - 1].run, shown[i - 1].prev_run):
            lines.append(_run_header(s))
        lines.append(_step_line(s, width))
    if len(hist.steps) > _MAX_LINES:
        lines.append(f"  ... and {len(hist.steps) - _MAX_LINES} more (steps.csv)")
    lines.append(f"verdict: {verdict.reason} (exit {verdict.code})")
    return "\n".join(lines)


def _write_outputs(hist: History, out: Path, data_frame, plots: bool) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    hist.steps_frame().to_csv(out / "steps.csv", index=False)
    hist.series.to_csv(out / "series.csv", index=False)
    written = [out / "steps.csv", out / "series.csv"]
    if plots and hist.steps:
        from harness.report.draw.style import variant_styles
        from harness.report.history_plots import write_step_figures

        files = write_step_figures(hist, out / "plots", variant_styles(data_frame))
        written += [f for fs in files.values() for f in fs]
    return written


def history_main(argv: list[str] | None = None) -> int:
    """``attnbench history [RUN ...] [--fail step:PCT%] [--out DIR] [--last N] [--no-plots]``.

    Returns:
        0, 1, 2 or 3 (see the module docstring).
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        threshold = parse_step_rule(args.fail)
        if args.last is not None and args.last < 2:
            raise ValueError(f"--last={args.last} is too few runs (allowed: 2 or more)")
        runs = args.runs or [args.results_dir]
        data = read_runs(runs)
        if data.frame.empty:
            raise ValueError(f"{', '.join(runs)} hold no rows (allowed: runs with results)")
    except ValueError as exc:
        print(f"attnbench history: error: {exc}", file=sys.stderr)
        return 2
    for problem in data.problems:
        print(f"attnbench history: warning: {problem}", file=sys.stderr)
    frame = data.frame
    hist = build_history(frame, data.envs)
    if args.last is not None and len(hist.runs) > args.last:
        keep = {r.name for r in hist.runs[-args.last:]}
        frame = frame[frame["run"].isin(keep)]
        hist = build_history(frame, data.envs)
    verdict = history_verdict(hist, threshold)
    out = Path(args.out) if args.out else _default_out(runs)
    written = _write_outputs(hist, out, frame, not args.no_plots)
    print(format_history(hist, verdict, threshold))
    print(f"written: {out / 'steps.csv'}, {out / 'series.csv'}"
          + (f", {len(written) - 2} figure(s) in {out / 'plots'}" if len(written) > 2 else ""))
    return verdict.code
