"""Compare two runs case by case: each matched case judged slower, faster or same, or left unsure with its cause;
an exit code a CI gate can act on.

Rows are matched by case and variant: the case is :func:`harness.store.columns.case_key`, every parameter of
:data:`harness.store.columns.CASE_PARAMS` (device, dtype, shape, the pattern with its parameters, inputs, seed,
mode, and on CPU the thread count); rows of older runs that lack a parameter read as its default. A base row and
a new row that differ in one parameter only are listed together as not comparable, with the difference; when that
parameter is the thread count, the comparison cannot be reached and says so.

The time verdict of a matched case is :func:`harness.report.verdicts.time_verdict`: judged only when neither row
is contended or noisy and the machine yardstick held still; then by the interval of the ratio of medians against
the ``median`` rule's threshold and the noise floor (the spread of the cases' yardsticks). ``--fail median:5%``
fails on ``slower`` cases; ``--fail min:PCT%`` when the minimum grew beyond the threshold and the summed IQRs
(never on a contended or noisy row); ``--fail mem:PCT%`` when peak memory grew beyond the threshold. A row ``ok``
in BASE and failed in NEW always fails.

Exit codes (``compare_main``): 0 every matched case judged and no rule failed; 1 a rule failed; 2 bad arguments
or input that is not a run (no rows, no variant and status columns, unreadable); 3 inconclusive: no case matched,
the thread counts differ, or a matched case could not be judged (contended, noisy, the machine moved, an interval
that does not settle the threshold). ``--unsure=pass`` turns 3 into 0 for those who accept unjudged cases.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.verdicts import YARDSTICK_TOLERANCE, noise_floor, time_verdict, yardstick_change
from harness.store.columns import CASE_COLUMNS, CASE_KEY, CASE_PARAMS, case_key, case_text
from harness.store.reader import read_runs

__all__ = ["EXIT_BAD_INPUT", "EXIT_INCONCLUSIVE", "EXIT_OK", "EXIT_REGRESSION", "FAIL_METRICS", "LABELS",
           "Comparison", "FailRule", "compare_frames", "compare_main", "compare_runs", "format_comparison",
           "format_summary", "parse_fail_rule"]

#: Metrics a ``--fail`` rule may name: the column compared, and the column holding its noise (or None).
FAIL_METRICS: dict[str, tuple[str, str | None]] = {
    "median": ("time_ms_median", "time_ms_iqr"),
    "min": ("time_ms_min", "time_ms_iqr"),
    "mem": ("peak_mem_bytes", None),
}
#: What a row is matched on: the case key and the variant.
MATCH_COLUMNS: tuple[str, ...] = (CASE_KEY, "variant")
#: The labels of a matched case, in the order the summary lists them.
LABELS: tuple[str, ...] = ("slower", "faster", "same", "unsure", "status changed", "fixed", "failed both")
EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3
_DEFAULT_MARGIN = 0.05
_RULE = re.compile(r"^(?P<metric>[a-z_]+):(?P<pct>[0-9]*\.?[0-9]+)%$")
_FIELDS = ("status", "reason", "time_ms_median", "time_ms_iqr", "time_ms_min", "peak_mem_bytes", "err_metric",
           "time_samples_ms", "time_ms_ci_low", "time_ms_ci_high", "contended", "noisy", "cpu_share", "threads",
           "yardstick_ms", "yardstick_samples_ms")


@dataclass(frozen=True)
class FailRule:
    """Fail when ``metric`` grows by more than ``threshold`` (a fraction: 0.05 = 5%) and significantly."""

    metric: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}:{self.threshold * 100:g}%"


def parse_fail_rule(text: str) -> FailRule:
    """Parse ``median:5%`` (metric ``median``, ``min`` or ``mem``; a non-negative percentage).

    Raises:
        ValueError: the text does not have that form; the message names the value and what is allowed.
    """
    allowed = f"METRIC:PERCENT%, METRIC one of {', '.join(FAIL_METRICS)}, e.g. median:5%"
    m = _RULE.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"--fail={text!r} is not a valid rule (allowed: {allowed})")
    if m["metric"] not in FAIL_METRICS:
        raise ValueError(f"--fail={text!r} names metric {m['metric']!r} (allowed: {', '.join(FAIL_METRICS)})")
    return FailRule(m["metric"], float(m["pct"]) / 100.0)


@dataclass
class Comparison:
    """The outcome of comparing two runs.

    Args:
        matched: one row per matched (case, variant): the case columns, both runs' figures (``*_base``,
            ``*_new``), relative changes (``*_change``: new/base - 1), ``ratio`` with ``ratio_low`` /
            ``ratio_high``, the yardstick's ``yardstick_ratio`` with its interval, ``verdict`` (one of
            :data:`LABELS`), ``cause`` (why an ``unsure`` case was not judged), ``test`` and ``why``.
        only_base / only_new: rows present in one run only (case columns, variant, status, and ``differs``:
            the one parameter that differs from a row of the other run, where there is such a row).
        failures: human-readable lines, one per failed rule and row.
        rules: the rules applied.
        duplicates: number of rows dropped because a run repeated a (case, variant) (the latest kept).
        floor: the noise floor ``(log change, cases it came from)`` (:func:`harness.report.verdicts.noise_floor`).
        threads_differ: rows that match a row of the other run on every parameter but the thread count.
    """

    matched: pd.DataFrame
    only_base: pd.DataFrame
    only_new: pd.DataFrame
    failures: list[str] = field(default_factory=list)
    rules: list[FailRule] = field(default_factory=list)
    duplicates: int = 0
    floor: tuple[float, int] = (math.log1p(_DEFAULT_MARGIN), 0)
    threads_differ: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def counts(self) -> dict[str, int]:
        """Cases per label, in the order of :data:`LABELS`."""
        c = Counter(self.matched["verdict"]) if len(self.matched) else Counter()
        return {label: int(c.get(label, 0)) for label in LABELS}

    def unjudged(self) -> Counter:
        """Matched cases that were not judged, by cause."""
        if not len(self.matched):
            return Counter()
        return Counter(self.matched.loc[self.matched["verdict"] == "unsure", "cause"])

    def contended(self) -> tuple[int, int]:
        """Rows marked contended in (BASE, NEW) among the matched ones."""
        return (_count_true(self.matched, "contended_base"), _count_true(self.matched, "contended_new"))

    def inconclusive(self) -> list[str]:
        """Why the comparison as a whole could not be reached (empty when it was)."""
        why = []
        if not len(self.matched):
            why.append("no case matched between the runs")
        if self.threads_differ:
            why.append(f"{self.threads_differ} row(s) differ from the other run only in the thread count")
        unjudged = self.unjudged()
        if unjudged:
            why.append(f"{sum(unjudged.values())} case(s) not judged ("
                       + ", ".join(f"{k} {v}" for k, v in unjudged.most_common()) + ")")
        return why

    def exit_code(self, unsure: str = "fail") -> int:
        """1 when a rule failed; else 3 when the comparison is inconclusive (0 with ``unsure="pass"``); else 0."""
        if self.failed:
            return EXIT_REGRESSION
        if self.inconclusive() and unsure != "pass":
            return EXIT_INCONCLUSIVE
        return EXIT_OK


def _count_true(df: pd.DataFrame, col: str) -> int:
    return int(df[col].map(lambda x: x is True or (isinstance(x, bool | np.bool_) and bool(x))).sum()) \
        if col in df.columns and len(df) else 0


def _dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    df = frame.copy()
    df["_ts"] = pd.to_datetime(df["timestamp"], errors="coerce", utc=True, format="ISO8601")
    df = df.sort_values("_ts", kind="stable")
    out = df.drop_duplicates(list(MATCH_COLUMNS), keep="last").drop(columns="_ts")
    return out, len(df) - len(out)


def _worse_by(base: float, new: float, threshold: float, noise: float) -> bool:
    if not (math.isfinite(base) and math.isfinite(new)) or base <= 0:
        return False
    return new > base * (1.0 + threshold) and (new - base) > noise


def _explain_unmatched(only_base: pd.DataFrame, only_new: pd.DataFrame) -> int:
    """Fill ``differs`` where a row of one side matches a row of the other on every parameter but one; return how
    many rows of BASE differ from a row of NEW in the thread count alone."""
    for df in (only_base, only_new):
        df["differs"] = ""
    if only_base.empty or only_new.empty:
        return 0
    threads_only = 0
    for p in CASE_PARAMS:
        rest = tuple(q for q in CASE_PARAMS if q is not p)
        kb = [case_key(r, rest) + "|" + str(r["variant"]) for r in only_base.to_dict("records")]
        kn = [case_key(r, rest) + "|" + str(r["variant"]) for r in only_new.to_dict("records")]
        new_val = dict(zip(kn, only_new[p.name]))
        base_val = dict(zip(kb, only_base[p.name]))
        for i, k in enumerate(kb):
            if k in new_val and not only_base.iloc[i]["differs"]:
                only_base.iloc[i, only_base.columns.get_loc("differs")] = (
                    f"{p.name} {_text(only_base.iloc[i][p.name])} here, {_text(new_val[k])} in NEW")
                threads_only += p.name == "threads"
        for i, k in enumerate(kn):
            if k in base_val and not only_new.iloc[i]["differs"]:
                only_new.iloc[i, only_new.columns.get_loc("differs")] = (
                    f"{p.name} {_text(only_new.iloc[i][p.name])} here, {_text(base_val[k])} in BASE")
    return threads_only


def _text(x: object) -> str:
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return str(int(x))
    return str(x)


def _merge(b: pd.DataFrame, n: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(matched, only_base, only_new)`` of two deduplicated frames."""
    keys = list(MATCH_COLUMNS)
    fields = [f for f in _FIELDS if f in b.columns or f in n.columns]
    for df in (b, n):
        for f in fields:
            if f not in df.columns:
                df[f] = False if f in ("contended", "noisy") else math.nan
    case = [c for c in CASE_COLUMNS if c in b.columns and c in n.columns and c not in fields]
    cases = pd.concat([n[keys + case], b[keys + case]]).drop_duplicates(keys, keep="last")
    merged = b[keys + fields].merge(n[keys + fields], on=keys, how="outer", suffixes=("_base", "_new"),
                                    indicator=True).merge(cases, on=keys, how="left")
    side_cols = {"status_base": "status", "threads_base": "threads"}
    only_base = merged[merged["_merge"] == "left_only"][keys + case + list(side_cols)].rename(
        columns=side_cols).reset_index(drop=True)
    side_cols = {"status_new": "status", "threads_new": "threads"}
    only_new = merged[merged["_merge"] == "right_only"][keys + case + list(side_cols)].rename(
        columns=side_cols).reset_index(drop=True)
    m = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    if "threads" not in m.columns and "threads_new" in m.columns:
        m["threads"] = m["threads_new"]
    return m, only_base, only_new


