"""The measurement proves itself against known answers (CPU): time scales with work, memory matches analytic
buffer sizes, setup stays out of the steady state, ``bwd`` times the backward alone, FLOPs and statuses.

Speed targets live in ``benchmarks/``, not here: these tests compare the harness with itself, side by side, and
retry once when the shared machine is too noisy to say anything.
"""

from __future__ import annotations

import math
import statistics
import time

import pytest
import torch

from harness import Case, Pattern, Variant, get_variant
from harness.core.flops import attention_flops, tflops
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs
from harness.measure.memory import high_water_mark, measure_peak
from harness.measure.runner import MeasureConfig, Measurement, measure_variant
from harness.measure.timing import time_cpu_blocked, time_cpu_per_call, torch_threads
from harness.measure.timing_result import NOISY_IQR_RATIO, TimingResult

FP32 = 4


# ----------------------------------------------------------------------------------------- test-only variants
class Repeat(Variant):
    """Runs ``full`` k times in a row: its steady-state time must be k times that of one run."""

    name = "test_repeat"
    description = "full, k times in a row"
    patterns = frozenset({"full"})

    def __init__(self, k: int) -> None:
        self.k = k

    def prepare(self, pattern, case):
        inner = get_variant("full").prepare(pattern, case)

        def fn(q, k, v):
            out = None
            for _ in range(self.k):
                out = inner(q, k, v)
            return out
        return fn


class SleepFirst(Variant):
    """Sleeps ``prepare_s`` in prepare and ``first_s`` on its first call only, then is cheap."""

    name = "test_sleep_first"
    description = "sleeps on its first call"
    patterns = frozenset({"full"})

    def __init__(self, prepare_s: float = 0.0, first_s: float = 0.3) -> None:
        self.prepare_s, self.first_s = prepare_s, first_s

    def prepare(self, pattern, case):
        time.sleep(self.prepare_s)
        state = {"first": True}
        full = get_variant("full").prepare(pattern, case)

        def fn(q, k, v):
            if state["first"]:
                state["first"] = False
                time.sleep(self.first_s)
            return full(q, k, v)
        return fn


class _SlowBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, delay):
        ctx.delay = delay
        return x * 1.0

    @staticmethod
    def backward(ctx, g):
        time.sleep(ctx.delay)
        return g * 1.0, None


class SlowSide(Variant):
    """Cheap arithmetic; sleeps ``fwd_s`` in the forward and ``bwd_s`` in the backward."""

    name = "test_slow_side"
    description = "sleeps in forward or backward"
    patterns = frozenset({"full"})

    def __init__(self, fwd_s: float, bwd_s: float) -> None:
        self.fwd_s, self.bwd_s = fwd_s, bwd_s

    def forward(self, q, k, v, pattern):
        time.sleep(self.fwd_s)
        return _SlowBackward.apply(q + 0.0 * (k.sum() + v.sum()), self.bwd_s)


