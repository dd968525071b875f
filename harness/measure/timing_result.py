"""The result of one steady-state timing measurement: its samples, their statistics and what the process got.

:class:`TimingResult` holds the samples the statistics use (the undisturbed ones when enough remain,
:meth:`harness.measure.samplers.Sampler.split`), the disturbed ones kept for the record, and computes the median,
the interquartile range, the minimum, the distribution-free 95% interval of the median and the robust relative
noise (:mod:`harness.measure.stats`). A measurement whose IQR/median exceeds :data:`NOISY_IQR_RATIO` is flagged
``noisy``: its samples spread too widely for the median alone to describe the call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.measure import stats as _stats
from harness.measure.contention import Contention
from harness.measure.stop_rule import NOISY_IQR_RATIO  # one threshold for the row's flag and the stop rule

__all__ = ["NOISY_IQR_RATIO", "TimingResult"]



@dataclass
class TimingResult:
    """Times of one steady-state measurement, in milliseconds.

    Attributes:
        samples_ms: the samples the statistics are computed from (one per run, or one per block of
            ``calls_per_sample`` calls): the undisturbed ones when at least ``min_runs`` of them remain, else all.
        calls_per_sample: calls averaged in one sample (1 = every sample is one call).
        method: how the samples were taken (goes into ``timing_method``).
        threads: CPU threads used (torch intra-op threads during timing).
        dropped_ms: disturbed samples left out of the statistics (kept for the record).
        contention: what the process got while timing (None where not measured).
        stop_reason: ``target``, ``time_limit`` or ``max_runs`` ('' where the timer chose on its own).
        rounds: rounds the samples were taken in.
        retries: times the measurement was taken again because it was contended.
        round_ms: per round, the median of that round's used samples (NaN for a round without one).
        note: a sentence about the measurement for the row's reason (e.g. why it was not retried).
    """

    samples_ms: list[float]
    calls_per_sample: int = 1
    method: str = ""
    threads: int = 0
    dropped_ms: list[float] = field(default_factory=list)
    contention: Contention | None = None
    stop_reason: str = ""
    rounds: int = 0
    retries: int = 0
    round_ms: list[float] = field(default_factory=list)
    note: str = ""
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise ValueError("a TimingResult needs at least one sample (got samples_ms=[])")
        s = sorted(float(x) for x in self.samples_ms)
        ci = _stats.median_ci(s)
        self.stats = {
            "median": _stats.quantile(s, 0.5),
            "iqr": _stats.quantile(s, 0.75) - _stats.quantile(s, 0.25),
            "min": s[0],
            "ci_low": ci.low,
            "ci_high": ci.high,
            "ci_coverage": ci.coverage,
            "rel_noise": _stats.rel_noise(s),
        }

    @property
    def median_ms(self) -> float:
        """Median sample (the mean of the two middle samples for an even count)."""
        return self.stats["median"]

    @property
    def iqr_ms(self) -> float:
        """Interquartile range of the samples (linear interpolation between order statistics)."""
        return self.stats["iqr"]

    @property
    def min_ms(self) -> float:
        return self.stats["min"]

    @property
    def ci_low_ms(self) -> float:
        """Lower end of the 95% distribution-free CI of the median (the sample range below 6 samples)."""
        return self.stats["ci_low"]

    @property
    def ci_high_ms(self) -> float:
        return self.stats["ci_high"]

    @property
    def rel_ci_width(self) -> float:
        """(ci_high - ci_low) / median: what the adaptive target ``rel_ci`` is compared with."""
        med = self.median_ms
        return (self.ci_high_ms - self.ci_low_ms) / med if med > 0 else math.nan

    @property
    def rel_noise(self) -> float:
        """Robust relative standard deviation of the samples (1.4826 MAD / median)."""
        return self.stats["rel_noise"]

    @property
    def n_runs(self) -> int:
        """Number of samples behind the statistics."""
        return len(self.samples_ms)

    @property
    def total_calls(self) -> int:
        return (self.n_runs + len(self.dropped_ms)) * self.calls_per_sample

    @property
    def contended(self) -> bool:
        return bool(self.contention is not None and self.contention.contended)

    @property
    def noisy(self) -> bool:
        """IQR/median above :data:`NOISY_IQR_RATIO` (also True when the median is not positive)."""
        if not (self.median_ms > 0 and math.isfinite(self.iqr_ms)):
            return True
        return self.iqr_ms / self.median_ms > NOISY_IQR_RATIO
