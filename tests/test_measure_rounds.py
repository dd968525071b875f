"""Interleaved rounds, paired ratios and adaptive stopping (issue 13.2, 13.3), tested as mechanisms: fake clocks
for the timing, real variants only where the wiring into rows is checked. Also: rows of a case are written as soon
as they are complete, so a crash while the case is being timed loses only the rows still being timed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import Case, get_variant
from harness.core.reference import ReferenceCache
from harness.inputs.make import make_inputs
from harness.measure import stats as S
from harness.measure.rounds import SLICE_S, round_slice, run_rounds
from harness.measure.runner import MeasureConfig, measure_case
from harness.measure.samplers import CpuSampler
from harness.measure.stop_rule import MIN_TARGET_SAMPLES, StopRule
from tests.test_measure import Repeat
from tests.test_measure_contention import FakeClock, FakeMeter


def _fake(clock: FakeClock, ms, log: list | None = None, name: str = "") -> CpuSampler:
    """A sampler whose call takes ``ms()`` fake milliseconds and never waits for a core."""
    meter = FakeMeter(clock, [0.0])

    def call():
        if log is not None:
            log.append(name)
        meter.advance(ms() / 1e3)

    return CpuSampler(call, threads=1, meter=meter, clock=clock)


# ----------------------------------------------------------------------------------------- statistics
def test_median_ci_is_the_sign_test_interval() -> None:
    x = list(range(1, 101))
    ci = S.median_ci(x)
    assert (ci.low, ci.high) == (40, 61)  # the textbook 95% interval for n = 100: x_(40), x_(61)
    assert 0.95 <= ci.coverage < 0.97
    six = S.median_ci([6, 1, 5, 2, 4, 3])
    assert (six.low, six.high) == (1, 6) and six.coverage == pytest.approx(1 - 2 / 64)
    five = S.median_ci([1, 2, 3, 4, 5])  # no 95% interval exists: the range, with its true coverage
    assert (five.low, five.high) == (1, 5) and five.coverage == pytest.approx(1 - 2 / 32)
    assert S.median([3, 1, 2, 10]) == 2.5 and S.quantile([1, 2, 3, 4, 5], 0.25) == 2
    assert S.rel_noise([1.0, 1.0, 1.0]) == 0.0 and S.rel_noise([1.0, 2.0, 3.0]) == pytest.approx(1.4826 / 2)


def test_paired_ratio_is_the_median_of_round_ratios_with_its_sign_test_interval() -> None:
    r = S.paired_ratio([2.0, 4.0, 2.2, 1.8, 2.0, 20.0], [1.0] * 6)  # one round where only one side was slowed
    assert r.estimate == pytest.approx(2.1) and r.pairs == 6
    assert (r.low, r.high) == (1.8, 20.0) and r.coverage == pytest.approx(1 - 2 / 64)
    many = S.paired_ratio([2.0 + 0.01 * i for i in range(20)], [1.0] * 20)
    assert many.low > 2.0 and many.high < 2.19 and many.coverage >= 0.95
    one = S.paired_ratio([3.0], [1.5])
    assert one.estimate == 2.0 and math.isnan(one.low) and one.pairs == 1
    assert S.paired_ratio([0.0, 1.0], [1.0, 1.0]).pairs == 1  # a pair without a positive figure is skipped
    with pytest.raises(ValueError, match="pairs"):
        S.paired_ratio([1.0], [1.0, 2.0])


# ----------------------------------------------------------------------------------------- rounds
def test_rounds_interleave_in_a_seeded_order_that_changes() -> None:
    clock, log = FakeClock(), []
    samplers = [_fake(clock, lambda: 13.0, log, n) for n in "abc"]
    # calls of 13 ms against slices of 12.5 ms: one call a round, 31 rounds of a 0.4 s budget
    rule = StopRule(budget_s=0.4, rel_ci=None, min_runs=1, max_runs=1000)
    assert round_slice(0.4) == pytest.approx(0.0125)
    run_rounds(samplers, rule, seed=3)
    n_rounds = len(samplers[0].rounds_of)
    assert n_rounds == 31 and [s.rounds_of for s in samplers] == [list(range(n_rounds))] * 3
    by_name = dict(zip("abc", samplers))
    seen: dict[str, int] = {}
    rounds: list[list[str]] = [[] for _ in range(n_rounds)]
    for name in log:  # the k-th call of a sampler was taken in round rounds_of[k]
        rounds[by_name[name].rounds_of[seen.setdefault(name, 0)]].append(name)
        seen[name] += 1
    assert all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # not one fixed order
    log2: list = []
    run_rounds([_fake(FakeClock(), lambda: 13.0, log2, n) for n in "abc"], rule, seed=3)
    assert log2 == log  # the same seed, the same order


def test_a_larger_budget_gets_more_rounds_not_shorter_slices() -> None:
    """More rounds pair more of the machine's drift, but a slice of a few ms makes most samples first calls after
    another variant's (slower): slices of 12.5 ms, so 8 rounds at the default 0.1 s, 32 at 0.4 s, 80 at 1 s;
    a smaller budget still gets 8 rounds."""
    assert [round(b / round_slice(b)) for b in (0.008, 0.1, 0.2, 0.4, 1.0)] == [8, 8, 16, 32, 80]
    assert round_slice(1.0) == SLICE_S == 0.0125


def test_paired_rounds_cancel_drift_that_hits_both_sides() -> None:
    """The machine's speed changes from round to round (x1, x3, x1.5, ...) and hits both callables alike; B does
    twice A's work. The paired per-round ratio reads exactly 2 with a tight interval, while the plain medians
    taken one callable after the other would have read anything between 2/3 and 6."""
    clock = FakeClock()
    drift = [1.0, 3.0, 1.5, 2.0, 1.0, 2.5, 1.2, 3.0]
    batches = [0]

    def ms(base: float):
        return lambda: base * drift[min(batches[0] // 2, len(drift) - 1)]

    a, b = _fake(clock, ms(1.0)), _fake(clock, ms(2.0))
    rule = StopRule(budget_s=0.016, rel_ci=None, min_runs=3)

    def after(i: int) -> None:
        batches[0] += 1

    run_rounds([a, b], rule, seed=0, after_batch=after)
    fa, fb = a.round_figures(3), b.round_figures(3)
    common = sorted(set(fa) & set(fb))
    assert len(common) >= 3
    r = S.paired_ratio([fb[i] for i in common], [fa[i] for i in common])
    assert r.estimate == pytest.approx(2.0) and r.high - r.low < 1e-9


def test_a_ratio_takes_both_sides_on_the_same_footing() -> None:
    """A's samples alternate quiet (1 ms) and waited-on (3 ms); every sample of B waited. B must use all its
    samples, so a ratio against B takes all of A's too, never A's quiet ones against B's waited-on ones."""
    clock = FakeClock()
    ma, mb = FakeMeter(clock, [0.0, 0.002]), FakeMeter(clock, [0.002])
    sizes = iter([0.001, 0.003] * 1000)
    a = CpuSampler(lambda: ma.advance(next(sizes)), threads=1, meter=ma, clock=clock)
    b = CpuSampler(lambda: mb.advance(0.004), threads=1, meter=mb, clock=clock)
    run_rounds([a, b], StopRule(budget_s=0.08, min_runs=3, min_rounds=3))
    assert not a.uses_all(3) and b.uses_all(3)
    assert all(v == pytest.approx(1.0) for v in a.round_figures(3).values())  # its own statistics: quiet ones
    assert all(v > 1.0 for v in a.round_figures(3, use_all=True).values())  # beside B: all of them


