"""When a timed callable has enough samples: the :class:`StopRule`, checked after each of its rounds.

- **adaptive** (``rel_ci`` set): stop when the distribution-free 95% confidence interval of the median
  (:func:`harness.measure.stats.median_ci`) is narrower than ``rel_ci`` x median (``stop_reason="target"``), after at
  least :data:`MIN_TARGET_SAMPLES` samples; or when ``budget_s`` of timed time is spent (``"time_limit"``); or at
  ``max_runs`` samples (``"max_runs"``). NVBench and ``torch.utils.benchmark.adaptive_autorange`` stop this way:
  a callable stops as soon as its figure is as precise as asked, and never later than the fixed budget would.
- **fixed budget** (``rel_ci=None``): sample until ``budget_s`` is spent, within ``[min_runs, max_runs]``.
- **noisy extension** (``noisy_limit_s`` above ``budget_s``): a callable whose undisturbed samples are still noisy
  (IQR over :data:`NOISY_IQR_RATIO` of the median) when its budget is spent samples on, up to ``noisy_limit_s``,
  until they are not (``"settled"``) or its median's interval reaches the target. The samples it waited for a
  core in are left out first, so a busy machine is not sampled on (it is marked contended instead); a noisy row
  is given more samples, not a shrug.

Timed with a baseline (:func:`harness.measure.rounds.run_rounds`), a callable's target can be vetoed: its ratio
to the baseline must be as tight as its own median, since the ratio is the figure a reader compares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from harness.measure import stats as _stats

__all__ = ["DEFAULT_REL_CI", "MIN_TARGET_SAMPLES", "NOISY_IQR_RATIO", "Sampled", "StopRule"]

#: Default adaptive target: the 95% CI of the median narrower than this fraction of the median.
DEFAULT_REL_CI = 0.02
#: Fewest samples before the adaptive target may stop sampling (NVBench's minimum).
MIN_TARGET_SAMPLES = 10
#: IQR/median above which samples are noisy (a row says ``noisy``; the noisy extension samples on).
NOISY_IQR_RATIO = 0.10


class Sampled(Protocol):
    """What the stop rule reads of a sampler (:class:`harness.measure.samplers.Sampler`)."""

    @property
    def n(self) -> int: ...

    @property
    def spent_s(self) -> float: ...

    def split(self, min_runs: int) -> tuple[list[float], list[float]]: ...


@dataclass(frozen=True)
class StopRule:
    """When a callable has enough samples.

    Args:
        budget_s: time limit: timed seconds per measurement (the whole budget with ``rel_ci=None``).
        rel_ci: adaptive target (CI width of the median / median), or None for a fixed budget.
        min_runs / max_runs: bounds on the number of samples.
        min_rounds: fewest rounds before stopping.
        target_rounds: fewest rounds before the adaptive target may stop sampling (a paired ratio's 95% interval
            needs :data:`harness.measure.rounds.MIN_PAIRED_ROUNDS`); the time limit still stops a slow callable
            after ``min_rounds``, so a call longer than a sixth of the budget does not take six samples.
        noisy_limit_s: the time limit of a callable whose samples are still noisy at ``budget_s`` (no more than
            ``budget_s``: no extension).
    """

    budget_s: float = 0.2
    rel_ci: float | None = None
    min_runs: int = 3
    max_runs: int = 1000
    min_rounds: int = 1
    target_rounds: int = 1
    noisy_limit_s: float = 0.0

    def __post_init__(self) -> None:
        _check_runs(self.min_runs, self.max_runs)
        if not (isinstance(self.budget_s, int | float) and self.budget_s >= 0):
            raise ValueError(f"budget_s={self.budget_s!r} is out of range (allowed: seconds, a number >= 0)")
        if self.rel_ci is not None and not (isinstance(self.rel_ci, int | float) and self.rel_ci > 0):
            raise ValueError(f"rel_ci={self.rel_ci!r} is out of range (allowed: None or a number > 0)")

    def check(self, sampler: Sampled, rounds: int, needs_more: Callable[[], bool] | None = None) -> str | None:
        """``target``, ``time_limit`` or ``max_runs`` when ``sampler`` should stop, else None.

        ``needs_more`` (asked only when the sampler's own median is within the target) vetoes the target: a
        callable whose ratio to a baseline is not yet as tight goes on until the time limit.
        """
        n = sampler.n
        if n >= self.max_runs:
            return "max_runs"
        if rounds < self.min_rounds or n < self.min_runs:
            return None
        if self.rel_ci is not None and rounds >= self.target_rounds:
            used, _ = sampler.split(self.min_runs)
            if len(used) >= MIN_TARGET_SAMPLES:
                ci = _stats.median_ci(used)
                med = _stats.median(used)
                if med > 0 and (ci.high - ci.low) / med <= self.rel_ci and not (needs_more and needs_more()):
                    return "target"
        if sampler.spent_s >= self.budget_s:
            if sampler.spent_s < self.noisy_limit_s:
                used, _ = sampler.split(self.min_runs)
                if _noisy(used):
                    return None
                if sampler.spent_s >= self.budget_s * 1.5:  # it sampled on and settled (a margin: not the budget)
                    return "settled"
            return "time_limit"
        return None

    def describe(self) -> str:
        if self.rel_ci is None:
            return f"fixed budget {self.budget_s:g} s"
        return f"adaptive: until the median's 95% CI < {100 * self.rel_ci:g}% or {self.budget_s:g} s"


def _noisy(samples: list[float]) -> bool:
    """IQR/median of ``samples`` above :data:`NOISY_IQR_RATIO` (too few samples to say: not noisy)."""
    if len(samples) < 4:
        return False
    xs = sorted(samples)
    med = _stats.median(xs)
    return med > 0 and (_stats.quantile(xs, 0.75) - _stats.quantile(xs, 0.25)) / med > NOISY_IQR_RATIO


def _check_runs(min_runs: int, max_runs: int) -> None:
    if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 1:
        raise ValueError(f"min_runs={min_runs!r} is out of range (allowed: an integer >= 1)")
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < min_runs:
        raise ValueError(f"max_runs={max_runs!r} is out of range (allowed: an integer >= min_runs={min_runs})")