class Allocates(Variant):
    """Allocates a temporary of exactly ``nbytes`` (filled, so it is real), frees it, returns a copy of q."""

    name = "test_allocates"
    description = "known temporary allocation"
    patterns = frozenset({"full"})
    dtypes = frozenset({"float32"})

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes

    def forward(self, q, k, v, pattern):
        tmp = torch.ones(self.nbytes // FP32, dtype=torch.float32, device=q.device)
        out = q * float(tmp[0])
        del tmp
        return out


class Raises(Variant):
    name = "test_raises"
    description = "raises"
    patterns = frozenset({"full"})

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def forward(self, q, k, v, pattern):
        raise self.exc


def _measure(variant: Variant, case: Case, **cfg) -> Measurement:
    """Measure with one thread unless told: with two OpenMP threads on a loaded machine, tiny calls stall while a
    thread waits for a core, which is the machine, not the harness."""
    cfg.setdefault("threads", 1)
    return measure_variant(variant, case, make_inputs(case), ReferenceCache(), MeasureConfig(**cfg))


# ----------------------------------------------------------------------------------------- time scales with work
#: Only the default per-call timer is held to this test: blocked_autorange does not reliably read k calls as k
#: times one call (docs/measurement.md, "Timers").
_REPEAT_SEQ_LEN = {"per_call": 384}
_REPEAT_BUDGET_S = {"per_call": 0.1}


def _repeat_round(timer: str) -> tuple[dict[int, float], float]:
    """One round of interleaved measurements of k = 1, 2, 4 (three each).

    Returns:
        ``time(k) / time(1)`` for k = 2, 4 (each the median over the round of the rows' medians), and the share
        of a core this process got during the round (CPU time / wall time; about 1 on a quiet machine).
    """
    case = Case(batch=1, heads=4, seq_len=_REPEAT_SEQ_LEN.get(timer, 384), head_dim=64)
    inputs, refs = make_inputs(case), ReferenceCache()
    cfg = MeasureConfig(budget_s=_REPEAT_BUDGET_S.get(timer, 0.1), threads=1, errors=False, memory=False,
                        cpu_timer=timer)
    meds: dict[int, list[float]] = {1: [], 2: [], 4: []}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(3):
        for k in meds:
            m = measure_variant(Repeat(k), case, inputs, refs, cfg)
            assert m.status == "ok", m.reason
            meds[k].append(m.time_ms_median)
    share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    base = statistics.median(meds[1])
    return {k: statistics.median(meds[k]) / base for k in (2, 4)}, share


@pytest.mark.parametrize("timer", ["per_call"])
def test_k_repeats_measure_k_times_the_time(timer: str) -> None:
    """A wrapper running ``full`` k times in a row is measured at k times one run, within 10%, k = 2 and 4.

    On a machine where other processes take this one's core, wall-clock times of longer calls grow more than
    in proportion (they are preempted more often), so no timer can pass there. A round that misses is retried;
    three missed rounds fail when any of them had the core (>= 90% CPU share); if every round was contended the
    test is skipped with the figures, never passed.
    """
    seen = []
    for _attempt in range(3):
        ratios, share = _repeat_round(timer)
        bad = {k: round(r, 3) for k, r in ratios.items() if abs(r / k - 1) > 0.10}
        if not bad:
            return
        seen.append((bad, round(share, 2)))
    # every round missed: a harness that reports block totals or times setup misses in every round, so this fails
    # as soon as one of the missed rounds had its core; only rounds that were all contended are a skip
    if any(share >= 0.90 for _bad, share in seen):
        pytest.fail(f"{timer}: time(k)/time(1) off by more than 10% in every round: {seen} (misses, CPU share)")
    pytest.skip(f"{timer}: machine too busy to judge (rounds: misses and CPU share {seen})")


# ----------------------------------------------------------------------------------------- setup vs steady state
def test_first_call_sleep_is_setup_not_steady_state() -> None:
    case = Case(batch=1, heads=1, seq_len=64, head_dim=16)
    m = _measure(SleepFirst(prepare_s=0.0, first_s=0.3), case, budget_s=0.05)
    assert m.status == "ok", m.reason
    assert m.setup_ms >= 300.0, m.setup_ms
    assert m.time_ms_median < 30.0, m.time_ms_median  # a 64-token call is far below a millisecond or so
    assert m.time_ms_min < 30.0


def test_prepare_is_counted_as_setup() -> None:
    case = Case(batch=1, heads=1, seq_len=64, head_dim=16)
    m = _measure(SleepFirst(prepare_s=0.2, first_s=0.1), case, budget_s=0.05)
    assert m.setup_ms >= 300.0, m.setup_ms
    assert m.time_ms_median < 30.0, m.time_ms_median


# ----------------------------------------------------------------------------------------- bwd is the backward alone
def test_bwd_times_the_backward_alone_and_fwd_bwd_both() -> None:
    case = Case(batch=1, heads=1, seq_len=32, head_dim=16, mode="bwd")
    slow_fwd = _measure(SlowSide(fwd_s=0.03, bwd_s=0.0), case, budget_s=0.1, errors=False)
    slow_bwd = _measure(SlowSide(fwd_s=0.0, bwd_s=0.03), case, budget_s=0.1, errors=False)
    both = _measure(SlowSide(fwd_s=0.03, bwd_s=0.03), Case(batch=1, heads=1, seq_len=32, head_dim=16,
                                                            mode="fwd_bwd"), budget_s=0.1, errors=False)
    assert slow_fwd.status == slow_bwd.status == both.status == "ok"
    assert slow_fwd.time_ms_median < 15.0, slow_fwd.time_ms_median  # the 30 ms forward is outside the clock
    assert slow_bwd.time_ms_median >= 30.0, slow_bwd.time_ms_median
    assert both.time_ms_median >= 60.0, both.time_ms_median
    assert "untimed setup before each call" in slow_fwd.timing_method


# ----------------------------------------------------------------------------------------- memory
def test_peak_of_full_matches_its_nxn_buffers() -> None:
    """``full`` holds two score-sized buffers at its peak: the scaled scores and the softmax output (the unscaled
    product also coexists with the scaled scores for a moment). Everything else is O(N·D)."""
    b, h, n, d = 1, 4, 1024, 64
    case = Case(batch=b, heads=h, seq_len=n, head_dim=d)
    m = _measure(get_variant("full"), case, budget_s=0.0, min_runs=1, errors=False)
    analytic = 2 * b * h * n * n * FP32
    assert m.status == "ok", m.reason
    assert m.memory_method.startswith("cpu: torch.profiler")
    assert abs(m.peak_mem_bytes / analytic - 1) <= 0.10, (m.peak_mem_bytes, analytic)


def test_peak_of_a_known_allocation_is_exact() -> None:
    case = Case(batch=1, heads=2, seq_len=128, head_dim=32)
    inputs = make_inputs(case)
    nbytes = 8 * 2**20
    out_bytes = case.batch * case.heads * case.seq_len * case.head_dim * FP32
    variant = Allocates(nbytes)
    with torch.no_grad():
        r = measure_peak(lambda: variant.forward(inputs.q, inputs.k, inputs.v, case.pattern), "cpu")
    # the temporary and the product q * tmp[0] coexist; the inputs, allocated before, are not counted; the only
    # other allocations are scalars (a few bytes)
    assert nbytes + out_bytes <= r.peak_bytes <= nbytes + out_bytes + 1024, r
    assert r.end_bytes == out_bytes  # the output is still alive when the call returns


def test_memory_excludes_live_inputs_and_frees() -> None:
    big = torch.ones(4 * 2**20)  # allocated before: not part of the call's peak, even when freed inside it
    holder = [big]
    del big

    def fn():
        holder.pop()  # frees 16 MiB that was live before the call
        return torch.ones(2**20)  # 4 MiB

    r = measure_peak(fn, "cpu")
    assert r.peak_bytes == 4 * 2**20, r


def test_high_water_mark_replay() -> None:
    assert high_water_mark([]) == (0, 0)
    assert high_water_mark([(1, 10), (2, 5), (3, -10), (4, 20), (5, -25)]) == (25, 0)
    assert high_water_mark([(1, -8), (2, 4)]) == (0, -4)


# ----------------------------------------------------------------------------------------- statistics and flags
def test_timing_result_statistics_and_noisy_flag() -> None:
    r = TimingResult([1.0, 2.0, 3.0, 4.0, 100.0])
    assert r.median_ms == 3.0 and r.min_ms == 1.0 and r.n_runs == 5
    assert r.iqr_ms == pytest.approx(2.0)  # quartiles 2 and 4 (linear interpolation)
    assert r.noisy
    steady = TimingResult([10.0, 10.1, 10.2, 10.3])
    assert not steady.noisy
    assert steady.iqr_ms / steady.median_ms <= NOISY_IQR_RATIO
    with pytest.raises(ValueError, match="samples_ms"):
        TimingResult([])


def test_threads_are_set_recorded_and_restored() -> None:
    before = torch.get_num_threads()
    case = Case(batch=1, heads=1, seq_len=64, head_dim=16)
    m = _measure(get_variant("full"), case, budget_s=0.02, threads=1)
    assert m.threads == 1 and "1 threads" in m.timing_method
    m2 = _measure(get_variant("full"), case, budget_s=0.02, threads=2, memory=False)
    assert m2.threads == 2 and "2 threads" in m2.timing_method
    assert torch.get_num_threads() == before
    with torch_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_blocked_samples_are_per_call_means_of_blocks() -> None:
    """A 0.2 ms busy-wait gets blocks of several calls from blocked_autorange; each sample must still be the
    time of one call (a block's total would read 10x too high). A busy-wait is never shorter than asked; on a
    loaded machine preemption stretches it, hence the loose top."""
    for _ in range(4):  # under heavy load a preempted call can make blocked_autorange pick tiny blocks: retry
        r = time_cpu_blocked(lambda: _busy(2e-4), budget_s=0.1, threads=1)
        if r.calls_per_sample >= 5:
            break
    assert r.calls_per_sample >= 5, r.calls_per_sample
    assert 0.2 <= r.min_ms and r.median_ms <= 1.0, r
    assert f"block of {r.calls_per_sample} calls" in r.method


def test_per_call_timer_runs_setup_untimed() -> None:
    calls = []
    r = time_cpu_per_call(lambda: calls.append("call"), budget_s=0.0, setup=lambda: calls.append("setup"),
                          min_runs=3)
    assert r.n_runs == 3 and calls == ["setup", "call"] * 3


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="cpu_timer='fast'"):
        MeasureConfig(cpu_timer="fast")
    with pytest.raises(ValueError, match="threads=0"):
        MeasureConfig(threads=0)
    with pytest.raises(ValueError, match="max_runs=2"):
        MeasureConfig(min_runs=3, max_runs=2)


