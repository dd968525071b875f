"""Compare two runs row by row: time, memory and error changes with their noise, and a pass/fail verdict.

Rows are matched by case and variant: the case is :func:`harness.columns.case_key`, every parameter of
:data:`harness.columns.CASE_PARAMS` (device, dtype, batch, heads, seq_len, head_dim, the pattern with all its
parameters such as the window or the block layout, the input distribution, the seed, the mode, and on CPU the
thread count); rows of older runs that lack a parameter read as its default.
A matched row *regressed* on a rule ``metric:threshold%`` when the new value is worse than the base by more
than the threshold **and** by more than the noise: for times, the sum of both rows' IQRs (so a change within the
measurements' own spread never fails); memory has no spread, so only the threshold applies. A row that went
from ``ok`` to any failure status regressed too. Rows present in only one run are listed, never dropped.

``compare_main(argv)`` is ``attnbench compare BASE NEW [--fail median:5%] ...``: it prints the table and
returns 1 when a rule failed, 0 otherwise, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.columns import CASE_COLUMNS, CASE_KEY, case_text
from harness.results_io import read_runs

#: Metrics a ``--fail`` rule may name: the column compared, and the column holding its noise (or None).
FAIL_METRICS: dict[str, tuple[str, str | None]] = {
    "median": ("time_ms_median", "time_ms_iqr"),
    "min": ("time_ms_min", "time_ms_iqr"),
    "mem": ("peak_mem_bytes", None),
}
#: What a row is matched on: the case key and the variant.
MATCH_COLUMNS: tuple[str, ...] = (CASE_KEY, "variant")
_RULE = re.compile(r"^(?P<metric>[a-z_]+):(?P<pct>[0-9]*\.?[0-9]+)%$")


@dataclass(frozen=True)
class FailRule:
    """Fail when ``metric`` grows by more than ``threshold`` (a fraction: 0.05 = 5%) and beyond noise."""

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
        matched: one row per matched (case, variant, mode): both runs' figures, relative changes
            (``*_change``: new/base - 1), the noise and ``verdict`` (``ok``, ``regressed``, ``improved``,
            ``status changed``).
        only_base / only_new: rows present in one run only (their match columns and status).
        failures: human-readable lines, one per failed rule and row.
        rules: the rules applied.
        duplicates: number of rows dropped because a run repeated a (case, variant, mode) (the latest kept).
    """

    matched: pd.DataFrame
    only_base: pd.DataFrame
    only_new: pd.DataFrame
    failures: list[str] = field(default_factory=list)
    rules: list[FailRule] = field(default_factory=list)
    duplicates: int = 0

    @property
    def failed(self) -> bool:
        return bool(self.failures)


def _dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    df = frame.copy()
    df["_ts"] = pd.to_datetime(df["timestamp"], errors="coerce")
    df = df.sort_values("_ts", kind="stable")
    out = df.drop_duplicates(list(MATCH_COLUMNS), keep="last").drop(columns="_ts")
    return out, len(df) - len(out)


def _worse_by(base: float, new: float, threshold: float, noise: float) -> bool:
    if not (math.isfinite(base) and math.isfinite(new)) or base <= 0:
        return False
    return new > base * (1.0 + threshold) and (new - base) > noise


