"""Measure one variant on one case: setup cost, steady-state time, peak memory, FLOPs and error.

``measure_variant`` never raises for a variant's misbehaviour: an unsupported case, an out-of-memory error, any
other exception, or NaN/Inf in the output becomes a :class:`Measurement` with the matching ``status`` and a
message, and the memory it held is released, so a sweep goes on.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import asdict, dataclass, field

import torch

from harness.errors import error_stats, ratio
from harness.inputs import Case, Inputs
from harness.reference import ReferenceCache
from harness.variant import Variant

STATUSES: tuple[str, ...] = ("ok", "unsupported", "oom", "error", "numerics", "timeout", "crashed")


@dataclass
class MeasureConfig:
    """How to measure.

    Args:
        budget_s: time budget of one steady-state measurement (repetitions continue until it is spent).
        warmup: calls after the setup call and before timing.
        threads: CPU threads (None: all cores); set explicitly and recorded.
        memory: measure peak memory.
        errors: compare with the float64 baseline.
        min_runs / max_runs: bounds on the number of timed runs.
    """

    budget_s: float = 0.2
    warmup: int = 1
    threads: int | None = None
    memory: bool = True
    errors: bool = True
    min_runs: int = 3
    max_runs: int = 1000


@dataclass
class Measurement:
    """The measured figures of one (case, variant, mode); NaN where a figure was not obtained."""

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
    noisy: bool = False
    timing_method: str = ""
    memory_method: str = ""
    threads: int = 0
    extra: dict = field(default_factory=dict)

    def as_row(self) -> dict:
        row = asdict(self)
        row.update(row.pop("extra"))
        return row


def attention_flops(case: Case) -> float:
    """FLOPs of the case's mode: 4·B·H·D per attended pair forward; backward counts 2.5x forward."""
    fwd = 4.0 * case.batch * case.heads * case.head_dim * case.pattern.attended_pairs(case.seq_len)
    return {"fwd": fwd, "bwd": 2.5 * fwd, "fwd_bwd": 3.5 * fwd}[case.mode]


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    msg = str(exc).lower()
    return "out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg


def _sync(case: Case) -> None:
    if case.device_type == "cuda":
        torch.cuda.synchronize()


def _make_call(fn, case: Case, inputs: Inputs):
    """The callable timed for the case's mode, and the tensors that must be read for errors."""
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


def _time_runs(call, case: Case, cfg: MeasureConfig) -> list[float]:
    """Steady-state times in ms (a simple synchronized loop; harness.timing refines this)."""
    prep = getattr(call, "prepare_each", None)
    times: list[float] = []
    deadline = time.perf_counter() + cfg.budget_s
    while len(times) < cfg.min_runs or (time.perf_counter() < deadline and len(times) < cfg.max_runs):
        if prep is not None:
            prep()
        _sync(case)
        t0 = time.perf_counter()
        call()
        _sync(case)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def measure_variant(variant: Variant, case: Case, inputs: Inputs, refs: ReferenceCache,
                    cfg: MeasureConfig | None = None) -> Measurement:
    """Measure ``variant`` on ``case`` with ``inputs``; the baseline comes from ``refs`` (shared per case).

    Returns:
        A :class:`Measurement`; its ``status`` is ``ok``, ``unsupported``, ``oom``, ``error`` or ``numerics``.
    """
    cfg = cfg or MeasureConfig()
    m = Measurement(threads=torch.get_num_threads())
    reasons = variant.not_supported_reasons(case)
    if reasons:
        m.status, m.reason = "unsupported", "; ".join(reasons)
        return m
    m.flops = attention_flops(case)
    try:
        t0 = time.perf_counter()
        fn = variant.prepare(case.pattern, case)
        call = _make_call(fn, case, inputs)
        out = call()
        _sync(case)
        m.setup_ms = (time.perf_counter() - t0) * 1e3
        if cfg.errors:
            _fill_errors(m, case, inputs, refs, out, getattr(call, "leaves", None))
        del out
        for _ in range(cfg.warmup):
            call()
        times = _time_runs(call, case, cfg)
    except Exception as exc:  # every failure becomes a row; nothing is lost or hidden
        m.status = "oom" if _is_oom(exc) else "error"
        m.reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:500]
        _release(case)
        return m
    t = torch.tensor(times, dtype=torch.float64)
    m.time_ms_median = float(t.median())
    m.time_ms_iqr = float(t.quantile(0.75) - t.quantile(0.25))
    m.time_ms_min = float(t.min())
    m.n_runs = len(times)
    m.noisy = m.time_ms_iqr / m.time_ms_median > 0.10 if m.time_ms_median > 0 else False
    m.timing_method = "host timer, synchronized per call"
    m.tflops = m.flops / (m.time_ms_median * 1e-3) / 1e12 if m.time_ms_median > 0 else math.nan
    if m.status == "ok" and not math.isfinite(m.err_rel_l2) and cfg.errors:
        m.status = "numerics"
    return m


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
