"""The harness-vs-do_bench agreement tool (benchmarks/timer_agreement.py) and the direct-timing plan.

The tool's GPU figures need a GPU; what is tested here is everything around them, on CPU: the alternating round
order, that every way is timed every round, that both sides compute the same output, the gaps and the check, and
that failures become rows. The yardstick timer is injected (do_bench needs CUDA).
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import gpu_direct, timer_agreement
from benchmarks.timer_agreement import WAYS, Agreement, agreement, harness_timer_ms, report, round_orders
from harness import Pattern


def test_round_orders_alternate():
    assert round_orders(3) == [WAYS, tuple(reversed(WAYS)), WAYS]
    assert round_orders(1, ("a", "b")) == [("a", "b")]
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match=r"rounds=.* \(allowed: an integer >= 1\)"):
            round_orders(bad)


def test_each_way_timed_every_round_in_alternating_order():
    log: list[str] = []

    def bench(fn):
        log.append("bench")
        fn()
        return 1.0

    def timer(fn):
        log.append("timer")
        fn()
        return 1.1

    r = agreement("sdpa_math", Pattern("causal"), 1, 2, 64, 16, "float32", "cpu", rounds=3, budget_s=0.005,
                  bench=bench, timer=timer)
    assert r.status == "ok", r.message
    # bench_direct, bench_harness, timer_direct (sweep uses its own timer): forward, reversed, forward
    assert log == ["bench", "bench", "timer", "timer", "bench", "bench", "bench", "bench", "timer"]
    assert all(len(r.times[w]) == 3 for w in WAYS)
    assert r.median("bench_direct") == 1.0 and r.median("timer_direct") == 1.1
    assert r.gap("timer_direct") == pytest.approx(0.1)
    assert r.gap("bench_harness") == 0.0
    assert all(t > 0 and math.isfinite(t) for t in r.times["sweep"])
    assert r.out_max_abs_diff == 0.0  # the same kernel both ways


@pytest.mark.parametrize("kernel,pattern", [("sdpa_math", "full"), ("sdpa_flash", "causal")])
def test_real_cpu_timers_and_same_output(kernel, pattern):
    t = harness_timer_ms("cpu", 0.01)
    r = agreement(kernel, Pattern(pattern), 2, 2, 96, 32, "float32", "cpu", rounds=2, budget_s=0.01, bench=t)
    assert r.status == "ok", r.message
    assert r.out_max_abs_diff <= 1e-6
    for w in WAYS:
        assert len(r.times[w]) == 2 and all(0 < x < 1e4 for x in r.times[w])
        assert r.spread(w) >= 0
    row = r.row()
    assert row["kernel"] == kernel and row["status"] == "ok"
    assert row["gap_sweep"] == pytest.approx(r.median("sweep") / r.median("bench_direct") - 1)
    assert row["rounds_ms"].count(",") == len(WAYS)  # two values per way


def test_failures_become_rows():
    r = agreement("sdpa_cudnn", Pattern("full"), 1, 2, 64, 16, "float32", "cpu", bench=lambda fn: 1.0)
    assert r.status == "unsupported" and "device=cpu (supported: cuda)" in r.message
    assert math.isnan(r.gap())

    def broken(fn):
        raise RuntimeError("bench broke\nsecond line")

    r = agreement("sdpa_math", Pattern("full"), 1, 2, 64, 16, "float32", "cpu", rounds=1, bench=broken,
                  timer=lambda fn: 1.0)
    assert r.status == "error" and r.message == "RuntimeError: bench broke"


def test_cpu_without_a_yardstick_is_refused():
    with pytest.raises(ValueError, match=r"device='cpu' has no do_bench \(allowed: cuda"):
        agreement("sdpa_math", Pattern("full"), 1, 2, 64, 16, "float32", "cpu")


def _agreement(bench: float, sweep: float, status: str = "ok") -> Agreement:
    a = Agreement("sdpa_cudnn", "full", 0, 1, 16, 4096, 128, "bfloat16", "cuda", status=status)
    a.times = {"bench_direct": [bench, bench * 1.01], "bench_harness": [bench] * 2, "timer_direct": [bench] * 2,
               "sweep": [sweep, sweep]}
    return a


def test_report_flags_only_cases_beyond_tolerance(capsys):
    results = [_agreement(1.0, 1.02), _agreement(1.0, 0.95), _agreement(1.0, 1.5, status="error")]
    assert report(results, 0.03) == 1
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("sdpa_cudnn")]
    assert "<--" not in lines[0] and "-5.5%" in lines[1] and "<-- sweep off by more than 3%" in lines[1]
    assert "error" in lines[2]
    assert "1 of 2 cases" in out
    assert report(results, 0.10) == 0


def test_main_without_cuda_and_bad_arguments(capsys):
    if not torch.cuda.is_available():
        assert timer_agreement.main(["--seq-lens", "64"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        timer_agreement.main(["--kernels", "nope"])
    assert exc.value.code == 2
    assert "unknown kernels ['nope']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        timer_agreement.main(["--rounds", "0"])
    assert "rounds=0" in capsys.readouterr().err


def test_direct_plan():
    plan = gpu_direct.build_plan(["sdpa_math", "flex"], ["full"], [4096, 8192], 256, [65536], ["flex", "sdpa_cudnn"])
    labels = [(k, p.label, n) for k, p, n in plan]
    assert labels == [("sdpa_math", "full", 4096), ("flex", "full", 4096), ("flex", "full", 8192),
                      ("flex", "window(w=256)", 65536), ("sdpa_cudnn", "causal", 65536)]
    no_window = gpu_direct.build_plan(["flex"], ["causal"], [512], 0, [65536], ["flex"])
    assert no_window == [("flex", Pattern("causal"), 512)]
    with pytest.raises(ValueError, match=r"unknown kernels \['x'\]"):
        gpu_direct.build_plan(["x"], ["full"], [512], 0, [], [])


def test_flex_direct_and_harness_in_one_process():
    """The user's compiled flex and the harness's share one process: same output, no compile while timing."""
    from variants.flex import flex_available

    if flex_available():
        pytest.skip(flex_available())
    t = harness_timer_ms("cpu", 0.01)
    r = agreement("flex", Pattern("window", window=32), 1, 2, 128, 32, "float32", "cpu", rounds=2, budget_s=0.01,
                  bench=t)
    assert r.status == "ok", r.message
    assert r.out_max_abs_diff <= 1e-6
    assert all(len(r.times[w]) == 2 for w in WAYS)


def test_a_compile_during_the_timed_rounds_is_an_error():
    def compiling_bench(fn):
        fresh = eval("lambda x: x * 2 + 1")  # a new code object: a new graph to compile on every call
        torch.compile(fresh, backend="eager")(torch.ones(3))
        fn()
        return 1.0

    r = agreement("sdpa_math", Pattern("full"), 1, 2, 64, 16, "float32", "cpu", rounds=1, budget_s=0.005,
                  bench=compiling_bench)
    assert r.status == "error"
    assert "compiled 2 graph(s) during the timed rounds" in r.message  # bench runs twice a round
