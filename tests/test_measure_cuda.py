"""CUDA measurement against independent yardsticks: ``triton.testing.do_bench`` for time, analytic buffer sizes
for the allocator's peak, and the matmul ceiling behind ``pct_of_peak``. Skipped (with the reason) without CUDA.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from harness import Case, Variant, get_variant
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs
from harness.measure.ceilings import matmul_ceiling_tflops
from harness.measure.memory import measure_peak
from harness.measure.runner import MeasureConfig, measure_variant
from harness.measure.samplers import l2_flush_buffer
from harness.measure.timing import time_cuda

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason="needs a CUDA device (torch.cuda.is_available() is False)"),
]


def _do_bench():
    triton_testing = pytest.importorskip("triton.testing", reason="triton is not installed")
    return triton_testing.do_bench


@pytest.mark.parametrize(("heads", "n", "d", "dtype"), [(16, 4096, 128, "bfloat16"), (16, 2048, 128, "float32"),
                                                       (8, 256, 64, "bfloat16")])
def test_harness_time_agrees_with_do_bench(heads: int, n: int, d: int, dtype: str) -> None:
    """The row's median for ``full`` forward and do_bench's median for the very same prepared callable agree
    within 5% (medians of three interleaved rounds each), from a ~40 µs call to a few ms."""
    do_bench = _do_bench()
    case = Case(batch=1, heads=heads, seq_len=n, head_dim=d, dtype=dtype, device="cuda")
    inputs, refs = make_inputs(case), ReferenceCache()
    variant = get_variant("full")
    fn = variant.prepare(case.pattern, case)

    def call():
        with torch.no_grad():
            return fn(inputs.q, inputs.k, inputs.v)

    ours, theirs = [], []
    for _ in range(3):
        m = measure_variant(variant, case, inputs, refs, MeasureConfig(budget_s=0.2, errors=False, memory=False,
                                                                       ceiling=False))
        assert m.status == "ok", m.reason
        assert m.timing_method.startswith("cuda: CUDA events")
        ours.append(m.time_ms_median)
        theirs.append(do_bench(call, warmup=25, rep=200, return_mode="median"))
    a, b = statistics.median(ours), statistics.median(theirs)
    assert abs(a / b - 1) <= 0.05, (ours, theirs)


def test_time_cuda_agrees_with_do_bench_on_a_matmul() -> None:
    do_bench = _do_bench()
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)

    def call():
        return a @ b

    ours = statistics.median(time_cuda(call, budget_s=0.2).median_ms for _ in range(3))
    theirs = statistics.median(do_bench(call, warmup=25, rep=200, return_mode="median") for _ in range(3))
    assert abs(ours / theirs - 1) <= 0.05, (ours, theirs)


def test_peak_of_full_on_cuda_matches_its_nxn_buffers() -> None:
    b, h, n, d = 1, 16, 4096, 64
    case = Case(batch=b, heads=h, seq_len=n, head_dim=d, dtype="bfloat16", device="cuda")
    m = measure_variant(get_variant("full"), case, make_inputs(case), ReferenceCache(),
                        MeasureConfig(budget_s=0.05, errors=False, ceiling=False))
    analytic = 2 * b * h * n * n * 2  # scaled scores + probabilities, bf16
    assert m.status == "ok", m.reason
    assert m.memory_method.startswith("cuda: max_memory_allocated")
    assert abs(m.peak_mem_bytes / analytic - 1) <= 0.10, (m.peak_mem_bytes, analytic)


def test_peak_of_a_known_allocation_on_cuda() -> None:
    x = torch.ones(2**20, device="cuda")  # live before the call: not counted

    def fn():
        tmp = torch.empty(64 * 2**20, dtype=torch.int8, device="cuda")
        tmp.zero_()
        out = x * 2.0  # 4 MiB, allocated while the 64 MiB temporary is alive
        del tmp
        return out

    r = measure_peak(fn, "cuda")
    assert r.peak_bytes == 64 * 2**20 + 4 * 2**20, r
    assert r.end_bytes == 4 * 2**20, r  # the output, still alive when the call returns


def test_flush_buffer_is_at_least_twice_l2() -> None:
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    assert l2 > 0
    assert l2_flush_buffer("cuda").numel() >= 2 * l2


def test_pct_of_peak_is_filled_from_the_measured_ceiling() -> None:
    case = Case(batch=1, heads=16, seq_len=2048, head_dim=128, dtype="bfloat16", device="cuda")
    m = measure_variant(get_variant("full"), case, make_inputs(case), ReferenceCache(),
                        MeasureConfig(budget_s=0.1, errors=False, memory=False))
    ceiling = matmul_ceiling_tflops("cuda", "bfloat16")
    assert ceiling > 0 and m.matmul_ceiling_tflops == pytest.approx(ceiling)
    assert m.pct_of_peak == pytest.approx(100 * m.tflops / ceiling)
    assert 0 < m.pct_of_peak <= 110, m.pct_of_peak
    assert matmul_ceiling_tflops("cuda", "bfloat16") == ceiling  # cached: the same figure, not re-measured


class _SlowForward(Variant):
    """Heavy forward (many matmuls), backward of a single cheap op: ``bwd`` must not include the forward."""

    name = "test_cuda_slow_forward"
    description = "heavy forward, cheap backward"
    patterns = frozenset({"full"})

    def forward(self, q, k, v, pattern):
        with torch.no_grad():
            x = q.detach()
            for _ in range(50):
                x = torch.matmul(x, torch.ones(q.shape[-1], q.shape[-1], device=q.device, dtype=q.dtype) / q.shape[-1])
        return q * 1.0 + x


def test_cuda_bwd_excludes_the_forward() -> None:
    base = Case(batch=4, heads=16, seq_len=4096, head_dim=128, dtype="float32", device="cuda")
    cfg = MeasureConfig(budget_s=0.1, errors=False, memory=False, ceiling=False)
    results = {}
    for mode in ("fwd", "bwd"):
        case = Case(**{**base.__dict__, "mode": mode})
        m = measure_variant(_SlowForward(), case, make_inputs(case), ReferenceCache(), cfg)
        assert m.status == "ok", m.reason
        results[mode] = m.time_ms_median
    assert results["bwd"] < results["fwd"] / 5, results
    assert math.isfinite(results["bwd"])
