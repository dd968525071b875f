"""Steady-state timing of a callable: CPU (per call, or torch.utils.benchmark) and CUDA (events, L2 flushed),
with adaptive stopping, interleaved rounds across several callables, and what the process got while it ran.

Samplers take samples in batches; a :class:`StopRule` decides after each batch whether a callable has enough:

- **adaptive** (``rel_ci`` set): stop when the distribution-free 95% confidence interval of the median
  (:func:`harness.measure.stats.median_ci`) is narrower than ``rel_ci`` x median (``stop_reason="target"``), after at
  least :data:`MIN_TARGET_SAMPLES` samples, or when ``budget_s`` of timed time is spent (``"time_limit"``), or at
  ``max_runs`` samples (``"max_runs"``). NVBench and ``torch.utils.benchmark.adaptive_autorange`` stop this way.
  Timed with a baseline (:func:`run_rounds`' ``baseline``), a callable's target also needs the 95% interval of
  its paired ratio to the baseline within ``rel_ci``, and the baseline samples as long as any other callable does.
- **fixed budget** (``rel_ci=None``): sample until ``budget_s`` is spent, within ``[min_runs, max_runs]``.

:func:`run_rounds` times several callables (the variants of one case) in *rounds*: each round gives every
callable that still needs samples a slice of the budget (:func:`round_slice`) in a seeded random order, so a change
of the machine's speed during the case hits every callable alike, and per-round figures can be paired
(:func:`harness.measure.stats.paired_ratio`). A single callable is timed the same way (rounds of one).

Every CPU sample is read with the process's run-queue wait, CPU time and preemptions
(:mod:`harness.measure.contention`); samples during which the process waited for a core are *disturbed* and left out of
the statistics when enough undisturbed ones remain (all samples are kept in the result). A measurement with too many
disturbed samples is *contended*; :func:`run_rounds` times it again (up to ``retries`` times) when the machine is quiet
again.

Timers, one result type (:class:`TimingResult`), each naming itself in ``method`` (the row's ``timing_method``):

- :class:`CpuSampler` / :func:`time_cpu_per_call`: one sample per call (``perf_counter``), garbage collection
  off while timing, an optional untimed ``setup`` right before each call (``bwd`` builds its forward graph there).
- :class:`CudaSampler` / :func:`time_cuda`: CUDA events around each call on the current stream, an L2 flush
  (writing a buffer of at least twice the L2 size) enqueued before each run, optional untimed setup before the
  flush, no host synchronization inside a batch (the queue stays full, as in ``triton.testing.do_bench``); one
  synchronization per batch, then per-run elapsed times. The GPU's clocks are read while a batch is queued.
- :func:`time_cpu_blocked`: ``torch.utils.benchmark.Timer.blocked_autorange`` (samples are means of blocks of
  ``calls_per_sample`` calls; kept as an option, see ``docs/measurement.md``).

A measurement whose IQR/median exceeds :data:`NOISY_IQR_RATIO` is flagged ``noisy``.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from harness.measure import contention as _cont
from harness.measure import stats as _stats
from harness.measure.gcpause import gc_paused

#: IQR/median above which a measurement is flagged noisy.
NOISY_IQR_RATIO = 0.10
#: Default adaptive target: the 95% CI of the median narrower than this fraction of the median.
DEFAULT_REL_CI = 0.02
#: Fewest samples before the adaptive target may stop sampling (NVBench's minimum).
MIN_TARGET_SAMPLES = 10
#: How long a round's slice is (timed seconds a callable gets per round, :func:`round_slice`). Shorter slices pair
#: more of the machine's drift: the exactly-k-times variants of ``benchmarks/repeat_variants.py`` read k with a
#: standard deviation of 1.31%, 1.11% and 0.84% with slices of 25, 12.5 and 6.25 ms (30 sweeps each, budget 0.2 s,
#: alternated), and the error halves did not correlate within a sweep, so more pairs keep helping. But the first
#: call of a batch follows another variant's calls and is slower (by 3-16%, median 7%, for calls of 1-3 ms at
#: N=256-512 in the default sweep: the other variant's data took the caches), so a batch needs several calls for
#: its median to be the steady state's: with slices of 3 ms, half the samples of a 2 ms call were first calls.
SLICE_S = 0.0125
#: Rounds a budget under ``MIN_ROUNDS x SLICE_S`` is split into (shorter slices, so that a small budget is still
#: interleaved).
MIN_ROUNDS = 8
#: Fewest rounds before the adaptive target may stop a callable timed with others: a paired ratio's 95% sign-test
#: interval needs 6 pairs (with 2 to 5 it is only the range of as many per-round ratios, with a lower coverage).
MIN_PAIRED_ROUNDS = 6
#: Why sampling stopped.
STOP_REASONS: tuple[str, ...] = ("target", "time_limit", "max_runs")
#: The L2 flush buffer is at least this many times the device's L2 size.
_L2_FLUSH_FACTOR = 2
#: Floor of the flush buffer (triton's do_bench writes 256 MiB). Writing it takes the GPU ~0.1 ms on an H100,
#: during which the host enqueues the timed call: calls whose host-side launch work fits in that head start are
#: timed without launch gaps, as do_bench times them.
_MIN_FLUSH_BYTES = 256 * 2**20
#: Runs used to estimate a CUDA call's duration before choosing the number of runs of a batch.
_CUDA_ESTIMATE_RUNS = 5

_flush_buffers: dict[str, torch.Tensor] = {}


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
    contention: _cont.Contention | None = None
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


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op thread count for the block (None: keep the current one); yield the count used.

    Args:
        threads: the thread count, or None.
    """
    before = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads={threads!r} is out of range (allowed: None or an integer >= 1)")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class StopRule:
    """When a callable has enough samples.

    Args:
        budget_s: time limit: timed seconds per measurement (the whole budget with ``rel_ci=None``).
        rel_ci: adaptive target (CI width of the median / median), or None for a fixed budget.
        min_runs / max_runs: bounds on the number of samples.
        min_rounds: fewest rounds before stopping.
        target_rounds: fewest rounds before the adaptive target may stop sampling (a paired ratio's 95% interval
            needs :data:`MIN_PAIRED_ROUNDS`); the time limit still stops a slow callable after ``min_rounds``, so a
            call longer than a sixth of the budget does not take six samples.
    """

    budget_s: float = 0.2
    rel_ci: float | None = None
    min_runs: int = 3
    max_runs: int = 1000
    min_rounds: int = 1
    target_rounds: int = 1

    def __post_init__(self) -> None:
        _check_runs(self.min_runs, self.max_runs)
        if not (isinstance(self.budget_s, int | float) and self.budget_s >= 0):
            raise ValueError(f"budget_s={self.budget_s!r} is out of range (allowed: seconds, a number >= 0)")
        if self.rel_ci is not None and not (isinstance(self.rel_ci, int | float) and self.rel_ci > 0):
            raise ValueError(f"rel_ci={self.rel_ci!r} is out of range (allowed: None or a number > 0)")

    def check(self, sampler: Sampler, rounds: int, needs_more: Callable[[], bool] | None = None) -> str | None:
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
            return "time_limit"
        return None

    def describe(self) -> str:
        if self.rel_ci is None:
            return f"fixed budget {self.budget_s:g} s"
        return f"adaptive: until the median's 95% CI < {100 * self.rel_ci:g}% or {self.budget_s:g} s"


