"""Every registered variant on every small case it supports, timed by pytest-benchmark's fixture.

The parameters come from the registry, so a new variant (built-in or plugin) is benchmarked with no new code.
Each benchmark's ``group`` is its case, so pytest-benchmark's table compares variants side by side, and its
``extra_info`` holds the case fields, FLOPs and the output's error against the float64 baseline, which
:func:`harness.store.pytest_bench.load_pytest_benchmark_json` turns into rows of the public CSV.

    pytest benchmarks --benchmark-only                       # time them
    pytest benchmarks --benchmark-only -k "[full-"           # one variant
    pytest benchmarks --benchmark-only --benchmark-autosave  # keep the run; later --benchmark-compare
    pytest benchmarks --benchmark-only --benchmark-json=run.json && attnbench report run.json

The setup call (``prepare`` plus the first call: masks, compilation) happens before the timed region.
``ATTNBENCH_BENCH_THREADS=N`` sets torch's CPU threads (recorded in ``extra_info`` either way): on a busy machine
fewer threads than cores can be several times faster and far steadier.
"""

from __future__ import annotations

import os

import pytest
import torch

from harness import Case, Pattern, get_variant, list_variants
from harness import __version__ as harness_version
from harness.core.flops import attention_flops
from harness.core.metrics import error_stats
from harness.core.reference import reference_attention
from harness.inputs.make import make_inputs

if os.environ.get("ATTNBENCH_BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["ATTNBENCH_BENCH_THREADS"]))
_DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
_DTYPE = {"cpu": "float32", "cuda": "bfloat16"}
#: (seq_len, pattern, mode): small enough that a full run over every variant takes minutes on a laptop CPU.
_SMALL = (
    (256, Pattern("full"), "fwd"),
    (1024, Pattern("full"), "fwd"),
    (256, Pattern("causal"), "fwd"),
    (1024, Pattern("causal"), "fwd"),
    (1024, Pattern("window", window=128), "fwd"),
    (512, Pattern("full"), "fwd_bwd"),
    (512, Pattern("causal"), "fwd_bwd"),
)
_BATCH, _HEADS, _HEAD_DIM = 1, 4, 64


def _case_id(case: Case) -> str:
    pat = case.pattern.kind + (str(case.pattern.window) if case.pattern.window is not None else "")
    return (f"{case.device}-{case.dtype}-B{case.batch}H{case.heads}N{case.seq_len}D{case.head_dim}"
            f"-{pat}-{case.mode}")


def small_cases() -> dict[str, Case]:
    """The benchmark cases on this machine's devices, keyed by their id."""
    cases = [Case(batch=_BATCH, heads=_HEADS, seq_len=n, head_dim=_HEAD_DIM, dtype=_DTYPE[dev], device=dev,
                  pattern=pat, mode=mode, seed=0)
             for dev in _DEVICES for n, pat, mode in _SMALL]
    return {_case_id(c): c for c in cases}


CASES = small_cases()
PARAMS = [pytest.param(name, cid, id=f"{name}-{cid}")
          for name in list_variants() for cid, case in CASES.items() if get_variant(name).supports(case)]


def _timed_call(fn, case: Case, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grad_out: torch.Tensor):
    sync = torch.cuda.synchronize if case.device_type == "cuda" else (lambda: None)
    if case.mode == "fwd":
        def call():
            with torch.no_grad():
                out = fn(q, k, v)
            sync()
            return out
        return call
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]

    def call_bwd():
        for t in leaves:
            t.grad = None
        out = fn(*leaves)
        out.backward(grad_out)
        sync()
        return out
    return call_bwd


@pytest.mark.parametrize(("variant", "case_id"), PARAMS)
def test_variant(benchmark, variant: str, case_id: str) -> None:
    case = CASES[case_id]
    var = get_variant(variant)
    inputs = make_inputs(case)
    call = _timed_call(var.prepare(case.pattern, case), case, inputs.q, inputs.k, inputs.v, inputs.grad_out)
    out = call()  # setup call, outside the timed region
    err = error_stats(out.detach(), reference_attention(inputs.q, inputs.k, inputs.v, case.pattern).out)
    del out
    benchmark.group = case_id
    benchmark.extra_info.update(
        variant=variant, device=case.device, dtype=case.dtype, batch=case.batch, heads=case.heads,
        seq_len=case.seq_len, head_dim=case.head_dim, pattern=case.pattern.kind, window=case.pattern.window,
        mode=case.mode, seed=case.seed, flops=attention_flops(case), threads=torch.get_num_threads(),
        device_name=torch.cuda.get_device_name() if case.device_type == "cuda" else "",
        err_max_abs=err.max_abs, err_rel_l2=err.rel_l2, err_mean_abs=err.mean_abs,
        torch_version=torch.__version__, harness_version=harness_version,
    )
    benchmark(call)
