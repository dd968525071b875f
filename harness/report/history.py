"""Runs as a history: every (case, variant) as a series over runs in time order, its steps, and who made them.

- **Run order**: by the run's time (the earliest ``timestamp`` of its rows, else ``env.json``'s), then its name;
  each run carries its ``git_commit`` (the commit its rows name most often).
- **Series**: one point per run where the (case, variant) has an ``ok`` row (the median of them if several):
  ``time_ms_median``, ``peak_mem_bytes`` and, beside them, the machine yardstick ``yardstick_ms`` where the run
  recorded it (a fixed workload timed in the same rounds, independent of the code under test).
- **Steps**: :func:`harness.report.steps.find_steps` on the time, the memory and the yardstick of every series with
  at least :data:`harness.report.steps.MIN_POINTS` points.
- **Cause** of a time step: the yardstick of the same rows is compared over the same two segments of runs (the
  runs since the series' previous step, and until its next): ``machine`` when it moved the same way (its ratio's
  95% interval excludes 1) by at least :data:`MACHINE_SHARE` of the step (in log terms), ``code`` when it did not,
  ``no yardstick`` when it was not recorded on both sides (fewer than two runs each). Comparing over the step's
  own segments, not where the yardstick's own change point fell, keeps a step placed a run early or late by noise
  with its cause. A memory step is the code's (the yardstick measures speed). A code change smaller than the
  machine's at the same run is reported as the machine's: the history cannot tell them apart, and
  :func:`history_verdict` says inconclusive rather than pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from harness.report.steps import MIN_POINTS, MIN_SEGMENT, Step, find_steps, level_ratio
from harness.store.columns import CASE_KEY, case_text

__all__ = ["CAUSES", "ENV_COLUMNS", "MACHINE_SHARE", "METRICS", "YARDSTICK", "History", "HistoryStep", "RunInfo",
           "Verdict", "build_history", "history_verdict", "run_order", "series_table"]

#: The machine yardstick's column (issue 28): median time of a fixed workload timed in the same rounds.
YARDSTICK = "yardstick_ms"
#: Metric name -> (column, the least value counted, what a step of it means).
METRICS: dict[str, tuple[str, float, str]] = {
    "time": ("time_ms_median", 1e-6, "median time per call"),
    "memory": ("peak_mem_bytes", 4096.0, "peak memory above the inputs"),
}
#: The least part of a time step (in log terms) the yardstick's move over the same runs must make for the step to be
#: the machine's: a yardstick that moved by about as much as the time did explains it.
MACHINE_SHARE = 0.5
#: What a step is put down to.
CAUSES = ("code", "machine", "no yardstick")
#: Columns whose change between the two runs of a step is named beside it.
ENV_COLUMNS = ("torch_version", "harness_version", "device_name", "hostname", "threads")


@dataclass(frozen=True)
class RunInfo:
    """One run in the history: its name, time (ISO text, '' when unknown) and commit ('' when unknown)."""

    name: str
    time: str
    commit: str


@dataclass(frozen=True)
class HistoryStep:
    """One step of one series, with its runs and cause (a row of ``steps.csv``)."""

    case: str
    variant: str
    metric: str
    run: str
    commit: str
    prev_run: str
    prev_commit: str
    position: int
    ratio: float
    ratio_low: float
    ratio_high: float
    before: float
    after: float
    cause: str
    yardstick_ratio: float
    changed: str
    case_key: str


@dataclass
class History:
    """The runs in order, the series (one row per case, variant and run), the steps, and what was not judged.

    Args:
        runs: in time order.
        series: columns ``case_key``, ``case``, ``variant``, ``run``, ``position``, ``commit``, the metrics' columns
            and ``yardstick_ms``.
        steps: every step found.
        judged: (case_key, variant) series with enough points to be judged.
        unjudged: (case_key, variant) -> its number of points, for the series with too few.
    """

    runs: list[RunInfo]
    series: pd.DataFrame
    steps: list[HistoryStep] = field(default_factory=list)
    judged: list[tuple[str, str]] = field(default_factory=list)
    unjudged: dict[tuple[str, str], int] = field(default_factory=dict)

    def steps_frame(self) -> pd.DataFrame:
        """The steps as a table (``steps.csv``), in run order."""
        cols = list(HistoryStep.__dataclass_fields__)
        return pd.DataFrame([asdict(s) for s in self.steps], columns=cols)

    def has_yardstick(self) -> bool:
        """Whether any run recorded the machine yardstick."""
        return bool(self.series[YARDSTICK].notna().any()) if len(self.series) else False


# ---------------------------------------------------------------------------------------------- runs and series
def _mode(values: pd.Series) -> str:
    vals = values.dropna().astype(str).str.strip()
    vals = vals[vals != ""]
    return str(vals.mode().iloc[0]) if len(vals) else ""


def run_order(frame: pd.DataFrame, envs: dict[str, dict] | None = None) -> list[RunInfo]:
    """The runs of ``frame`` in time order (earliest row ``timestamp``, else ``env.json``'s, then the name)."""
    envs = envs or {}
    stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601")
    infos = []
    for name, idx in frame.groupby("run", sort=False).groups.items():
        t = stamps.loc[idx].min()
        if pd.isna(t):
            env = envs.get(str(name)) or {}
            inner = env.get("environment") if isinstance(env.get("environment"), dict) else env
            t = pd.to_datetime(inner.get("timestamp"), utc=True, errors="coerce")
        infos.append((pd.Timestamp.max.tz_localize("UTC") if pd.isna(t) else t, str(name),
                      RunInfo(str(name), "" if pd.isna(t) else t.isoformat(), _mode(frame.loc[idx, "git_commit"]))))
    return [info for _, _, info in sorted(infos, key=lambda x: (x[0], x[1]))]


def series_table(frame: pd.DataFrame, runs: list[RunInfo]) -> pd.DataFrame:
    """One row per (case, variant, run) with an ``ok`` row: the metrics (medians over its rows), the yardstick,
    the run's position and commit, and the environment columns of :data:`ENV_COLUMNS`."""
    position = {r.name: i for i, r in enumerate(runs)}
    ok = frame[frame["status"] == "ok"].copy()
    value_cols = [col for col, _, _ in METRICS.values()] + [YARDSTICK]
    for col in value_cols:
        ok[col] = pd.to_numeric(ok[col], errors="coerce") if col in ok.columns else np.nan
    for col in ENV_COLUMNS:
        ok[col] = ok[col].astype(object).where(ok[col].notna(), "").astype(str) if col in ok.columns else ""
    keys = [CASE_KEY, "variant", "run"]
    if ok.empty:
        return pd.DataFrame(columns=keys + ["case", "position", "commit"] + value_cols + list(ENV_COLUMNS))
    grouped = ok.groupby(keys, sort=False, dropna=False)
    out = grouped[value_cols].median().join(grouped[list(ENV_COLUMNS)].first()).reset_index()
    texts = ok.drop_duplicates(CASE_KEY).set_index(CASE_KEY)
    out["case"] = out[CASE_KEY].map(lambda k: case_text(texts.loc[k].to_dict()))
    out["position"] = out["run"].map(position)
    out["commit"] = out["run"].map({r.name: r.commit for r in runs})
    return out.sort_values([CASE_KEY, "variant", "position"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- steps
def _steps_at_positions(sub: pd.DataFrame, col: str, floor: float) -> list[tuple[int, Step]]:
    """The steps of one column of one series, with the run position each starts at."""
    have = sub[sub[col].notna()]
    if len(have) < MIN_POINTS:
        return []
    positions = have["position"].to_numpy()
    return [(int(positions[s.index]), s) for s in find_steps(have[col].to_numpy(), floor=floor)]


def _cause(sub: pd.DataFrame, step: Step, span: tuple[int, int, int]) -> tuple[str, float]:
    """The cause of a time step and the yardstick's ratio over the same runs (NaN when not recorded there).

    Args:
        sub: the series.
        step: the time step.
        span: run positions ``(start, step, end)``: the segment before is ``[start, step)``, after ``[step, end)``.
    """
    start, pos, end = span
    yard = sub[sub[YARDSTICK].notna() & (sub[YARDSTICK] > 0)]
    before = yard.loc[(yard["position"] >= start) & (yard["position"] < pos), YARDSTICK]
    after = yard.loc[(yard["position"] >= pos) & (yard["position"] < end), YARDSTICK]
    if len(before) < MIN_SEGMENT or len(after) < MIN_SEGMENT:
        return "no yardstick", math.nan
    ratio, low, high = level_ratio(before, after)
    moved = low > 1 if step.ratio > 1 else high < 1
    share = math.log(ratio) / math.log(step.ratio) if step.ratio != 1 else 0.0
    return ("machine" if moved and share >= MACHINE_SHARE else "code"), ratio


def _changed(sub: pd.DataFrame, prev_pos: int, pos: int) -> str:
    """What changed in the environment between the two runs of a step (``torch_version 2.5 -> 2.6``)."""
    a, b = sub[sub["position"] == prev_pos], sub[sub["position"] == pos]
    if a.empty or b.empty:
        return ""
    out = [f"{c} {a[c].iloc[0] or '?'} -> {b[c].iloc[0] or '?'}" for c in ENV_COLUMNS if a[c].iloc[0] != b[c].iloc[0]]
    return "; ".join(out)


def _series_steps(key: tuple[str, str], sub: pd.DataFrame, runs: list[RunInfo]) -> list[HistoryStep]:
    """Every step of one (case, variant) series: time (with its cause) and memory."""
    out = []
    for metric, (col, floor, _) in METRICS.items():
        found = _steps_at_positions(sub, col, floor)
        have = sub.loc[sub[col].notna(), "position"]
        edges = [int(have.min()), *[pos for pos, _ in found], int(have.max()) + 1]
        for i, (pos, step) in enumerate(found):
            span = (edges[i], pos, edges[i + 2])
            cause, y_ratio = _cause(sub, step, span) if metric == "time" else ("code", math.nan)
            prev = int(have[have < pos].max())
            out.append(HistoryStep(
                case=str(sub["case"].iloc[0]), variant=key[1], metric=metric, run=runs[pos].name,
                commit=runs[pos].commit, prev_run=runs[prev].name, prev_commit=runs[prev].commit, position=pos,
                ratio=step.ratio, ratio_low=step.low, ratio_high=step.high, before=step.before, after=step.after,
                cause=cause, yardstick_ratio=y_ratio, changed=_changed(sub, prev, pos), case_key=key[0]))
    return out


def build_history(frame: pd.DataFrame, envs: dict[str, dict] | None = None) -> History:
    """The history of the runs in ``frame``: run order, series, steps and causes (see the module docstring).

    Args:
        frame: normalized rows of several runs (:func:`harness.store.reader.read_runs`).
        envs: run name -> its ``env.json`` (for runs whose rows carry no timestamp).

    Returns:
        The :class:`History`.
    """
    runs = run_order(frame, envs)
    series = series_table(frame, runs)
    hist = History(runs=runs, series=series)
    for key, sub in series.groupby([CASE_KEY, "variant"], sort=False):
        n = int(max(sub[col].notna().sum() for col, _, _ in METRICS.values()))
        if n < MIN_POINTS:
            hist.unjudged[key] = n
            continue
        hist.judged.append(key)
        hist.steps += _series_steps(key, sub, runs)
    hist.steps.sort(key=lambda s: (s.position, s.cause, s.metric, s.case, s.variant))
    return hist


# ---------------------------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class Verdict:
    """The exit status of ``attnbench history`` and why.

    Args:
        code: 0 no step beyond the threshold, 1 a step beyond it not put down to the machine, 3 inconclusive
            (nothing could be judged, or the steps beyond it coincide with the machine's).
        failing: the steps that make it 1 (code, or no yardstick to tell).
        machine: the steps beyond the threshold put down to the machine.
        reason: one sentence.
    """

    code: int
    failing: list[HistoryStep]
    machine: list[HistoryStep]
    reason: str


def _beyond(step: HistoryStep, threshold: float) -> bool:
    """A rise beyond ``threshold`` (a fraction), its interval above 1."""
    return step.ratio > 1 + threshold and step.ratio_low > 1


def history_verdict(hist: History, threshold: float) -> Verdict:
    """Judge a history: a time or memory step up by more than ``threshold`` (e.g. 0.05) fails unless the machine
    made it.

    Returns:
        The :class:`Verdict` (exit status 0, 1 or 3).
    """
    pct = f"{threshold * 100:g}%"
    failing = [s for s in hist.steps if s.cause != "machine" and _beyond(s, threshold)]
    machine = [s for s in hist.steps if s.cause == "machine" and _beyond(s, threshold)]
    if not hist.judged:
        return Verdict(3, [], [], f"inconclusive: no series has {MIN_POINTS} runs with a value "
                                  f"({len(hist.runs)} run(s) given), so no step can be judged")
    if failing:
        return Verdict(1, failing, machine, f"{len(failing)} step(s) up by more than {pct} not put down to the "
                                            "machine")
    if machine:
        return Verdict(3, [], machine, f"inconclusive: {len(machine)} step(s) up by more than {pct}, each at a run "
                                       "where the machine yardstick moved as much (a code change at the same run "
                                       "cannot be told apart)")
    return Verdict(0, [], [], f"no step up by more than {pct} in {len(hist.judged)} series")