class Sampler:
    """Samples of one callable, taken in batches (one batch per round); see :class:`CpuSampler`, :class:`CudaSampler`.

    Attributes:
        samples_ms: every sample, in order.
        rounds_of: the round each sample was taken in.
        usages: per sample, what the process got (CPU samplers).
        error: the exception a call raised (sampling stops for this callable).
        stop_reason: why sampling stopped ('' while it goes on).
        wall_s: wall time spent in this sampler's batches, retries included (setup per call and reading the
            clocks included).
    """

    method = ""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.wall_s = 0.0
        self.reset()

    def reset(self) -> None:
        """Forget the samples (a retry starts afresh)."""
        self.samples_ms: list[float] = []
        self.rounds_of: list[int] = []
        self.usages: list[_cont.SampleUsage] = []
        self.gpu: dict = {}
        self.error: BaseException | None = None
        self.stop_reason = ""
        self.load_before = _cont.load_average()
        self.load_after = math.nan
        self.others = self._new_others()

    def _new_others(self) -> _cont.OthersMeter | None:
        """What reads other processes' CPU time around each batch (None: not read; CPU samplers read it)."""
        return None

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    @property
    def spent_s(self) -> float:
        return sum(self.samples_ms) / 1e3

    @property
    def active(self) -> bool:
        return self.error is None and not self.stop_reason

    def take(self, slice_s: float, max_n: int, round_index: int) -> None:
        raise NotImplementedError

    def _disturbed(self) -> list[bool]:
        if len(self.usages) != len(self.samples_ms):
            return [False] * len(self.samples_ms)
        return [u.disturbed for u in self.usages]

    def split(self, min_runs: int) -> tuple[list[float], list[float]]:
        """``(used, dropped)``: the undisturbed samples and the disturbed ones, when at least ``min_runs`` are
        undisturbed; otherwise all samples are used."""
        flags = self._disturbed()
        clean = [s for s, d in zip(self.samples_ms, flags) if not d]
        if len(clean) >= max(1, min_runs):
            return clean, [s for s, d in zip(self.samples_ms, flags) if d]
        return list(self.samples_ms), []

    def uses_all(self, min_runs: int) -> bool:
        """Whether the statistics use disturbed samples too (too few undisturbed ones to leave them out)."""
        flags = self._disturbed()
        used, _ = self.split(min_runs)
        return any(flags) and len(used) == len(self.samples_ms)

    def round_figures(self, min_runs: int, use_all: bool | None = None) -> dict[int, float]:
        """Per round: the median of that round's used samples (rounds without one are absent).

        Args:
            min_runs: as in :meth:`split`.
            use_all: use every sample, disturbed or not (None: as the statistics do). A ratio of two samplers takes
                both on the same footing: all samples on both sides when either had to use all of its own.
        """
        flags = self._disturbed()
        if use_all is None:
            used, _ = self.split(min_runs)
            use_all = len(used) == len(self.samples_ms)
        by_round: dict[int, list[float]] = {}
        for s, r, d in zip(self.samples_ms, self.rounds_of, flags):
            if use_all or not d:
                by_round.setdefault(r, []).append(s)
        return {r: _stats.median(v) for r, v in by_round.items()}

    def contention(self) -> _cont.Contention:
        others = self.others
        return _cont.summarize(self.usages, self.threads, self.load_before, self.load_after, self.gpu,
                               others_s=others.total_s if others is not None else math.nan,
                               others_wall_s=others.wall_s if others is not None else 0.0,
                               others_margin_s=others.margin_s if others is not None else 0.0,
                               others_peak_cores=others.peak_cores() if others is not None else math.nan)

    def result(self, rule: StopRule, rounds: int = 0, retries: int = 0, note: str = "") -> TimingResult:
        """The :class:`TimingResult` of the samples taken (needs at least one)."""
        used, dropped = self.split(rule.min_runs)
        figures = self.round_figures(rule.min_runs)
        n_rounds = max(figures, default=-1) + 1
        return TimingResult(used, threads=self.threads, method=f"{self.method}, {rule.describe()}",
                            dropped_ms=dropped, contention=self.contention(), stop_reason=self.stop_reason,
                            rounds=rounds or n_rounds, retries=retries, note=note,
                            round_ms=[figures.get(r, math.nan) for r in range(n_rounds)])