def compare_frames(base: pd.DataFrame, new: pd.DataFrame, rules: list[FailRule] | None = None) -> Comparison:
    """Compare two frames of normalized rows (see :func:`harness.store.reader.normalize`).

    Args:
        base / new: the rows of the base and the new run.
        rules: the fail rules (default: ``median:5%``).

    Returns:
        A :class:`Comparison`.
    """
    rules = [FailRule("median", _DEFAULT_MARGIN)] if rules is None else list(rules)
    margin = next((r.threshold for r in rules if r.metric == "median"), _DEFAULT_MARGIN)
    b, nb = _dedupe(base)
    n, nn = _dedupe(new)
    m, only_base, only_new = _merge(b, n)
    threads_differ = _explain_unmatched(only_base, only_new)
    m["time_change"] = m["time_ms_median_new"] / m["time_ms_median_base"] - 1.0
    m["mem_change"] = m["peak_mem_bytes_new"] / m["peak_mem_bytes_base"] - 1.0
    m["err_change"] = m["err_metric_new"] / m["err_metric_base"] - 1.0
    both_ok = (m["status_base"] == "ok") & (m["status_new"] == "ok")
    yard = [yardstick_change(r)[0] for r in m[both_ok].to_dict("records")]
    floor = noise_floor(yard, margin)
    failures: list[str] = []
    rows = [_judge(r, rules, margin, floor[0], failures) for r in m.to_dict("records")]
    for col in ("verdict", "cause", "why", "test", "ratio", "ratio_low", "ratio_high", "yardstick_ratio",
                "yardstick_low", "yardstick_high"):
        m[col] = [r[col] for r in rows] if rows else []
    return Comparison(matched=m, only_base=only_base, only_new=only_new, failures=failures, rules=rules,
                      duplicates=nb + nn, floor=floor, threads_differ=threads_differ)