# ----------------------------------------------------------------------------------------- FLOPs
def test_flops_by_pattern_and_mode() -> None:
    b, h, n, d = 2, 3, 100, 16
    full = Case(batch=b, heads=h, seq_len=n, head_dim=d)
    assert attention_flops(full) == 4 * b * h * n * n * d
    causal = Case(batch=b, heads=h, seq_len=n, head_dim=d, pattern=Pattern("causal"))
    assert attention_flops(causal) == 4 * b * h * d * n * (n + 1) // 2
    win = Case(batch=b, heads=h, seq_len=n, head_dim=d, pattern=Pattern("window", window=10))
    assert attention_flops(win) == 4 * b * h * d * (10 * 11 // 2 + 90 * 10)
    assert attention_flops(Case(batch=b, heads=h, seq_len=n, head_dim=d, mode="bwd")) == 2.5 * attention_flops(full)
    assert attention_flops(Case(batch=b, heads=h, seq_len=n, head_dim=d, mode="fwd_bwd")) == 3.5 * attention_flops(full)
    assert tflops(2e12, 1000.0) == 2.0
    assert math.isnan(tflops(1.0, 0.0))


def test_row_has_throughput_and_pct_of_the_cpu_ceiling() -> None:
    from harness.measure.ceilings import copy_ceiling_gbps, matmul_ceiling_tflops

    case = Case(batch=1, heads=1, seq_len=128, head_dim=16)
    m = _measure(get_variant("full"), case, budget_s=0.02)
    assert m.tflops == pytest.approx(m.flops / (m.time_ms_median * 1e-3) / 1e12)
    ceiling = matmul_ceiling_tflops("cpu", "float32", threads=1)  # the figure the row used, kept per process
    assert ceiling > 0 and m.matmul_ceiling_tflops == ceiling
    assert m.pct_of_peak == pytest.approx(100 * m.tflops / ceiling)
    assert m.extra["copy_ceiling_gbps"] == copy_ceiling_gbps("cpu", threads=1) > 0
    row = m.as_row()
    for col in ("time_ms_median", "time_ms_iqr", "time_ms_min", "n_runs", "setup_ms", "peak_mem_bytes", "flops",
                "tflops", "pct_of_peak", "noisy", "timing_method", "memory_method", "threads"):
        assert col in row


# ----------------------------------------------------------------------------------------- statuses
@pytest.mark.parametrize(("exc", "status"), [(RuntimeError("boom"), "error"), (MemoryError(), "oom"),
                                             (RuntimeError("DefaultCPUAllocator: can't allocate memory"), "oom")])
def test_failures_become_rows(exc: BaseException, status: str) -> None:
    m = _measure(Raises(exc), Case(batch=1, heads=1, seq_len=16, head_dim=16), budget_s=0.01)
    assert m.status == status and math.isnan(m.time_ms_median)
    assert type(exc).__name__ in m.reason


def test_unsupported_is_a_row() -> None:
    m = _measure(get_variant("full"), Case(batch=1, heads=1, seq_len=16, head_dim=16, dtype="float64"))
    assert m.status == "unsupported" and "dtype=float64" in m.reason


# ----------------------------------------------------------------------------------------- chunked, local_window
def _fwd_peak(variant: Variant, case: Case) -> float:
    m = _measure(variant, case, budget_s=0.0, min_runs=1, warmup=0, errors=False, cpu_timer="per_call")
    assert m.status == "ok", m.reason
    return m.peak_mem_bytes


@pytest.mark.parametrize(("name", "pattern"), [("chunked", Pattern("full")),
                                               ("local_window", Pattern("window", window=128))])
def test_blocked_variants_memory_is_linear_in_n(name: str, pattern: Pattern) -> None:
    """``chunked`` promises O(N·chunk) and ``local_window`` O(N·w): doubling N at most doubles the peak (plus
    slack), where ``full`` quadruples it; and at N = 4096 the peak is well under full's two N×N buffers."""
    variant = get_variant(name)
    b, h, d = 1, 2, 64
    peaks = {n: _fwd_peak(variant, Case(batch=b, heads=h, seq_len=n, head_dim=d, pattern=pattern))
             for n in (2048, 4096)}
    assert peaks[4096] <= 2.5 * peaks[2048], peaks
    full_nxn = 2 * b * h * 4096 * 4096 * FP32
    assert peaks[4096] <= full_nxn / 4, (peaks, full_nxn)
