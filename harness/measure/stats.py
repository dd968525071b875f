"""Small statistics of timing samples: median, quartiles, a distribution-free CI of the median,
a robust relative noise, and a paired ratio with its confidence interval.

- :func:`median_ci`: the order-statistic interval ``[x_(j), x_(k)]`` that holds the population median with at
  least the asked confidence whatever the distribution (the sign-test interval; exact binomial tail sums in log
  space, so it works for any sample count). Below 6 samples no 95% interval exists; the interval is then the
  sample range and :func:`median_ci` says so through its ``coverage``.
- :func:`rel_noise`: ``1.4826 * MAD / median``, the relative standard deviation a normal distribution with the
  same median absolute deviation would have (robust to the few huge samples a preemption makes).
- :func:`paired_ratio`: the median of per-round ratios with its sign-test interval: drift that hits both sides of
  a round alike cancels in each ratio, and the median ignores a round in which only one side was slowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MedianCI", "PairedRatio", "median", "median_ci", "paired_ratio", "quantile", "rel_noise"]


#: MAD -> standard deviation of a normal distribution.
_MAD_TO_SD = 1.4826


def quantile(sorted_x: Sequence[float], q: float) -> float:
    """The ``q`` quantile of already sorted values with linear interpolation (numpy's and torch's default).

    Args:
        sorted_x: values in ascending order (at least one).
        q: in [0, 1].
    """
    n = len(sorted_x)
    if n == 0:
        raise ValueError("quantile of no values")
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return sorted_x[lo] + (sorted_x[hi] - sorted_x[lo]) * (pos - lo)


def median(x: Sequence[float]) -> float:
    """Median (mean of the two middle values for an even count)."""
    return quantile(sorted(x), 0.5)


def _log_binom_pmf(n: int, i: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2.0)


@dataclass(frozen=True)
class MedianCI:
    """A confidence interval of the median: ``low <= median <= high`` with probability >= ``coverage``."""

    low: float
    high: float
    coverage: float


def median_ci(x: Sequence[float], confidence: float = 0.95) -> MedianCI:
    """Distribution-free confidence interval of the population median from the order statistics of ``x``.

    The interval is ``[x_(j), x_(n+1-j)]`` (1-based order statistics) with the largest ``j`` for which
    ``P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2``. With fewer than 6 samples no 95% interval exists: the
    sample range is returned with its true coverage ``1 - 2^(1-n)``.

    Args:
        x: samples (at least one).
        confidence: the asked coverage, in (0, 1).

    Returns:
        A :class:`MedianCI`.
    """
    if not x:
        raise ValueError("median_ci of no samples")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} is out of range (allowed: 0 < confidence < 1)")
    s = sorted(x)
    n = len(s)
    alpha = (1.0 - confidence) / 2.0
    tail = 0.0  # P(B < j) for the current j
    j = 0
    while j < n // 2:
        nxt = tail + math.exp(_log_binom_pmf(n, j))  # P(B <= j) = P(B < j + 1)
        if nxt > alpha:
            break
        tail = nxt
        j += 1
    if j == 0:  # not even the range reaches the asked coverage
        return MedianCI(s[0], s[-1], 1.0 - 2.0 ** (1 - n) if n > 1 else 0.0)
    return MedianCI(s[j - 1], s[n - j], 1.0 - 2.0 * tail)


def rel_noise(x: Sequence[float]) -> float:
    """Robust relative noise: ``1.4826 * median(|x - median|) / median`` (NaN for a median that is not > 0)."""
    if not x:
        return math.nan
    med = median(x)
    if not med > 0:
        return math.nan
    return _MAD_TO_SD * median([abs(v - med) for v in x]) / med


@dataclass(frozen=True)
class PairedRatio:
    """``estimate`` of a ratio with its interval (``low``, ``high``; coverage ``coverage``) from ``pairs`` rounds."""

    estimate: float
    low: float
    high: float
    pairs: int
    coverage: float = math.nan


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> PairedRatio:
    """Median of the per-round ratios ``numerators[i] / denominators[i]``, with the sign-test interval of that
    median (:func:`median_ci`: 95% from 6 pairs on; below that the range of the ratios, with its lower coverage).

    Each pair is one round in which both sides were measured, so a slowdown of the machine that lasts a round hits
    both sides of that round's ratio alike; the median ignores the odd round in which only one side was slowed.

    Args:
        numerators, denominators: per-round figures (same length; pairs with a value that is not > 0 are skipped).

    Returns:
        A :class:`PairedRatio` (all NaN when no pair is usable; NaN bounds with a single pair).
    """
    if len(numerators) != len(denominators):
        raise ValueError(f"paired_ratio needs pairs (got {len(numerators)} and {len(denominators)} values)")
    ratios = [a / b for a, b in zip(numerators, denominators)
              if a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)]
    n = len(ratios)
    if n == 0:
        return PairedRatio(math.nan, math.nan, math.nan, 0)
    if n == 1:
        return PairedRatio(ratios[0], math.nan, math.nan, 1)
    ci = median_ci(ratios)
    return PairedRatio(median(ratios), ci.low, ci.high, n, ci.coverage)