class CpuSampler(Sampler):
    """One sample per call with ``perf_counter``, ``setup`` (if any) untimed before each call, gc off in a batch.

    Args:
        call: the callable (no arguments).
        threads: the threads the call uses (set by the caller; recorded and used for ``cpu_share``).
        setup: optional untimed work before each call.
        meter: reads what the process got around each sample (default :class:`harness.measure.contention.UsageMeter`).
        clock: the timer (tests pass a fake).
    """

    def __init__(self, call: Callable[[], object], threads: int, setup: Callable[[], object] | None = None,
                 meter: _cont.UsageMeter | None = None, clock: Callable[[], float] = time.perf_counter,
                 others: Callable[[], _cont.OthersMeter] | None = None) -> None:
        self.call, self.setup = call, setup
        self._others_factory = others or _cont.OthersMeter
        self.meter = meter or _cont.UsageMeter()
        self.clock = clock
        extra = ", untimed setup before each call" if setup is not None else ""
        self.method = f"cpu: perf_counter per call, {threads} threads{extra}"
        super().__init__(threads)

    def _new_others(self) -> _cont.OthersMeter | None:
        return self._others_factory()

    def take(self, slice_s: float, max_n: int, round_index: int) -> None:
        call, setup, clock, meter = self.call, self.setup, self.clock, self.meter
        meter.refresh()
        spent = 0.0
        taken = 0
        others = self.others
        if others is not None:
            others.start()
        with gc_paused():
            while taken < max(1, max_n):
                if setup is not None:
                    setup()
                u0 = meter.read()
                t0 = clock()
                call()
                t1 = clock()
                u1 = meter.read()
                self.samples_ms.append((t1 - t0) * 1e3)
                self.rounds_of.append(round_index)
                self.usages.append(meter.delta(u0, u1))
                spent += t1 - t0
                taken += 1
                if spent >= slice_s:
                    break
        if others is not None:
            others.stop()
        self.load_after = _cont.load_average()