def test_a_call_that_fails_mid_rounds_stops_alone_and_is_reported_at_once() -> None:
    clock = FakeClock()
    n = [0]

    def flaky() -> float:
        n[0] += 1
        if n[0] == 3:
            raise RuntimeError("boom on call 3")
        return 1.0

    good, bad = _fake(clock, lambda: 1.0), _fake(clock, flaky)
    reported: list[int] = []
    run_rounds([good, bad], StopRule(budget_s=0.008, min_runs=1), on_error=lambda i: reported.append(i))
    assert reported == [1] and "boom on call 3" in str(bad.error)
    assert good.error is None and good.stop_reason == "time_limit"


# ----------------------------------------------------------------------------------------- adaptive stopping
def test_adaptive_stops_at_the_target_when_samples_agree() -> None:
    s = _fake(FakeClock(), lambda: 1.0)
    rule = StopRule(budget_s=0.2, rel_ci=0.02, min_runs=3)
    run_rounds([s], rule)
    assert s.stop_reason == "target" and MIN_TARGET_SAMPLES <= s.n
    # as soon as a round's end finds MIN_TARGET_SAMPLES samples, long before the time limit
    assert s.spent_s <= MIN_TARGET_SAMPLES * 0.001 + round_slice(0.2) + 1e-9 < 0.2 / 4
    r = s.result(rule)
    assert r.rel_ci_width <= 0.02 and r.stop_reason == "target" and "adaptive" in r.method