def _judge(row: dict, rules: list[FailRule], margin: float, floor: float, failures: list[str]) -> dict:
    """The verdict columns of one matched row; the failure lines of its rules go to ``failures``."""
    nan = math.nan
    out = dict(verdict="failed both", cause="", why=f"{row['status_base']} -> {row['status_new']}", test="",
               ratio=nan, ratio_low=nan, ratio_high=nan, yardstick_ratio=nan, yardstick_low=nan, yardstick_high=nan)
    ok_b, ok_n = row["status_base"] == "ok", row["status_new"] == "ok"
    label = _label(row)
    if ok_b and not ok_n:
        out.update(verdict="status changed", why=f"ok -> {row['status_new']}")
        reason = f" ({row['reason_new']})" if str(row.get("reason_new", "")).strip() else ""
        failures.append(f"{label}: status ok -> {row['status_new']}{reason}")
    elif ok_n and not ok_b:
        out.update(verdict="fixed", why=f"{row['status_base']} -> ok")
    elif ok_b and ok_n:
        v = time_verdict(row, margin, floor)
        out.update(verdict=v.label, cause=v.cause, why=v.why, test=v.test, ratio=v.ratio, ratio_low=v.low,
                   ratio_high=v.high, yardstick_ratio=v.yardstick, yardstick_low=v.y_low, yardstick_high=v.y_high)
        failures.extend(_rule_failures(row, rules, label, v.label, v.why, margin, floor))
    return out