class CudaSampler(Sampler):
    """CUDA events around each run, the L2 flushed before each; one synchronization per batch.

    Args:
        call: the callable (no arguments), enqueueing work on the current stream.
        device: the CUDA device.
        setup: optional untimed work before each run (enqueued before the flush).
        flush_l2: write the flush buffer before each run.
        gpu_probe: reads the GPU's state while a batch is queued (default :func:`harness.measure.contention.gpu_state`
            for this device).
    """

    def __init__(self, call: Callable[[], object], device: torch.device | str = "cuda",
                 setup: Callable[[], object] | None = None, flush_l2: bool = True,
                 gpu_probe: Callable[[], dict] | None = None) -> None:
        self.call, self.setup = call, setup
        dev = torch.device(device)
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        self.flush = l2_flush_buffer(dev) if flush_l2 else None
        self.gpu_probe = gpu_probe or _default_gpu_probe(dev)
        flush_txt = "no L2 flush"
        if self.flush is not None:
            flush_txt = f"L2 flushed before each run ({self.flush.numel() // 2**20} MiB write)"
        self.method = f"cuda: CUDA events per run, {flush_txt}, no host sync inside the loop"
        super().__init__(torch.get_num_threads())

    def take(self, slice_s: float, max_n: int, round_index: int) -> None:
        with torch.cuda.device(self.device):
            if not self.samples_ms:
                est = _cuda_event_runs(self.call, self.setup, self.flush, min(_CUDA_ESTIMATE_RUNS, max(1, max_n)),
                                       self._probe)
                self.samples_ms.extend(est)
                self.rounds_of.extend([round_index] * len(est))
                max_n -= len(est)
                slice_s -= sum(est) / 1e3
                if max_n <= 0 or slice_s <= 0:
                    return
            est_ms = _stats.median(self.samples_ms)
            n = int(slice_s * 1e3 / est_ms) if est_ms > 0 else max_n
            n = min(max_n, max(1, n))
            runs = _cuda_event_runs(self.call, self.setup, self.flush, n, self._probe)
        self.samples_ms.extend(runs)
        self.rounds_of.extend([round_index] * len(runs))

    def _probe(self) -> None:
        state = self.gpu_probe()
        if not state:
            return
        worst = self.gpu
        if not worst or state.get("gpu_sm_clock_mhz", math.inf) < worst.get("gpu_sm_clock_mhz", math.inf):
            keep_reasons = worst.get("gpu_throttle_reasons", "")
            self.gpu = dict(state)
            reasons = {r for r in (keep_reasons + "+" + state.get("gpu_throttle_reasons", "")).split("+") if r}
            self.gpu["gpu_throttle_reasons"] = "+".join(sorted(reasons))
        self.gpu["gpu_other_processes"] = max(int(worst.get("gpu_other_processes", 0) or 0),
                                              int(state.get("gpu_other_processes", 0) or 0))