def test_paired_rounds_hold_the_target_back_until_six_rounds_but_not_the_time_limit() -> None:
    """With ``target_rounds`` (6 for a paired case), steady samples reach the target only at round 6; a call longer
    than a sixth of the budget still stops at the time limit after ``min_rounds``."""
    from harness.measure.rounds import MIN_PAIRED_ROUNDS

    assert MIN_PAIRED_ROUNDS == 6
    clock = FakeClock()
    a, b = _fake(clock, lambda: 1.0), _fake(clock, lambda: 1.0)
    rule = StopRule(budget_s=0.2, rel_ci=0.02, min_runs=3, min_rounds=3, target_rounds=MIN_PAIRED_ROUNDS)
    run_rounds([a, b], rule)
    assert a.stop_reason == b.stop_reason == "target"
    assert max(a.rounds_of) + 1 == MIN_PAIRED_ROUNDS == max(b.rounds_of) + 1
    slow_clock = FakeClock()
    slow, quick = _fake(slow_clock, lambda: 60.0), _fake(slow_clock, lambda: 1.0)  # 60 ms: > 0.2 s / 6
    run_rounds([slow, quick], rule)
    assert slow.stop_reason == "time_limit" and slow.n == 4 and max(slow.rounds_of) + 1 == 4


def test_with_a_baseline_the_target_also_waits_for_the_ratios_interval() -> None:
    """Every third round the baseline's calls are 30% slower (the machine slowed while it alone ran). Each
    sampler's own median is tight by round 6, but the paired ratio's interval is not: with ``baseline`` the other
    sampler goes on until the ratio's 95% interval is within the target, and the baseline goes on as long as it
    does; without ``baseline`` both stop at round 6, with a ratio interval 30% wide."""
    from harness.measure.rounds import MIN_PAIRED_ROUNDS, paired_figures, ratio_within

    def run(baseline: int | None, budget_s: float = 1.0) -> tuple[CpuSampler, CpuSampler, StopRule]:
        clock = FakeClock()
        now = {"round": 0}

        class RoundAware(CpuSampler):
            def take(self, slice_s: float, max_n: int, round_index: int) -> None:
                now["round"] = round_index
                super().take(slice_s, max_n, round_index)

        base_meter, other_meter = FakeMeter(clock, [0.0]), FakeMeter(clock, [0.0])
        base = RoundAware(lambda: base_meter.advance((1.3 if now["round"] % 3 == 0 else 1.0) / 1e3), threads=1,
                          meter=base_meter, clock=clock)
        other = RoundAware(lambda: other_meter.advance(2.0 / 1e3), threads=1, meter=other_meter, clock=clock)
        rule = StopRule(budget_s=budget_s, rel_ci=0.02, min_runs=3, min_rounds=3, target_rounds=MIN_PAIRED_ROUNDS)
        run_rounds([base, other], rule, baseline=baseline)
        return base, other, rule

    def rounds(s: CpuSampler) -> int:
        return max(s.rounds_of) + 1

    def width(base: CpuSampler, other: CpuSampler, rule: StopRule) -> float:
        r = S.paired_ratio(*paired_figures(base, other, rule.min_runs))
        return (r.high - r.low) / r.estimate

    base, other, rule = run(baseline=None)
    assert base.stop_reason == other.stop_reason == "target"
    assert rounds(base) == rounds(other) == MIN_PAIRED_ROUNDS
    assert width(base, other, rule) == pytest.approx(0.3)  # the ratio's interval: 1/1.3 .. 1
    base, other, rule = run(baseline=0)
    assert other.stop_reason == "target" and base.stop_reason == "target"
    assert rounds(other) == rounds(base) > 3 * MIN_PAIRED_ROUNDS  # it took many more rounds
    assert ratio_within(base, other, rule) and width(base, other, rule) <= 0.02
    assert base.result(rule).rel_ci_width <= 0.02 and other.result(rule).rel_ci_width <= 0.02
    # the time limit is unchanged: with too little budget for the pairs, the other stops at the time limit (and
    # the baseline, its own median tight, with it)
    base, other, rule = run(baseline=0, budget_s=0.1)
    assert other.stop_reason == "time_limit" and width(base, other, rule) > 0.02
    assert other.spent_s < 0.1 + round_slice(0.1) + 0.003 and rounds(base) <= rounds(other) + 1
    with pytest.raises(ValueError, match=r"baseline=2 is out of range \(allowed: None or a sampler's index, 0 to 1\)"):
        run_rounds([base, other], rule, baseline=2)


