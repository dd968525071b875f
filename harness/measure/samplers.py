"""Samplers: take the samples of one callable, a batch at a time, with what the process got around each.

A :class:`Sampler` is handed one batch per round by :func:`harness.measure.rounds.run_rounds` (a slice of timed
seconds and the most samples it may take); it keeps every sample with the round it was taken in, and summarizes
what the process got into a :class:`~harness.measure.contention.Contention`.

- :class:`CpuSampler`: one sample per call with ``perf_counter``, garbage collection off while a batch runs (a
  collection would add its own time to a sample), an optional untimed ``setup`` right before each call (``bwd``
  builds its forward graph there). Around every sample it reads the process's clocks
  (:class:`~harness.measure.usage.UsageMeter`) and, around every batch, other processes' CPU time
  (:class:`~harness.measure.other_processes.OthersMeter`).
- :class:`CudaSampler`: CUDA events around each call on the current stream; before each run, optional untimed
  setup and an L2 flush (a write of at least twice the L2 size, :func:`l2_flush_buffer`, so that every run starts
  from a cold L2 as a call in a real pipeline would); no host synchronization inside a batch, so the queue stays
  full as in ``triton.testing.do_bench``; one synchronization per batch, then per-run elapsed times. The GPU's
  clocks are read while a batch is queued (:func:`harness.measure.gpu.gpu_state`).

Samples during which the process waited for a core are *disturbed*
(:attr:`harness.measure.usage.SampleUsage.disturbed`) and left out of the statistics when at least ``min_runs``
undisturbed ones remain (:meth:`Sampler.split`); every sample is kept in the result.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable

import torch

from harness.measure import stats as _stats
from harness.measure.contention import Contention, summarize
from harness.measure.gcpause import gc_paused
from harness.measure.gpu import gpu_state
from harness.measure.machine import load_average
from harness.measure.other_processes import OthersMeter
from harness.measure.stop_rule import StopRule
from harness.measure.timing_result import TimingResult
from harness.measure.usage import SampleUsage, UsageMeter

__all__ = ["CpuSampler", "CudaSampler", "Sampler", "l2_flush_buffer"]

#: The L2 flush buffer is at least this many times the device's L2 size.
_L2_FLUSH_FACTOR = 2
#: Floor of the flush buffer (triton's do_bench writes 256 MiB). While the GPU writes it, the host enqueues the
#: timed call: calls whose host-side launch work fits in that head start are timed without launch gaps, as
#: do_bench times them.
_MIN_FLUSH_BYTES = 256 * 2**20
#: Runs used to estimate a CUDA call's duration before choosing the number of runs of a batch.
_CUDA_ESTIMATE_RUNS = 5

_flush_buffers: dict[str, torch.Tensor] = {}


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
        self.usages: list[SampleUsage] = []
        self.gpu: dict = {}
        self.error: BaseException | None = None
        self.stop_reason = ""
        self.load_before = load_average()
        self.load_after = math.nan
        self.others = self._new_others()

    def _new_others(self) -> OthersMeter | None:
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

    def contention(self) -> Contention:
        others = self.others
        return summarize(self.usages, self.threads, self.load_before, self.load_after, self.gpu,
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
        meter: reads what the process got around each sample (default :class:`harness.measure.usage.UsageMeter`).
        clock: the timer (tests pass a fake).
    """

    def __init__(self, call: Callable[[], object], threads: int, setup: Callable[[], object] | None = None,
                 meter: UsageMeter | None = None, clock: Callable[[], float] = time.perf_counter,
                 others: Callable[[], OthersMeter] | None = None) -> None:
        self.call, self.setup = call, setup
        self._others_factory = others or OthersMeter
        self.meter = meter or UsageMeter()
        self.clock = clock
        extra = ", untimed setup before each call" if setup is not None else ""
        self.method = f"cpu: perf_counter per call, {threads} threads{extra}"
        super().__init__(threads)

    def _new_others(self) -> OthersMeter | None:
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
        self.load_after = load_average()


class CudaSampler(Sampler):
    """CUDA events around each run, the L2 flushed before each; one synchronization per batch.

    Args:
        call: the callable (no arguments), enqueueing work on the current stream.
        device: the CUDA device.
        setup: optional untimed work before each run (enqueued before the flush).
        flush_l2: write the flush buffer before each run.
        gpu_probe: reads the GPU's state while a batch is queued (default :func:`harness.measure.gpu.gpu_state`
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
    return lambda: gpu_state(index, uuid)


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