def _default_gpu_probe(dev: torch.device) -> Callable[[], dict]:
    uuid = None
    with contextlib.suppress(Exception):
        uuid = str(torch.cuda.get_device_properties(dev).uuid)
    index = dev.index or 0
    return lambda: _cont.gpu_state(index, uuid)


def round_slice(budget_s: float) -> float:
    """Timed seconds a callable gets per round: :data:`SLICE_S`, or ``budget_s / MIN_ROUNDS`` when that is less:
    8 rounds at the default budget of 0.1 s, 16 at 0.2 s, 32 at 0.4 s, 80 at 1 s."""
    return min(SLICE_S, budget_s / MIN_ROUNDS)


def paired_figures(base: Sampler, other: Sampler, min_runs: int) -> tuple[list[float], list[float]]:
    """Per-round figures of ``base`` and ``other`` in the rounds that measured both, on the same footing: when
    either had to use its disturbed samples (too few undisturbed ones), both use all of theirs, so a ratio never
    sets a waited-on figure against a quiet one."""
    both = base.uses_all(min_runs) or other.uses_all(min_runs)
    fb = base.round_figures(min_runs, use_all=both or None)
    fo = other.round_figures(min_runs, use_all=both or None)
    common = sorted(set(fb) & set(fo))
    return [fb[r] for r in common], [fo[r] for r in common]


def ratio_within(base: Sampler, other: Sampler, rule: StopRule) -> bool:
    """Whether the paired ratio of ``other`` to ``base`` has a 95% interval (6 pairs or more) narrower than
    ``rule.rel_ci`` x the ratio."""
    if rule.rel_ci is None:
        return False
    b, o = paired_figures(base, other, rule.min_runs)
    if len(b) < MIN_PAIRED_ROUNDS:
        return False
    est = _stats.paired_ratio(b, o)
    return est.estimate > 0 and (est.high - est.low) / est.estimate <= rule.rel_ci


def run_rounds(samplers: Sequence[Sampler], rule: StopRule, seed: int = 0, retries: int = 0,
               quiet: Callable[[], bool] | None = None, after_batch: Callable[[int], None] | None = None,
               on_error: Callable[[int], None] | None = None, baseline: int | None = None) -> tuple[int, str]:
    """Time several callables in interleaved rounds until each one's :class:`StopRule` says stop.

    Each round gives every active sampler a slice of :func:`round_slice` timed seconds (at least one
    sample; no more than what is left of its budget), in an order shuffled from round to round by a generator
    seeded with ``seed``. A call that raises stops its sampler (``sampler.error``); the others go on. When, at the
    end, any sampler's measurement is contended, every sampler that did not fail is timed again from scratch, at
    most ``retries`` times, and only when ``quiet()`` says the machine is quiet again.

    Args:
        samplers: one per callable.
        rule: when a sampler has enough.
        seed: seeds the order of each round.
        retries: the most times the rounds are run again because of contention.
        quiet: whether the machine is quiet now (None: never retry).
        after_batch: called with the sampler's index after each of its batches (e.g. to check its inputs); an
            exception it raises stops that sampler like a failed call.
        on_error: called with the sampler's index as soon as it failed (its row can be written at once).
        baseline: the index of the sampler the others' ratios are taken against (None: no ratios). With an
            adaptive rule, a target reached is then not enough: another sampler goes on until its paired ratio's
            interval is within the target too (or the baseline has stopped), and the baseline goes on while any
            other sampler still samples, so that the ratios have their pairs. The time limit is unchanged.

    Returns:
        ``(retries_used, note)``: the note says why a contended measurement was not retried ('' otherwise).
    """
    if baseline is not None and not 0 <= baseline < len(samplers):
        raise ValueError(f"baseline={baseline!r} is out of range (allowed: None or a sampler's index, 0 to "
                         f"{len(samplers) - 1})")
    attempt = 0
    while True:
        rng = random.Random(seed + 7919 * attempt)
        order = list(range(len(samplers)))
        slice_s = round_slice(rule.budget_s)
        rounds = 0
        while any(s.active for s in samplers):
            rng.shuffle(order)
            for i in order:
                s = samplers[i]
                if not s.active:
                    continue
                t0 = time.perf_counter()
                try:
                    left = max(0.0, rule.budget_s - s.spent_s)
                    s.take(min(slice_s, left), rule.max_runs - s.n, rounds)
                    if after_batch is not None:
                        after_batch(i)
                except Exception as exc:  # the callable failed: its row says so, the others go on
                    s.error = exc
                s.wall_s += time.perf_counter() - t0
                if s.error is not None and on_error is not None:
                    on_error(i)
            rounds += 1
            for i in _check_order(len(samplers), baseline):
                s = samplers[i]
                if s.active:
                    why = rule.check(s, rounds, _needs_more(samplers, i, baseline, rule))
                    if why:
                        s.stop_reason = why
        contended = [s for s in samplers if s.error is None and s.n and s.contention().contended]
        if not contended:
            return attempt, ""
        if attempt >= retries:
            return attempt, (f"not retried (retries={retries})" if retries == 0 else
                             f"still contended after {attempt} retries")
        if quiet is None or not quiet():
            return attempt, "not retried: the machine stayed busy"
        attempt += 1
        for s in samplers:
            if s.error is None:
                s.reset()


