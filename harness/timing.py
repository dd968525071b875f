"""Steady-state timing of a callable: CPU (torch.utils.benchmark / timeit) and CUDA (events, L2 flushed).

Three timers, one result type (:class:`TimingResult`). Each names itself in ``method``, which goes into the
row's ``timing_method`` column, because the method changes the figures (see ``docs/measurement.md``).

- :func:`time_cpu_blocked`: ``torch.utils.benchmark.Timer.blocked_autorange`` with ``num_threads`` set
  explicitly (the Timer defaults to 1 thread). It runs blocks of ``number_per_run`` calls until the budget is
  spent; each *sample* is the mean of one block. Its block-size rule (timer overhead <= 0.01% of a block) gives
  blocks of 10 or more calls for any call under about 10 ms, so median, IQR and min are statistics of block
  means and ``n_runs`` counts blocks; ``calls_per_sample`` says how many calls each one averages. The spread of
  block means understates the spread of single calls (by about sqrt(calls_per_sample)).
- :func:`time_cpu_per_call`: one sample per call, with an optional untimed ``setup`` run right before each
  timed call (the ``bwd`` mode builds a fresh forward graph there). Uses the standard library's
  ``timeit.Timer`` (``perf_counter``, garbage collection disabled while timing, setup outside the clock).
- :func:`time_cuda`: CUDA events recorded around each call on the current stream, an L2 flush (writing a buffer
  of at least twice the L2 size) enqueued before each run, optional untimed setup before the flush, warm-up,
  no host synchronization inside the loop (the queue stays full, as in ``triton.testing.do_bench``); one
  synchronization at the end, then per-run elapsed times.

A measurement whose IQR/median exceeds :data:`NOISY_IQR_RATIO` is flagged ``noisy``.
"""

from __future__ import annotations

import contextlib
import math
import time
import timeit
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

#: IQR/median above which a measurement is flagged noisy.
NOISY_IQR_RATIO = 0.10
#: The L2 flush buffer is at least this many times the device's L2 size.
_L2_FLUSH_FACTOR = 2
#: Floor of the flush buffer (triton's do_bench writes 256 MiB). Writing it takes the GPU ~0.1 ms on an H100,
#: during which the host enqueues the timed call: calls whose host-side launch work fits in that head start are
#: timed without launch gaps, as do_bench times them.
_MIN_FLUSH_BYTES = 256 * 2**20
#: Runs used to estimate a CUDA call's duration before choosing the number of timed runs.
_CUDA_ESTIMATE_RUNS = 5

_flush_buffers: dict[str, torch.Tensor] = {}


@dataclass
class TimingResult:
    """Times of one steady-state measurement, in milliseconds.

    Attributes:
        samples_ms: the samples (one per run, or one per block of ``calls_per_sample`` calls).
        calls_per_sample: calls averaged in one sample (1 = every sample is one call).
        method: how the samples were taken (goes into ``timing_method``).
        threads: CPU threads used (torch intra-op threads during timing).
    """

    samples_ms: list[float]
    calls_per_sample: int = 1
    method: str = ""
    threads: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise ValueError("a TimingResult needs at least one sample (got samples_ms=[])")
        t = torch.tensor(self.samples_ms, dtype=torch.float64)
        self.stats = {
            "median": float(t.quantile(0.5)),
            "iqr": float(t.quantile(0.75) - t.quantile(0.25)),
            "min": float(t.min()),
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
    def n_runs(self) -> int:
        """Number of samples."""
        return len(self.samples_ms)

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


def time_cpu_per_call(call: Callable[[], object], budget_s: float = 0.2, threads: int | None = None,
                      setup: Callable[[], object] | None = None, min_runs: int = 3,
                      max_runs: int = 1000) -> TimingResult:
    """Time ``call`` once per sample with ``timeit.Timer``, running ``setup`` untimed before each call.

    Args:
        call: the callable (no arguments).
        budget_s: samples are taken until this much *timed* time is spent (setup not counted).
        threads: CPU threads (None: torch's current count); set for the measurement and recorded.
        setup: optional untimed work before each timed call (e.g. building the forward graph of ``bwd``).
        min_runs / max_runs: bounds on the number of samples.

    Returns:
        A :class:`TimingResult` with one sample per call.
    """
    _check_runs(min_runs, max_runs)
    t = timeit.Timer(stmt=call, setup=setup if setup is not None else "pass", timer=time.perf_counter)
    samples: list[float] = []
    spent = 0.0
    with torch_threads(threads) as nthreads:
        while len(samples) < min_runs or (spent < budget_s and len(samples) < max_runs):
            s = t.timeit(number=1)
            samples.append(s * 1e3)
            spent += s
    extra = ", untimed setup before each call" if setup is not None else ""
    return TimingResult(samples, threads=nthreads,
                        method=f"cpu: timeit perf_counter per call, {nthreads} threads{extra}")


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
              max_runs: int = 1000, flush_l2: bool = True) -> TimingResult:
    """Time ``call`` on CUDA with events around each run and the L2 cache flushed before each run.

    The number of runs is chosen from a short estimate (``budget_s / estimated time``, within
    ``[min_runs, max_runs]``). All runs are enqueued back to back without host synchronization; ``setup`` (if
    any) and the flush are enqueued before each run's start event, so they are not timed.

    Args:
        call: the callable (no arguments), enqueueing work on the current stream.
        device: the CUDA device.
        budget_s: total GPU time to spend on timed runs (approximately).
        setup: optional untimed work before each run.
        warmup: runs before the estimate.
        min_runs / max_runs: bounds on the number of timed runs.
        flush_l2: write the flush buffer before each run (default True).

    Returns:
        A :class:`TimingResult` with one sample per run (GPU time between the events, in ms).
    """
    _check_runs(min_runs, max_runs)
    dev = torch.device(device)
    flush = l2_flush_buffer(dev) if flush_l2 else None
    with torch.cuda.device(dev):
        for _ in range(max(0, warmup)):
            if setup is not None:
                setup()
            call()
        est = _cuda_event_runs(call, setup, flush, _CUDA_ESTIMATE_RUNS)
        est_ms = sorted(est)[len(est) // 2]
        n = int(budget_s * 1e3 / est_ms) if est_ms > 0 else max_runs
        n = min(max_runs, max(min_runs, n))
        samples = _cuda_event_runs(call, setup, flush, n)
    flush_txt = "no L2 flush"
    if flush is not None:
        flush_txt = f"L2 flushed before each run ({flush.numel() // 2**20} MiB write)"
    return TimingResult(samples, threads=torch.get_num_threads(),
                        method=f"cuda: CUDA events per run, {flush_txt}, no host sync inside the loop")


def _cuda_event_runs(call: Callable[[], object], setup: Callable[[], object] | None, flush: torch.Tensor | None,
                     n: int) -> list[float]:
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
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends)]


def _check_runs(min_runs: int, max_runs: int) -> None:
    if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 1:
        raise ValueError(f"min_runs={min_runs!r} is out of range (allowed: an integer >= 1)")
    if isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < min_runs:
        raise ValueError(f"max_runs={max_runs!r} is out of range (allowed: an integer >= min_runs={min_runs})")
