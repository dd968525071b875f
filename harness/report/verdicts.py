"""The verdict on one matched case of a comparison: slower, faster, same, or unsure with its cause.

A time change is judged only when both measurements got the machine (neither ``contended`` nor ``noisy``) and the
machine itself held still between the runs: the **yardstick** (``yardstick_ms``, a fixed workload timed in the
same rounds as the variants, :mod:`harness.measure.yardstick`) of the case must not have moved beyond
:data:`YARDSTICK_TOLERANCE`. Then:

- the ratio of medians new/base gets a 95% bootstrap interval from both rows' raw samples (:func:`ratio_interval`;
  rows of older runs: the recorded median intervals, else the summed IQRs);
- ``slower`` when the interval lies above 1, the ratio above ``1 + m`` (``m``: the ``median`` rule's threshold) and
  beyond the noise floor; ``faster`` likewise below; ``same`` when the whole interval lies within
  ``[1 / (1 + m), 1 + m]``; otherwise ``unsure`` (the interval straddles the threshold).

The **noise floor** comes from what should not have changed: the spread of the cases' yardstick ratios (3 robust
standard deviations of their logs, with at least :data:`MIN_FLOOR_CASES` cases), never from the variants' own
changes, so the more cases regress the louder the gate stays. A change every variant shares (a torch upgrade, a
thread setting, code they all call) is judged like any other: with the yardstick still, it is the code.

Every ``unsure`` says why: ``contended``, ``noisy``, ``machine`` (the yardstick moved), or the interval. A case
that is ``unsure`` was not judged; :mod:`harness.report.compare` turns any such case into an inconclusive exit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["CI_LEVEL", "MIN_FLOOR_CASES", "MIN_SAMPLES", "N_RESAMPLES", "NOISE_Z", "YARDSTICK_TOLERANCE",
           "TimeVerdict", "noise_floor", "ratio_interval", "time_verdict", "yardstick_change"]

#: Confidence level of every interval.
CI_LEVEL = 0.95
#: Bootstrap resamples of each median.
N_RESAMPLES = 4000
#: Fewest samples on each side for the sample test (fewer: the recorded interval or the IQR rule decides).
MIN_SAMPLES = 5
#: The yardstick moved when its ratio's interval lies wholly beyond this change (either way).
YARDSTICK_TOLERANCE = 0.03
#: Fewest cases with a yardstick on both sides before their spread sets the noise floor.
MIN_FLOOR_CASES = 8
#: Robust standard deviations of the yardsticks' log ratios that make the noise floor.
NOISE_Z = 3.0
#: Above this many values x resamples, resample medians are drawn by order statistic instead of resampling.
_BRUTE_LIMIT = 2_000_000


@dataclass(frozen=True)
class TimeVerdict:
    """The time verdict of one matched ``ok`` case.

    Args:
        label: ``slower``, ``faster``, ``same`` or ``unsure``.
        cause: why it is ``unsure`` (``contended``, ``noisy``, ``machine``, ``interval``, ``no time``); ``""``
            when judged.
        why: one sentence with the figures.
        ratio, low, high: the ratio of medians new/base and its interval (NaN where none).
        test: how the interval was made.
        yardstick, y_low, y_high: the yardstick's ratio new/base and its interval (NaN where not recorded).
    """

    label: str
    cause: str
    why: str
    ratio: float = math.nan
    low: float = math.nan
    high: float = math.nan
    test: str = ""
    yardstick: float = math.nan
    y_low: float = math.nan
    y_high: float = math.nan

    @property
    def judged(self) -> bool:
        return self.label != "unsure"


def _median_resamples(x: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``n_resamples`` bootstrap resamples of ``x``.

    Small sets are resampled outright. For large ones the resample's median is drawn without building the
    resample: it is at most the ``j``-th smallest value exactly when at least ``ceil(n / 2)`` resampled values are
    at most it, a Binomial(n, j / n) count, so one uniform draw per resample picks the order statistic.
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

    Returns:
        ``(ratio, low, high)``; NaN when a side has no positive sample.
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


def _flag(x: object) -> bool:
    """A True/False column's value; blank (NaN, None) is False."""
    return x is True or (isinstance(x, bool | np.bool_) and bool(x))


def _finite(x: object) -> bool:
    return isinstance(x, int | float | np.floating) and math.isfinite(float(x))


def _samples(x: object) -> list[float] | None:
    return list(x) if isinstance(x, tuple | list) and len(x) >= MIN_SAMPLES else None


def yardstick_change(row: pd.Series | dict) -> tuple[float, float, float]:
    """The yardstick's ratio new/base of a merged row and its interval (NaN where either side lacks samples)."""
    sb, sn = _samples(row.get("yardstick_samples_ms_base")), _samples(row.get("yardstick_samples_ms_new"))
    if sb is None or sn is None:
        return math.nan, math.nan, math.nan
    return ratio_interval(sb, sn)


def noise_floor(yardstick_ratios: list[float], margin: float) -> tuple[float, int]:
    """The smallest log change that counts: ``log(1 + margin)``, or :data:`NOISE_Z` robust standard deviations of
    the cases' yardstick log ratios when that is larger (with at least :data:`MIN_FLOOR_CASES` of them).

    Returns:
        ``(floor, cases)``: the floor in log space and how many yardstick ratios it came from.
    """
    x = np.log(np.asarray([r for r in yardstick_ratios if _finite(r) and r > 0], dtype=float))
    base = math.log1p(margin)
    if x.size < MIN_FLOOR_CASES:
        return base, int(x.size)
    spread = 1.4826 * float(np.median(np.abs(x - np.median(x))))
    return max(base, NOISE_Z * spread), int(x.size)


