"""Measure variants on one case: setup cost, steady-state time, peak memory, FLOPs and error, and what the process
got while it was timed.

One variant (:func:`measure_variant`) or all the variants of a case together (:func:`measure_case`), in phases:

1. **Setup**, per variant: ``prepare`` and the first call, timed together as ``setup_ms`` (compilation, mask or
   layout building, autotuning land here); the output contract (a tensor of the query's shape, dtype and device,
   :mod:`harness.measure.contract`); the error against the float64 baseline from that first output; ``warmup`` further
   calls, the last of them the peak-memory probe when memory is measured (one untimed call,
   :mod:`harness.measure.memory`, with the memory the call leaves behind). After the first call and after the memory
   probe the case's inputs are compared with a saved copy: a variant that changed them in place gets an ``error`` row
   and the inputs are restored for the
   others.
2. **Timing** in interleaved rounds across the variants that got through setup
   (:func:`harness.measure.timing.run_rounds`): each round gives every variant a slice of its budget, in a seeded order
   that changes from round to round; sampling stops at the adaptive target (``rel_ci``), the time limit (``budget_s``)
   or ``max_runs``. Samples during which the process waited for a core are left out of the statistics; a contended
   measurement is timed
   again when the machine is quiet (``retries``).
3. **Figures**: FLOPs, TFLOP/s, ``pct_of_peak`` against the measured matmul ceiling (:mod:`harness.measure.ceilings`)
   and the copy ceiling; bytes moved, achieved GB/s, % of the copy ceiling and which ceiling binds
   (:mod:`harness.core.roofline`); with a baseline variant in the case, ``speedup_vs_full`` from paired per-round
   figures with a 95% interval, and ``mem_ratio_vs_full``.

Nothing here raises for a variant's misbehaviour: an unsupported case, an out-of-memory error, any other
exception, a broken output contract, changed inputs, or NaN/Inf in the output becomes a :class:`Measurement` with
the matching ``status`` and a message, and the memory it held is released, so a sweep goes on.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from harness.core.case import Case, Inputs
from harness.core.flops import attention_flops, tflops
from harness.core.metrics import error_stats, ratio
from harness.core.reference import ReferenceCache, needs_dense_reference
from harness.core.roofline import roofline_figures
from harness.core.variant import Variant
from harness.core.varlen import real_tokens
from harness.measure.allocator import steady_malloc
from harness.measure.calls import clear_grads, make_call
from harness.measure.ceilings import copy_ceiling_gbps, matmul_ceiling_tflops
from harness.measure.contract import InputGuard
from harness.measure.machine import QuietGate
from harness.measure.memory import measure_peak
from harness.measure.rounds import MIN_PAIRED_ROUNDS, paired_figures, run_rounds
from harness.measure.samplers import CpuSampler, CudaSampler, Sampler
from harness.measure.stats import paired_ratio
from harness.measure.stop_rule import DEFAULT_REL_CI, StopRule
from harness.measure.support import unsupported_reasons
from harness.measure.timing import time_cpu_blocked, torch_threads
from harness.measure.timing_result import TimingResult
from harness.measure.yardstick import YARDSTICK_SLICE_S, yardstick_call, yardstick_method

__all__ = ["CPU_TIMERS", "LeakLedger", "MeasureConfig", "Measurement", "declined", "failure", "measure_case",
           "measure_variant"]

#: CPU timers: ``per_call`` (one sample per call) or ``blocked_autorange`` (torch.utils.benchmark; block means).
CPU_TIMERS: tuple[str, ...] = ("blocked_autorange", "per_call")
#: Significant digits kept for each raw sample in ``time_samples_ms``.
_SAMPLE_DIGITS = 6
#: Retries of contended measurements in this process wait for a quiet machine through one gate.
_QUIET = QuietGate()


@dataclass
class MeasureConfig:
    """How to measure.

    Args:
        budget_s: time limit of one steady-state measurement: timed seconds per variant (with ``rel_ci=None``,
            the whole budget is spent).
        warmup: calls after the setup call and before timing; with ``memory`` the memory probe's call is the last
            of them (``warmup=0`` still probes memory, in one more call).
        threads: CPU threads (None: torch's current count); set explicitly for the whole measurement and recorded.
        memory: measure peak memory (one extra, untimed call).
        errors: compare with the float64 baseline.
        min_runs / max_runs: bounds on the number of timed samples (``min_runs`` is also the fewest rounds).
        cpu_timer: ``per_call`` (default; one sample per call) or ``blocked_autorange`` (torch.utils.benchmark,
            samples are means of blocks of calls, timed one variant after another; docs/measurement.md says why it
            is not the default). The ``bwd`` mode always times per call, because each backward needs a fresh
            forward graph built outside the timed region.
        flush_l2: on CUDA, flush the L2 cache before each run.
        ceiling: measure the matmul and copy ceilings (once per device, dtype and threads) and fill
            ``pct_of_peak``.
        rel_ci: adaptive target: stop sampling a variant when the 95% CI of its median is narrower than this
            fraction of the median (None: fixed budget).
        retries: the most times a contended case is timed again (only when the machine is quiet by then).
        quiet_wait_s: how long to wait for the machine to become quiet before giving up a retry (after one wait
            in vain, the next 30 s of retries only look once).
        check_inputs: compare the inputs with a saved copy after each variant's calls (in-place changes).
        yardstick: time the machine yardstick (:mod:`harness.measure.yardstick`) in the same rounds and record it
            on every timed row (``yardstick_ms`` and its interval and samples).
        noisy_budget_factor: a variant whose undisturbed samples are still noisy when its budget is spent samples
            on, up to this many times its budget (1: no extension; :class:`harness.measure.stop_rule.StopRule`).
    """

    budget_s: float = 0.2
    warmup: int = 1
    threads: int | None = None
    memory: bool = True
    errors: bool = True
    min_runs: int = 3
    max_runs: int = 1000
    cpu_timer: str = "per_call"
    flush_l2: bool = True
    ceiling: bool = True
    rel_ci: float | None = DEFAULT_REL_CI
    retries: int = 2
    quiet_wait_s: float = 1.0
    check_inputs: bool = True
    yardstick: bool = True
    noisy_budget_factor: float = 4.0

    def __post_init__(self) -> None:
        if not (isinstance(self.budget_s, int | float) and self.budget_s >= 0):
            raise ValueError(f"budget_s={self.budget_s!r} is out of range (allowed: a number >= 0)")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup={self.warmup!r} is out of range (allowed: an integer >= 0)")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads={self.threads!r} is out of range (allowed: None or an integer >= 1)")
        if isinstance(self.min_runs, bool) or not isinstance(self.min_runs, int) or self.min_runs < 1:
            raise ValueError(f"min_runs={self.min_runs!r} is out of range (allowed: an integer >= 1)")
        if isinstance(self.max_runs, bool) or not isinstance(self.max_runs, int) or self.max_runs < self.min_runs:
            raise ValueError(f"max_runs={self.max_runs!r} is out of range (allowed: an integer >= min_runs)")
        if self.cpu_timer not in CPU_TIMERS:
            raise ValueError(f"cpu_timer={self.cpu_timer!r} is not a known timer (allowed: {', '.join(CPU_TIMERS)})")
        if self.rel_ci is not None and (isinstance(self.rel_ci, bool) or not isinstance(self.rel_ci, int | float)
                                        or not 0 < self.rel_ci < 1):
            raise ValueError(f"rel_ci={self.rel_ci!r} is out of range (allowed: None or a number in (0, 1))")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries={self.retries!r} is out of range (allowed: an integer >= 0)")


@dataclass
class Measurement:
    """The measured figures of one (case, variant, mode); NaN where a figure was not obtained.

    ``n_runs`` counts the timing samples the statistics use; each sample averages ``calls_per_sample`` calls (1
    except with ``blocked_autorange`` on short calls). ``time_samples_ms`` holds those samples; disturbed samples
    (the process waited for a core) are left out of the statistics and kept in ``time_samples_dropped_ms`` (an
    extra column). ``time_ms_ci_low``/``time_ms_ci_high``: 95% distribution-free CI of the median.
    ``peak_mem_bytes`` is the high-water mark above what was allocated before the measured call; for ``bwd``
    the measured call is the forward that builds the graph plus the backward that consumes it.
    ``pct_of_peak`` is a percentage of ``matmul_ceiling_tflops``.
    ``err_*`` compare with exact float64 attention under the case's own pattern (is the code right?);
    ``approx_err_*`` compare with exact float64 attention under only the causal part of the pattern (what does
    the shortcut cost?), and are filled for approximate variants and for sparse patterns (windows, layouts);
    ``extra["approx_err_rows"]`` is the number of query rows they cover (fewer than all on long sparse cases,
    see :func:`harness.core.reference.dense_rows`).
    ``cpu_share`` is the process's CPU time during timing / (wall time x threads); ``contended`` says the
    measurement did not get the machine it asked for (see :mod:`harness.measure.contention`); ``retries`` counts the
    times it was timed again because of that.
    """

    status: str = "ok"
    reason: str = ""
    time_ms_median: float = math.nan
    time_ms_iqr: float = math.nan
    time_ms_min: float = math.nan
    n_runs: int = 0
    setup_ms: float = math.nan
    peak_mem_bytes: float = math.nan
    flops: float = math.nan
    tflops: float = math.nan
    pct_of_peak: float = math.nan
    err_max_abs: float = math.nan
    err_rel_l2: float = math.nan
    err_mean_abs: float = math.nan
    err_ratio_vs_textbook: float = math.nan
    grad_err_rel_l2: float = math.nan
    approx_err_rel_l2: float = math.nan
    approx_err_max_abs: float = math.nan
    noisy: bool = False
    timing_method: str = ""
    memory_method: str = ""
    threads: int = 0
    calls_per_sample: int = 0
    matmul_ceiling_tflops: float = math.nan
    time_ms_ci_low: float = math.nan
    time_ms_ci_high: float = math.nan
    rel_noise: float = math.nan
    stop_reason: str = ""
    cpu_share: float = math.nan
    contended: bool = False
    retries: int = 0
    time_samples_ms: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def as_row(self) -> dict:
        row = asdict(self)
        row.update(row.pop("extra"))
        return row

    def add_note(self, text: str) -> None:
        """Append a sentence to ``reason`` (kept for any status)."""
        if text:
            self.reason = f"{self.reason}; {text}" if self.reason else text


class LeakLedger:
    """Memory that variants left behind in this process (estimated: bytes left per call x calls made).

    A sweep keeps one per process, so that an ``oom`` measured after a leaking variant says so.
    """

    def __init__(self) -> None:
        self.left: dict[str, float] = {}

    def add(self, variant: str, nbytes: float) -> None:
        if nbytes > 0 and math.isfinite(nbytes):
            self.left[variant] = self.left.get(variant, 0.0) + nbytes

    def note(self, exclude: str = "") -> str:
        """A sentence naming the variants that left memory behind ('' when none did)."""
        items = [(v, b) for v, b in self.left.items() if v != exclude]
        if not items:
            return ""
        total = sum(b for _, b in items)
        who = ", ".join(f"{v} ~{_mib(b)}" for v, b in sorted(items, key=lambda t: -t[1]))
        return f"measured after variants that left ~{_mib(total)} allocated in this process ({who})"


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (or the host) ran out of memory.

    Args:
        exc: what a variant raised.

    Returns:
        True for ``torch.OutOfMemoryError``, ``MemoryError`` and allocator messages saying so.
    """
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    msg = str(exc).lower()
    return "out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg


def failure(exc: BaseException, threads: int = 0, leaks: LeakLedger | None = None,
            variant: str = "") -> Measurement:
    """The row of a measurement that raised: ``oom`` or ``error``, with the exception's type and first line.

    Args:
        exc: the exception.
        threads: the thread count to record.
        leaks: memory earlier variants left behind (an ``oom`` says so).
        variant: the failing variant (not named among the leakers).
    """
    status = "oom" if _is_oom(exc) else "error"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    m = Measurement(status=status, reason=f"{type(exc).__name__}: {text}"[:500], threads=threads)
    if status == "oom" and leaks is not None:
        m.add_note(leaks.note(exclude=variant))
    return m


def declined(variant: Any, case: Case, threads: int = 0) -> Measurement | None:
    """The row of a (case, variant) that cannot be measured here, from :func:`~harness.measure.support.
    unsupported_reasons`; ``None`` when it can.

    Returns:
        ``None``, an ``unsupported`` measurement whose reason joins every reason, or an ``error`` one when the
        check itself raised.
    """
    try:
        reasons = unsupported_reasons(variant, case)
    except Exception as exc:
        return failure(exc, threads)
    if reasons:
        return Measurement(status="unsupported", reason="; ".join(reasons), threads=threads)
    return None


def _sync(case: Case) -> None:
    if case.device_type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------------- phases
@dataclass
class _Entry:
    """A variant that got through setup, waiting to be timed."""

    variant: Variant
    m: Measurement
    call: Callable
    prep: Callable | None
    sampler: Sampler | None = None
    timing: TimingResult | None = None
    calls: int = 0
    left_per_call: float = 0.0
    seconds: float = 0.0
    ledgered_calls: int = 0

    @property
    def leaves(self):
        return getattr(self.call, "leaves", None)


def _guard(inputs: Inputs) -> InputGuard:
    return InputGuard({"q": inputs.q, "k": inputs.k, "v": inputs.v, "grad_out": getattr(inputs, "grad_out", None)})


def _start(variant: Variant, case: Case, nthreads: int) -> Measurement:
    m = Measurement(threads=nthreads)
    m.flops = attention_flops(case)
    params = getattr(variant, "params", None)
    if isinstance(params, dict) and params:
        m.extra["variant_params"] = json.dumps(params, sort_keys=True, default=str)
    return m


def _setup(variant: Variant, case: Case, inputs: Inputs, refs: ReferenceCache, cfg: MeasureConfig, nthreads: int,
           guard: InputGuard | None, leaks: LeakLedger | None) -> _Entry | Measurement:
    """Phase 1 for one variant: a finished :class:`Measurement` when it ends there, else an :class:`_Entry`."""
    refused = declined(variant, case, nthreads)
    if refused is not None:
        return refused
    m = _start(variant, case, nthreads)
    try:
        return _setup_phase(m, variant, case, inputs, refs, cfg, guard, leaks)
    except Exception as exc:  # every failure becomes a row; nothing is lost or hidden
        f = failure(exc, nthreads, leaks, variant.name)
        m.status, m.reason = f.status, f.reason
        _release(case)
        if guard is not None:
            guard.restore()
        return m


def _setup_phase(m: Measurement, variant: Variant, case: Case, inputs: Inputs, refs: ReferenceCache,
                 cfg: MeasureConfig, guard: InputGuard | None, leaks: LeakLedger | None) -> _Entry | Measurement:
    t0 = time.perf_counter()
    fn = variant.prepare(case.pattern, case)
    call = make_call(fn, case, inputs)
    out = call()
    _sync(case)
    m.setup_ms = (time.perf_counter() - t0) * 1e3
    leaves = getattr(call, "leaves", None)
    if guard is not None:
        guard.check("during its first call", leaves)
    if cfg.errors:
        _fill_errors(m, case, inputs, refs, out, leaves)
        if needs_dense_reference(variant.exact, case.pattern):
            dense, rows = refs.dense_error(case, inputs, out)
            m.approx_err_rel_l2, m.approx_err_max_abs = dense.rel_l2, dense.max_abs
            m.extra["approx_err_rows"] = rows
    del out
    plain = cfg.warmup - 1 if cfg.memory and cfg.warmup > 0 else cfg.warmup  # the probe's call is a warm-up too
    for _ in range(plain):
        call()
    _sync(case)
    entry = _Entry(variant, m, call, getattr(call, "prepare_each", None), calls=1 + plain)
    if cfg.memory:
        clear_grads(call)
        prep = entry.prep
        measured = call if prep is None else (lambda: (prep(), call())[1])
        mem = measure_peak(measured, case.device, cleanup=lambda: clear_grads(call))
        m.peak_mem_bytes, m.memory_method = mem.peak_bytes, mem.method
        m.extra["mem_left_bytes"] = mem.left_bytes
        entry.left_per_call = mem.left_bytes if math.isfinite(mem.left_bytes) else 0.0
        entry.calls += 1 if mem.left_bytes <= 0 else 2
        _ledger(entry, leaks)  # known at once: a variant set up after it and failing with oom can say so
    if guard is not None:
        guard.check("during warm-up or the memory probe", leaves)
    clear_grads(call)
    return entry


def _ledger(e: _Entry, leaks: LeakLedger | None) -> None:
    """Book what ``e`` left behind in the calls not booked yet."""
    if leaks is not None and e.left_per_call > 0:
        leaks.add(e.variant.name, e.left_per_call * (e.calls - e.ledgered_calls))
        e.ledgered_calls = e.calls


def _sampler(entry: _Entry, case: Case, cfg: MeasureConfig, nthreads: int) -> Sampler:
    if case.device_type == "cuda":
        return CudaSampler(entry.call, case.device, setup=entry.prep, flush_l2=cfg.flush_l2)
    return CpuSampler(entry.call, nthreads, setup=entry.prep)


def _time(entries: list[_Entry], case: Case, cfg: MeasureConfig, nthreads: int, guard: InputGuard | None,
          seed: int, on_fail: Callable[[_Entry], None], leaks: LeakLedger | None,
          baseline: str | None = None) -> TimingResult | None:
    """Phase 2: time the entries (interleaved rounds, the ``baseline`` variant's ratios paired, the yardstick
    alongside); failures go to ``on_fail`` at once. Returns the yardstick's timing (None when it was not timed)."""
    rounds: list[_Entry] = []
    for e in entries:
        if case.device_type == "cpu" and e.prep is None and cfg.cpu_timer == "blocked_autorange":
            t0 = time.perf_counter()
            try:
                t = time_cpu_blocked(e.call, cfg.budget_s, threads=nthreads)
                e.seconds += time.perf_counter() - t0
                e.calls += t.total_calls
                if t.n_runs >= cfg.min_runs:
                    e.timing = t
                    continue
            except Exception as exc:
                _fail(e, exc, case, guard, leaks)
                on_fail(e)
                continue
        rounds.append(e)
    if not rounds:
        return None
    if case.device_type == "cuda":
        _sync(case)
    for e in rounds:
        e.sampler = _sampler(e, case, cfg, nthreads)
    rule = StopRule(budget_s=cfg.budget_s, rel_ci=cfg.rel_ci, min_runs=cfg.min_runs, max_runs=cfg.max_runs,
                    min_rounds=cfg.min_runs, target_rounds=MIN_PAIRED_ROUNDS if len(rounds) > 1 else 1,
                    noisy_limit_s=cfg.budget_s * cfg.noisy_budget_factor)

    def after_batch(i: int) -> None:
        if guard is not None:
            guard.check("while it was timed", rounds[i].leaves)
        clear_grads(rounds[i].call)  # no variant's gradients stay allocated while the others are timed

    def failed(i: int) -> None:
        e = rounds[i]
        assert e.sampler is not None and e.sampler.error is not None
        e.calls += e.sampler.n
        e.seconds += e.sampler.wall_s
        _fail(e, e.sampler.error, case, guard, leaks)
        on_fail(e)

    def quiet() -> bool:
        if case.device_type == "cuda":
            return True  # the GPU's state is read again by the retry itself
        return _QUIET.ready(nthreads, cfg.quiet_wait_s)

    base = next((i for i, e in enumerate(rounds) if e.variant.name == baseline), None)
    yard = _yardstick_sampler(case) if cfg.yardstick else None
    used, note = run_rounds([e.sampler for e in rounds], rule, seed=seed, retries=cfg.retries, quiet=quiet,
                            after_batch=after_batch, on_error=failed, baseline=base,
                            followers=[yard] if yard is not None else [], follower_slice_s=YARDSTICK_SLICE_S)
    for e in rounds:
        s = e.sampler
        assert s is not None
        if s.error is None:
            e.calls += s.n
            e.seconds += s.wall_s
            if s.n:
                e.timing = s.result(rule, retries=used, note=note)
    if yard is None or yard.error is not None or not yard.n:
        return None
    return yard.result(rule, retries=used)


def _yardstick_sampler(case: Case) -> Sampler:
    call = yardstick_call(case.device if case.device_type == "cuda" else "cpu")
    if case.device_type == "cuda":
        return CudaSampler(call, case.device, flush_l2=False)
    return CpuSampler(call, 1)


def _fill_yardstick(m: Measurement, y: TimingResult | None, case: Case) -> None:
    """The machine yardstick of the rounds this row was timed in (the same for every variant of the case)."""
    if y is None:
        return
    m.extra.update(yardstick_ms=y.median_ms, yardstick_ms_ci_low=y.ci_low_ms, yardstick_ms_ci_high=y.ci_high_ms,
                   yardstick_samples_ms=[_round6(x) for x in y.samples_ms],
                   yardstick_method=yardstick_method(case.device_type))


def _fail(e: _Entry, exc: BaseException, case: Case, guard: InputGuard | None, leaks: LeakLedger | None) -> None:
    f = failure(exc, e.m.threads, leaks, e.variant.name)
    e.m.status, e.m.reason = f.status, f.reason
    e.timing = None
    _release(case)
    if guard is not None:
        guard.restore()


def _finish(e: _Entry, case: Case, cfg: MeasureConfig, leaks: LeakLedger | None) -> Measurement:
    """Phase 3 for one entry: its figures from its timing."""
    m = e.m
    if e.left_per_call > 0:
        total = e.left_per_call * e.calls
        m.extra["mem_left_total_bytes"] = total
        m.add_note(f"leaves {_mib(e.left_per_call)} allocated per call after its output is dropped (about "
                   f"{_mib(total)} over the {e.calls} calls of this measurement)")
        _ledger(e, leaks)
    t = e.timing
    if t is None:
        return m
    _fill_timing(m, t)
    m.tflops = tflops(m.flops, m.time_ms_median)
    copy = math.nan
    if cfg.ceiling:
        try:
            ceiling = matmul_ceiling_tflops(case.device, case.dtype, threads=m.threads)
            m.matmul_ceiling_tflops = ceiling
            m.pct_of_peak = 100.0 * m.tflops / ceiling if ceiling > 0 else math.nan
            m.extra["copy_ceiling_gbps"] = copy = copy_ceiling_gbps(case.device, threads=m.threads)
        except Exception as exc:  # the row keeps its own figures; the missing ceiling is said, not hidden
            m.extra["ceiling_error"] = f"{type(exc).__name__}: {exc}"[:300]
    m.extra.update(roofline_figures(case, m.flops, m.time_ms_median, m.matmul_ceiling_tflops, copy))
    if m.status == "ok" and not math.isfinite(m.err_rel_l2) and cfg.errors:
        m.status = "numerics"
    return m


def _round6(x: float) -> float:
    return float(f"{x:.{_SAMPLE_DIGITS}g}")


def _fill_timing(m: Measurement, t: TimingResult) -> None:
    m.time_ms_median, m.time_ms_iqr, m.time_ms_min = t.median_ms, t.iqr_ms, t.min_ms
    m.n_runs, m.calls_per_sample = t.n_runs, t.calls_per_sample
    m.noisy = t.noisy
    m.timing_method = t.method
    m.time_ms_ci_low, m.time_ms_ci_high = t.ci_low_ms, t.ci_high_ms
    m.rel_noise = t.rel_noise
    m.stop_reason = t.stop_reason
    m.retries = t.retries
    m.time_samples_ms = [_round6(x) for x in t.samples_ms]
    m.extra["time_samples_dropped_ms"] = [_round6(x) for x in t.dropped_ms]
    m.extra["rounds"] = t.rounds
    c = t.contention
    if c is not None:
        m.cpu_share = c.cpu_share
        m.contended = c.contended
        m.extra.update(c.columns())
        if c.contended:
            m.add_note(c.note() + (f"; {t.note}" if t.note else ""))


def _pair(entries: list[_Entry], baseline: str, cfg: MeasureConfig) -> None:
    """``speedup_vs_full`` (with its interval) from paired per-round figures (:func:`paired_figures`: both sides
    on the same footing), and ``mem_ratio_vs_full``."""
    base = next((e for e in entries if e.variant.name == baseline and e.m.status == "ok"), None)
    if base is None:
        return
    bs = base.sampler if base.timing is not None else None
    for e in entries:
        m = e.m
        if m.status != "ok" or e.timing is None:
            continue
        if e is base:
            m.extra.update(speedup_vs_full=1.0, speedup_ci_low=1.0, speedup_ci_high=1.0, speedup_pairs=0)
        else:
            theirs, mine = (paired_figures(bs, e.sampler, cfg.min_runs)
                            if e.sampler is not None and bs is not None else ([], []))
            est = paired_ratio(theirs, mine)
            if est.pairs == 0:  # timed apart (blocked_autorange): the ratio of the medians, no interval
                est = paired_ratio([base.m.time_ms_median], [m.time_ms_median])
                est = type(est)(est.estimate, est.low, est.high, 0)
            m.extra.update(speedup_vs_full=est.estimate, speedup_ci_low=est.low, speedup_ci_high=est.high,
                           speedup_pairs=est.pairs)
        if base.m.peak_mem_bytes > 0 and math.isfinite(m.peak_mem_bytes):
            m.extra["mem_ratio_vs_full"] = m.peak_mem_bytes / base.m.peak_mem_bytes


def measure_case(variants: Sequence[Variant], case: Case, inputs: Inputs, refs: ReferenceCache,
                 cfg: MeasureConfig | None = None,
                 on_row: Callable[[Variant, Measurement, float], None] | None = None,
                 baseline: str | None = None, seed: int = 0, leaks: LeakLedger | None = None,
                 on_phase: Callable[[str, str | None], None] | None = None) -> list[tuple[Variant, Measurement, float]]:
    """Measure every variant of ``variants`` on ``case``: setup one by one, timing in interleaved rounds.

    A row is handed to ``on_row`` as soon as it is complete: unsupported and failed-setup rows at once, a failure
    during timing when it happens, the timed rows when the rounds are over (so a crash loses only rows still being
    timed).

    Args:
        variants: the variants, in the order their setup runs.
        case: the case; its mode decides what is timed (``fwd``, ``bwd`` alone, ``fwd_bwd``).
        inputs: the case's inputs (``make_inputs(case)``).
        refs: the baseline cache shared by the variants measured on these inputs.
        cfg: how to measure (default :class:`MeasureConfig`).
        on_row: called with each finished row: ``(variant, measurement, seconds)``, the seconds being the
            variant's own share (its setup phase, the baseline when it was first to need it, its batches).
        baseline: the variant ratios are taken against (e.g. ``full``); None: no ratios.
        seed: seeds the order of the rounds.
        leaks: memory left behind by variants of this process (updated; an ``oom`` names them).
        on_phase: told what starts and which variant it concerns (``("setup <variant>", variant name)``,
            ``("timing <n> variants in rounds", None)``), for progress and crash attribution.

    Returns:
        ``(variant, measurement, seconds)`` for every variant, in the order of ``variants``.
    """
    cfg = cfg or MeasureConfig()
    steady_malloc()  # once per process: a call's time must not depend on what was freed before it
    done: dict[int, tuple[Measurement, float]] = {}

    def emit(i: int, m: Measurement, seconds: float) -> None:
        done[i] = (m, seconds)
        if on_row is not None:
            on_row(variants[i], m, seconds)

    with torch_threads(cfg.threads) as nthreads:
        guard = _guard(inputs) if cfg.check_inputs else None
        entries: list[_Entry] = []
        index: dict[int, int] = {}
        for i, v in enumerate(variants):
            if on_phase is not None:
                on_phase(f"setup {v.name}", v.name)
            t0 = time.perf_counter()
            r = _setup(v, case, inputs, refs, cfg, nthreads, guard, leaks)
            if isinstance(r, Measurement):
                emit(i, r, time.perf_counter() - t0)
            else:
                r.seconds = time.perf_counter() - t0
                index[id(r)] = i
                entries.append(r)
        failed: set[int] = set()

        def on_fail(e: _Entry) -> None:
            failed.add(id(e))
            emit(index[id(e)], _finish(e, case, cfg, leaks), e.seconds)

        if entries and on_phase is not None:
            on_phase(f"timing {len(entries)} variant{'s' if len(entries) > 1 else ''} in rounds", None)
        yard = _time(entries, case, cfg, nthreads, guard, seed, on_fail, leaks, baseline)
        ok = [e for e in entries if id(e) not in failed]
        for e in ok:
            _finish(e, case, cfg, leaks)
            if e.timing is not None:
                _fill_yardstick(e.m, yard, case)
        if baseline is not None:
            _pair(ok, baseline, cfg)
        for e in ok:
            emit(index[id(e)], e.m, e.seconds)
    return [(v, *done[i]) for i, v in enumerate(variants)]


def measure_variant(variant: Variant, case: Case, inputs: Inputs, refs: ReferenceCache,
                    cfg: MeasureConfig | None = None) -> Measurement:
    """Measure ``variant`` on ``case`` with ``inputs``; the baseline comes from ``refs`` (shared per case).

    The same phases as :func:`measure_case` with one variant (its rounds have no one to alternate with).

    Args:
        variant: the variant (an instance, registered or not).
        case: the case; its mode decides what is timed (``fwd``, ``bwd`` alone, ``fwd_bwd``).
        inputs: the case's inputs (``make_inputs(case)``).
        refs: the baseline cache shared by the variants measured on these inputs.
        cfg: how to measure (default :class:`MeasureConfig`).

    Returns:
        A :class:`Measurement`; its ``status`` is ``ok``, ``unsupported``, ``oom``, ``error`` or ``numerics``.
    """
    return measure_case([variant], case, inputs, refs, cfg)[0][1]


def _fill_errors(m: Measurement, case: Case, inputs: Inputs, refs: ReferenceCache, out: torch.Tensor,
                 leaves) -> None:
    ref = refs.reference(case, inputs, with_grads=case.needs_backward and leaves is not None)
    real = functools.partial(real_tokens, pattern=case.pattern)  # a padded batch's errors count real tokens only
    e = error_stats(real(out), real(ref.out))
    m.err_max_abs, m.err_rel_l2, m.err_mean_abs = e.max_abs, e.rel_l2, e.mean_abs
    if not e.finite:
        m.status, m.reason = "numerics", "output contains NaN or Inf"
        return
    tb = error_stats(real(refs.textbook(case, inputs)), real(ref.out))
    m.err_ratio_vs_textbook = ratio(e.rel_l2, tb.rel_l2)
    m.extra["textbook_err_rel_l2"] = tb.rel_l2
    if leaves is not None and ref.has_grads:
        worst = 0.0
        for name, leaf, want in zip(("dq", "dk", "dv"), leaves, (ref.dq, ref.dk, ref.dv)):
            if leaf.grad is None:
                m.status, m.reason = "error", f"{name} is None after backward"
                return
            ge = error_stats(real(leaf.grad), real(want))
            m.extra[f"{name}_err_rel_l2"] = ge.rel_l2
            if not ge.finite:
                m.status, m.reason = "numerics", f"{name} contains NaN or Inf"
                return
            worst = max(worst, ge.rel_l2)
        m.grad_err_rel_l2 = worst


def _release(case: Case) -> None:
    gc.collect()
    if case.device_type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