def _rule_failures(row: dict, rules: list[FailRule], label: str, verdict: str, why: str, margin: float,
                   floor: float) -> list[str]:
    """The failure lines of one matched ``ok`` row under each rule."""
    lines = []
    disturbed = any(bool(row.get(f"{k}_{s}")) is True for k in ("contended", "noisy") for s in ("base", "new"))
    for rule in rules:
        col, noise_col = FAIL_METRICS[rule.metric]
        base_v, new_v = float(row[f"{col}_base"]), float(row[f"{col}_new"])
        if rule.metric == "median":
            at = verdict if rule.threshold == margin else time_verdict(
                row, rule.threshold, max(floor, math.log1p(rule.threshold))).label
            if at == "slower":
                lines.append(f"{label}: median {base_v:.4g} -> {new_v:.4g} ms ({new_v / base_v - 1:+.1%}, "
                             f"threshold {rule}; {why})")
            continue
        if rule.metric == "min" and disturbed:
            continue
        noise = 0.0 if noise_col is None else float(np.nansum([row[f"{noise_col}_base"], row[f"{noise_col}_new"]]))
        if _worse_by(base_v, new_v, rule.threshold, noise):
            lines.append(f"{label}: {rule.metric} {base_v:.4g} -> {new_v:.4g} ({new_v / base_v - 1:+.1%}, "
                         f"threshold {rule}, noise {noise:.3g})")
    return lines


def _label(row: dict | pd.Series) -> str:
    return f"{row['variant']} | {case_text(row)}"


def _check_rows(frame: pd.DataFrame, which: str, path: object) -> None:
    """Refuse input that is not a run: no rows, or no row with a variant and a known status."""
    if not len(frame):
        raise ValueError(f"{which}={path} holds no result rows (allowed: a run directory, a folder of runs, a "
                         "results CSV or a pytest-benchmark JSON file with at least one row)")
    usable = (frame["variant"].astype(str).str.strip() != "") & (frame["status"] != "unknown")
    if not usable.any():
        raise ValueError(f"{which}={path} has {len(frame)} row(s) but none with a variant and a status: not a "
                         "results table (allowed: the columns of results.csv: variant, status, time_ms_median, "
                         "...)")