def _check_order(n: int, baseline: int | None) -> list[int]:
    """The samplers' indices with the baseline last (it may stop only when the others have)."""
    return [i for i in range(n) if i != baseline] + ([] if baseline is None else [baseline])


def _needs_more(samplers: Sequence[Sampler], i: int, baseline: int | None,
                rule: StopRule) -> Callable[[], bool] | None:
    """What vetoes sampler ``i``'s adaptive target for the sake of its ratio (None: nothing)."""
    if baseline is None:
        return None
    base = samplers[baseline]
    if i == baseline:
        return lambda: any(s.active for j, s in enumerate(samplers) if j != baseline)
    return lambda: base.active and not ratio_within(base, samplers[i], rule)


def time_cpu_per_call(call: Callable[[], object], budget_s: float = 0.2, threads: int | None = None,
                      setup: Callable[[], object] | None = None, min_runs: int = 3,
                      max_runs: int = 1000, rel_ci: float | None = None,
                      meter: _cont.UsageMeter | None = None) -> TimingResult:
    """Time ``call`` once per sample, running ``setup`` untimed before each call.

    Args:
        call: the callable (no arguments).
        budget_s: timed seconds to spend (the time limit when ``rel_ci`` is set; setup not counted).
        threads: CPU threads (None: torch's current count); set for the measurement and recorded.
        setup: optional untimed work before each timed call (e.g. building the forward graph of ``bwd``).
        min_runs / max_runs: bounds on the number of samples.
        rel_ci: adaptive target (None: spend the whole budget).
        meter: reads what the process got (tests pass a fake).

    Returns:
        A :class:`TimingResult` with one sample per call.

    Raises:
        Exception: whatever ``call`` raised.
    """
    rule = StopRule(budget_s=budget_s, rel_ci=rel_ci, min_runs=min_runs, max_runs=max_runs)
    with torch_threads(threads) as nthreads:
        sampler = CpuSampler(call, nthreads, setup=setup, meter=meter)
        run_rounds([sampler], rule)
    if sampler.error is not None:
        raise sampler.error
    return sampler.result(rule)


