"""Measure one variant on one case: setup cost, steady-state time, peak memory, FLOPs and error.

The order of one measurement: ``prepare`` and the first call, timed together as ``setup_ms`` (compilation,
mask or layout building, autotuning land here); the error against the float64 baseline from that first output;
``warmup`` further calls; peak memory in one separate, untimed call (:mod:`harness.memory`); then the
steady-state timing (:mod:`harness.timing`); FLOPs, TFLOP/s and, on CUDA, the fraction of the measured matmul
ceiling (:mod:`harness.flops`). The whole measurement runs with the configured CPU thread count.

``measure_variant`` never raises for a variant's misbehaviour: an unsupported case, an out-of-memory error, any
other exception, or NaN/Inf in the output becomes a :class:`Measurement` with the matching ``status`` and a
message, and the memory it held is released, so a sweep goes on.
"""

from __future__ import annotations

import gc
import json
import math
import time
from dataclasses import asdict, dataclass, field

import torch

from harness.errors import error_stats, ratio
from harness.flops import attention_flops, pct_of_peak, tflops
from harness.inputs import Case, Inputs
from harness.memory import measure_peak
from harness.reference import ReferenceCache
from harness.timing import TimingResult, time_cpu_blocked, time_cpu_per_call, time_cuda, torch_threads
from harness.variant import Variant

__all__ = ["STATUSES", "CPU_TIMERS", "MeasureConfig", "Measurement", "attention_flops", "make_call", "measure_variant"]

STATUSES: tuple[str, ...] = ("ok", "unsupported", "oom", "error", "numerics", "timeout", "crashed")
#: CPU timers: ``blocked_autorange`` (torch.utils.benchmark; samples are block means) or ``per_call``.
CPU_TIMERS: tuple[str, ...] = ("blocked_autorange", "per_call")


@dataclass
class MeasureConfig:
    """How to measure.

    Args:
        budget_s: time budget of one steady-state measurement (repetitions continue until it is spent).
        warmup: calls after the setup call and before timing.
        threads: CPU threads (None: torch's current count); set explicitly for the whole measurement and recorded.
        memory: measure peak memory (one extra, untimed call).
        errors: compare with the float64 baseline.
        min_runs / max_runs: bounds on the number of timed runs (``blocked_autorange`` chooses its own count;
            when it yields fewer than ``min_runs`` samples the per-call timer is used instead).
        cpu_timer: ``per_call`` (default; one sample per call) or ``blocked_autorange`` (torch.utils.benchmark,
            samples are means of blocks of calls; docs/measurement.md says why it is not the default). The
            ``bwd`` mode always times per call, because each backward
            needs a fresh forward graph built outside the timed region.
        flush_l2: on CUDA, flush the L2 cache before each run.
        ceiling: on CUDA, measure the matmul ceiling (once per device and dtype) and fill ``pct_of_peak``.
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


@dataclass
class Measurement:
    """The measured figures of one (case, variant, mode); NaN where a figure was not obtained.

    ``n_runs`` counts timing samples; each sample averages ``calls_per_sample`` calls (1 except with
    ``blocked_autorange`` on short calls), so median, IQR and min are statistics of those samples.
    ``peak_mem_bytes`` is the high-water mark above what was allocated before the measured call; for ``bwd``
    the measured call is the forward that builds the graph plus the backward that consumes it.
    ``pct_of_peak`` is a percentage of ``matmul_ceiling_tflops`` (CUDA only).
    ``err_*`` compare with exact float64 attention under the case's own pattern (is the code right?);
    ``approx_err_*`` compare with exact float64 attention under only the causal part of the pattern (what does
    the shortcut cost?), and are filled for approximate variants and for sparse patterns (windows, layouts).
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
    extra: dict = field(default_factory=dict)

    def as_row(self) -> dict:
        row = asdict(self)
        row.update(row.pop("extra"))
        return row


def is_oom(exc: BaseException) -> bool:
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


def _sync(case: Case) -> None:
    if case.device_type == "cuda":
        torch.cuda.synchronize()


def make_call(fn, case: Case, inputs: Inputs):
    """The callable the harness times for the case's mode: ``fn`` (a prepared variant) applied to ``inputs``.

    ``fwd``: the forward under ``no_grad``; ``fwd_bwd``: forward and backward on leaf copies of the inputs (their
    tensors are ``call.leaves``); ``bwd``: the backward alone, with the forward graph built by
    ``call.prepare_each`` outside the timed region.
    """
    if case.mode == "fwd":
        def call():
            with torch.no_grad():
                return fn(inputs.q, inputs.k, inputs.v)
        return call
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (inputs.q, inputs.k, inputs.v))
    if case.mode == "fwd_bwd":
        def call():
            q.grad = k.grad = v.grad = None
            out = fn(q, k, v)
            out.backward(inputs.grad_out)
            return out
        call.leaves = (q, k, v)  # type: ignore[attr-defined]
        return call

    # bwd: the backward pass alone, given a forward graph built outside the timed region
    state: dict = {}

    def build():
        q.grad = k.grad = v.grad = None
        state["out"] = fn(q, k, v)

    def call():
        if "out" not in state:
            build()
        out = state.pop("out")
        out.backward(inputs.grad_out)
        return out
    call.prepare_each = build  # type: ignore[attr-defined]
    call.leaves = (q, k, v)  # type: ignore[attr-defined]
    return call