def test_adaptive_stops_at_the_time_limit_when_samples_disagree() -> None:
    seq = iter([1.0, 2.0] * 10000)
    s = _fake(FakeClock(), lambda: next(seq))
    rule = StopRule(budget_s=0.2, rel_ci=0.02, min_runs=3)
    run_rounds([s], rule)
    r = s.result(rule)
    assert s.stop_reason == "time_limit" and r.rel_ci_width > 0.02
    assert 0.2 <= s.spent_s < 0.2 + round_slice(0.2) + 0.002  # the budget is the time limit


def test_max_runs_and_fixed_budget() -> None:
    s = _fake(FakeClock(), lambda: 0.001)
    run_rounds([s], StopRule(budget_s=100.0, rel_ci=None, min_runs=3, max_runs=50))
    assert s.stop_reason == "max_runs" and s.n == 50
    fixed = _fake(FakeClock(), lambda: 1.0)
    run_rounds([fixed], StopRule(budget_s=0.05, rel_ci=None, min_runs=3))
    assert fixed.stop_reason == "time_limit" and fixed.n == 50  # the whole budget, as before
    with pytest.raises(ValueError, match="rel_ci="):
        StopRule(rel_ci=0)


# ----------------------------------------------------------------------------------------- into rows
class _Repeat(Repeat):
    """``full`` k times in a row (test_measure's ``Repeat``), named as this file's rows expect."""

    name = "t_repeat"


def test_measure_case_writes_paired_speedups_and_memory_ratios() -> None:
    case = Case(batch=1, heads=2, seq_len=128, head_dim=32)
    variants = [get_variant("full"), _Repeat(2)]
    seen: list[str] = []
    cfg = MeasureConfig(budget_s=0.05, threads=1, ceiling=False)
    rows = measure_case(variants, case, make_inputs(case), ReferenceCache(), cfg, baseline="full",
                        on_row=lambda v, m, s: seen.append(v.name))
    assert seen == ["full", "t_repeat"]
    (_, full, _), (_, rep, rep_s) = rows
    assert full.status == rep.status == "ok" and rep_s > 0
    assert full.extra["speedup_vs_full"] == 1.0 and full.extra["mem_ratio_vs_full"] == 1.0
    sp = rep.extra["speedup_vs_full"]
    assert rep.extra["speedup_pairs"] >= cfg.min_runs
    assert rep.extra["speedup_ci_low"] <= sp <= rep.extra["speedup_ci_high"]
    assert rep.extra["mem_ratio_vs_full"] == pytest.approx(rep.peak_mem_bytes / full.peak_mem_bytes)
    for m in (full, rep):
        assert m.extra["rounds"] >= cfg.min_runs and m.stop_reason in ("target", "time_limit", "max_runs")
        assert m.time_ms_ci_low <= m.time_ms_median <= m.time_ms_ci_high
        assert len(m.time_samples_ms) == m.n_runs and 0 < m.cpu_share
        assert isinstance(m.contended, bool) and m.retries >= 0


def test_without_the_baseline_in_the_case_there_are_no_ratios() -> None:
    case = Case(batch=1, heads=1, seq_len=64, head_dim=16)
    ((_, m, _),) = measure_case([_Repeat(1)], case, make_inputs(case), ReferenceCache(),
                                MeasureConfig(budget_s=0.01, threads=1, ceiling=False, memory=False), baseline="full")
    assert m.status == "ok" and "speedup_vs_full" not in m.extra


