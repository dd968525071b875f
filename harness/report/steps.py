"""Step detection in one series of runs: where the level of a time (or memory) changed, by how much, with an interval.

A series (one case and variant, one value per run, in run order) is fitted by a piecewise-constant level of
``log(value)``: the fit minimizes the sum of absolute deviations from each segment's level (its median) plus a
penalty per change, found exactly by PELT (:mod:`ruptures`, ``model="l1"``):

- **the penalty** is ``PENALTY_FACTOR * s * ln(n)`` per change, where ``n`` is the number of points and ``s`` the
  series' noise: the median absolute difference of successive log values / 0.954 (a normal spread's sigma; a step
  moves one difference only, so it barely changes ``s``), at least :data:`NOISE_FLOOR`. A step of relative size
  ``d`` with ``m`` points on its shorter side is found when ``m * d`` clearly exceeds ``2 s ln(n)``: a
  lasting change of a few noise widths, never one run's outlier;
- **absolute deviations** (not squares): a single slow run moves a median, not a level;
- **segments of at least** :data:`MIN_SEGMENT` runs: a step at the last run is not told from an outlier until the
  next run confirms it (``attnbench compare`` judges the last run against the one before);
- **the size of a step** is the ratio of the medians of the segments on either side; its 95% interval is a
  percentile bootstrap of that ratio, each side resampled on its own, with a fixed seed (reproducible).

The penalty's false-alarm rate and power on synthetic noise are measured by ``benchmarks/history_steps.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MIN_POINTS", "MIN_SEGMENT", "NOISE_FLOOR", "PENALTY_FACTOR", "Step", "find_steps", "level_ratio",
           "noise_scale", "step_penalty"]

#: Penalty per change, in units of ``noise * ln(n)`` (see the module docstring).
PENALTY_FACTOR = 2.0
#: The least noise assumed, as a relative change (0.5%): a series that looks quieter (memory, which is
#: deterministic) still needs a change of about a percent over several runs to step.
NOISE_FLOOR = 0.005
#: Fewest runs on each side of a step.
MIN_SEGMENT = 2
#: Fewest points a series needs to be judged (two segments and a noise estimate from the differences).
MIN_POINTS = 6
_BOOTSTRAP = 2000
_SEED = 20240607
_NORMAL_MAD_OF_DIFFS = 0.954  # median |x_i - x_{i-1}| of unit normal noise: 0.6745 * sqrt(2)


@dataclass(frozen=True)
class Step:
    """One change of level in a series.

    Args:
        index: position (in the values given) of the first point at the new level.
        ratio: the new level over the old one (medians of the segments after and before).
        low, high: its 95% bootstrap interval.
        before, after: the two levels, in the values' units.
        n_before, n_after: points in the segments compared.
    """

    index: int
    ratio: float
    low: float
    high: float
    before: float
    after: float
    n_before: int
    n_after: int


def noise_scale(logs: np.ndarray) -> float:
    """The noise of a series of log values: median |successive difference| / 0.954, at least :data:`NOISE_FLOOR`."""
    if len(logs) < 2:
        return NOISE_FLOOR
    return max(float(np.median(np.abs(np.diff(logs)))) / _NORMAL_MAD_OF_DIFFS, NOISE_FLOOR)


def step_penalty(n: int, scale: float) -> float:
    """The penalty per change of level: ``PENALTY_FACTOR * scale * ln(n)``."""
    return PENALTY_FACTOR * scale * math.log(max(n, 2))


def _change_points(logs: np.ndarray, penalty: float) -> list[int]:
    """Indices where a new segment starts, from PELT's exact penalized L1 fit."""
    import ruptures

    ends = ruptures.Pelt(model="l1", min_size=MIN_SEGMENT, jump=1).fit(logs.reshape(-1, 1)).predict(pen=penalty)
    return [int(e) for e in ends[:-1]]  # the last "end" is the series' length


def _ratio_interval(before: np.ndarray, after: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile-bootstrap interval of exp(median(after) - median(before)), each side resampled alone."""
    b = np.median(before[rng.integers(0, len(before), (_BOOTSTRAP, len(before)))], axis=1)
    a = np.median(after[rng.integers(0, len(after), (_BOOTSTRAP, len(after)))], axis=1)
    lo, hi = np.percentile(a - b, [2.5, 97.5])
    return float(np.exp(lo)), float(np.exp(hi))


def level_ratio(before: Sequence[float], after: Sequence[float]) -> tuple[float, float, float]:
    """The ratio of the medians of two sets of positive values (after / before) and its 95% bootstrap interval
    (fixed seed), as a step's size is measured.

    Returns:
        ``(ratio, low, high)``.
    """
    b, a = np.log(np.asarray(before, dtype=float)), np.log(np.asarray(after, dtype=float))
    lo, hi = _ratio_interval(b, a, np.random.default_rng(_SEED))
    return math.exp(float(np.median(a) - np.median(b))), lo, hi


def find_steps(values: Sequence[float], floor: float = 0.0) -> list[Step]:
    """The steps of one series (see the module docstring for the method and its penalty).

    Args:
        values: positive values in run order (NaN not allowed: leave out the runs without a value).
        floor: values below it count as ``floor`` (memory of 0 bytes has no logarithm).

    Returns:
        The steps, in order; none for a series of fewer than :data:`MIN_POINTS` points.

    Raises:
        ValueError: a value is NaN, infinite, or not positive where ``floor`` is 0.
    """
    arr = np.asarray(values, dtype=float)
    if floor > 0:
        arr = np.maximum(arr, floor)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"find_steps: values must be finite and positive (got {arr.tolist()[:8]}...; allowed: "
                         "values > 0, or a floor > 0)")
    if len(arr) < MIN_POINTS:
        return []
    logs = np.log(arr)
    starts = _change_points(logs, step_penalty(len(logs), noise_scale(logs)))
    bounds = [0, *starts, len(logs)]
    rng = np.random.default_rng(_SEED)
    steps = []
    for i, start in enumerate(starts):
        before, after = logs[bounds[i]:start], logs[start:bounds[i + 2]]
        lo, hi = _ratio_interval(before, after, rng)
        b, a = float(np.median(before)), float(np.median(after))
        steps.append(Step(index=start, ratio=math.exp(a - b), low=lo, high=hi, before=math.exp(b), after=math.exp(a),
                          n_before=len(before), n_after=len(after)))
    return steps