def time_cpu_blocked(call: Callable[[], object], budget_s: float = 0.2, threads: int | None = None) -> TimingResult:
    """Time ``call`` with ``torch.utils.benchmark.Timer.blocked_autorange`` (samples are block means).

    Args:
        call: the callable (no arguments).
        budget_s: ``min_run_time`` of ``blocked_autorange``: blocks run until this much time is spent
            (the block-size estimate before it, which also warms up, is extra).
        threads: CPU threads (None: torch's current count); passed as ``num_threads`` and recorded.

    Returns:
        A :class:`TimingResult` whose samples are means of ``calls_per_sample`` calls.
    """
    import torch.utils.benchmark as tbench  # local: importing it costs ~0.5 s, only CPU timing needs it

    nthreads = torch.get_num_threads() if threads is None else threads
    timer = tbench.Timer(stmt="call()", globals={"call": call}, num_threads=nthreads)
    m = timer.blocked_autorange(min_run_time=budget_s)
    samples = [t * 1e3 for t in m.times]  # Measurement.times are per-call means of each block, in seconds
    k = int(m.number_per_run)
    how = "one call per sample" if k == 1 else f"each sample the mean of a block of {k} calls"
    return TimingResult(samples, calls_per_sample=k, threads=nthreads,
                        method=f"cpu: torch.utils.benchmark blocked_autorange, {nthreads} threads, {how}")


def l2_flush_buffer(device: torch.device | str) -> torch.Tensor:
    """A cached int8 buffer of max(2x the device's L2 size, 256 MiB); writing it evicts the L2 cache.

    Args:
        device: a CUDA device.
    """
    dev = torch.device(device)
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    key = str(dev)
    if key not in _flush_buffers:
        l2 = int(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or 0)
        nbytes = max(_L2_FLUSH_FACTOR * l2, _MIN_FLUSH_BYTES)
        _flush_buffers[key] = torch.empty(nbytes, dtype=torch.int8, device=dev)
    return _flush_buffers[key]


def time_cuda(call: Callable[[], object], device: torch.device | str = "cuda", budget_s: float = 0.2,
              setup: Callable[[], object] | None = None, warmup: int = 1, min_runs: int = 3,
              max_runs: int = 1000, flush_l2: bool = True, rel_ci: float | None = None) -> TimingResult:
    """Time ``call`` on CUDA with events around each run and the L2 cache flushed before each run.

    Runs are taken in batches (a short estimate first, then :func:`round_slice` of GPU time per batch),
    each enqueued back to back without host synchronization; ``setup`` (if any) and the flush are enqueued
    before each run's start event, so they are not timed.

    Args:
        call: the callable (no arguments), enqueueing work on the current stream.
        device: the CUDA device.
        budget_s: GPU time to spend on timed runs (the time limit when ``rel_ci`` is set).
        setup: optional untimed work before each run.
        warmup: runs before the estimate.
        min_runs / max_runs: bounds on the number of timed runs.
        flush_l2: write the flush buffer before each run (default True).
        rel_ci: adaptive target (None: spend the whole budget).

    Returns:
        A :class:`TimingResult` with one sample per run (GPU time between the events, in ms).

    Raises:
        Exception: whatever ``call`` raised.
    """
    rule = StopRule(budget_s=budget_s, rel_ci=rel_ci, min_runs=min_runs, max_runs=max_runs)
    dev = torch.device(device)
    with torch.cuda.device(dev):
        for _ in range(max(0, warmup)):
            if setup is not None:
                setup()
            call()
        sampler = CudaSampler(call, dev, setup=setup, flush_l2=flush_l2)
        run_rounds([sampler], rule)
    if sampler.error is not None:
        raise sampler.error
    return sampler.result(rule)


def _cuda_event_runs(call: Callable[[], object], setup: Callable[[], object] | None, flush: torch.Tensor | None,
                     n: int, probe: Callable[[], None] | None = None) -> list[float]:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        if setup is not None:
            setup()
        if flush is not None:
            flush.zero_()
        starts[i].record()
        call()
        ends[i].record()
    if probe is not None:
        probe()  # the GPU is busy with the queued runs: its clocks now are the ones the runs get
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends)]


def _check_runs(min_runs: int, max_runs: int) -> None:
    if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 1:
        raise ValueError(f"min_runs={min_runs!r} is out of range (allowed: an integer >= 1)")
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < min_runs:
        raise ValueError(f"max_runs={max_runs!r} is out of range (allowed: an integer >= min_runs={min_runs})")