# ----------------------------------------------------------------------------------------- a crash mid-case
_PLUGIN = textwrap.dedent('''
    """Variants for the crash test: one fails in setup, one kills the process while the case is being timed."""
    import os
    from harness import Variant, get_variant, register_variant
    from harness.core.pattern import PATTERN_KINDS

    @register_variant
    class FailsAtOnce(Variant):
        name = "t_fails_at_once"
        patterns = frozenset(PATTERN_KINDS)

        def forward(self, q, k, v, pattern):
            raise RuntimeError("fails in setup")

    @register_variant
    class DiesLater(Variant):
        name = "t_dies_later"
        patterns = frozenset(PATTERN_KINDS)
        calls = 0

        def forward(self, q, k, v, pattern):
            DiesLater.calls += 1
            if DiesLater.calls == 6 and os.environ.get("ATTNBENCH_TEST_DIE") == "1":
                os._exit(9)  # a crash of the process while the rounds run
            return get_variant("full").forward(q, k, v, pattern)
''')


def _sweep(tmp_path: Path, plugin: Path, variants: list[str], die: bool) -> int:
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
        from harness.run.config import plan_from_config
        from harness.run.sweep import run_sweep
        plan = plan_from_config({{"variants": {variants!r}, "variants_from": [{str(plugin)!r}],
                                 "seq_len": 32, "heads": 1, "head_dim": 8, "dtype": ["float32", "float64"],
                                 "budget": 0.02, "threads": 1, "progress": "off",
                                 "results_dir": {str(tmp_path)!r}, "run_name": "r"}}, cuda_available=False)
        run_sweep(plan)
    """)
    env = {"ATTNBENCH_TEST_DIE": "1" if die else "0", "PATH": "/usr/bin:/bin", "ATTNBENCH_CEILING_CACHE": "off"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300).returncode


def test_a_crash_while_a_case_is_timed_keeps_the_rows_already_complete(tmp_path) -> None:
    """float32: t_fails_at_once's error row is complete after its setup and written at once; the process dies
    during the rounds, so full's and t_dies_later's rows are not written. A resume measures exactly those."""
    plugin = tmp_path / "crashy.py"
    plugin.write_text(_PLUGIN)
    variants = ["full", "t_fails_at_once", "t_dies_later"]
    assert _sweep(tmp_path, plugin, variants, die=True) == 9
    rows = [json.loads(p.read_text()) for p in (tmp_path / "r" / "records").glob("*.json")]
    assert [(r["variant"], r["dtype"], r["status"]) for r in rows] == [("t_fails_at_once", "float32", "error")]
    assert "fails in setup" in rows[0]["reason"]
    assert _sweep(tmp_path, plugin, variants, die=False) == 0
    rows = [json.loads(p.read_text()) for p in (tmp_path / "r" / "records").glob("*.json")]
    got = sorted((r["variant"], r["dtype"], r["status"]) for r in rows)
    assert got == sorted([("full", "float32", "ok"), ("t_fails_at_once", "float32", "error"),
                          ("t_dies_later", "float32", "ok"), ("full", "float64", "unsupported"),
                          ("t_fails_at_once", "float64", "unsupported"), ("t_dies_later", "float64", "unsupported")])
    assert len(rows) == 6  # nothing lost, nothing doubled



class _Fixed:
    """A sampler stand-in with given samples (ms), every one undisturbed."""

    def __init__(self, samples):
        self.samples = list(samples)

    @property
    def n(self):
        return len(self.samples)

    @property
    def spent_s(self):
        return sum(self.samples) / 1e3

    def split(self, min_runs):
        return list(self.samples), []


def test_a_noisy_callable_samples_on_past_its_budget_until_it_settles():
    from harness.measure.stop_rule import StopRule

    rule = StopRule(budget_s=0.1, rel_ci=None, min_runs=3, noisy_limit_s=0.4)
    noisy = _Fixed([5.0, 10.0, 5.0, 12.0, 6.0, 11.0, 5.0, 13.0, 6.0, 10.0, 7.0, 12.0, 5.0, 9.0])  # 0.116 s, IQR ~ 70%
    assert rule.check(noisy, rounds=8) is None  # budget spent, still noisy: more samples
    assert StopRule(budget_s=0.1, rel_ci=None, min_runs=3).check(noisy, rounds=8) == "time_limit"  # no extension
    settled = _Fixed([10.0] * 16)  # 0.16 s, tight: past 1.5 budgets it stops as settled
    assert rule.check(settled, rounds=16) == "settled"
    long_noisy = _Fixed([5.0, 15.0] * 21)  # 0.42 s, still noisy: the extension's limit ends it
    assert rule.check(long_noisy, rounds=42) == "time_limit"