def compare_frames(base: pd.DataFrame, new: pd.DataFrame, rules: list[FailRule] | None = None) -> Comparison:
    """Compare two frames of normalized rows (see :func:`harness.results_io.normalize`).

    Args:
        base / new: the rows of the base and the new run.
        rules: the fail rules (default: ``median:5%``).

    Returns:
        A :class:`Comparison`.
    """
    rules = [FailRule("median", 0.05)] if rules is None else list(rules)
    b, nb = _dedupe(base)
    n, nn = _dedupe(new)
    keys = list(MATCH_COLUMNS)
    fields = ["status", "time_ms_median", "time_ms_iqr", "time_ms_min", "peak_mem_bytes", "err_metric", "reason"]
    case = [c for c in CASE_COLUMNS if c in b.columns and c in n.columns]
    cases = pd.concat([n[keys + case], b[keys + case]]).drop_duplicates(keys, keep="last")
    merged = b[keys + fields].merge(n[keys + fields], on=keys, how="outer", suffixes=("_base", "_new"),
                                    indicator=True).merge(cases, on=keys, how="left")
    only_base = merged[merged["_merge"] == "left_only"][keys + case + ["status_base"]].rename(
        columns={"status_base": "status"}).reset_index(drop=True)
    only_new = merged[merged["_merge"] == "right_only"][keys + case + ["status_new"]].rename(
        columns={"status_new": "status"}).reset_index(drop=True)
    m = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    m["time_change"] = m["time_ms_median_new"] / m["time_ms_median_base"] - 1.0
    m["time_noise_ms"] = m["time_ms_iqr_base"].fillna(0) + m["time_ms_iqr_new"].fillna(0)
    m["mem_change"] = m["peak_mem_bytes_new"] / m["peak_mem_bytes_base"] - 1.0
    m["err_change"] = m["err_metric_new"] / m["err_metric_base"] - 1.0
    failures: list[str] = []
    verdicts = []
    for _, row in m.iterrows():
        label = _label(row)
        verdict = "ok"
        if row["status_base"] == "ok" and row["status_new"] != "ok":
            verdict = "status changed"
            why = f" ({row['reason_new']})" if str(row["reason_new"]).strip() else ""
            failures.append(f"{label}: status ok -> {row['status_new']}{why}")
        elif row["status_base"] != "ok" and row["status_new"] == "ok":
            verdict = "fixed"
        elif row["status_base"] == "ok":
            for rule in rules:
                col, noise_col = FAIL_METRICS[rule.metric]
                base_v, new_v = float(row[f"{col}_base"]), float(row[f"{col}_new"])
                noise = 0.0 if noise_col is None else float(
                    np.nansum([row[f"{noise_col}_base"], row[f"{noise_col}_new"]]))
                if _worse_by(base_v, new_v, rule.threshold, noise):
                    verdict = "regressed"
                    failures.append(f"{label}: {rule.metric} {base_v:.4g} -> {new_v:.4g} "
                                    f"({new_v / base_v - 1:+.1%}, threshold {rule}, noise {noise:.3g})")
            if verdict == "ok" and _worse_by(float(row["time_ms_median_new"]), float(row["time_ms_median_base"]),
                                             rules[0].threshold if rules else 0.05, float(row["time_noise_ms"])):
                verdict = "improved"
        verdicts.append(verdict)
    m["verdict"] = verdicts
    return Comparison(matched=m, only_base=only_base, only_new=only_new, failures=failures, rules=rules,
                      duplicates=nb + nn)


def _label(row: pd.Series) -> str:
    return f"{row['variant']} | {case_text(row)}"


def _int(x) -> str:
    if isinstance(x, float):
        return str(int(x)) if math.isfinite(x) else "-"
    return str(x)


def compare_runs(base: str | Path | list, new: str | Path | list, rules: list[FailRule] | list[str] | None = None
                 ) -> Comparison:
    """Compare the runs at ``base`` and ``new`` (run directories or CSV files).

    Args:
        base / new: a run directory, a CSV file, or a list of them.
        rules: :class:`FailRule` objects or rule strings such as ``"median:5%"`` (default: ``median:5%``).

    Returns:
        A :class:`Comparison` (``.failed`` is True when a rule failed).

    Raises:
        ValueError: a run cannot be read, or a rule string is malformed.
    """
    parsed = None if rules is None else [r if isinstance(r, FailRule) else parse_fail_rule(r) for r in rules]
    return compare_frames(read_runs(_as_list(base)).frame, read_runs(_as_list(new)).frame, parsed)


