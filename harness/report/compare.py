"""Compare two runs case by case: each matched case labelled faster, slower, same or unsure by a statistical test.

Rows are matched by case and variant: the case is :func:`harness.store.columns.case_key`, every parameter of
:data:`harness.store.columns.CASE_PARAMS` (device, dtype, batch, heads, seq_len, head_dim, the pattern with all its
parameters such as the window or the block layout, the input distribution, the seed, the mode, and on CPU the
thread count); rows of older runs that lack a parameter read as its default. A base row and a new row that differ
in one parameter only (say the thread count) are listed together as not comparable, with the difference.

The time label of a matched case, with ``m`` the ``median`` rule's threshold (default 5%):

- ``unsure`` when either row is ``contended`` (the process did not get the CPU it asked for while timing) or
  ``noisy``: a disturbed measurement is never called a change;
- with both rows' raw timing samples (``time_samples_ms``): a bootstrap 95% interval of the ratio of medians
  new/base (:func:`ratio_interval`). ``slower`` when the interval lies above 1 and the ratio above ``1 + m``;
  ``faster`` when it lies below 1 and the ratio below ``1 / (1 + m)``; ``same`` when the whole interval lies
  within ``[1 / (1 + m), 1 + m]``; else ``unsure``;
- with recorded median intervals (``time_ms_ci_low`` / ``_high``) but no samples: the same rule on the interval
  ``[low_new / high_base, high_new / low_base]``;
- otherwise (older runs): the noise is the sum of both rows' IQRs. ``slower`` / ``faster`` when the change is
  beyond the noise and beyond ``m``; ``same`` when change and noise together stay within ``m``; else ``unsure``.

A ``slower`` or ``faster`` case must also stand out from the comparison's own run-to-run scatter: with at least
:data:`MIN_SCATTER_CASES` timed cases on both sides, their log ratios new/base spread around their median by
``s = 1.4826 x MAD``; a case whose ratio lies within ``exp(+-SCATTER_Z x s)`` of 1 is ``unsure`` (within-run samples
cannot see a state of the machine that lasted a whole run, such as the host's load or where buffers landed, so two
runs of unchanged code can differ by more than either run's intervals). A change shared by every case (the median
moves, the spread stays small) is still seen; a lone case that moved more than the others did is too. The quiet
cases (neither side contended nor noisy) give the scatter; when fewer than :data:`MIN_SCATTER_CASES` of them are
left, every case timed on both sides does (:func:`comparison_scatter`), and the summary says so.

And it must stand out from the other variants of its own case: the variants of a case are timed together, in
interleaved rounds, so a state of the machine during that case moves them all alike (while their paired ratios
to ``full`` hardly move). A case whose change lies within ``1 + m`` of the median change of the other variants of
its case is ``unsure`` ("moved with the other variants of its case"). Such a comparison cannot see a change every
variant of a case shares (a slower machine, or code they all run): compare them side by side in one run instead.

``--fail median:5%`` fails exactly on ``slower`` cases at that threshold: a change both larger than 5% and
significant. ``--fail min:PCT%`` fails when the minimum grew beyond the threshold and the summed IQRs (never on a
contended or noisy row); ``--fail mem:PCT%`` when peak memory grew beyond the threshold (memory has no spread). A
row ``ok`` in BASE and failed in NEW always fails.

``compare_main(argv)`` is ``attnbench compare BASE NEW [--fail median:5%] [--all]``: a summary (counts per
label, contended rows), then only what changed or could not be compared; exit 1 when a rule failed, 0 otherwise,
2 on bad arguments.
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

from harness.store.columns import CASE_COLUMNS, CASE_KEY, CASE_PARAMS, case_key, case_text
from harness.store.reader import read_runs

__all__ = ["CI_LEVEL", "FAIL_METRICS", "LABELS", "MATCH_COLUMNS", "MIN_SAMPLES", "MIN_SCATTER_CASES", "N_RESAMPLES",
           "SCATTER_Z", "Comparison", "FailRule", "case_drifts", "compare_frames", "compare_main", "compare_runs",
           "comparison_scatter", "format_comparison", "format_summary", "parse_fail_rule", "ratio_interval",
           "run_scatter", "time_label"]

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
#: Confidence level of the ratio's interval.
CI_LEVEL = 0.95
#: Bootstrap resamples of each median.
N_RESAMPLES = 4000
#: Fewest samples on each side for the sample test (fewer: the recorded interval or the IQR rule decides).
MIN_SAMPLES = 5
_DEFAULT_MARGIN = 0.05
#: Fewest timed cases on both sides before the run-to-run scatter is estimated (fewer: not used).
MIN_SCATTER_CASES = 8
#: How many robust standard deviations of the cases' changes a change must exceed to be a change.
SCATTER_Z = 3.0
_RULE = re.compile(r"^(?P<metric>[a-z_]+):(?P<pct>[0-9]*\.?[0-9]+)%$")
_FIELDS = ("status", "reason", "time_ms_median", "time_ms_iqr", "time_ms_min", "peak_mem_bytes", "err_metric",
           "time_samples_ms", "time_ms_ci_low", "time_ms_ci_high", "contended", "noisy", "cpu_share")


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


# ---------------------------------------------------------------------------------------------------- statistics
#: Above this many values x resamples, resample medians are drawn by order statistic instead of resampling.
_BRUTE_LIMIT = 2_000_000


def _median_resamples(x: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_resamples`` bootstrap resamples of ``x``.

    Small sets are resampled outright. For large ones (``len(x) * n_resamples`` above a few million) the
    resample's median is drawn without building the resample: it is at most the ``j``-th smallest value
    ``x_(j)`` exactly when at least ``h = ceil(n / 2)`` resampled values are at most ``x_(j)``, a count that is
    Binomial(n, j / n); so the (lower) median is ``x_(J)`` with ``P(J <= j) = P(Binomial(n, j / n) >= h)``, one
    uniform draw per resample. At such sizes the lower median and the mean of the two middle values coincide to
    within adjacent order statistics.
    """
    xs = np.sort(np.asarray(x, dtype=float))
    n = xs.size
    if n * n_resamples <= _BRUTE_LIMIT:
        return np.median(xs[rng.integers(0, n, (n_resamples, n))], axis=1)
    from scipy.special import bdtrc  # P(Binomial(n, p) > k)

    h = math.ceil(n / 2)
    cdf = bdtrc(h - 1, n, np.arange(1, n + 1) / n)
    j = np.searchsorted(cdf, rng.random(n_resamples), side="left")
    return xs[np.minimum(j, n - 1)]