def compare_runs(base: str | Path | list, new: str | Path | list, rules: list[FailRule] | list[str] | None = None
                 ) -> Comparison:
    """Compare the runs at ``base`` and ``new`` (run directories, folders of runs or CSV files).

    Args:
        base / new: a run directory, a CSV file, or a list of them.
        rules: :class:`FailRule` objects or rule strings such as ``"median:5%"`` (default: ``median:5%``).

    Returns:
        A :class:`Comparison` (``.failed`` when a rule failed; ``.exit_code()`` for a gate).

    Raises:
        ValueError: a run cannot be read or is not a run, or a rule string is malformed.
    """
    parsed = None if rules is None else [r if isinstance(r, FailRule) else parse_fail_rule(r) for r in rules]
    b, n = read_runs(_as_list(base)).frame, read_runs(_as_list(new)).frame
    _check_rows(b, "BASE", base)
    _check_rows(n, "NEW", new)
    return compare_frames(b, n, parsed)


def _as_list(x) -> list:
    return list(x) if isinstance(x, list | tuple) else [x]


# ---------------------------------------------------------------------------------------------------- text
def _pct(x: float) -> str:
    return "" if not (isinstance(x, float | int) and math.isfinite(x)) else f"{x:+.1%}"


def format_summary(c: Comparison) -> str:
    """The lead of the comparison: how many cases were judged, the counts per label, why the rest were not, the
    machine yardstick, unmatched rows, the rules."""
    counts = c.counts()
    timed = sum(counts[k] for k in ("slower", "faster", "same", "unsure"))
    unjudged = sum(c.unjudged().values())
    lines = [f"{len(c.matched) - unjudged} of {len(c.matched)} cases judged: "
             + ", ".join(f"{k} {v}" for k, v in counts.items()) + f" ({timed} timed on both sides)"]
    if unjudged:
        lines.append("not judged: " + ", ".join(f"{k} {v}" for k, v in c.unjudged().most_common())
                     + " (contended: the process did not get the CPU it asked; noisy: IQR over 10%; machine: the "
                       "yardstick moved; interval: too wide to settle the threshold)")
    lines.append(_yardstick_line(c))
    cb, cn = c.contended()
    if cb or cn:
        lines.append(f"contended rows: {cb} in BASE, {cn} in NEW")
    if len(c.only_base) or len(c.only_new):
        lines.append(f"not comparable: {len(c.only_base)} only in BASE, {len(c.only_new)} only in NEW"
                     + (f"; {c.threads_differ} differ only in the thread count (measure both runs with the same "
                        "threads=)" if c.threads_differ else ""))
    if c.duplicates:
        lines.append(f"note: {c.duplicates} repeated row(s) within a run were dropped (latest kept)")
    rules = ", ".join(str(r) for r in c.rules) or "none"
    lines.append(f"rules: {rules}; test: bootstrap 95% interval of the ratio of medians; a change counts beyond "
                 f"x{math.exp(c.floor[0]):.3f}" + (f" (the noise floor of {c.floor[1]} yardsticks)"
                                                   if c.floor[0] > math.log1p(_DEFAULT_MARGIN) + 1e-9 else ""))
    return "\n".join(lines)