def _as_list(x) -> list:
    return list(x) if isinstance(x, list | tuple) else [x]


def _pct(x: float) -> str:
    return "" if not (isinstance(x, float | int) and math.isfinite(x)) else f"{x:+.1%}"


def format_comparison(c: Comparison) -> str:
    """The comparison as text: one line per matched row, then unmatched rows, then the verdict."""
    w = max([7] + [len(str(v)) for v in c.matched["variant"]])
    lines = [f"{'variant':<{w}} {'mode':<7} {'N':>6} {'H':>3} {'pattern':<14} {'dtype':<9} "
             f"{'base ms':>10} {'±iqr':>7} {'new ms':>10} {'±iqr':>7} {'time':>7} {'mem':>7} {'err':>7}  verdict"]
    for _, r in c.matched.iterrows():
        def ms(v):
            return f"{v:10.4g}" if math.isfinite(v) else f"{'-':>10}"

        def iqr(v):
            return f"{v:7.3g}" if math.isfinite(v) else f"{'':>7}"

        verdict = r["verdict"]
        if r["status_base"] != "ok" and r["status_new"] != "ok":
            verdict = f"{r['status_base']} -> {r['status_new']}"
        lines.append(
            f"{r['variant']:<{w}} {r['mode']:<7} {_int(r['seq_len']):>6} {_int(r['heads']):>3} "
            f"{str(r['pattern_label'])[:14]:<14} {r['dtype']:<9} {ms(r['time_ms_median_base'])} "
            f"{iqr(r['time_ms_iqr_base'])} {ms(r['time_ms_median_new'])} {iqr(r['time_ms_iqr_new'])} "
            f"{_pct(r['time_change']):>7} {_pct(r['mem_change']):>7} {_pct(r['err_change']):>7}  {verdict}")
    for title, rows in (("only in BASE", c.only_base), ("only in NEW", c.only_new)):
        if len(rows):
            lines.append(f"\n{title} ({len(rows)} rows, not compared):")
            for _, r in rows.iterrows():
                lines.append(f"  {_label(r)} [{r['status']}]")
    if c.duplicates:
        lines.append(f"\nnote: {c.duplicates} repeated row(s) within a run were dropped (latest kept)")
    rules = ", ".join(str(r) for r in c.rules) or "none"
    lines.append(f"\nmatched {len(c.matched)} rows; rules: {rules} (and beyond the summed IQRs for times)")
    if c.failures:
        lines.append(f"FAILED: {len(c.failures)} regression(s)")
        lines.extend(f"  {f}" for f in c.failures)
    else:
        lines.append("PASSED: no regression beyond threshold and noise")
    return "\n".join(lines)


def compare_main(argv: list[str] | None = None) -> int:
    """``attnbench compare BASE NEW [--fail median:5%] ...``.

    Returns:
        0 when no rule failed, 1 when one did, 2 on bad arguments or unreadable runs.
    """
    parser = argparse.ArgumentParser(prog="attnbench compare",
                                     description="Compare two runs: time, memory and error changes with noise.")
    parser.add_argument("base", metavar="BASE", help="base run directory or CSV")
    parser.add_argument("new", metavar="NEW", help="new run directory or CSV")
    parser.add_argument("--fail", action="append", default=None, metavar="METRIC:PCT%",
                        help=f"fail rule, repeatable (metrics: {', '.join(FAIL_METRICS)}; default median:5%%)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        rules = [parse_fail_rule(r) for r in (args.fail or ["median:5%"])]
        base, new = read_runs(args.base), read_runs(args.new)
    except ValueError as exc:
        print(f"attnbench compare: error: {exc}", file=sys.stderr)
        return 2
    for problem in base.problems + new.problems:
        print(f"attnbench compare: warning: {problem}", file=sys.stderr)
    c = compare_frames(base.frame, new.frame, rules)
    print(format_comparison(c))
    return 1 if c.failed else 0