def measure_variant(variant: Variant, case: Case, inputs: Inputs, refs: ReferenceCache,
                    cfg: MeasureConfig | None = None) -> Measurement:
    """Measure ``variant`` on ``case`` with ``inputs``; the baseline comes from ``refs`` (shared per case).

    Args:
        variant: the variant (an instance, registered or not).
        case: the case; its mode decides what is timed (``fwd``, ``bwd`` alone, ``fwd_bwd``).
        inputs: the case's inputs (``make_inputs(case)``).
        refs: the baseline cache shared by the variants measured on these inputs.
        cfg: how to measure (default :class:`MeasureConfig`).

    Returns:
        A :class:`Measurement`; its ``status`` is ``ok``, ``unsupported``, ``oom``, ``error`` or ``numerics``.
    """
    cfg = cfg or MeasureConfig()
    m = Measurement(threads=torch.get_num_threads() if cfg.threads is None else cfg.threads)
    reasons = variant.not_supported_reasons(case)
    if reasons:
        m.status, m.reason = "unsupported", "; ".join(reasons)
        return m
    m.flops = attention_flops(case)
    params = getattr(variant, "params", None)
    if isinstance(params, dict) and params:
        m.extra["variant_params"] = json.dumps(params, sort_keys=True, default=str)
    try:
        with torch_threads(cfg.threads) as nthreads:
            m.threads = nthreads
            timing = _measure(m, variant, case, inputs, refs, cfg, nthreads)
    except Exception as exc:  # every failure becomes a row; nothing is lost or hidden
        m.status = "oom" if is_oom(exc) else "error"
        m.reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:500]
        _release(case)
        return m
    m.time_ms_median, m.time_ms_iqr, m.time_ms_min = timing.median_ms, timing.iqr_ms, timing.min_ms
    m.n_runs, m.calls_per_sample = timing.n_runs, timing.calls_per_sample
    m.noisy = timing.noisy
    m.timing_method = timing.method
    m.tflops = tflops(m.flops, m.time_ms_median)
    if case.device_type == "cuda" and cfg.ceiling:
        try:
            m.pct_of_peak = pct_of_peak(m.tflops, case.device, case.dtype)
            m.matmul_ceiling_tflops = 100.0 * m.tflops / m.pct_of_peak if m.pct_of_peak > 0 else math.nan
        except Exception as exc:  # the row keeps its own figures; the missing ceiling is said, not hidden
            m.extra["ceiling_error"] = f"{type(exc).__name__}: {exc}"[:300]
    if m.status == "ok" and not math.isfinite(m.err_rel_l2) and cfg.errors:
        m.status = "numerics"
    return m


def _measure(m: Measurement, variant: Variant, case: Case, inputs: Inputs, refs: ReferenceCache,
             cfg: MeasureConfig, nthreads: int) -> TimingResult:
    """Setup, errors, warm-up, memory and timing, in that order; fills ``m`` and returns the timing."""
    t0 = time.perf_counter()
    fn = variant.prepare(case.pattern, case)
    call = make_call(fn, case, inputs)
    out = call()
    _sync(case)
    m.setup_ms = (time.perf_counter() - t0) * 1e3
    if cfg.errors:
        _fill_errors(m, case, inputs, refs, out, getattr(call, "leaves", None))
        if not variant.exact or case.pattern.is_sparse:
            dense = error_stats(out, refs.dense_reference(case, inputs))
            m.approx_err_rel_l2, m.approx_err_max_abs = dense.rel_l2, dense.max_abs
    del out
    for _ in range(cfg.warmup):
        call()
    _sync(case)
    prep = getattr(call, "prepare_each", None)
    if cfg.memory:
        _clear_grads(call)
        measured = call if prep is None else (lambda: (prep(), call())[1])
        mem = measure_peak(measured, case.device)
        m.peak_mem_bytes, m.memory_method = mem.peak_bytes, mem.method
    _clear_grads(call)
    if case.device_type == "cuda":
        return time_cuda(call, case.device, cfg.budget_s, setup=prep, warmup=0, min_runs=cfg.min_runs,
                         max_runs=cfg.max_runs, flush_l2=cfg.flush_l2)
    if prep is None and cfg.cpu_timer == "blocked_autorange":
        timing = time_cpu_blocked(call, cfg.budget_s, threads=nthreads)
        if timing.n_runs >= cfg.min_runs:
            return timing
    return time_cpu_per_call(call, cfg.budget_s, threads=nthreads, setup=prep, min_runs=cfg.min_runs,
                             max_runs=cfg.max_runs)


def _clear_grads(call) -> None:
    """Drop the leaves' gradients so neither memory nor time counts freeing the previous ones."""
    for leaf in getattr(call, "leaves", ()) or ():
        leaf.grad = None


def _fill_errors(m: Measurement, case: Case, inputs: Inputs, refs: ReferenceCache, out: torch.Tensor,
                 leaves) -> None:
    ref = refs.reference(case, inputs, with_grads=case.needs_backward and leaves is not None)
    e = error_stats(out, ref.out)
    m.err_max_abs, m.err_rel_l2, m.err_mean_abs = e.max_abs, e.rel_l2, e.mean_abs
    if not e.finite:
        m.status, m.reason = "numerics", "output contains NaN or Inf"
        return
    tb = error_stats(refs.textbook(case, inputs), ref.out)
    m.err_ratio_vs_textbook = ratio(e.rel_l2, tb.rel_l2)
    m.extra["textbook_err_rel_l2"] = tb.rel_l2
    if leaves is not None and ref.has_grads:
        worst = 0.0
        for name, leaf, want in zip(("dq", "dk", "dv"), leaves, (ref.dq, ref.dk, ref.dv)):
            if leaf.grad is None:
                m.status, m.reason = "error", f"{name} is None after backward"
                return
            ge = error_stats(leaf.grad, want)
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