def _yardstick_line(c: Comparison) -> str:
    y = c.matched["yardstick_ratio"].to_numpy(dtype=float) if len(c.matched) else np.array([])
    y = y[np.isfinite(y)]
    if not y.size:
        return "machine yardstick: not recorded in both runs (a shared change cannot be told from the machine's)"
    lo, hi = c.matched["yardstick_low"].to_numpy(dtype=float), c.matched["yardstick_high"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        moved = int(((lo > 1 + YARDSTICK_TOLERANCE) | (hi < 1 / (1 + YARDSTICK_TOLERANCE))).sum())
    return (f"machine yardstick: median x{np.median(y):.3f} over {y.size} cases (range x{y.min():.3f} to "
            f"x{y.max():.3f}); " + (f"moved in {moved} case(s)" if moved else "held still"))


def format_comparison(c: Comparison, show_all: bool = False) -> str:
    """The comparison as text: the summary, then one line per case that changed or was not judged (every matched
    case with ``show_all``), the unmatched rows as a count (listed with ``show_all``), and the verdict."""
    lines = [format_summary(c), ""]
    keep = ~c.matched["verdict"].isin(("same", "failed both")) | (
        (c.matched["verdict"] == "failed both") & (c.matched["status_base"] != c.matched["status_new"]))
    shown = c.matched if show_all else c.matched[keep]
    if len(shown):
        lines.extend(_case_lines(shown))
    hidden = len(c.matched) - len(shown)
    if hidden:
        lines.append(f"({hidden} case(s) not listed: same, or failed the same way in both; --all lists them)")
    lines.extend(_unmatched_lines(c, show_all))
    lines.append("")
    lines.append(_verdict_line(c))
    return "\n".join(lines)


def _case_lines(shown: pd.DataFrame) -> list[str]:
    w = max([7] + [len(str(v)) for v in shown["variant"]])
    lines = [f"{'verdict':<14} {'variant':<{w}} {'base ms':>10} {'new ms':>10} {'time':>7} {'mem':>7} "
             f"{'err':>7}  case; why"]
    order = {k: i for i, k in enumerate(LABELS)}
    shown = shown.assign(_o=shown["verdict"].map(order)).sort_values(["_o", "variant"], kind="stable")

    def ms(v):
        return f"{v:10.4g}" if isinstance(v, float | int) and math.isfinite(v) else f"{'-':>10}"

    for r in shown.to_dict("records"):
        verdict = r["verdict"] + (f" ({r['cause']})" if r["verdict"] == "unsure" and r["cause"] else "")
        lines.append(f"{verdict:<14} {r['variant']:<{w}} {ms(r['time_ms_median_base'])} "
                     f"{ms(r['time_ms_median_new'])} {_pct(r['time_change']):>7} {_pct(r['mem_change']):>7} "
                     f"{_pct(r['err_change']):>7}  {case_text(r)}; {r['why']}")
    return lines


def _unmatched_lines(c: Comparison, show_all: bool) -> list[str]:
    lines = []
    for title, rows in (("only in BASE", c.only_base), ("only in NEW", c.only_new)):
        if not len(rows):
            continue
        if not show_all:
            lines.append(f"{title}: {len(rows)} row(s), not compared (--all lists them)")
            continue
        lines.append(f"\n{title} ({len(rows)} rows, not compared):")
        for r in rows.to_dict("records"):
            why = f"; {r['differs']}" if r.get("differs") else ""
            lines.append(f"  {_label(r)} [{r['status']}]{why}")
    return lines


def _verdict_line(c: Comparison) -> str:
    if c.failures:
        return f"FAILED: {len(c.failures)} regression(s)\n" + "\n".join(f"  {f}" for f in c.failures)
    why = c.inconclusive()
    if why:
        return "INCONCLUSIVE: " + "; ".join(why) + " (exit 3; --unsure=pass accepts it)"
    return "PASSED: every matched case judged; no significant regression beyond the threshold"


def compare_main(argv: list[str] | None = None) -> int:
    """``attnbench compare BASE NEW [--fail median:5%] ... [--unsure fail|pass] [--all]``.

    Returns:
        0 passed, 1 a rule failed, 2 bad arguments or input that is not a run, 3 inconclusive.
    """
    parser = argparse.ArgumentParser(prog="attnbench compare",
                                     description="Compare two runs: each case slower, faster, same or unsure. Exit: "
                                                 "0 passed, 1 regression, 2 bad input, 3 inconclusive.")
    parser.add_argument("base", metavar="BASE", help="base run directory, folder of runs, or CSV")
    parser.add_argument("new", metavar="NEW", help="new run directory, folder of runs, or CSV")
    parser.add_argument("--fail", action="append", default=None, metavar="METRIC:PCT%",
                        help=f"fail rule, repeatable (metrics: {', '.join(FAIL_METRICS)}; default median:5%%)")
    parser.add_argument("--unsure", choices=("fail", "pass"), default="fail",
                        help="what an inconclusive comparison exits with: fail = 3 (default), pass = 0")
    parser.add_argument("--all", action="store_true", help="list every matched case and every unmatched row")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        rules = [parse_fail_rule(r) for r in (args.fail or ["median:5%"])]
        base, new = read_runs(args.base), read_runs(args.new)
        _check_rows(base.frame, "BASE", args.base)
        _check_rows(new.frame, "NEW", args.new)
    except ValueError as exc:
        print(f"attnbench compare: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for problem in base.problems + new.problems:
        print(f"attnbench compare: warning: {problem}", file=sys.stderr)
    c = compare_frames(base.frame, new.frame, rules)
    print(format_comparison(c, show_all=args.all))
    return c.exit_code(args.unsure)