def _disturbed(row: pd.Series | dict) -> tuple[str, str]:
    """``(cause, why)`` of a row whose measurement did not get the machine, or ``("", "")``."""
    parts = []
    for side in ("base", "new"):
        if _flag(row.get(f"contended_{side}")):
            share = row.get(f"cpu_share_{side}")
            parts.append(f"{side} contended" + (f" (got {share:.0%} of the CPU asked)" if _finite(share) else ""))
    if parts:
        return "contended", ", ".join(parts)
    noisy = [f"{side} noisy" for side in ("base", "new") if _flag(row.get(f"noisy_{side}"))]
    return ("noisy", ", ".join(noisy) + " (IQR over 10% of the median)") if noisy else ("", "")


def _interval(row: pd.Series | dict, ratio: float) -> tuple[float, float, float, str]:
    """``(ratio, low, high, test)`` from the samples, else the recorded median intervals, else nothing."""
    sb, sn = _samples(row.get("time_samples_ms_base")), _samples(row.get("time_samples_ms_new"))
    if sb is not None and sn is not None:
        r, lo, hi = ratio_interval(sb, sn)
        return r, lo, hi, f"bootstrap {CI_LEVEL:.0%} CI of the ratio of medians, {len(sb)} vs {len(sn)} samples"
    lb, hb = row.get("time_ms_ci_low_base"), row.get("time_ms_ci_high_base")
    ln, hn = row.get("time_ms_ci_low_new"), row.get("time_ms_ci_high_new")
    if all(_finite(v) and float(v) > 0 for v in (lb, hb, ln, hn)):
        return ratio, float(ln) / float(hb), float(hn) / float(lb), "the rows' recorded 95% median intervals"
    return ratio, math.nan, math.nan, ""


def _label(ratio: float, lo: float, hi: float, margin: float, floor: float) -> str:
    if lo > 1 and ratio > 1 + margin and math.log(ratio) > floor:
        return "slower"
    if hi < 1 and ratio < 1 / (1 + margin) and -math.log(ratio) > floor:
        return "faster"
    if lo >= 1 / (1 + margin) and hi <= 1 + margin:
        return "same"
    return "unsure"


def time_verdict(row: pd.Series | dict, margin: float, floor: float | None = None) -> TimeVerdict:
    """The verdict on the time of one matched row whose two sides are ``ok`` (the rules: module docstring).

    Args:
        row: a merged row with ``*_base`` and ``*_new`` fields.
        margin: the change that counts (0.05 = 5%).
        floor: the noise floor in log space (:func:`noise_floor`; None: ``log(1 + margin)``).
    """
    floor = math.log1p(margin) if floor is None else floor
    y, ylo, yhi = yardstick_change(row)  # recorded whatever the verdict: the summary says how the machine moved
    yard = dict(yardstick=y, y_low=ylo, y_high=yhi)
    tb, tn = row.get("time_ms_median_base"), row.get("time_ms_median_new")
    ratio = float(tn) / float(tb) if _finite(tb) and _finite(tn) and float(tb) > 0 else math.nan
    cause, why = _disturbed(row)
    if cause:
        return TimeVerdict("unsure", cause, why, ratio, **yard)
    if not math.isfinite(ratio):
        return TimeVerdict("unsure", "no time", "no time on one side", ratio, **yard)
    if _finite(ylo) and (ylo > 1 + YARDSTICK_TOLERANCE or yhi < 1 / (1 + YARDSTICK_TOLERANCE)):
        return TimeVerdict("unsure", "machine", f"the machine moved: yardstick x{y:.3f} [{ylo:.3f}, {yhi:.3f}] "
                           f"(beyond {YARDSTICK_TOLERANCE:.0%}); variant x{ratio:.3f}", ratio, **yard)
    r, lo, hi, test = _interval(row, ratio)
    if not test:
        return _iqr_verdict(row, ratio, margin, yard)
    label = _label(r, lo, hi, margin, floor)
    held = f"; yardstick x{y:.3f} [{ylo:.3f}, {yhi:.3f}] held still" if _finite(ylo) else "; no yardstick recorded"
    why = f"x{r:.3f} [{lo:.3f}, {hi:.3f}] ({test}){held}"
    if label == "unsure":
        why = f"{why}; the interval does not settle a {margin:.0%} change"
    elif label in ("slower", "faster") and floor > math.log1p(margin) + 1e-12:
        why = f"{why}; beyond the noise floor x{math.exp(floor):.3f}"
    return TimeVerdict(label, "interval" if label == "unsure" else "", why, r, lo, hi, test, **yard)


def _iqr_verdict(row: pd.Series | dict, ratio: float, margin: float, yard: dict) -> TimeVerdict:
    """Rows of older runs with neither samples nor recorded intervals: the summed IQRs are the noise."""
    tb, tn = float(row["time_ms_median_base"]), float(row["time_ms_median_new"])
    noise = float(np.nansum([row.get("time_ms_iqr_base"), row.get("time_ms_iqr_new")]))
    why = f"no samples: change {ratio - 1:+.1%}, noise (summed IQRs) {noise / tb:.1%}"
    test = "summed IQRs (no samples recorded)"
    if abs(tn - tb) > noise and abs(tn - tb) > margin * tb:
        return TimeVerdict("slower" if tn > tb else "faster", "", why, ratio, test=test, **yard)
    if abs(tn - tb) + noise <= margin * tb:
        return TimeVerdict("same", "", why, ratio, test=test, **yard)
    return TimeVerdict("unsure", "interval", why, ratio, test=test, **yard)
