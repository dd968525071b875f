"""Steady-state timing of one callable, and the CPU thread count it runs with.

The timers, each returning a :class:`~harness.measure.timing_result.TimingResult` whose ``method`` (the row's
``timing_method``) says how its samples were taken and by which stop rule:

- :func:`time_cpu_per_call`: one sample per call (:class:`~harness.measure.samplers.CpuSampler`), the default
  on the CPU and always for ``bwd``, whose forward graph must be built untimed before each call.
- :func:`time_cuda`: CUDA events per run with the L2 flushed before each
  (:class:`~harness.measure.samplers.CudaSampler`).
- :func:`time_cpu_blocked`: ``torch.utils.benchmark.Timer.blocked_autorange``, whose samples are means of blocks
  of ``calls_per_sample`` calls; kept as an option (``docs/measurement.md`` says why it is not the default).

The first two run the same rounds, stop rule and contention checks as the variants of a case
(:func:`harness.measure.rounds.run_rounds`, rounds of one). :func:`torch_threads` sets torch's intra-op thread
count for a block, so that a measurement runs with the count it records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from harness.measure.rounds import run_rounds
from harness.measure.samplers import CpuSampler, CudaSampler
from harness.measure.stop_rule import StopRule
from harness.measure.timing_result import TimingResult
from harness.measure.usage import UsageMeter

__all__ = ["time_cpu_blocked", "time_cpu_per_call", "time_cuda", "torch_threads"]


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


def time_cpu_per_call(call: Callable[[], object], budget_s: float = 0.2, threads: int | None = None,
                      setup: Callable[[], object] | None = None, min_runs: int = 3,
                      max_runs: int = 1000, rel_ci: float | None = None,
                      meter: UsageMeter | None = None) -> TimingResult:
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
    import torch.utils.benchmark as tbench  # local: its import is slow, and only this timer needs it

    nthreads = torch.get_num_threads() if threads is None else threads
    timer = tbench.Timer(stmt="call()", globals={"call": call}, num_threads=nthreads)
    m = timer.blocked_autorange(min_run_time=budget_s)
    samples = [t * 1e3 for t in m.times]  # Measurement.times are per-call means of each block, in seconds
    k = int(m.number_per_run)
    how = "one call per sample" if k == 1 else f"each sample the mean of a block of {k} calls"
    return TimingResult(samples, calls_per_sample=k, threads=nthreads,
                        method=f"cpu: torch.utils.benchmark blocked_autorange, {nthreads} threads, {how}")


def time_cuda(call: Callable[[], object], device: torch.device | str = "cuda", budget_s: float = 0.2,
              setup: Callable[[], object] | None = None, warmup: int = 1, min_runs: int = 3,
              max_runs: int = 1000, flush_l2: bool = True, rel_ci: float | None = None) -> TimingResult:
    """Time ``call`` on CUDA with events around each run and the L2 cache flushed before each run.

    Runs are taken in batches (a short estimate first, then :func:`~harness.measure.rounds.round_slice` of GPU
    time per batch), each enqueued back to back without host synchronization; ``setup`` (if any) and the flush
    are enqueued before each run's start event, so they are not timed.

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