def ratio_interval(base: np.ndarray | list[float], new: np.ndarray | list[float], level: float = CI_LEVEL,
                   n_resamples: int = N_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """Ratio of medians ``median(new) / median(base)`` and its bootstrap percentile interval.

    The two sets are resampled independently (they come from different runs).

    Args:
        base / new: the raw timing samples of the two rows.
        level: confidence level of the interval.
        n_resamples: bootstrap resamples.
        seed: of the resampling (the result is reproducible).

    Returns:
        ``(ratio, low, high)``.
    """
    b, n = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    b, n = b[np.isfinite(b) & (b > 0)], n[np.isfinite(n) & (n > 0)]
    if not b.size or not n.size:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    ratios = _median_resamples(n, n_resamples, rng) / _median_resamples(b, n_resamples, rng)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(ratios, [alpha, 1 - alpha])
    return float(np.median(n) / np.median(b)), float(lo), float(hi)


def _label_interval(ratio: float, lo: float, hi: float, margin: float) -> str:
    if lo > 1 and ratio > 1 + margin:
        return "slower"
    if hi < 1 and ratio < 1 / (1 + margin):
        return "faster"
    if lo >= 1 / (1 + margin) and hi <= 1 + margin:
        return "same"
    return "unsure"


def _flag(x: object) -> bool:
    """A True/False column's value; blank (NaN, None) is False."""
    return x is True or (isinstance(x, bool | np.bool_) and bool(x))


def _finite(x: object) -> bool:
    return isinstance(x, int | float | np.floating) and math.isfinite(float(x))


def time_label(row: pd.Series, margin: float = _DEFAULT_MARGIN) -> tuple[str, str, float, float, float]:
    """Label the time change of one matched ``ok`` row (both sides ``ok``).

    Args:
        row: a merged row with ``*_base`` and ``*_new`` fields.
        margin: the change that counts (0.05 = 5%).

    Returns:
        ``(label, why, ratio, ratio_low, ratio_high)``; the interval is NaN where no test made one.
    """
    nan = math.nan
    disturbed = [f"{side} contended" + (f" (cpu_share {row[f'cpu_share_{side}']:.2f})"
                                        if _finite(row.get(f"cpu_share_{side}")) else "")
                 for side in ("base", "new") if _flag(row.get(f"contended_{side}"))]
    disturbed += [f"{side} noisy" for side in ("base", "new") if _flag(row.get(f"noisy_{side}"))]
    tb, tn = row.get("time_ms_median_base"), row.get("time_ms_median_new")
    ratio = float(tn) / float(tb) if _finite(tb) and _finite(tn) and float(tb) > 0 else nan
    if disturbed:
        return "unsure", ", ".join(disturbed), ratio, nan, nan
    sb, sn = row.get("time_samples_ms_base"), row.get("time_samples_ms_new")
    if isinstance(sb, tuple | list) and isinstance(sn, tuple | list) and min(len(sb), len(sn)) >= MIN_SAMPLES:
        r, lo, hi = ratio_interval(sb, sn)
        return (_label_interval(r, lo, hi, margin), f"samples {len(sb)} vs {len(sn)}: ratio of medians {r:.3f} "
                f"[{lo:.3f}, {hi:.3f}]", r, lo, hi)
    if not math.isfinite(ratio):
        return "unsure", "no time on one side", ratio, nan, nan
    lb, hb = row.get("time_ms_ci_low_base"), row.get("time_ms_ci_high_base")
    ln, hn = row.get("time_ms_ci_low_new"), row.get("time_ms_ci_high_new")
    if all(_finite(v) and float(v) > 0 for v in (lb, hb, ln, hn)):
        lo, hi = float(ln) / float(hb), float(hn) / float(lb)
        return (_label_interval(ratio, lo, hi, margin), f"recorded median intervals: ratio {ratio:.3f} "
                f"[{lo:.3f}, {hi:.3f}]", ratio, lo, hi)
    noise = float(np.nansum([row.get("time_ms_iqr_base"), row.get("time_ms_iqr_new")]))
    diff = float(tn) - float(tb)
    why = f"no samples: change {ratio - 1:+.1%}, noise (IQRs) {noise / float(tb):.1%}"
    if abs(diff) > noise and abs(diff) > margin * float(tb):
        return ("slower" if diff > 0 else "faster"), why, ratio, nan, nan
    if abs(diff) + noise <= margin * float(tb):
        return "same", why, ratio, nan, nan
    return "unsure", why, ratio, nan, nan


def _log_changes(m: pd.DataFrame, quiet_only: bool) -> np.ndarray:
    """Per matched row: ``log(time_ms_median_new / time_ms_median_base)`` where both sides are ``ok`` (and, with
    ``quiet_only``, neither is contended nor noisy); NaN elsewhere."""
    need = ("status_base", "status_new", "time_ms_median_base", "time_ms_median_new")
    if not len(m) or not all(c in m.columns for c in need):
        return np.full(len(m), np.nan)
    ok = (m["status_base"] == "ok") & (m["status_new"] == "ok")
    if quiet_only:
        for c in ("contended_base", "contended_new", "noisy_base", "noisy_new"):
            if c in m.columns:
                ok &= ~m[c].map(_flag)
    tb = pd.to_numeric(m["time_ms_median_base"], errors="coerce")
    tn = pd.to_numeric(m["time_ms_median_new"], errors="coerce")
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log((tn / tb).to_numpy(dtype=float))
    logs[~ok.to_numpy(dtype=bool)] = np.nan
    return logs


def run_scatter(m: pd.DataFrame, quiet_only: bool = True) -> tuple[float, int]:
    """The run-to-run scatter of a comparison: ``(half_width, cases)``, ``half_width`` in log space
    (``SCATTER_Z x 1.4826 x MAD`` of the log ratios of the cases timed ``ok`` on both sides and, with
    ``quiet_only``, neither contended nor noisy), NaN when fewer than :data:`MIN_SCATTER_CASES` cases qualify."""
    x = _log_changes(m, quiet_only=quiet_only)
    x = x[np.isfinite(x)]
    if x.size < MIN_SCATTER_CASES:
        return math.nan, int(x.size)
    spread = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    return SCATTER_Z * spread, int(x.size)


def comparison_scatter(m: pd.DataFrame) -> tuple[float, int, bool]:
    """:func:`run_scatter` of the quiet cases, or, when fewer than :data:`MIN_SCATTER_CASES` of them are left, of
    every case timed on both sides, contended ones too: ``(half_width, cases, busy)``, ``busy`` saying which.

    Why the fallback: with a busy-looping process beside the second of two runs of unchanged code, 15 of 18 rows
    were contended, the three quiet cases left were too few for a scatter, and one of them, 9% faster alone in its
    case, was called ``faster``. A comparison whose rows are mostly contended ran on a machine whose state moved;
    the changes of all its rows are the honest measure of how much, and they only make the rule stricter."""
    width, n = run_scatter(m)
    if math.isfinite(width):
        return width, n, False
    width_all, n_all = run_scatter(m, quiet_only=False)
    if math.isfinite(width_all) and n_all > n:
        return width_all, n_all, True
    return width, n, False


def case_drifts(m: pd.DataFrame) -> list[float]:
    """Per matched row: the median log ratio new/base of the *other* variants of its case that were timed ``ok``
    on both sides (NaN when there is none). Contended and noisy ones count: they are not judged themselves, but
    they too say how the machine moved during that case."""
    if not len(m) or CASE_KEY not in m.columns:
        return [math.nan] * len(m)
    logs = _log_changes(m, quiet_only=False)
    usable = np.isfinite(logs)
    keys = m[CASE_KEY].astype(str).to_numpy()
    out = []
    for i in range(len(m)):
        others = logs[(keys == keys[i]) & usable & (np.arange(len(m)) != i)]
        out.append(float(np.median(others)) if others.size else math.nan)
    return out


def _beyond_noise(verdict: str, why: str, ratio: float, scatter: tuple[float, int], drift: float = math.nan,
                    margin: float = _DEFAULT_MARGIN) -> tuple[str, str]:
    """A ``slower``/``faster`` verdict becomes ``unsure`` when its ratio lies within the run-to-run scatter, or
    within ``1 + margin`` of the median change of the other variants of its case (``drift``, log space)."""
    width, n = scatter
    if verdict in ("slower", "faster") and math.isfinite(width) and ratio > 0 and abs(math.log(ratio)) <= width:
        return "unsure", (f"{why}; within the run-to-run scatter of this comparison (x{math.exp(width):.3f}: "
                          f"{SCATTER_Z:g} robust SDs of the changes of {n} cases)")
    if (verdict in ("slower", "faster") and math.isfinite(drift) and ratio > 0
            and abs(math.log(ratio) - drift) <= math.log1p(margin)):
        return "unsure", (f"{why}; moved with the other variants of its case (their median change "
                          f"x{math.exp(drift):.3f}): a state of the machine during that case, or a change they all "
                          "share")
    return verdict, why


# ---------------------------------------------------------------------------------------------------- compare
@dataclass
class Comparison:
    """The outcome of comparing two runs.

    Args:
        matched: one row per matched (case, variant): the case columns, both runs' figures (``*_base``,
            ``*_new``), relative changes (``*_change``: new/base - 1), ``ratio`` with ``ratio_low`` /
            ``ratio_high`` where a test gave an interval, ``verdict`` (one of :data:`LABELS`) and ``why``.
        only_base / only_new: rows present in one run only (case columns, variant, status, and ``differs``:
            the one parameter that differs from a row of the other run, where there is such a row).
        failures: human-readable lines, one per failed rule and row.
        rules: the rules applied.
        duplicates: number of rows dropped because a run repeated a (case, variant) (the latest kept).
        scatter: :func:`comparison_scatter` of the matched rows: ``(half_width, cases)``.
        scatter_busy: whether the scatter came from every timed case, contended ones too (too few quiet ones).
    """

    matched: pd.DataFrame
    only_base: pd.DataFrame
    only_new: pd.DataFrame
    failures: list[str] = field(default_factory=list)
    rules: list[FailRule] = field(default_factory=list)
    duplicates: int = 0
    scatter: tuple[float, int] = (math.nan, 0)
    scatter_busy: bool = False

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def counts(self) -> dict[str, int]:
        """Cases per label, in the order of :data:`LABELS`."""
        c = Counter(self.matched["verdict"]) if len(self.matched) else Counter()
        return {label: int(c.get(label, 0)) for label in LABELS}

    def contended(self) -> tuple[int, int]:
        """Rows marked contended in (BASE, NEW) among the matched ones."""
        return tuple(int(self.matched[f"contended_{s}"].fillna(False).astype(bool).sum())  # type: ignore[return-value]
                     if f"contended_{s}" in self.matched else 0 for s in ("base", "new"))


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


def _explain_unmatched(only_base: pd.DataFrame, only_new: pd.DataFrame) -> None:
    """Fill ``differs`` where a row of one side matches a row of the other on every parameter but one."""
    for df in (only_base, only_new):
        df["differs"] = ""
    if only_base.empty or only_new.empty:
        return
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
        for i, k in enumerate(kn):
            if k in base_val and not only_new.iloc[i]["differs"]:
                only_new.iloc[i, only_new.columns.get_loc("differs")] = (
                    f"{p.name} {_text(only_new.iloc[i][p.name])} here, {_text(base_val[k])} in BASE")


def _text(x: object) -> str:
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return str(int(x))
    return str(x)


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
    keys = list(MATCH_COLUMNS)
    fields = [f for f in _FIELDS if f in b.columns or f in n.columns]
    for df in (b, n):
        for f in fields:
            if f not in df.columns:
                df[f] = False if f in ("contended", "noisy") else math.nan
    case = [c for c in CASE_COLUMNS if c in b.columns and c in n.columns]
    cases = pd.concat([n[keys + case], b[keys + case]]).drop_duplicates(keys, keep="last")
    merged = b[keys + fields].merge(n[keys + fields], on=keys, how="outer", suffixes=("_base", "_new"),
                                    indicator=True).merge(cases, on=keys, how="left")
    only_base = merged[merged["_merge"] == "left_only"][keys + case + ["status_base"]].rename(
        columns={"status_base": "status"}).reset_index(drop=True)
    only_new = merged[merged["_merge"] == "right_only"][keys + case + ["status_new"]].rename(
        columns={"status_new": "status"}).reset_index(drop=True)
    _explain_unmatched(only_base, only_new)
    m = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    m["time_change"] = m["time_ms_median_new"] / m["time_ms_median_base"] - 1.0
    m["time_noise_ms"] = m["time_ms_iqr_base"].fillna(0) + m["time_ms_iqr_new"].fillna(0)
    m["mem_change"] = m["peak_mem_bytes_new"] / m["peak_mem_bytes_base"] - 1.0
    m["err_change"] = m["err_metric_new"] / m["err_metric_base"] - 1.0
    failures: list[str] = []
    out: list[tuple] = []
    width, n_cases, scatter_busy = comparison_scatter(m)
    scatter = (width, n_cases)
    drifts = case_drifts(m)
    for (_, row), drift in zip(m.iterrows(), drifts):
        label = _label(row)
        ok_b, ok_n = row["status_base"] == "ok", row["status_new"] == "ok"
        verdict, why, ratio, lo, hi = "failed both", f"{row['status_base']} -> {row['status_new']}", *(math.nan,) * 3
        if ok_b and not ok_n:
            verdict, why = "status changed", f"ok -> {row['status_new']}"
            reason = f" ({row['reason_new']})" if str(row["reason_new"]).strip() else ""
            failures.append(f"{label}: status ok -> {row['status_new']}{reason}")
        elif ok_n and not ok_b:
            verdict, why = "fixed", f"{row['status_base']} -> ok"
        elif ok_b and ok_n:
            verdict, why, ratio, lo, hi = time_label(row, margin)
            verdict, why = _beyond_noise(verdict, why, ratio, scatter, drift, margin)
            failures.extend(_rule_failures(row, rules, label, verdict, why, margin, scatter, drift))
        out.append((verdict, why, ratio, lo, hi))
    m["verdict"], m["why"], m["ratio"], m["ratio_low"], m["ratio_high"] = (
        zip(*out) if out else ([], [], [], [], []))
    return Comparison(matched=m, only_base=only_base, only_new=only_new, failures=failures, rules=rules,
                      duplicates=nb + nn, scatter=scatter, scatter_busy=scatter_busy)


def _rule_failures(row: pd.Series, rules: list[FailRule], label: str, verdict: str, why: str,
                   margin: float, scatter: tuple[float, int] = (math.nan, 0), drift: float = math.nan) -> list[str]:
    """The failure lines of one matched ``ok`` row under each rule."""
    lines = []
    disturbed = any(_flag(row.get(f"{k}_{s}")) for k in ("contended", "noisy") for s in ("base", "new"))
    for rule in rules:
        col, noise_col = FAIL_METRICS[rule.metric]
        base_v, new_v = float(row[f"{col}_base"]), float(row[f"{col}_new"])
        if rule.metric == "median":
            if rule.threshold == margin:
                at = verdict
            else:
                lab, _, r, _, _ = time_label(row, rule.threshold)
                at = _beyond_noise(lab, "", r, scatter, drift, rule.threshold)[0]
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


def _label(row: pd.Series) -> str:
    return f"{row['variant']} | {case_text(row)}"


def compare_runs(base: str | Path | list, new: str | Path | list, rules: list[FailRule] | list[str] | None = None
                 ) -> Comparison:
    """Compare the runs at ``base`` and ``new`` (run directories, folders of runs or CSV files).

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


# ---------------------------------------------------------------------------------------------------- text
def _pct(x: float) -> str:
    return "" if not (isinstance(x, float | int) and math.isfinite(x)) else f"{x:+.1%}"


def format_summary(c: Comparison) -> str:
    """The lead of the comparison: counts per label, contended rows, unmatched rows, the rules."""
    counts = c.counts()
    timed = sum(counts[k] for k in ("slower", "faster", "same", "unsure"))
    cb, cn = c.contended()
    lines = [f"compared {len(c.matched)} cases ({timed} timed on both sides): "
             + ", ".join(f"{k} {v}" for k, v in counts.items()),
             f"contended rows (not judged): {cb} in BASE, {cn} in NEW"]
    if len(c.only_base) or len(c.only_new):
        lines.append(f"not comparable: {len(c.only_base)} only in BASE, {len(c.only_new)} only in NEW")
    width, n = c.scatter
    if math.isfinite(width):
        which = " (contended ones too: too few quiet ones)" if c.scatter_busy else ""
        lines.append(f"run-to-run scatter: changes of the {n} cases timed on both sides{which} spread "
                     f"x{math.exp(width):.3f} ({SCATTER_Z:g} robust SDs); a change within it is unsure")
    if c.duplicates:
        lines.append(f"note: {c.duplicates} repeated row(s) within a run were dropped (latest kept)")
    rules = ", ".join(str(r) for r in c.rules) or "none"
    lines.append(f"rules: {rules} (median: a change beyond the threshold and significant; contended or noisy "
                 "rows are unsure, never a regression)")
    return "\n".join(lines)


def format_comparison(c: Comparison, show_all: bool = False) -> str:
    """The comparison as text: the summary, then one line per case that changed or could not be compared
    (every matched case with ``show_all``), the unmatched rows, and the verdict."""
    lines = [format_summary(c), ""]
    shown = c.matched if show_all else c.matched[~c.matched["verdict"].isin(("same", "failed both"))
                                                  | ((c.matched["verdict"] == "failed both")
                                                     & (c.matched["status_base"] != c.matched["status_new"]))]
    hidden = len(c.matched) - len(shown)
    if len(shown):
        w = max([7] + [len(str(v)) for v in shown["variant"]])
        lines.append(f"{'verdict':<14} {'variant':<{w}} {'base ms':>10} {'new ms':>10} {'time':>7} {'mem':>7} "
                     f"{'err':>7}  case; why")
        order = {k: i for i, k in enumerate(LABELS)}
        shown = shown.assign(_o=shown["verdict"].map(order)).sort_values(["_o", "variant"], kind="stable")
        for _, r in shown.iterrows():
            def ms(v):
                return f"{v:10.4g}" if _finite(v) else f"{'-':>10}"

            lines.append(f"{r['verdict']:<14} {r['variant']:<{w}} {ms(r['time_ms_median_base'])} "
                         f"{ms(r['time_ms_median_new'])} {_pct(r['time_change']):>7} {_pct(r['mem_change']):>7} "
                         f"{_pct(r['err_change']):>7}  {case_text(r)}; {r['why']}")
    if hidden:
        lines.append(f"({hidden} case(s) not listed: same, or failed the same way in both; --all lists them)")
    for title, rows in (("only in BASE", c.only_base), ("only in NEW", c.only_new)):
        if len(rows):
            lines.append(f"\n{title} ({len(rows)} rows, not compared):")
            for _, r in rows.iterrows():
                why = f"; {r['differs']}" if r.get("differs") else ""
                lines.append(f"  {_label(r)} [{r['status']}]{why}")
    lines.append("")
    if c.failures:
        lines.append(f"FAILED: {len(c.failures)} regression(s)")
        lines.extend(f"  {f}" for f in c.failures)
    else:
        lines.append("PASSED: no significant regression beyond the threshold")
    return "\n".join(lines)


def compare_main(argv: list[str] | None = None) -> int:
    """``attnbench compare BASE NEW [--fail median:5%] ... [--all]``.

    Returns:
        0 when no rule failed, 1 when one did, 2 on bad arguments or unreadable runs.
    """
    parser = argparse.ArgumentParser(prog="attnbench compare",
                                     description="Compare two runs: each case faster, slower, same or unsure.")
    parser.add_argument("base", metavar="BASE", help="base run directory, folder of runs, or CSV")
    parser.add_argument("new", metavar="NEW", help="new run directory, folder of runs, or CSV")
    parser.add_argument("--fail", action="append", default=None, metavar="METRIC:PCT%",
                        help=f"fail rule, repeatable (metrics: {', '.join(FAIL_METRICS)}; default median:5%%)")
    parser.add_argument("--all", action="store_true", help="list every matched case, not only what changed")
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
    print(format_comparison(c, show_all=args.all))
    return 1 if c.failed else 0
